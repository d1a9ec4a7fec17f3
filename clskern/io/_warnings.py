"""One lock for ``warnings.catch_warnings`` in the readers.

``catch_warnings`` saves and restores the process-wide filter list, so two
reader threads inside it at once could restore each other's filters; every
reader that enters it holds this lock (for a header parse only).
"""

import contextlib
import threading
import warnings

WARNINGS_LOCK = threading.RLock()


@contextlib.contextmanager
def warnings_as_errors():
    """Turn warnings into exceptions while a header is parsed (a header NumPy warns about is not one it writes)."""
    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
