#!/usr/bin/env bash
# GPU check: the GPU path end to end on a machine with a CUDA GPU. Fails (exit 1) at once, with a
# message, where torch sees no CUDA GPU.
#   1. the smoke preset on the GPU in float32, then in bf16 autocast with channels_last;
#   2. GHM in bf16 against float32 (scripts/ghm_precision_check.py: stated tolerances);
#   3. the loss comparison at scale=gpu, shortened (seed 0, 1,000 training images, 4 epochs: the
#      protocol's 12 tuning runs and 3 more final ones) through scripts/gpu_comparison.sh, 3 runs at
#      a time sharing the GPU, then its report (the full script is the converged comparison);
#   4. training images/s of every run above, and the GPU memory each took.
# Usage: scripts/gpu_check.sh [OUT_DIR]   (default runs/gpu_check; BIN=folder of python/ghmbench, default .venv/bin)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${1:-runs/gpu_check}
PY="$BIN/python"
GHMBENCH="$BIN/ghmbench"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: FAILED: no CUDA GPU is visible to torch (torch.cuda.is_available() is False); run this on a machine with one" >&2
  exit 1
fi
"$PY" -c 'import torch; print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) on {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s)")'
start=$(date +%s)

echo "== 1. smoke preset on the GPU: float32, then bf16 + channels_last"
"$GHMBENCH" train experiment=smoke device=cuda train.progress=false "paths.runs_dir=$OUT/smoke_fp32"
"$GHMBENCH" train experiment=smoke device=cuda train.progress=false train.amp=bf16 train.channels_last=true "paths.runs_dir=$OUT/smoke_bf16"

echo "== 2. GHM in bf16 against float32"
"$PY" scripts/ghm_precision_check.py --device cuda

echo "== 3. the loss comparison at scale=gpu, shortened, 3 runs at a time on the GPU"
JOBS=3 BIN="$BIN" scripts/gpu_comparison.sh "$OUT/loss_comparison" seed=0 dataset.num_train=1000 train.epochs=4 \
  train.eval_every=2 train.progress=false > /dev/null

echo "== 4. throughput"
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

root = Path(sys.argv[1])
for path in sorted(root.rglob("metrics.json")):
    r = json.loads(path.read_text())
    c = r["config"]["train"]
    print(f"{path.relative_to(root).parts[0]:16s} {r['loss']:5s} {r['regression']:9s} amp={c['amp']:4s} {r['status']:9s} "
          f"{r.get('train_images_per_s') or 0:8.1f} images/s  {r.get('cuda_max_memory_mb', 0):7.0f} MB  AP {(r['metrics'] or {}).get('AP')}")
PY
echo "gpu_check: passed in $(( $(date +%s) - start )) s"
