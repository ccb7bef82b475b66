#!/usr/bin/env bash
# "Which settings?": the runs behind results/focal_grid, results/ghm_ablation and results/label_noise,
# in the comparison regime. Runs go to runs/reference/<name>; a repeated call skips finished runs and
# resumes interrupted ones. Then `ghmbench report` makes each report.
# Usage: scripts/settings_results.sh [label_noise] [focal_grid] [budgets] [ghm_ablation] [focal_grid_long]
#        [ghm_ablation_long]  (default: all, in that order)
# JOBS (default: the cores) runs that many one-thread jobs at once.
#
# focal_grid / ghm_ablation: the tuning stage, at 36 epochs (validation every 9), into <name>/:
#   1. the learning-rate check: corners of the grid (focal: all four; GHM-C: the two opposite ones,
#      M 5 / momentum 0 and M 40 / momentum .9) over the optimiser grid (lr .001, .003 x batch 8,
#      16); its runs are copied into the grid's folder (they are candidates of the grid's tuning)
#   2. the protocol: every cell over the preset's tuning grid (focal_grid: every cell x the
#      optimiser grid, since a corner selected another setting), seed 0; the best validation
#      candidate is selected and trained over seeds 0, 1, 2, each seed on its own data draw
#   3. the papers' default cell, at its own best validation setting, over the same seeds and draws
# focal_grid_long / ghm_ablation_long: the final stage, at LONG_EPOCHS (default 60, validation every
#   quarter; ghm_ablation's own schedule), into <name>_60/: every cell again at the optimiser setting
#   its 36-epoch tuning selected, then the best validation cell and the papers' default over seeds 0,
#   1, 2 (each on its own data draw), and these two cells over the same seeds at 36 epochs (into
#   <name>/, where most of them exist). Five cells were still rising at 36 epochs; the 36-epoch runs
#   stay the tuning stage and the shorter budget.
# budgets: Focal's selected and default cell of the 36-epoch stage again at 12 epochs (3 seeds).
# label_noise: CE, Focal, GHM-C x missing annotations 0 / 10 / 20 / 40% and wrong classes 10 / 20 / 40%.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
JOBS=${JOBS:-$(nproc)}
R=${RUNS:-runs/reference}
LONG=${LONG_EPOCHS:-60}
LAUNCH=(hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS")
TUNING=(train.epochs=36 train.eval_every=9)  # the tuning stage's schedule (ghm_ablation's own is 60)
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(label_noise focal_grid budgets ghm_ablation focal_grid_long ghm_ablation_long)

sweep() { "$BIN/ghmbench" sweep "$@" "${LAUNCH[@]}" | grep -v "^warning: anchor fit" || true; }
tune() { sweep "$@" "${TUNING[@]}"; }  # a sweep of the tuning stage

# selected RUNS PRESET [CELL ...]: for each CELL (KEY=VALUE overrides in one argument; none: the whole
# grid), one line: the candidate of the preset's tuning grid with the best validation AP among the
# runs that have every KEY=VALUE, as overrides (loss.gamma=... train.lr=...). One Python for all cells.
selected() {
  "$BIN/python" - "$@" <<'PY'
import pathlib, sys
from ghmbench.config.compose import compose_config
from ghmbench.reporting.run_table import read_records
from ghmbench.sweep.selection import Protocol, matches, parse_overrides, runs_frame, select_settings
from omegaconf import OmegaConf
runs = runs_frame([record for _, record in read_records([pathlib.Path(sys.argv[1])])])
protocol = Protocol.from_config(OmegaConf.to_container(compose_config([f"experiment={sys.argv[2]}"]).protocol))
grid = dict(protocol.axes)
for cell in sys.argv[3:] or [""]:
    fixed = {k: v[0] for k, v in parse_overrides(cell.split()).items()}
    protocol.axes = {k: [v for v in values if k not in fixed or v == fixed[k]] for k, values in grid.items()}
    print(*next(iter(select_settings(runs[matches(runs, fixed)], protocol).values())).overrides())
PY
}

tunes_optimiser() {  # whether the preset's protocol tunes train.lr (focal_grid does, ghm_ablation does not)
  grep -q '^    - train.lr=' "$(dirname "$0")/../conf/experiment/$1.yaml"
}

grid() {  # grid(preset, "corner overrides" ..., -- default-cell overrides...); one sweep per corner argument
  local preset=$1; shift
  local corners=() default=()
  while [ "$1" != -- ]; do corners+=("$1"); shift; done; shift
  default=("$@")
  for corner in "${corners[@]}"; do
    # shellcheck disable=SC2086
    tune "experiment=$preset" 'protocol.tune=[]' $corner train.lr=0.001,0.003 train.batch_size=8,16 seed=0 "paths.runs_dir=$R/${preset}_lr"
  done
  mkdir -p "$R/$preset"
  for run in "$R/${preset}_lr"/*/; do  # the corners' runs that are candidates of the grid's own tuning
    [ -f "$run/metrics.json" ] && [ ! -e "$R/$preset/$(basename "$run")" ] || continue
    if tunes_optimiser "$preset" || { grep -q '^  lr: 0.003$' "$run/config.yaml" && grep -q '^  batch_size: 8$' "$run/config.yaml"; }; then
      cp -r "$run" "$R/$preset/"
    fi
  done
  tune "experiment=$preset" "paths.runs_dir=$R/$preset"
  local setting
  setting=$(selected "$R/$preset" "$preset" "${default[*]}")
  # shellcheck disable=SC2086
  tune "experiment=$preset" 'protocol.tune=[]' $setting seed=0,1,2 "paths.runs_dir=$R/$preset"
}

budgets() {  # the selected and the default cell (each at its selected setting) at 12 epochs
  local preset=$1 default cell
  # shellcheck disable=SC2086
  cell=$(selected "$R/$preset" "$preset")
  default=$(selected "$R/$preset" "$preset" "$2")
  for epochs in 12; do
    for cell_overrides in "$cell" "$default"; do
      # shellcheck disable=SC2086
      sweep "experiment=$preset" 'protocol.tune=[]' $cell_overrides seed=0,1,2 "train.epochs=$epochs" "train.eval_every=$((epochs / 4))" "paths.runs_dir=$R/${preset}_$epochs"
    done
  done
}

train_all() {  # one `ghmbench train` per stdin line of overrides, JOBS one-thread jobs at a time
  xargs -P "$JOBS" -L 1 "$BIN/ghmbench" train train.num_threads=1 | grep -v "^warning: anchor fit" || true
}

long() {  # long PRESET AXIS_A "VALUES" AXIS_B "VALUES" -- DEFAULT_CELL_OVERRIDES...
  local preset=$1 a=$2 a_values=$3 b=$4 b_values=$5 out="$R/${1}_$LONG" x y setting
  shift 6
  local schedule="train.epochs=$LONG train.eval_every=$((LONG / 4)) paths.runs_dir=$out" cells=()
  for x in $a_values; do
    for y in $b_values; do cells+=("$a=$x $b=$y"); done
  done
  selected "$R/$preset" "$preset" "${cells[@]}" | while read -r setting; do
    echo "experiment=$preset protocol.tune=[] $setting seed=0 $schedule"
  done | train_all
  mapfile -t cells < <(selected "$out" "$preset" "" "$*")  # the best validation cell, the default
  [ ${#cells[@]} -eq 2 ] || { echo "long $preset: no selection in $out" >&2; exit 1; }
  for setting in "${cells[@]}"; do
    printf 'experiment=%s protocol.tune=[] %s seed=%s %s\n' "$preset" "$setting" 1 "$schedule" "$preset" "$setting" 2 "$schedule"
  done | train_all
  for setting in "${cells[@]}"; do  # the same two cells at the tuning stage's schedule: the shorter budget
    for seed in 0 1 2; do
      echo "experiment=$preset protocol.tune=[] $setting seed=$seed ${TUNING[*]} paths.runs_dir=$R/$preset"
    done
  done | train_all
}

for part in "${parts[@]}"; do
  case $part in
    focal_grid) grid focal_grid "loss.gamma=0,5 loss.alpha=0.1,0.75" -- loss.gamma=2 loss.alpha=0.25 ;;
    ghm_ablation) grid ghm_ablation "loss.bins=5 loss.momentum=0" "loss.bins=40 loss.momentum=0.9" -- loss.bins=30 loss.momentum=0.75 ;;
    label_noise)
      sweep experiment=label_noise "paths.runs_dir=$R/label_noise"
      sweep experiment=label_noise dataset.unannotated_rate=0 dataset.class_noise=0.1,0.2,0.4 "paths.runs_dir=$R/label_noise" ;;
    ghm_ablation_long) long ghm_ablation loss.bins "5 10 20 30 40" loss.momentum "0 0.5 0.75 0.9" -- loss.bins=30 loss.momentum=0.75 ;;
    focal_grid_long) long focal_grid loss.gamma "5 0 0.5 1 2" loss.alpha "0.1 0.25 0.5 0.75" -- loss.gamma=2 loss.alpha=0.25 ;;
    budgets)
      budgets focal_grid "loss.gamma=2 loss.alpha=0.25" ;;
    *) echo "unknown part $part; allowed: focal_grid ghm_ablation label_noise budgets focal_grid_long ghm_ablation_long" >&2; exit 2 ;;
  esac
done
