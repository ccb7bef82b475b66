"""A stop signal (SIGTERM / SIGUSR1 / SIGUSR2, what SLURM and submitit send) ends a run after the step in
progress with a checkpoint, and the resumed run records what the uninterrupted one records."""

from __future__ import annotations

import json
import os
import signal

import pytest

from ghmbench.config.compose import compose_config, validate
from ghmbench.run import engine, stop
from ghmbench.run.stop import RunStopped, stop_on_signals
from ghmbench.run.training import run
from ghmbench.store.checkpoint import CHECKPOINT_FILE, load_checkpoint
from ghmbench.store.records import METRICS_FILE, run_dir


def test_a_stop_signal_is_noted_inside_the_block_and_passed_on_to_the_previous_handler():
    heard = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: heard.append(signum))
    try:
        with pytest.raises(RunStopped):
            with stop_on_signals():
                assert stop.requested() is None
                os.kill(os.getpid(), signal.SIGUSR2)
                assert stop.requested() == signal.SIGUSR2 and heard == []  # noted, not yet passed on
                raise RunStopped(signal.SIGUSR2, 3)
        assert heard == [signal.SIGUSR2]  # e.g. submitit's handler, which requeues the job
        assert stop.requested() is None
        os.kill(os.getpid(), signal.SIGUSR2)  # the previous handler is back
        assert heard == [signal.SIGUSR2, signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, before)


def _cfg(tiny: list[str], runs) -> object:
    return validate(compose_config([*tiny, "train.epochs=3", "loss=ghm", "regression=ghm", f"paths.runs_dir={runs}"]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "at_step"),
    [(signal.SIGTERM, 1), (signal.SIGUSR1, 5), (signal.SIGUSR2, 9)],  # 4 steps an epoch: first, middle, last epoch
)
def test_a_run_stopped_mid_epoch_resumes_to_the_uninterrupted_record(tiny, tmp_path, monkeypatch, signum, at_step):
    alone = run(_cfg(tiny, tmp_path / "alone"))
    cfg = _cfg(tiny, tmp_path / "stopped")
    real = engine.lr_factor

    def signal_at_step(step, *args):  # the signal arrives during step ``at_step``
        if step == at_step:
            os.kill(os.getpid(), signum)
        return real(step, *args)

    monkeypatch.setattr(engine, "lr_factor", signal_at_step)
    with pytest.raises(RunStopped) as stopped:
        run(cfg)
    monkeypatch.setattr(engine, "lr_factor", real)
    folder = run_dir(cfg)
    assert stopped.value.signum == signum and stopped.value.step == at_step + 1  # the step in progress finished
    assert not (folder / METRICS_FILE).exists()  # a stop is no failure: no record
    ckpt = load_checkpoint(folder / CHECKPOINT_FILE)
    assert ckpt["step"] == at_step + 1 and ckpt["partial"]["batches"] == (at_step + 1) % 4
    assert signal.getsignal(signum) is signal.SIG_DFL  # the handler is gone with the run
    resumed = run(cfg)
    assert resumed["status"] == "completed" and "resumed from" in (folder / "train.log").read_text()
    for ours, ref in zip(resumed["history"], alone["history"], strict=True):
        for key in ("loss", "loss_cls", "loss_box", "lr"):
            assert ours[key] == pytest.approx(ref[key], rel=1e-6), (ours, ref)
    assert resumed["g_hist"] == pytest.approx(alone["g_hist"], rel=1e-9)
    assert resumed["metrics"]["AP"] == pytest.approx(alone["metrics"]["AP"], abs=1e-6)
    assert json.loads((folder / METRICS_FILE).read_text())["status"] == "completed"


@pytest.mark.slow
def test_ghmbench_train_stopped_by_sigterm_says_so_in_one_line_and_resumes(tiny, tmp_path):
    import subprocess
    import time

    from tests.conftest import ghmbench_exe

    args = [ghmbench_exe(), "train", *tiny, "train.epochs=20", "dataset.num_train=32"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "runs"
    deadline = time.time() + 120
    while not list(runs.glob(f"*/{CHECKPOINT_FILE}")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)  # stopped after its first checkpoint, well before its 20 epochs end
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().startswith("stopped by SIGTERM after step") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in out + err
    (folder,) = [p.parent for p in runs.glob(f"*/{CHECKPOINT_FILE}")]
    assert not (folder / METRICS_FILE).exists() and not list(folder.glob(".*"))  # no record, no .lock, no .tmp
    assert 0 < load_checkpoint(folder / CHECKPOINT_FILE)["step"] < 40  # 2 steps an epoch
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((folder / METRICS_FILE).read_text())["status"] == "completed"
    assert "resumed from" in (folder / "train.log").read_text() and not list(folder.glob(".*"))
