"""Killed and resumed: a run killed with SIGKILL in the middle of an epoch, or while its checkpoint is being
written, and resumed with --resume, ends with the weights of an uninterrupted run (same seed, deterministic
mode); the checkpoint on disk is never half-written. Runs are subprocesses (they are killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "train" / "digits_net.cnn"  # BatchNorm (running statistics) and augmentation draws
ARGS = ["-m", "graphdsl.train", str(SPEC), "--data", "digits", "--epochs", "3", "--batch-size", "64",
        "--limit-batches", "12", "--seed", "5", "--deterministic", "--threads", "1", "--schedule", "cosine"]


def environment(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "GRAPHDSL_TRAIN_FAULT", "GRAPHDSL_TRAIN_WRITE_DELAY"):
        env.pop(name, None)
    env.update(extra)
    return env


def train(out: Path, *more: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *ARGS, "--out", str(out), *more], capture_output=True, text=True,
                          env=environment(**env), timeout=300, cwd=ROOT)


def state(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=False)


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = state(a)["model"], state(b)["model"]
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "uninterrupted"
    result = train(out)
    assert result.returncode == 0, result.stderr
    return out


def test_killed_mid_epoch_resumes_exactly(uninterrupted, tmp_path):
    out = tmp_path / "run"
    killed = train(out, GRAPHDSL_TRAIN_FAULT="step:1:7")  # SIGKILL at step 7 of the second epoch
    assert killed.returncode == -signal.SIGKILL
    assert "epoch 1/3" in killed.stdout and "epoch 2/3" not in killed.stdout
    assert state(out)["epoch"] == 1
    resumed = train(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after epoch 1" in resumed.stdout and "epoch 2/3" in resumed.stdout
    assert_same_weights(out, uninterrupted)
    saved, reference = state(out), state(uninterrupted)
    assert saved["epoch"] == 3 and saved["optimizer"]["state"].keys() == reference["optimizer"]["state"].keys()
    for key, value in saved["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], reference["optimizer"]["state"][key]["momentum_buffer"])
    assert (out / "metrics.csv").read_text().splitlines()[1:] != []
    columns = ("epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1")
    for mine, theirs in zip(saved["metrics"], reference["metrics"]):
        assert [mine[c] for c in columns] == [theirs[c] for c in columns]


def test_killed_while_writing_the_checkpoint(uninterrupted, tmp_path):
    """The write is slowed (test hook) so that the kill lands while the temporary file is half-written:
    checkpoint.pt stays the previous epoch's, whole; resuming removes the stray file and ends as the
    uninterrupted run."""
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, *ARGS, "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=environment(GRAPHDSL_TRAIN_WRITE_DELAY="2"))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait for the second checkpoint's write to be under way
            if (out / "checkpoint.pt").exists() and list(out.glob(".graphdsl-*.tmp")):
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("the second checkpoint was never written")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == -signal.SIGKILL
    stray = list(out.glob(".graphdsl-*.tmp"))
    assert len(stray) == 1 and stray[0].stat().st_size < (out / "checkpoint.pt").stat().st_size
    assert state(out)["epoch"] == 1  # the first epoch's checkpoint, whole
    resumed = train(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.glob(".graphdsl-*.tmp"))
    assert_same_weights(out, uninterrupted)


@pytest.mark.slow
def test_killed_inside_the_write_hook(tmp_path):
    """The same at a fixed point: the process kills itself halfway through writing epoch 1's checkpoint."""
    out = tmp_path / "run"
    killed = train(out, "--epochs", "2", "--limit-batches", "3", GRAPHDSL_TRAIN_FAULT="write:0")
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "checkpoint.pt").exists() and len(list(out.glob(".graphdsl-*.tmp"))) == 1


def test_resume_refuses_other_settings_or_spec(uninterrupted, tmp_path):
    from graphdsl.train.commands import train as command

    def fails(args, *expected):
        result = CliRunner().invoke(command, [str(a) for a in args])
        assert result.exit_code == 1, result.output
        for text in expected:
            assert text in result.output, result.output

    base = [SPEC, "--data", "digits", "--batch-size", 64, "--limit-batches", 12, "--seed", 5, "--deterministic",
            "--schedule", "cosine", "--out", uninterrupted, "--resume"]
    fails([*base, "--epochs", 3], "has done 3 epochs already", "help: pass --epochs N with N > 3")
    fails([*base, "--epochs", 4, "--lr", 0.5], "--lr is 0.5 here, 0.1 in the checkpoint")
    changed = tmp_path / "digits_net.cnn"
    changed.write_text(SPEC.read_text().replace("width = 16", "width = 8"))
    fails([changed, *base[1:], "--epochs", 4], "the spec (or a file it imports) has changed")
