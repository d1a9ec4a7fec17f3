"""A groups file: which group (site, scanner, lesion type) each case belongs to.

CSV, UTF-8, a header row ``case,group`` and then one row per case::

    case,group
    case_001,siteA
    case_002,siteB

Blank lines are ignored. Refused, naming the file and line: another header,
a row of other than two fields, an empty case id or group, a case listed
twice. A case may be listed and never used (test cases, say).
"""

import csv
import io

from .errors import FileFormatError

HEADER = ("case", "group")


def parse_groups(text, path="groups"):
    """``{case id: group}`` from the text of a groups file."""
    reader = csv.reader(io.StringIO(text, newline=""))
    groups, header_seen = {}, False
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not field.strip() for field in row):
                continue
            fields = [field.strip() for field in row]
            if not header_seen:
                if tuple(f.lower() for f in fields) != HEADER:
                    raise FileFormatError(f"{path}: line {line}: expected the header 'case,group', got {','.join(row)[:60]!r}")
                header_seen = True
                continue
            if len(fields) != 2:
                raise FileFormatError(f"{path}: line {line}: expected two fields (case,group), got {len(fields)}")
            case, group = fields
            if not case or not group:
                raise FileFormatError(f"{path}: line {line}: empty {'case id' if not case else 'group'}")
            if case in groups:
                raise FileFormatError(f"{path}: line {line}: case {case!r} is listed twice")
            groups[case] = group
    except csv.Error as exc:
        raise FileFormatError(f"{path}: not a CSV file ({exc})") from None
    if not header_seen:
        raise FileFormatError(f"{path}: empty groups file (expected the header 'case,group' and one row per case)")
    if not groups:
        raise FileFormatError(f"{path}: no cases (only the header)")
    return groups


def read_groups(path):
    """``{case id: group}`` from a groups file (see the module docstring)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_groups(text, path)
