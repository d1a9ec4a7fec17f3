"""clskern in one process with PyTorch: a validation loop against the two halves in separate processes.

Per case, a small 3-D convolutional model step on the CPU (torch's own
intra-op threads, GNU OpenMP in PyTorch's wheels) and then ``volume_stats`` of
a 128x128x96 volume. ``together`` runs both in one process, case after case;
``apart`` runs the model steps in one process and the clskern calls in another,
one after the other, and adds the two times; both again with
``OMP_WAIT_POLICY=passive``, which stops torch's OpenMP threads from spinning
after each of its parallel regions. Called by ``bench_host_load.py
--torch``, or on its own:

    python benchmarks/bench_torch_loop.py [--busy N]     # N spinning processes meanwhile
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = 20


def _model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv3d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv3d(8, 1, 1), torch.nn.Sigmoid(),
    ).eval()


def loop(folder, part):
    """``part``: ``model``, ``clskern`` or ``both``; prints JSON ``{"seconds": ...}`` for the timed cases."""
    scores = np.asfortranarray(np.load(Path(folder) / "128x128x96_scores.npy"))
    labels = np.asfortranarray(np.load(Path(folder) / "128x128x96_labels.npy"))
    steps = []
    if part in ("model", "both"):
        import torch

        model = _model()
        x = torch.rand(1, 1, 64, 64, 48)

        def model_step():
            with torch.no_grad():
                model(x)

        steps.append(model_step)
    if part in ("clskern", "both"):
        import clskern

        steps.append(lambda: clskern.volume_stats(scores, labels))
    for step in steps:  # warm-up: compile, allocate
        step()
    t0 = time.perf_counter()
    for _ in range(CASES):
        for step in steps:
            step()
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def _run(folder, part, env=None):
    run = subprocess.run([sys.executable, __file__, "--loop", folder, part], capture_output=True, text=True,
                         timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])["seconds"]


def torch_table(folder, repeats=3, busy=0):
    """The table, with ``busy`` spinning processes running meanwhile (0: an idle host)."""
    from bench_host_load import Load

    with Load(busy):
        rows = _rows(folder, repeats)
    _print(rows, repeats, busy)


def _rows(folder, repeats):
    passive = {"OMP_WAIT_POLICY": "passive"}
    rows = {"apart (model process + clskern process)": [], "together": [],
            "apart, OMP_WAIT_POLICY=passive": [], "together, OMP_WAIT_POLICY=passive": []}
    for _ in range(repeats):
        rows["apart (model process + clskern process)"].append(_run(folder, "model") + _run(folder, "clskern"))
        rows["together"].append(_run(folder, "both"))
        rows["apart, OMP_WAIT_POLICY=passive"].append(_run(folder, "model", passive) + _run(folder, "clskern", passive))
        rows["together, OMP_WAIT_POLICY=passive"].append(_run(folder, "both", passive))
    return rows


def _print(rows, repeats, busy):
    import torch

    host = f"{busy} spinning process(es) beside" if busy else "an idle host"
    print(f"\nBeside PyTorch {torch.__version__} ({torch.get_num_threads()} intra-op threads), {host}: {CASES} cases "
          f"of a 3-conv model step on 1x1x64x64x48 + volume_stats on 128x128x96; median of {repeats} runs each\n")
    print("| loop | seconds | per case, ms |")
    print("|---|---:|---:|")
    for name, values in rows.items():
        median = sorted(values)[len(values) // 2]
        print(f"| {name} | {median:.2f} | {1e3 * median / CASES:.1f} |")


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--loop":
        return loop(sys.argv[2], sys.argv[3])
    sys.path.insert(0, str(HERE))
    from bench_host_load import make_volumes

    busy = int(sys.argv[sys.argv.index("--busy") + 1]) if "--busy" in sys.argv else 0
    with tempfile.TemporaryDirectory() as folder:
        make_volumes(folder)
        torch_table(folder, busy=busy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
