#!/usr/bin/env bash
# The real-photo results under results/bccd: the fair comparison on the embedded BCCD blood-cell photos
# (experiment=bccd), then the settings cross at the settings it selected, then their reports.
# Usage: scripts/bccd_results.sh [comparison] [settings]   (default: both, in that order)
#   comparison  experiment=bccd: CE, Focal and GHM-C tuned alike over its lr grid (seed 0, smooth L1),
#               each selected on validation AP, then x smooth L1 / GHM-R x seeds 0, 1, 2 on the test split
#   settings    one run per cell (seed 0, smooth L1) at the optimiser setting each loss selected in the
#               comparison: Focal γ {0, 1, 2, 5} at α .25 and α {.1, .25, .5, .75} at γ 2; GHM-C
#               M {10, 30} x momentum {0, .75}. The default cells are the comparison's runs, copied
# Runs go to $RUNS/bccd and $RUNS/bccd_settings, reports to $OUT/bccd and $OUT/bccd/settings. A run whose
# folder is complete is skipped, so an interrupted call resumes. JOBS (default: the cores) runs at a
# time, one torch thread each. DATA: overrides added to every run, e.g. your own photos:
#   DATA="dataset=voc dataset.root=/data/my_voc" RUNS=runs/mine OUT=reports/mine scripts/bccd_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs/reference}
OUT=${OUT:-results}
JOBS=${JOBS:-$(nproc)}
LAUNCH=(hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS")
read -r -a DATA <<< "${DATA:-}"

sweep() { "$BIN/ghmbench" sweep "$@" "${DATA[@]}" "${LAUNCH[@]}" | tail -n 3; }

# shellcheck source=scripts/runs_lib.sh
source scripts/runs_lib.sh  # selected, reuse (the working directory is the repository root)

report() {  # report RUNS_DIR OUT_DIR [ARGS...]
  local runs=$1 out=$2; shift 2
  rm -rf "${out:?}"/*.md "${out:?}"/*.csv "${out:?}"/*.tex "${out:?}"/*.png
  "$BIN/ghmbench" report "$runs" --out "$out" "$@" > /dev/null
  rm -f "$out/runs.parquet"  # the CSV holds the same rows; keep the repository text-only
}

# under the report's title while its cells are flagged not converged (2026-12-07: all of them)
NOT_CONVERGED="Not a converged verdict: every cell is flagged not converged (the mean validation AP still rose by \
0.015-0.034 over the last quarter of 24 epochs, against the 0.01 bar); read it as a 24-epoch answer. A converged \
schedule (36-48 epochs) did not fit the 2 h budget on 2 CPU cores (README.md)."

comparison() {
  sweep experiment=bccd "paths.runs_dir=$RUNS/bccd"
  report "$RUNS/bccd" "$OUT/bccd" --bootstrap 500 --note "$NOT_CONVERGED"
}

settings() {
  local selections focal ghm
  selections=$(selected "$RUNS/bccd")
  focal=$(awk '$1 == "focal" {$1 = ""; print}' <<< "$selections")
  ghm=$(awk '$1 == "ghm" {$1 = ""; print}' <<< "$selections")
  [ -n "$focal" ] && [ -n "$ghm" ] || { echo "settings needs the comparison's runs: run that part first" >&2; exit 2; }
  local base=(experiment=bccd 'protocol.tune=[]' regression=smooth_l1 seed=0 "paths.runs_dir=$RUNS/bccd_settings")
  # shellcheck disable=SC2086  # focal, ghm: several overrides each
  reuse "$RUNS/bccd_settings" "$RUNS/bccd" "${base[@]}" "${DATA[@]}" loss=focal $focal
  # shellcheck disable=SC2086
  reuse "$RUNS/bccd_settings" "$RUNS/bccd" "${base[@]}" "${DATA[@]}" loss=ghm $ghm
  # shellcheck disable=SC2086
  sweep "${base[@]}" loss=focal $focal loss.gamma=0,1,2,5
  # shellcheck disable=SC2086
  sweep "${base[@]}" loss=focal $focal loss.alpha=0.1,0.25,0.5,0.75
  # shellcheck disable=SC2086
  sweep "${base[@]}" loss=ghm $ghm loss.bins=10,30 loss.momentum=0,0.75
  mkdir -p "$OUT/bccd/settings"
  report "$RUNS/bccd_settings" "$OUT/bccd/settings" --bootstrap 500
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(comparison settings)
for part in "${parts[@]}"; do
  start=$(date +%s)
  case $part in
    comparison) comparison ;;
    settings) settings ;;
    *) echo "unknown part '$part': comparison or settings" >&2; exit 2 ;;
  esac
  echo "$part: $(($(date +%s) - start)) s"
done
