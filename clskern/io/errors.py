"""Errors of the file readers: each names the file (or case) and the problem.

They subclass ``clskern.errors.InputError`` (a ``ValueError``), so the command
line reports them in one line, like every other bad input.
"""

from ..errors import InputError


class FileFormatError(InputError):
    """A file that cannot be read: corrupt, truncated, or not of its format."""


class PairingError(InputError):
    """Score and label files that do not pair up by case id."""


class MismatchError(InputError):
    """Scores and labels of a case that disagree in shape or affine."""
