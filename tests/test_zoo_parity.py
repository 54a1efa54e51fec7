"""Runtime parity of the modern-zoo specs with torchvision, on randomised weights (tools/zoo_parity.py).

One model per family, the smallest: `check_model` builds torchvision's model, randomises every parameter
and buffer (so that no branch hides behind torchvision's initialisation), loads that state_dict into the
compiled spec with strict=True and requires max|ours - torchvision| <= 1e-5 x max|torchvision| in eval
mode; inception_v3 also in training mode (both outputs, same seed for dropout). Inputs are reduced where
the architecture allows it; a model whose spec is not written yet is skipped.

The harness itself is tested on specs/resnet18.cnn and on a copy of it with a deliberate mistake.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

ROOT = Path(__file__).resolve().parent.parent


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zoo_parity = _load_tool("zoo_parity")

# model -> eval-mode input size (None: the reference resolution of tests/reference/torchvision_zoo.json)
CASES = {
    "squeezenet1_1": None,        # 224: the ceil_mode max-pools see odd sizes (111, 55, 27)
    "resnext50_32x4d": 128,
    "densenet121": 128,
    "inception_v3": None,         # 299; training mode needs it (the aux head's 5x5 conv wants 17x17 at Mixed_6e)
    "shufflenet_v2_x0_5": None,
    "mobilenet_v2": None,
    "mobilenet_v3_small": None,
    "mnasnet0_5": None,
    "efficientnet_b0": None,
    "regnet_x_400mf": None,
    "regnet_y_400mf": None,
    "convnext_tiny": 128,
}
SLOW = {"resnext50_32x4d"}


def _describe(r: dict) -> str:
    text = f"{r['model']} at {r['size']}px: max abs diff {r['max_abs']:.3g}, relative {r['relative']:.3g}"
    if "train_relative" in r:
        text += f"; training mode: max abs diff {r['train_max_abs']:.3g}, relative {r['train_relative']:.3g}"
    return text + (f"; {r['problem']}" if "problem" in r else "")


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_zoo_spec_matches_torchvision(name):
    if not zoo_parity.spec_path(name).exists():
        pytest.skip(f"specs/{name}.cnn is not written yet")
    result = zoo_parity.check_model(name, size=CASES[name])
    assert result["ok"], _describe(result)
    if name == "inception_v3":
        assert result["train_outputs"] == 2, "training mode must return (logits, aux_logits)"


def test_every_case_is_in_the_zoo_reference():
    zoo = zoo_parity.zoo()
    assert set(CASES) <= set(zoo)
    assert zoo["inception_v3"]["input"] == [3, 299, 299]


# ---- the harness ------------------------------------------------------------------------------


def test_harness_passes_a_correct_spec():
    result = zoo_parity.check_model("resnet18", size=64, spec=ROOT / "specs" / "resnet18.cnn")
    assert result["ok"], _describe(result)
    assert result["params"] == 11_689_512 and result["scale"] > 0


def test_harness_catches_a_wrong_spec(tmp_path):
    (tmp_path / "lib").mkdir()
    lib = (ROOT / "specs" / "lib" / "resnet.cnn").read_text()
    wrong = lib.replace("    relu(inplace=true)\n}", "    gelu\n}", 1)  # basic_block's closing relu -> gelu
    if wrong == lib:
        pytest.skip("specs/lib/resnet.cnn changed: no closing relu to replace")
    (tmp_path / "lib" / "resnet.cnn").write_text(wrong)
    (tmp_path / "resnet18.cnn").write_text((ROOT / "specs" / "resnet18.cnn").read_text())
    result = zoo_parity.check_model("resnet18", size=64, spec=tmp_path / "resnet18.cnn")
    assert not result["ok"] and result["relative"] > 1e-3, _describe(result)


def test_randomised_weights_make_every_branch_count():
    """At torchvision's init ConvNeXt's layer scale is 1e-6, and BN's identity statistics make many
    mistakes invisible: a spec that skipped a block's branch could pass. After `randomize`, dropping the
    SE gates or setting the layer scales to 1 changes the output by far more than 1e-5."""
    from torchvision.models.convnext import CNBlock
    from torchvision.ops import SqueezeExcitation

    x = torch.randn(1, 3, 64, 64)
    model = zoo_parity.reference("efficientnet_b0").eval()
    assert all(t.abs().sum() > 0 for t in model.state_dict().values() if t.is_floating_point())
    with torch.no_grad():
        expected = model(x)
        for m in model.modules():
            if isinstance(m, SqueezeExcitation):
                m.forward = lambda inp: inp
        skipped = model(x)
    assert (skipped - expected).abs().max() > 1e-2 * expected.abs().max()

    model = zoo_parity.reference("convnext_tiny").eval()
    with torch.no_grad():
        expected = model(x)
        for m in model.modules():
            if isinstance(m, CNBlock):
                m.layer_scale.fill_(1.0)
        changed = model(x)
    assert (changed - expected).abs().max() > 1e-2 * expected.abs().max()


def test_randomize_is_deterministic():
    a = zoo_parity.reference("mnasnet0_5", seed=3).state_dict()
    b = zoo_parity.reference("mnasnet0_5", seed=3).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
