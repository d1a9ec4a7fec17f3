"""Time volume_stats of one source tree: python benchmarks/time_volume_stats.py ROOT REPEAT (min and median ms, F then C).

ROOT is a tree holding clskern/ and benchmarks/ (e.g. from git archive), so two trees can be run in turn.
"""
import sys, time, inspect
root = sys.argv[1]; sys.path.insert(0, root); sys.path.insert(0, root + "/benchmarks")
import numpy as np, clskern
from volumes import benchmark_volume
kw = {"connectivity": None} if "connectivity" in inspect.signature(clskern.volume_stats).parameters else {}
out = []
for order in ("F", "C"):
    s, y = benchmark_volume(order=order)
    clskern.volume_stats(s, y, **kw)
    ts = []
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter(); clskern.volume_stats(s, y, **kw); ts.append(time.perf_counter() - t)
    out.append(f"{order} min {np.min(ts)*1e3:.2f} med {np.median(ts)*1e3:.2f}")
print(root, *out, flush=True)
