"""How much memory this machine can still give, for checks made before allocating.

The least of what the kernel says is available (``MemAvailable`` in
``/proc/meminfo``) and what this process's cgroup still allows: in a container
with a memory limit, MemAvailable describes the whole host, and an input that
passes a check against it is OOM-killed instead of refused.

cgroup v2: ``memory.max`` (``max``: no limit) minus ``memory.current``;
cgroup v1: ``memory.limit_in_bytes`` (a huge value: no limit) minus
``memory.usage_in_bytes``. Usage counts the page cache, which the kernel
reclaims before it kills anything, so its inactive file pages (``memory.stat``:
``inactive_file``, v1 ``total_inactive_file``) are not counted as used, as
container runtimes count a working set. The paths are the ones a container
sees for its own cgroup (module constants, so tests can point them elsewhere);
where they do not exist (a host's root cgroup has no limit files), only
MemAvailable counts.
"""

MEMINFO = "/proc/meminfo"
CGROUP2_MAX = "/sys/fs/cgroup/memory.max"
CGROUP2_CURRENT = "/sys/fs/cgroup/memory.current"
CGROUP2_STAT = "/sys/fs/cgroup/memory.stat"
CGROUP1_LIMIT = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
CGROUP1_USAGE = "/sys/fs/cgroup/memory/memory.usage_in_bytes"
CGROUP1_STAT = "/sys/fs/cgroup/memory/memory.stat"
CGROUP1_NO_LIMIT = 1 << 62  # v1 writes "no limit" as 9223372036854771712 (LONG_MAX rounded to a page)


def _read(path):
    """A small file's text, stripped, or None where it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16).decode("ascii", "replace").strip()
    except OSError:
        return None


def _meminfo():
    text = _read(MEMINFO)
    for line in (text or "").splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            try:
                return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
            except (ValueError, IndexError):
                return None
    return None


def _stat(path, key):
    """``key``'s value in a cgroup ``memory.stat``, 0 where absent."""
    for line in (_read(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


def _left(limit, usage, reclaimable):
    """Bytes the cgroup still allows, or None where its files say nothing usable."""
    try:
        limit, usage = int(limit), int(usage)
    except (TypeError, ValueError):
        return None
    return max(0, limit - max(0, usage - reclaimable))


def _cgroup():
    """Bytes this process's cgroup still allows (v2, else v1), or None where it sets no limit."""
    limit = _read(CGROUP2_MAX)
    if limit is not None:
        if limit == "max":
            return None
        return _left(limit, _read(CGROUP2_CURRENT), _stat(CGROUP2_STAT, "inactive_file"))
    limit = _read(CGROUP1_LIMIT)
    if limit is not None:
        if not limit.isdigit() or int(limit) >= CGROUP1_NO_LIMIT:
            return None
        return _left(limit, _read(CGROUP1_USAGE), _stat(CGROUP1_STAT, "total_inactive_file"))
    return None


def available_memory():
    """Bytes of memory available now (the least of MemAvailable and the cgroup's room), or None where unknown."""
    known = [n for n in (_meminfo(), _cgroup()) if n is not None]
    return min(known) if known else None
