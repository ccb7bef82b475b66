#!/usr/bin/env bash
# Reproduce the committed reference reports under results/: each preset at its quick CPU scale,
# then its report (Markdown tables, LaTeX/CSV, PNG figures) and a note of command, machine, time.
# Usage: scripts/reference_results.sh [PRESET ...]   (default: loss_comparison focal_grid)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(loss_comparison focal_grid)
for preset in "${presets[@]}"; do
  runs="runs/reference/$preset"
  out="results/$preset"
  start=$(date +%s)
  "$BIN/ghmbench" sweep "experiment=$preset" "paths.runs_dir=$runs" | tail -n 5
  sweep_s=$(( $(date +%s) - start ))
  rm -rf "$out"
  "$BIN/ghmbench" report "$runs" --out "$out" > /dev/null
  rm -f "$out"/runs.parquet  # the CSV holds the same rows; keep the repository text-only
  cat > "$out/README.md" <<NOTE
# Reference report: experiment=$preset (quick CPU scale)

- command: \`ghmbench sweep experiment=$preset paths.runs_dir=$runs && ghmbench report $runs --out $out\`
- machine: $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, no GPU; torch $("$BIN/python" -c 'import torch; print(torch.__version__)')
- time: the runs' own wall times add up to $("$BIN/python" -c "import pandas as pd; print(round(pd.read_csv('$out/runs.csv')['wall_time_s'].sum()))") s; this invocation of the sweep took ${sweep_s} s (it skips runs already complete) ($(date -u +%Y-%m-%d))

See [report.md](report.md) for every table and figure.
NOTE
  echo "$preset: sweep ${sweep_s} s -> $out"
done
