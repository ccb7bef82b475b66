# Shell functions the results scripts share (sourced; BIN must be set): what a comparison selected,
# and copying a run another folder already trained.

# selected RUNS_DIR: one line per classification loss, "<loss> <override> ...": the setting the
# comparison in RUNS_DIR selected on validation
selected() {
  "$BIN/python" - "$1" <<'PY'
import pathlib, sys
from ghmbench.reporting.run_table import read_records
from ghmbench.sweep.selection import select_settings
records = [record for _, record in read_records([pathlib.Path(sys.argv[1])])]
for loss, sel in select_settings(records).items():
    print(loss, *sel.overrides())
PY
}

# reuse DEST "SOURCE_RUNS ..." OVERRIDE...: copy the first SOURCE_RUNS folder holding the complete run
# that OVERRIDE... would train (same run key) into DEST, where `ghmbench train` and `sweep` then skip
# it; its checkpoint stays behind (a complete run does not resume)
reuse() {
  "$BIN/python" - "$@" <<'PY'
import shutil, sys, pathlib
from ghmbench import load_config
from ghmbench.store.records import run_dir
dest, sources, overrides = pathlib.Path(sys.argv[1]), sys.argv[2].split(), sys.argv[3:]
target = run_dir(load_config([*overrides, f"paths.runs_dir={dest}"]))
for source in sources:
    found = pathlib.Path(source) / target.name
    if (found / "metrics.json").exists() and not target.exists():
        shutil.copytree(found, target, ignore=shutil.ignore_patterns("checkpoint.pt"))
        print(f"reused {found}")
PY
}
