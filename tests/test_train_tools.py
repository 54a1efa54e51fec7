"""The training tools run: tools/bench_train.py (tiny, on CPU: the CUDA comparison is the same code) and
tools/degradation.py (a smoke run, slow)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_train_tiny_on_cpu(capsys, one_thread):
    """ResNet-18 at 224x224, 4 images in batches of 2, one round: both loops train and a ratio comes out."""
    assert tool("bench_train").main(["--device", "cpu", "--batch", "2", "--images", "5", "--rounds", "1",
                                     "--threads", "1", "--amp", "--channels-last"]) == 0
    out = capsys.readouterr().out
    assert "ResNet-18, one epoch of 4 synthetic 3x224x224 images, batch 2, cpu, 1 threads, amp, channels_last" in out
    ratio = float(out.rsplit("ratio graphdsl / hand-written:", 1)[1])
    assert ratio > 0


@pytest.mark.slow
def test_degradation_smoke(tmp_path):
    out = tmp_path / "degradation.png"
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "degradation.py"), "--epochs", "1",
                             "--limit-batches", "2", "--runs", str(tmp_path / "runs"), "-o", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    for name in ("plain20", "plain56", "resnet20", "resnet56"):
        assert f"{name}: ok" in result.stdout
        assert (tmp_path / "runs" / name / "metrics.csv").is_file()
