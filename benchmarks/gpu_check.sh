#!/usr/bin/env bash
# A few minutes of a lent GPU: the paper-scale NAS-Bench-201 gaea-darts ERM search epoch, fp32 and bf16,
# then the step benchmark against the peer where xautodl is installed. Run from the repository root:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -euo pipefail
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"
python -c "import gaeanas" 2>/dev/null || pip install -q -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
for precision in bf16 fp32; do
  timeout 240 python benchmarks/search_epoch.py --device cuda --precision "$precision" | tee "$out/epoch-$precision.txt"
done
if python -c "import xautodl" 2>/dev/null; then
  timeout 240 python benchmarks/supernet_speed.py --device cuda --repeats 5 --steps 10 | tee "$out/speed-cuda.md"
fi
