#!/usr/bin/env bash
# Reproduce the loss-comparison reports under results/: the runs, then each report (Markdown,
# LaTeX and CSV tables, PNG figures) and a README.md noting command, code, machine and time.
# Usage: scripts/reference_results.sh [PART ...]   (default: every part, in the order below)
#   loss_comparison      the fair protocol at 12 epochs (what make bench-quick runs): a setup check
#   loss_comparison_24   the same protocol at 24 epochs
#   loss_comparison_36   the same protocol at 36 epochs (what make bench runs): the converged verdict
#   imbalance            each loss at four imbalance levels, at the setting loss_comparison selected
#   imbalance_36         the same at 36 epochs, at the setting loss_comparison_36 selected
#   ghm_diagnosis        GHM-C at the setting loss_comparison selected, one change per run
# imbalance and ghm_diagnosis read their comparison's runs, so that part must have run first.
# Runs go to $RUNS/<part>, reports to $OUT/<part>. A run whose folder is complete is skipped, so an
# interrupted call resumes; a run that another part already trained (same run key) is copied, not
# retrained. The settings presets (focal_grid, ghm_ablation, label_noise): scripts/settings_results.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs/reference}
OUT=${OUT:-results}
JOBS=${JOBS:-$(nproc)}  # runs at a time, one torch thread each
LAUNCH=(hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS")
QUICK_NOTE="A setup check at 12 epochs, not a verdict: its configurations are still learning (not converged); \
make bench (36 epochs) runs the converged comparison."
# what the reports that are not a converged comparison are for, under their title (report --note)
SHORT_NOTE="The protocol at 24 epochs, kept to show why the comparison runs 36: its GHM-R cells are still learning \
(not converged). make bench (36 epochs) runs the converged comparison."
CURVE_NOTE="The imbalance curve at 12 epochs, a shorter budget: most of its points are still learning (not \
converged). The converged curve is imbalance_36 (scripts/reference_results.sh imbalance_36)."
DIAGNOSIS_NOTE="Single runs, one change each, to find what makes GHM-C converge: a diagnosis, not a comparison; its \
12-epoch runs are still learning by design."

schedule() { echo "train.epochs=$1 train.eval_every=$(($1 / 4))"; }  # validation at 25/50/75/100%

# shellcheck source=scripts/runs_lib.sh
source scripts/runs_lib.sh  # selected, reuse (the working directory is the repository root)

comparison() {  # comparison PART EPOCHS
  local args=(experiment=loss_comparison $(schedule "$2"))
  "$BIN/ghmbench" sweep "${args[@]}" "paths.runs_dir=$RUNS/$1" "${LAUNCH[@]}" | tail -n 3
  COMMAND="\`ghmbench sweep ${args[*]} paths.runs_dir=$RUNS/$1 ${LAUNCH[*]}\`"
  case $2 in 12) NOTE=$QUICK_NOTE ;; 24) NOTE=$SHORT_NOTE ;; esac
}

imbalance() {  # imbalance PART EPOCHS COMPARISON_PART
  local part=$1 epochs=$2 source=$3 loss settings selections
  selections=$(selected "$RUNS/$source")
  [ -n "$selections" ] || { echo "$part needs the runs of $source: run that part first" >&2; exit 2; }
  while read -r loss settings; do
    # shellcheck disable=SC2086  # settings: several overrides
    local args=(experiment=imbalance "loss=$loss" $settings $(schedule "$epochs"))
    # the 160 px point is the comparison's seed-0 smooth-L1 run at the selected setting
    reuse "$RUNS/$part" "$RUNS/$source" "${args[@]}" dataset.image_size=160
    "$BIN/ghmbench" sweep "${args[@]}" "paths.runs_dir=$RUNS/$part" "${LAUNCH[@]}" | tail -n 2
  done <<< "$selections"
  COMMAND="per loss, at the setting $source selected: \`ghmbench sweep experiment=imbalance loss=LOSS <its train.lr, \
train.batch_size> $(schedule "$epochs") paths.runs_dir=$RUNS/$part ${LAUNCH[*]}\` (the 160 px runs copied from $RUNS/$source)"
  [ "$epochs" -eq 36 ] || NOTE=$CURVE_NOTE
}

