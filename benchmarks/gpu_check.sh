#!/usr/bin/env bash
# GPU check for clskern's CUDA kernels: GPU == CPU on fresh random volumes,
# then the timing table of issue 5 (512x512x300 float32) and a batched
# calibration of 100 volumes. Installs nothing; needs numba-cuda and PyTorch
# (CuPy optional). Under 5 minutes on an H100. Usage, from anywhere:
#   bash benchmarks/gpu_check.sh [--seed N] [--cases N] [--repeat N] [--skip-timings]
set -u
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not available"
PY=${PYTHON:-python3}
timeout 290 "$PY" benchmarks/gpu_check.py "$@"
rc=$?
if [ "$rc" -eq 124 ]; then echo "gpu_check: stopped after 290 s"; fi
exit "$rc"
