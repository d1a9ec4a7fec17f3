"""clskern._jit: a kernel cache that cannot be written or read never fails a call, and says so once."""

import os
import subprocess
import sys
import textwrap
import warnings

import numba
import pytest

from clskern import _jit
from clskern.errors import KernelCacheWarning


@pytest.fixture(autouse=True)
def _fresh_warning_state(monkeypatch):
    monkeypatch.setattr(_jit, "_warned", type(_jit._warned)())


def _kernel():
    @_jit.njit()
    def twice(x):
        return 2 * x

    return twice


def test_a_cache_that_fails_to_save_compiles_in_memory_and_warns_once(monkeypatch):
    kernel = _kernel()

    def full_disk(sig, data):
        raise OSError(27, "File too large")

    monkeypatch.setattr(kernel._cache._inner, "save_overload", full_disk)
    with pytest.warns(KernelCacheWarning, match=r"writing it failed: OSError: \[Errno 27\] File too large") as seen:
        assert kernel(21) == 42
        assert kernel(1.5) == 3.0  # a second signature: no second warning
    assert len(seen) == 1


def test_a_damaged_cache_entry_is_compiled_again(monkeypatch):
    kernel = _kernel()

    def damaged(sig, target_context):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(kernel._cache._inner, "load_overload", damaged)
    with pytest.warns(KernelCacheWarning, match="reading it failed: EOFError"):
        assert kernel(4) == 8


def test_no_cache_folder_at_all_still_compiles(monkeypatch):
    def no_locator(self):
        raise RuntimeError("cannot cache function 'twice': no locator available for file '/ro/x.py'")

    monkeypatch.setattr(numba.core.dispatcher.Dispatcher, "enable_caching", no_locator)
    with pytest.warns(KernelCacheWarning, match="no locator available"):
        kernel = _kernel()
    assert kernel(3) == 6


def test_the_warning_is_given_once_per_process():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _jit.warn_uncached("reason-A")
        _jit.warn_uncached("reason-B")
    assert len(seen) == 1 and "(reason-A)" in str(seen[0].message)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ: Linux")
def test_a_full_disk_fails_no_command(tmp_path):
    """The issue's case: with an empty cache and no room to write it, `clskern warmup` (every kernel compiled)
    still succeeds, and says so in one stderr line (it exited 1 with `[Errno 27] File too large` before)."""
    code = textwrap.dedent("""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
        from clskern.cli.main import main
        sys.exit(main(["warmup", "--score-dtypes", "float32", "--label-dtypes", "uint8", "-q"]))
    """)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("clskern warmup: warning: clskern: Numba's kernel cache cannot be used (writing it "
                               "failed: OSError: [Errno 27] File too large")
