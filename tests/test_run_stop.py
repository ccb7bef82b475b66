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
