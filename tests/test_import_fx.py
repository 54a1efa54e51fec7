"""`graphdsl import package.module:callable`: the torch.fx front end and lifting. The imported spec checks
with the figures of the hand-written one, keeps the module names (the original state_dict loads with
strict=True) and computes the original's outputs; repeated modules become blocks with parameters."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import graphdsl  # noqa: E402
from graphdsl.importers import ImportFailure  # noqa: E402
from graphdsl.importers.command import import_, import_torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
cli = click.Group(commands=[import_])  # graphdsl's `main` registers the same command object


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


roundtrip_tool = _tool("import_roundtrip")

MODEL = textwrap.dedent('''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class Block(nn.Module):
        def __init__(self, cin, cout, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return F.relu(out + identity)


    class Net(nn.Module):
        def __init__(self, num_classes=10, width=8):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True))
            self.stage1 = nn.Sequential(Block(width, width), Block(width, width), Block(width, width))
            self.stage2 = nn.Sequential(Block(width, 2 * width, 2), Block(2 * width, 2 * width))
            self.head = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            x = self.stage2(self.stage1(self.stem(x)))
            x = F.adaptive_avg_pool2d(x, 1)
            return self.head(torch.flatten(x, 1))


    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.shuffle = nn.PixelShuffle(2)

        def forward(self, x):
            return self.shuffle(self.conv(x))


    class Idle(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.aux = nn.Linear(4, 2)  # built, never run (as GoogLeNet's aux heads in eval mode)

        def forward(self, x):
            return self.conv(x)


    class Aux(nn.Module):
        """An auxiliary head run in training mode only, returned after the logits (as GoogLeNet's)."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.aux = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
            self.body = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x = F.relu(self.stem(x))
            aux = self.aux(x) if self.training else None
            x = F.adaptive_avg_pool2d(F.relu(self.body(x)), 1)
            x = self.fc(torch.flatten(x, 1))
            return (x, aux) if self.training else x


    class Reshapes(nn.Module):
        def __init__(self, what):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.bias = nn.Parameter(torch.zeros(8, 1, 1))
            self.row = nn.Parameter(torch.ones(6))  # broadcast over the width of a C x H x W tensor
            self.what = what

        def forward(self, x):
            x = self.conv(x)
            if self.what == "permute":
                return x.permute(0, 2, 1, 3)
            if self.what == "parameter":
                return x + self.bias
            if self.what == "row":
                return self.row * x
            if self.what == "grouped":  # a channel shuffle's first step, then something else
                return x.view(x.size(0), 2, 4, 6, 6).sum(1)
            return x.view(x.size(0), 2, 4, -1)


    def broken():
        raise RuntimeError("no such width")
''')


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "mymodel.py"
    path.write_text(MODEL)
    return path


def _reference(path: Path, name: str, **kwargs):
    spec = importlib.util.spec_from_file_location("mymodel_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return getattr(module, name)(**kwargs).eval()


def test_user_file_lifts_to_one_parameterised_block(model_file):
    text = import_torch(f"{model_file}:Net", {"num_classes": 7}, "net", (3, 16, 16))
    # one block for the three kinds of Block instance; the shortcut where the shape changes
    assert text.count("block block(") == 1, text
    assert "shortcut if in.channels != out {" in text, text
    assert "stage1: [block(8) * 3]" in text and "stage2: [block(16, stride=2), block(16)]" in text, text
    assert "downsample: [conv(out, 1, stride=stride, bias=false), bn]" in text, text
    net = graphdsl.load(text=text)
    ref = _reference(model_file, "Net", num_classes=7)
    ours = net.to_torch().eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-5
    assert net.params == sum(p.numel() for p in ref.parameters())


def test_cli_writes_the_spec_atomically(model_file, tmp_path):
    out = tmp_path / "out" / "net.cnn"
    result = CliRunner().invoke(cli, ["import", f"{model_file}:Net", "num_classes=3", "--input", "3x16x16",
                                      "--name", "tiny", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: network `tiny`" in result.output
    net = graphdsl.load(out)
    assert net.name == "tiny" and net.output_shapes == {"output": (3,)} and net.input_shape == (3, 16, 16)
    assert "Imported from" in out.read_text()


def test_unknown_module_is_a_located_error_naming_what_is_supported(model_file, tmp_path):
    out = tmp_path / "odd.cnn"
    result = CliRunner().invoke(cli, ["import", f"{model_file}:Odd", "--input", "3x8x8", "-o", str(out)])
    assert result.exit_code == 1
    assert "PixelShuffle" in result.output and "is not supported" in result.output
    assert f"{model_file}:" in result.output  # the line of the model's forward() that calls it
    assert "help: supported modules: Conv2d" in result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize("source, message", [
    ("nonexistent_pkg_xyz.models:net", "cannot import `nonexistent_pkg_xyz.models`"),
    ("torchvision.models:no_such_model", "has no `no_such_model`"),
    ("missing_file.py:Net", "`missing_file.py` is not a file"),
])
def test_bad_sources_are_errors_without_traceback(source, message, tmp_path):
    result = CliRunner().invoke(cli, ["import", source, "-o", str(tmp_path / "x.cnn")])
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_failing_constructor_and_unparsable_source(model_file, tmp_path):
    result = CliRunner().invoke(cli, ["import", f"{model_file}:broken", "-o", str(tmp_path / "x.cnn")])
    assert result.exit_code == 1 and "RuntimeError: no such width" in result.output
    result = CliRunner().invoke(cli, ["import", "model.h5", "-o", str(tmp_path / "x.cnn")])
    assert result.exit_code == 1 and "is no source graphdsl imports" in result.output, result.output
    with pytest.raises(ImportFailure):
        import_torch("torchvision.models:resnet18", {"no_such_argument": 1})


def test_resnet18_round_trip():
    r = roundtrip_tool.roundtrip("resnet18")
    assert r["figures_ok"], (r["params"], r["macs"], r["outputs"])
    assert r["rel_error"] <= 1e-5
    assert "layer2: [basic_block(128, stride=2), basic_block(128)]" in r["text"], r["text"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet50", "googlenet", "mobilenet_v2", "mobilenet_v3_large", "densenet121",
                                   "efficientnet_b0", "squeezenet1_1", "shufflenet_v2_x1_0"])
def test_torchvision_round_trip(model):
    r = roundtrip_tool.roundtrip(model)
    assert r["figures_ok"], (r["params"], r["macs"], r["outputs"])
    assert r["rel_error"] <= 1e-5


@pytest.mark.slow
def test_resnet152_is_one_bottleneck_in_four_stages():
    r = roundtrip_tool.roundtrip("resnet152", check_outputs=False)
    assert r["figures_ok"]
    text = r["text"]
    assert text.count("block ") == 1 and "block bottleneck(" in text, text
    for stage in ("layer1: [bottleneck(64) * 3]", "layer2: [bottleneck(128, stride=2), bottleneck(128) * 7]",
                  "layer3: [bottleneck(256, stride=2), bottleneck(256) * 35]",
                  "layer4: [bottleneck(512, stride=2), bottleneck(512) * 2]"):
        assert stage in text, text
    (lines, _), (hand, _) = r["lines"], r["hand_lines"]
    assert lines <= 2 * hand


@pytest.mark.slow
def test_docs_example_is_what_import_writes():
    doc = (ROOT / "docs" / "interop.md").read_text()
    start = doc.index("```cnn\n") + len("```cnn\n")
    shown = doc[start:doc.index("```", start)]
    assert import_torch("torchvision.models:resnet50", {"num_classes": 10}, "resnet50") == shown


def test_modules_that_do_not_run_are_named_in_a_warning(model_file, tmp_path):
    out = tmp_path / "idle.cnn"
    result = CliRunner().invoke(cli, ["import", f"{model_file}:Idle", "--input", "3x8x8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: `aux` hold weights but do not run in eval mode" in result.output
    assert graphdsl.load(out).params == 3 * 4 * 9 + 4


def _imports_exactly(ref, input_shape, name="net"):
    """The spec `ref` imports to, after checking that it has ref's parameters, loads its state_dict
    strictly and computes its eval outputs."""
    from graphdsl.importers.command import import_model

    torch.manual_seed(0)
    zoo_parity = _tool("zoo_parity")
    ref = zoo_parity.randomize(ref, 0).eval()
    text = import_model(ref, name, input_shape)
    net = graphdsl.load(text=text)
    assert net.params == sum(p.numel() for p in ref.parameters()), text
    ours = net.to_torch().eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, *input_shape)
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert float((got - want).abs().max() / want.abs().max()) <= 1e-5, text
    return text


def test_shufflenet_chunk_and_channel_shuffle():
    from torchvision.models.shufflenetv2 import ShuffleNetV2

    text = _imports_exactly(ShuffleNetV2([2, 2, 1], [8, 16, 32, 64, 128], num_classes=5), (3, 32, 32))
    # the stride-1 unit as specs/lib/shufflenet_v2.cnn writes it
    assert "(x1, x2) = chunk(2)\n    from x2\n    branch2: [" in text, text
    assert "concat(x1, branch2)\n    channel_shuffle(2)" in text, text
    # widths doubling from stage to stage follow the input: no parameter
    assert "stage2: [inverted_residual, inverted_residual_2]" in text and "let c = in.channels" in text, text


def test_convnext_permute_layer_norm_and_layer_scale():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    model = ConvNeXt([CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 1)], stochastic_depth_prob=0.1,
                     num_classes=5)
    text = _imports_exactly(model, (3, 32, 32))
    for line in ("let c = in.channels", "conv(c, 7, pad=3, groups=c)", "permute([0, 2, 3, 1])", "linear(c * 4)",
                 "layer_scale: scale\n", "stochastic_depth: stochastic_depth(p)",
                 "classifier: [layer_norm(eps=1e-06), flatten, linear(5)]"):
        assert line in text, text


def test_efficientnet_v2_fused_and_mbconv():
    from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig

    setting = [FusedMBConvConfig(1, 3, 1, 8, 8, 1), FusedMBConvConfig(4, 3, 2, 8, 16, 2),
               MBConvConfig(4, 3, 2, 16, 24, 2)]
    text = _imports_exactly(EfficientNet(setting, dropout=0.2, last_channel=64, num_classes=5), (3, 32, 32))
    assert "block fused_mb_conv" in text and "block mb_conv" in text and "block squeeze_excitation" in text, text


def test_training_outputs_become_auxiliary_heads(model_file):
    ref = _reference(model_file, "Aux")
    text = import_torch(f"{model_file}:Aux", {}, "aux", (3, 8, 8))
    assert "aux = [avgpool(adaptive=1), flatten, linear(3)]" in text, text
    assert "output fc, training: aux" in text, text
    net = graphdsl.load(text=text)
    assert net.output_shapes == {"fc": (3,), "aux": (3,)}
    ours = net.to_torch()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 8, 8)
    for training in (False, True):
        ref.train(training)
        ours.train(training)
        with torch.no_grad():
            want, got = ref(x), ours(x)
        if training:
            assert len(got) == 2 and all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got, want))
        else:
            assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("what, message", [
    ("permute", "permute(0, 2, 1, 3) is not supported"),
    ("parameter", "a parameter used directly in forward() is supported only as a per-channel factor"),
    ("view", "tensor method `.view()` is not supported"),
    ("grouped", "this reshape of a tensor is not supported"),
    ("row", "the parameter `row` (6) times a 8x6x6 tensor is not supported"),
])
def test_unsupported_reshapes_and_parameters_are_located_errors(model_file, what, message):
    with pytest.raises(ImportFailure) as e:
        import_torch(f"{model_file}:Reshapes", {"what": what}, "r", (3, 8, 8))
    assert message in e.value.message and str(model_file) in e.value.where, (e.value.message, e.value.where)
