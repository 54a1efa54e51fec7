"""Distributed training on this machine (CPU, gloo): 2 processes x batch B under torchrun (launched by
`--nproc 2`) give the weights and the metrics of 1 process with batch 2B; what is wrong is reported before
any process group starts."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent

# No BatchNorm (each process would normalise its own half-batch) and no dropout (each draws its own).
NO_BN = """
network small(num_classes = 10) {
    input 1x8x8
    conv1: conv(8, 3, pad=1)
    relu
    maxpool(2)
    conv2: conv(16, 3, pad=1)
    relu
    flatten
    fc: linear(num_classes)
}
"""

COMMON = ["--data", "digits", "--epochs", "2", "--limit-batches", "4", "--no-augment", "--seed", "3",
          "--lr", "0.05", "--momentum", "0.9", "--weight-decay", "1e-3", "--schedule", "step", "--lr-step", "1",
          "--lr-gamma", "0.5"]


def environment() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    return env


def run(args, timeout=300, torchrun_failure=False) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environment(),
                            timeout=timeout, cwd=ROOT)
    if not torchrun_failure:  # torchrun itself reports a failed worker with a traceback (ChildFailedError)
        assert "Traceback" not in result.stderr, result.stderr
    return result


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def test_two_processes_equal_one_with_twice_the_batch(tmp_path):
    spec = tmp_path / "small.cnn"
    spec.write_text(NO_BN)
    one, two = tmp_path / "one", tmp_path / "two"
    single = run(["-m", "graphdsl.train", spec, *COMMON, "--batch-size", "32", "--threads", "1", "--out", one])
    assert single.returncode == 0, single.stderr
    ddp = run(["-m", "graphdsl.train", spec, *COMMON, "--batch-size", "16", "--nproc", "2", "--out", two])
    assert ddp.returncode == 0, ddp.stderr + ddp.stdout
    assert "launching torchrun: 2 processes" in ddp.stderr
    assert "cpu, 2 processes, batch 16 per process" in ddp.stdout
    assert ddp.stdout.count("epoch 2/2") == 1  # rank 0 alone prints
    a, b = weights(one), weights(two)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=0), name
    rows_one, rows_two = metrics(one), metrics(two)
    assert len(rows_one) == len(rows_two) == 2
    for r1, r2 in zip(rows_one, rows_two):
        for column in ("lr", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5"):
            assert float(r1[column]) == pytest.approx(float(r2[column]), abs=1e-5), column
    saved = torch.load(two / "checkpoint.pt", weights_only=False)
    assert saved["world_size"] == 2 and len(saved["rng"]) == 2  # every rank's RNG state, for an exact resume


@pytest.mark.slow
def test_under_torchrun(tmp_path):
    """The command itself under `torchrun --nproc-per-node 2` (what a multi-node run does on each node)."""
    out = tmp_path / "run"
    result = run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "graphdsl.train",
                  ROOT / "examples" / "train" / "digits_net.cnn", "--data", "digits", "--epochs", "1",
                  "--limit-batches", "3", "--batch-size", "8", "--out", out])
    assert result.returncode == 0, result.stderr + result.stdout
    assert "cpu, 2 processes" in result.stdout
    assert len(metrics(out)) == 1 and (out / "checkpoint.pt").is_file() and (out / "curves.png").is_file()


def test_nproc_checks_before_launching(tmp_path):
    """A bad input under --nproc is reported once, by the launcher, and no torchrun starts."""
    result = run(["-m", "graphdsl.train", ROOT / "examples" / "train" / "digits_net.cnn", "--data",
                  tmp_path / "missing", "--nproc", "2", "--out", tmp_path / "run"])
    assert result.returncode == 1
    assert result.stderr.count("error: no such data folder") == 1
    assert "launching torchrun" not in result.stderr and not (tmp_path / "run").exists()


def test_bad_input_under_torchrun_is_reported_once(tmp_path):
    """Every rank checks before joining the process group; rank 0 alone says why (then torchrun reports
    the failed workers its own way)."""
    result = run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "graphdsl.train",
                  ROOT / "examples" / "train" / "digits_net.cnn", "--data", "digits", "--optimizer", "lamb",
                  "--out", tmp_path / "run"], torchrun_failure=True)
    assert result.returncode != 0
    assert result.stderr.count("error: unknown optimizer `lamb`") == 1
    assert not (tmp_path / "run").exists()
