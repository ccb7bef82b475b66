"""The store decides whether a run folder is trained: a complete record is reused unless forced, the
folder is locked for one process, force clears its results, a failure leaves a failed record."""

from __future__ import annotations

import json

import pytest

from ghmbench.store.claim import RESULT_FILES, claim, record_failure
from ghmbench.store.lock import RunLocked, folder_lock
from ghmbench.store.records import METRICS_FILE, read_record


def _complete(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_FILE).write_text(json.dumps({"run_key": "k", "status": "completed"}))


def test_a_complete_record_is_reused_unless_forced(tmp_path):
    folder, heard = tmp_path / "run", []
    _complete(folder)
    with claim(folder, force=False, decided=heard.append) as reused:
        assert reused == {"run_key": "k", "status": "completed", "skipped": True}
    with claim(folder, force=True, decided=heard.append) as reused:
        assert reused is None and not any((folder / name).exists() for name in RESULT_FILES)
    assert heard == ["skip", "train"]


def test_a_folder_locked_elsewhere_is_refused_and_a_failure_is_recorded(tmp_path):
    folder, heard = tmp_path / "run", []
    with claim(folder, force=False, decided=heard.append) as reused:
        assert reused is None and heard == ["train"]
        with folder_lock(folder) as second:  # another open file description: the lock is held
            assert not second
        record_failure(folder, {"run_key": "k"}, ValueError("boom"))
    assert read_record(folder) == {"run_key": "k", "status": "failed", "error": "ValueError: boom"}
    folder.joinpath(METRICS_FILE).unlink()
    with folder_lock(folder):
        with pytest.raises(RunLocked):
            with claim(folder, force=False, decided=heard.append):
                pass
    assert heard[-1] == "locked"


def test_a_claim_removes_interrupted_writes_and_leaves_no_lock_behind(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    leftover = folder / ".checkpoint.pt.0123456789abcdef.tmp"  # what a SIGKILL in atomic_write leaves
    leftover.write_bytes(b"x" * 1000)
    (folder / ".lock").write_text("")  # a killed holder's: it holds nothing
    kept = folder / "checkpoint.pt"
    kept.write_bytes(b"ckpt")
    with claim(folder, force=False) as reused:
        assert reused is None and not leftover.exists() and kept.exists()
        assert (folder / ".lock").exists()  # held while the run trains
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.pt"]  # the lock went with its holder


def test_a_skipped_or_refused_claim_keeps_the_holders_files(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    writing = folder / ".metrics.json.0123456789abcdef.tmp"  # the holder is writing it right now
    writing.write_text("{")
    with folder_lock(folder) as held:
        assert held
        with pytest.raises(RunLocked):
            with claim(folder, force=False):
                pass
        assert writing.exists() and (folder / ".lock").exists()
