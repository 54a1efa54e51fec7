"""Parity with torchvision: each spec of the library, compiled, takes torchvision's state_dict with
strict=True and computes the same outputs.

- eval mode, one 224x224 image: max |ours - torchvision| <= 1e-5 x the output scale (max |torchvision|);
- training mode, two 64x64 images (the layers are the same at any size; 64 keeps it quick): the same
  outputs as torchvision under the same random seed (dropout included, auxiliary outputs included), and
  forward + backward give every parameter a gradient of its shape.

The heaviest models are marked slow (deselect with -m "not slow").
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import graphdsl  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SLOW = {"vgg16_bn", "vgg19", "vgg19_bn", "resnet101", "resnet152"}
MODELS = ["alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
          "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def reference(name: str):
    factory = getattr(torchvision.models, name)
    if name == "googlenet":
        return factory(weights=None, aux_logits=True, init_weights=False)
    return factory(weights=None)


def pair(name: str):
    path = ROOT / "specs" / f"{name}.cnn"
    if not path.exists():
        pytest.skip(f"specs/{name}.cnn is not in the spec library yet")
    torch.manual_seed(0)
    ref = reference(name)
    ours = graphdsl.compile(path)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def outputs(result) -> tuple:
    return tuple(result) if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in MODELS])
def test_same_outputs_as_torchvision(name):
    ref, ours = pair(name)

    ref.eval()
    ours.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert isinstance(got, torch.Tensor) and got.shape == expected.shape
    scale = expected.abs().max().item()
    diff = (got - expected).abs().max().item()
    assert diff <= 1e-5 * scale, f"{name}: max abs difference {diff:.3g} at output scale {scale:.3g}"

    ref.train()
    ours.train()
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    expected = outputs(ref(x))
    torch.manual_seed(1)
    got = outputs(ours(x))
    assert len(got) == len(expected)
    for e, o in zip(expected, got):
        assert o.shape == e.shape
        assert (o - e).abs().max().item() <= 1e-5 * max(e.abs().max().item(), 1e-6)
    sum(o.float().pow(2).mean() for o in got).backward()
    for key, p in ours.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, key
