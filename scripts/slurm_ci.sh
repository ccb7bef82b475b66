#!/usr/bin/env bash
# ghmbench on a real single-node SLURM (issue 28), run by .ci/run after `make test`, or by hand (as root):
#   scripts/slurm_ci.sh            # uses the repository's .venv/bin (BIN=... names another folder)
# Installs Debian's slurm-wlm and munge when missing, writes a one-node slurm.conf (2 CPUs) in a temporary
# folder, starts munged, slurmctld and slurmd from there on their own ports, and runs as tests:
#   (a) the documented sweep, no launcher override -> complete records and a report
#   (b) scancel of a running task -> that run stops with a checkpoint; the same sweep again -> every record
#       complete, no epoch trained twice, the cancelled run resumed, no .tmp or .lock left
#   (c) unknown partition, oversized request, an option sbatch refuses, controller stopped -> one line, exit 2
#   (d) a 2-task DDP run under srun records the losses of the 1-task run (1e-4 relative, 1e-3 after epoch 1)
# It stops the daemons it started, by pid, on exit. Without root, apt or working daemons it says SKIP.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/.venv/bin}
GHMBENCH=$BIN/ghmbench
PYTHON=$BIN/python
export OMP_NUM_THREADS=1
passed=0
failed=0
started=$SECONDS

# No "0 passed" line on a skip: the closing line of the run stays pytest's, so a skip never reads as a
# run without tests, and the SKIP line says what did not run.
skip() {
    echo "slurm: SKIP: $* (the SLURM tests did not run)"
    exit 0
}
t0=$SECONDS
ok() { passed=$((passed + 1)); echo "slurm: PASS $1 ($((SECONDS - t0)) s)"; t0=$SECONDS; }
bad() {
    failed=$((failed + 1))
    echo "slurm: FAIL $1 ($((SECONDS - t0)) s)"
    t0=$SECONDS
    shift
    [ $# -gt 0 ] && printf '  %s\n' "$@"
}

[ -x "$GHMBENCH" ] || { echo "slurm: no $GHMBENCH (make install first, or BIN=...)"; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root to install and start slurmctld / slurmd"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "slurm: installing slurm-wlm and munge from Debian"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } >/dev/null 2>&1 \
        || skip "apt-get install slurm-wlm munge failed"
fi

# ----------------------------------------------------------------------------- a one-node cluster
T=$(mktemp -d /tmp/ghmbench-slurm.XXXXXX)
chmod 755 "$T"
PIDS=()
stop_daemons() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    rm -rf "$T"
}
trap stop_daemons EXIT

NODE=$(hostname -s)
MEM_MB=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10))
mkdir -p "$T/state" "$T/spool" "$T/runs"
mungekey --create --keyfile="$T/munge.key" >/dev/null 2>&1 || skip "mungekey failed"
cat >"$T/slurm.conf" <<EOF
ClusterName=ghmbench-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$T/munge.socket
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=2 RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=60 State=UP
EOF
export SLURM_CONF=$T/slurm.conf

start_controller() {
    slurmctld -D -i -f "$SLURM_CONF" >>"$T/slurmctld.out" 2>&1 &
    CTLD=$!
    PIDS+=("$CTLD")
}
munged --foreground --force --key-file="$T/munge.key" --socket="$T/munge.socket" --pid-file="$T/munged.pid" \
    --log-file="$T/munged.log" --seed-file="$T/munge.seed" >>"$T/munged.out" 2>&1 &
PIDS+=($!)
sleep 1
start_controller
slurmd -D -f "$SLURM_CONF" >>"$T/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 30); do
    sinfo --noheader --format=%T 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo --noheader --format=%T 2>/dev/null | grep -q idle \
    || skip "the one-node cluster did not come up: $(tail -n 2 "$T/slurmctld.log" "$T/slurmd.log" 2>/dev/null | tr '\n' ' ')"
t0=$SECONDS
echo "slurm: one-node cluster up in $((SECONDS - started)) s ($(sinfo --noheader --format='%P %c CPUs %m MB %l'))"

