#!/usr/bin/env bash
# The converged loss comparison at GPU scale, for a machine with a CUDA GPU: the fair protocol of
# experiment=loss_comparison (tuning, selection on validation, three seeds reported on the test
# split: 27 runs) at scale=gpu (conf/scale/gpu.yaml: resnet18 on 8,000 sparse 160 px canvases, the
# same ~1,310 negative anchors per positive as on the CPU, 36 epochs), several runs sharing the GPU,
# then its report.
# Usage: scripts/gpu_comparison.sh OUT_DIR [OVERRIDE ...]   -> OUT_DIR/runs (one folder per run), OUT_DIR/report
#   OVERRIDE    Hydra overrides added to the sweep (e.g. seed=0 train.epochs=4 for a short look)
#   JOBS=N      runs at a time (default 4; each gets cores / N CPU threads)
#   SIZE=tiny   checks this script on the CPU, one thread, in a few minutes: 32 images, 2 epochs,
#               seed 0, a tuning grid of two learning rates (9 runs); its numbers mean nothing
#   BIN=DIR     the folder of python and ghmbench (default .venv/bin)
# Runs are keyed: run it again on the same OUT_DIR and it skips finished runs and resumes the others.
set -euo pipefail
out_arg=${1:?usage: scripts/gpu_comparison.sh OUT_DIR [OVERRIDE ...]}
shift
mkdir -p "$out_arg"
OUT=$(cd "$out_arg" && pwd)
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
SIZE=${SIZE:-full}
JOBS=${JOBS:-4}
case "$SIZE" in
  full) size=(device=cuda) ;;
  tiny) size=(device=cpu train.num_threads=1 seed=0 dataset.num_train=32 dataset.num_val=16 dataset.num_test=16
              train.epochs=2 train.eval_every=1 'protocol.tune=["train.lr=0.001,0.003"]' model.score_thresh=0.001)
        JOBS=1 ;;
  *) echo "gpu_comparison: SIZE=$SIZE is not allowed; allowed: full (default), tiny" >&2; exit 2 ;;
esac
if [ "$SIZE" = full ] && ! "$BIN/python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_comparison: no CUDA GPU is visible to torch; run it on a machine with one (SIZE=tiny checks the script on the CPU)" >&2
  exit 1
fi
start=$(date +%s)
"$BIN/ghmbench" sweep experiment=loss_comparison scale=gpu "${size[@]}" "$@" "paths.runs_dir=$OUT/runs" \
  hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS"
"$BIN/ghmbench" report "$OUT/runs" --out "$OUT/report"
echo "gpu_comparison: SIZE=$SIZE in $(( $(date +%s) - start )) s -> $OUT/report/report.md"
