"""Progress: a bar redrawn in place on a terminal, plain lines otherwise, nothing when quiet."""

import io

from clskern.cli._progress import Progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_on_a_terminal():
    stream = _Terminal()
    progress = Progress(3, "stats", stream=stream)
    for i, status in enumerate(["already stored", "stored", "stored"]):
        progress.step(f"case_{i}", status, 0 if status == "already stored" else 50_000_000)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert "[########################] 3/3" in text and "MB/s" in text and "ETA 0:00" in text


def test_plain_lines_and_quiet():
    stream = io.StringIO()
    progress = Progress(2, "apply", stream=stream)
    progress.step("a", "done", 2_000_000)
    progress.step("b", "failed")
    assert stream.getvalue().splitlines()[0].startswith("apply 1/2 a: done, 2.0 MB, ")
    assert stream.getvalue().splitlines()[1] == "apply 2/2 b: failed"
    quiet = io.StringIO()
    progress = Progress(2, "stats", quiet=True, stream=quiet)
    progress.step("a", "stored", 10)
    progress.close()
    assert quiet.getvalue() == ""


def test_unfinished_bar_is_ended_on_close():
    stream = _Terminal()
    progress = Progress(5, "stats", stream=stream)
    progress.step("a", "stored", 10)
    progress.close()
    assert stream.getvalue().endswith("\n")