# ----------------------------------------------------------------------------- helpers
SMOKE=(experiment=smoke hydra/launcher=slurm loss=ce,focal "paths.cache_dir=$T/cache")

# records RUNS: "<status> ..." per run folder
statuses() { "$PYTHON" - "$1" <<'EOF'
import json, sys
from pathlib import Path
print(" ".join(sorted(json.loads(p.read_text())["status"] for p in Path(sys.argv[1]).glob("*/metrics.json"))))
EOF
}

# one_line OUTPUT: the output is a single "error: ..." line
one_line() { [ "$(grep -c . <<<"$1")" = 1 ] && grep -q '^error: ' <<<"$1" && ! grep -q Traceback <<<"$1"; }

refused() {  # NAME EXPECTED_TEXT OVERRIDES...: exit 2, one line naming the cause, nothing written
    local name=$1 expect=$2 runs="$T/refused-$RANDOM"
    shift 2
    out=$("$GHMBENCH" sweep "${SMOKE[@]}" "paths.runs_dir=$runs" "$@" 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" = 2 ] && one_line "$out" && grep -q -- "$expect" <<<"$out" && [ ! -e "$runs" ]; then
        ok "$name -> exit 2: $out"
    else
        bad "$name" "exit $rc, wrote: $(ls -A "$runs" 2>/dev/null | tr '\n' ' ')" "$out"
    fi
}

# ----------------------------------------------------------------------------- (a) the documented sweep
ONLY=${ONLY:-abcd}  # e.g. ONLY=d: only test (d) (and the controller test when c is in it)
if [[ $ONLY == *a* ]]; then
A=$T/runs/a
out=$("$GHMBENCH" sweep "${SMOKE[@]}" "paths.runs_dir=$A" 2>&1)
rc=$?
if [ "$rc" = 0 ] && [ "$(statuses "$A")" = "completed completed" ] && "$GHMBENCH" report "$A" >/dev/null 2>&1; then
    ok "(a) sweep experiment=smoke hydra/launcher=slurm loss=ce,focal: 2 complete records and a report"
else
    bad "(a) the documented sweep" "exit $rc, records: $(statuses "$A")" "$(tail -n 20 <<<"$out")"
fi

fi

# ----------------------------------------------------------------------------- (b) scancel, then the same sweep
if [[ $ONLY == *b* ]]; then
B=$T/runs/b
LONG=(train.epochs=4 "paths.runs_dir=$B")
"$GHMBENCH" sweep "${SMOKE[@]}" "${LONG[@]}" >"$T/b1.out" 2>&1 &
SWEEP=$!
task=""
for _ in $(seq 120); do  # cancel the second run once it has trained an epoch
    array=$(sed -n 's/^slurm: job \([0-9]*\) submitted.*/\1/p' "$T/b1.out")
    log=$(ls "$B"/.hydra/sweep-*/.submitit/"${array}_1/${array}_1_0_log.out" 2>/dev/null)
    if [ -n "$array" ] && [ -n "$log" ] && grep -q "epoch 1/4" "$log"; then
        task=${array}_1
        scancel "$task"
        break
    fi
    sleep 1
done
wait "$SWEEP"
rc1=$?
stopped=$(grep -l "stopped by SIGTERM" "$B"/*/train.log 2>/dev/null | xargs -r -n1 dirname)
if [ -n "$task" ] && [ "$rc1" = 1 ] && grep -q "job $task: cancelled" "$T/b1.out" && [ -n "$stopped" ] \
    && [ -f "$stopped/checkpoint.pt" ] && [ ! -f "$stopped/metrics.json" ]; then
    ok "(b) scancel $task: the sweep reports it cancelled (exit 1), the run stopped with a checkpoint"
else
    bad "(b) scancel" "task '$task', exit $rc1, stopped run '$stopped'" "$(tail -n 12 "$T/b1.out")"
fi
kept=$(stat -c %Y "$B"/ce-*/metrics.json 2>/dev/null)
out=$("$GHMBENCH" sweep "${SMOKE[@]}" "${LONG[@]}" 2>&1)
rc=$?
twice=0  # an epoch line twice in one run's log: trained twice
for log in "$B"/*/train.log; do twice=$((twice + $(grep -o "epoch [0-9]*/4:" "$log" | sort | uniq -d | wc -l))); done
leftovers=$(find "$B" -maxdepth 2 \( -name '.*.tmp' -o -name .lock \) | wc -l)
if [ "$rc" = 0 ] && [ "$(statuses "$B")" = "completed completed" ] && [ "$(stat -c %Y "$B"/ce-*/metrics.json)" = "$kept" ] \
    && [ -n "$stopped" ] && grep -q "resumed from" "$stopped/train.log" && grep -q "resumes from its checkpoint" <<<"$(
        cat "$B"/.hydra/sweep-*/.submitit/*/*_0_log.out
    )" && [ "$twice" = 0 ] && [ "$leftovers" = 0 ]; then
    ok "(b) the same sweep again: both records complete, the finished run kept, the cancelled one resumed, \
no epoch twice, no .tmp / .lock left"
else
    bad "(b) the same sweep again" "exit $rc, records: $(statuses "$B"), epochs twice: $twice, leftovers: $leftovers" \
        "$(tail -n 12 <<<"$out")"
fi

fi

# ----------------------------------------------------------------------------- (c) one-line refusals
if [[ $ONLY == *c* ]]; then
refused "(c) unknown partition" "hydra.launcher.partition=gpu" hydra.launcher.partition=gpu
refused "(c) oversized request" "hydra.launcher.cpus_per_task=8" hydra.launcher.cpus_per_task=8
refused "(c) an option sbatch refuses" "additional_parameters" +hydra.launcher.additional_parameters.bogus=1

fi

# ----------------------------------------------------------------------------- (d) DDP under srun
if [[ $ONLY == *d* ]]; then
D=(experiment=smoke train.epochs=2 dataset.num_train=160 train.progress=false "paths.cache_dir=$T/cache")
srun --ntasks=2 --cpus-per-task=1 --mem=4G "$GHMBENCH" train "${D[@]}" "paths.runs_dir=$T/runs/ddp" >"$T/ddp.out" 2>&1
rc2=$?
srun --ntasks=1 --cpus-per-task=1 --mem=4G "$GHMBENCH" train "${D[@]}" "paths.runs_dir=$T/runs/one" >"$T/one.out" 2>&1
rc1=$?
cmp=$("$PYTHON" - "$T/runs/ddp" "$T/runs/one" <<'EOF' 2>&1
import json, sys
from pathlib import Path
(ddp,), (one,) = ([json.loads(p.read_text()) for p in Path(d).glob("*/metrics.json")] for d in sys.argv[1:])
assert (ddp["world_size"], one["world_size"]) == (2, 1), (ddp["world_size"], one["world_size"])
diffs = {
    f"{k} epoch {a['epoch']}": abs(a[k] - b[k]) / abs(b[k])
    for a, b in zip(ddp["history"], one["history"], strict=True)
    for k in ("loss", "loss_cls", "loss_box")
}
print("relative differences: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
# the first epoch differs by float rounding only (the sums over 2 ranks run in another order); training
# amplifies it (1e-5 after epoch 1, 4e-4 for the box loss after epoch 2 on this node), while an error in
# the distributed path (a wrong normaliser, an unsynchronised density) shows at the first epoch
assert all(v < (1e-4 if k.endswith("epoch 1") else 1e-3) for k, v in diffs.items())
EOF
)
rcc=$?
if [ "$rc2" = 0 ] && [ "$rc1" = 0 ] && [ "$rcc" = 0 ]; then
    ok "(d) srun -n 2 train = srun -n 1 train: $cmp"
else
    bad "(d) DDP under srun" "exit $rc2 / $rc1" "$cmp" "$(tail -n 5 "$T/ddp.out")"
fi

fi

# ----------------------------------------------------------------------------- (c) the controller stopped
if [[ $ONLY == *c* ]]; then
kill "$CTLD" && wait "$CTLD" 2>/dev/null
refused "(c) controller stopped" "does not answer"
fi

echo "slurm: $((SECONDS - started)) s"
echo "slurm: $passed passed, $failed failed"
[ "$failed" = 0 ]
