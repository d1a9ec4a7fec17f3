"""Progress of long runs: a bar on a terminal, plain lines otherwise, or nothing."""

import sys
import time


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Cases done, MB/s of decompressed data and time left, written to ``stream``.

    Parameters
    ----------
    total : int
        Cases expected.
    what : str
        The verb shown first ("stats", "apply").
    quiet : bool
        Print nothing.
    stream : file, optional
        Default ``sys.stderr``; a terminal gets a bar redrawn in place.
    """

    def __init__(self, total, what, *, quiet=False, stream=None):
        self.total = total
        self.what = what
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.worked = 0  # cases actually read (not taken from a store)
        self.nbytes = 0
        self.started = time.perf_counter()

    def _rate(self):
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return self.nbytes / 1e6 / elapsed, elapsed

    def step(self, case_id, status, nbytes=0):
        """Record one case (``status``: "done", "stored", "already stored", "failed")."""
        self.done += 1
        self.nbytes += nbytes
        if status in ("done", "stored"):
            self.worked += 1
        if self.quiet:
            return
        mbps, elapsed = self._rate()
        left = self.total - self.done
        eta = elapsed / self.worked * left if self.worked else 0.0
        if self.tty:
            width = 24
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            line = (f"\r{self.what} [{bar}] {self.done}/{self.total} {mbps:6.0f} MB/s "
                    f"ETA {_duration(eta)} {case_id[:30]:30s}")
            self.stream.write(line)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(
                f"{self.what} {self.done}/{self.total} {case_id}: {status}"
                + (f", {nbytes / 1e6:.1f} MB, {mbps:.0f} MB/s, ETA {_duration(eta)}" if nbytes else "")
                + "\n"
            )
        self.stream.flush()

    def close(self):
        """End a bar left unfinished (an error or Ctrl-C)."""
        if self.tty and not self.quiet and 0 < self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