# One change at a time to GHM-C at its selected setting (seed 0, smooth L1), with the base run and
# CE, Focal and GHM-C trained for twice the epochs beside it.
diagnosis() {  # diagnosis PART COMPARISON_PART
  local selections ghm changes loss settings
  selections=$(selected "$RUNS/$2")
  [ -n "$selections" ] || { echo "$1 needs the runs of $2: run that part first" >&2; exit 2; }
  ghm=$(awk '$1 == "ghm" {$1 = ""; print}' <<< "$selections")
  local base=(experiment=loss_comparison regression=smooth_l1 seed=0 "paths.runs_dir=$RUNS/$1" train.progress=false)
  changes=(
    ""
    "train.warmup_iters=500 train.warmup_factor=0.3333"
    "loss.momentum=0"
    "loss.loss_weight=4"
    "loss.per_level=true"
    "train.optimizer=sgd train.lr=0.01 train.warmup_iters=500 train.warmup_factor=0.3333"
  )
  for change in "${changes[@]}"; do
    # shellcheck disable=SC2086  # ghm, change: several overrides each
    run_once "${base[@]}" loss=ghm $ghm $change
  done
  while read -r loss settings; do
    # shellcheck disable=SC2086
    run_once "${base[@]}" "loss=$loss" $settings $(schedule 24)
  done <<< "$selections"
  COMMAND="\`ghmbench train ${base[*]}\` plus, for GHM-C at the setting $2 selected (${ghm# }), each of: nothing, \
$(printf '`%s` · ' "${changes[@]:1}")\`$(schedule 24)\`; and for CE and Focal at theirs: \`$(schedule 24)\`"
  REPORT_ARGS=(--bootstrap 200) NOTE=$DIAGNOSIS_NOTE AT_ONCE="one run at a time, all cores"
}

run_once() {  # a diagnosis run, copied from a comparison that trained it already
  reuse "$RUNS/ghm_diagnosis" "$RUNS/loss_comparison $RUNS/loss_comparison_24" "$@"
  "$BIN/ghmbench" train "$@" | tail -n 1
}

note() {  # note PART SECONDS: the report's README.md
  local out="$OUT/$1" report
  report="ghmbench report $RUNS/$1 --out $out${REPORT_ARGS[*]:+ ${REPORT_ARGS[*]}}${NOTE:+ --note \"$NOTE\"}"
  cat > "$out/README.md" <<NOTE
# Reference report: $1 (CPU scale)

- command: \`scripts/reference_results.sh $1\`, i.e. $COMMAND; then \`$report\`
- code: ghmbench $("$BIN/python" -c 'import ghmbench; print(ghmbench.__version__)'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- ghmbench conf || echo ' with local changes')
- machine: $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, no GPU; torch $("$BIN/python" -c 'import torch; print(torch.__version__)'); $AT_ONCE
- time: this call took $2 s (runs already complete are skipped or copied); the runs' own wall times add up to $("$BIN/python" -c "import pandas as pd; print(round(pd.read_csv('$out/runs.csv')['wall_time_s'].sum()))") s ($(date -u +%Y-%m-%d))

See [report.md](report.md) for every table and figure.
NOTE
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(loss_comparison loss_comparison_24 loss_comparison_36 imbalance imbalance_36 ghm_diagnosis)
for part in "${parts[@]}"; do
  start=$(date +%s) NOTE="" REPORT_ARGS=() AT_ONCE="$JOBS runs at a time, one torch thread each"
  case $part in
    loss_comparison) comparison "$part" 12 ;;
    loss_comparison_24) comparison "$part" 24 ;;
    loss_comparison_36) comparison "$part" 36 ;;
    imbalance) imbalance "$part" 12 loss_comparison ;;
    imbalance_36) imbalance "$part" 36 loss_comparison_36 ;;
    ghm_diagnosis) diagnosis "$part" loss_comparison ;;
    *) echo "unknown part '$part': loss_comparison, loss_comparison_24, loss_comparison_36, imbalance, imbalance_36 or ghm_diagnosis" >&2; exit 2 ;;
  esac
  rm -rf "${OUT:?}/$part"
  "$BIN/ghmbench" report "$RUNS/$part" --out "$OUT/$part" "${REPORT_ARGS[@]}" ${NOTE:+--note "$NOTE"} > /dev/null
  rm -f "$OUT/$part/runs.parquet"  # the CSV holds the same rows; keep the repository text-only
  note "$part" $(($(date +%s) - start))
  echo "$part: $(($(date +%s) - start)) s -> $OUT/$part"
done
