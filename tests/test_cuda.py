"""The PyTorch backend on CUDA. Skipped without a CUDA GPU (`pytest -m cuda` selects these)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import graphdsl

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY = """
network tiny(num_classes = 10) {
    input 3x32x32
    conv1: conv(8, 3, pad=1, bias=false) bn1: bn relu
    residual { conv(8, 3, pad=1) bn relu conv(8, 3, pad=1) bn }
    concat { conv(4, 1) [maxpool(3, stride=1, pad=1), conv(4, 1)] }
    maxpool(2, ceil=true)
    avgpool(global) flatten
    fc: linear(num_classes)
}
"""


@pytest.mark.parametrize("spec", [TINY, str(ROOT / "specs" / "resnet18.cnn")], ids=["tiny", "resnet18"])
def test_to_torch_on_cuda_runs(spec):
    net = graphdsl.load(spec)
    module = net.to_torch(device="cuda").eval()
    assert all(p.is_cuda for p in module.parameters())
    x = torch.randn(2, *net.input_shape, device="cuda")
    with torch.no_grad():
        out = module(x)
    assert out.is_cuda and tuple(out.shape) == (2, *net.output_shapes["output"])
    assert torch.isfinite(out).all()


def test_to_torch_on_cuda_trains():
    net = graphdsl.load(text=TINY)
    module = net.to_torch(device="cuda").train()
    loss = module(torch.randn(4, *net.input_shape, device="cuda")).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())


def test_to_torch_cuda_matches_cpu():
    net = graphdsl.load(text=TINY)
    cpu = net.to_torch().eval()
    gpu = net.to_torch(device="cuda").eval()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        want = cpu(x)
        got = gpu(x.cuda()).cpu()
    assert (got - want).abs().max() <= 1e-2 * want.abs().max()


def test_cli_compile_device_cuda_run(tmp_path):
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    out = tmp_path / "tiny_model.py"
    result = subprocess.run([sys.executable, "-m", "graphdsl.cli", "compile", str(spec), "-o", str(out),
                             "--device", "cuda", "--run"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "ran on cuda" in result.stdout + result.stderr
    assert out.exists()
