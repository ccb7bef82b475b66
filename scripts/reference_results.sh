#!/usr/bin/env bash
# Reproduce the 12-epoch reference reports, results/loss_comparison and results/imbalance: each
# preset at its own CPU scale, then its report (Markdown tables, LaTeX/CSV, PNG figures) and a note
# of command, machine, time. The other reports under results/ (36 and 24 epochs, the diagnosis, the
# settings presets) are made by the commands in their own README.md, not by this script.
# Usage: scripts/reference_results.sh [PRESET ...]   (default: loss_comparison imbalance)
# loss_comparison runs the fair protocol (tuning, selection on validation, final seeds); imbalance
# runs each loss at the setting loss_comparison selected, so it needs that preset's runs first.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(loss_comparison imbalance)
for preset in "${presets[@]}"; do
  runs="runs/reference/$preset"
  out="results/$preset"
  start=$(date +%s)
  if [ "$preset" = imbalance ]; then
    # every loss at the setting the fair loss comparison selected for it on validation
    selected=$("$BIN/python" - runs/reference/loss_comparison <<'PY'
import json, pathlib, sys
from ghmbench.sweep.selection import select_settings
records = [json.loads(p.read_text()) for p in pathlib.Path(sys.argv[1]).glob("*/metrics.json")]
for loss, sel in select_settings(records).items():
    print(loss, *sel.overrides())
PY
)
    [ -n "$selected" ] || { echo "imbalance needs runs/reference/loss_comparison: run loss_comparison first" >&2; exit 2; }
    while read -r loss settings; do
      # shellcheck disable=SC2086
      "$BIN/ghmbench" sweep "experiment=$preset" "loss=$loss" $settings "paths.runs_dir=$runs" | tail -n 3
    done <<< "$selected"
  else
    "$BIN/ghmbench" sweep "experiment=$preset" "paths.runs_dir=$runs" | tail -n 5
  fi
  sweep_s=$(( $(date +%s) - start ))
  rm -rf "$out"
  "$BIN/ghmbench" report "$runs" --out "$out" > /dev/null
  rm -f "$out"/runs.parquet  # the CSV holds the same rows; keep the repository text-only
  cat > "$out/README.md" <<NOTE
# Reference report: experiment=$preset (CPU scale)

- command: \`ghmbench sweep experiment=$preset paths.runs_dir=$runs && ghmbench report $runs --out $out\`
- machine: $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, no GPU; torch $("$BIN/python" -c 'import torch; print(torch.__version__)')
- time: the runs' own wall times add up to $("$BIN/python" -c "import pandas as pd; print(round(pd.read_csv('$out/runs.csv')['wall_time_s'].sum()))") s; this invocation of the sweep took ${sweep_s} s (it skips runs already complete) ($(date -u +%Y-%m-%d))

See [report.md](report.md) for every table and figure.
NOTE
  echo "$preset: sweep ${sweep_s} s -> $out"
done
