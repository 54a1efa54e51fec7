"""The operators the modern torchvision CNNs need (ConvNeXt, EfficientNet, MobileNetV3, RegNetY,
ShuffleNetV2, Inception-v3, DenseNet), their PyTorch lowering, and the generator features they bring:
helper classes, bare parameters, training-only outputs and feature extraction (taps).

For each op: the static shape is the runtime shape (backends.torch.node_shapes), the static parameters
are the module's, the static conv + linear MACs are FlopCounterMode's FLOPs / 2, and the lowering
computes what a direct torch (or torchvision) computation does.
"""

from __future__ import annotations

import ast
import re
import types

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import graphdsl  # noqa: E402
from graphdsl.backends.torch import (  # noqa: E402
    Generator,
    TapError,
    generate,
    node_shapes,
    returned_outputs,
    training_outputs,
)
from graphdsl.ops import REGISTRY  # noqa: E402
from graphdsl.ops.base import ChannelsLast, fmt_shape  # noqa: E402


def load(body: str, blocks: str = "", name: str = "n") -> graphdsl.Network:
    return graphdsl.load(text=f"{blocks}\nnetwork {name} {{\n{body}\n}}")


def errors(body: str) -> list:
    with pytest.raises(graphdsl.SpecError) as info:
        load(body)
    return info.value.diagnostics


def flops(module, x) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return sum(counter.get_flop_counts().get("Global", {}).values())


def check(net: graphdsl.Network, batch: int = 2):
    """Static shapes, parameters and MACs against the built module; returns the module (eval mode)."""
    m = net.to_torch()
    x = torch.randn(batch, *net.input_shape)
    shapes = node_shapes(net, m, x)
    assert shapes == {n: tuple(d["shape"]) for n, d in net.graph.nodes(data=True)}
    assert sum(p.numel() for p in m.parameters()) == net.params
    assert sum(b.numel() for b in m.buffers()) == net.buffers
    m.train()
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.eval()
    with torch.no_grad():
        assert flops(m, torch.randn(1, *net.input_shape)) == 2 * net.macs
    return m.eval()


def only_op(net: graphdsl.Network, op: str) -> str:
    (node,) = [n for n, d in net.graph.nodes(data=True) if d["op"] == op]
    return node


# ---- activations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, func", [("hardswish", F.hardswish), ("hardsigmoid", F.hardsigmoid)])
def test_hard_activations(name, func):
    net = load(f"input 4x5x5\nconv(6, 3, pad=1)\n{name}(inplace=true)\na: {name}\nb: {name}")
    m = check(net)
    text = net.source()
    assert f"F.{name}(x, inplace=True)" in text and f"nn.{name.title()}()" in text
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        want = func(func(func(m.get_submodule("0")(x))))
        assert torch.equal(m(x), want)
    assert REGISTRY[name].channels_last and not REGISTRY["softmax"].channels_last
    assert "graphdsl calls it `hardswish`" in graphdsl.check(text="network n { input 3x4x4  Hardswish }")[0].help


def test_pointwise_ops_declare_channels_last():
    for name in ("relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish",
                 "hardsigmoid", "dropout", "identity", "add", "mul", "stochastic_depth", "scale", "layer_norm",
                 "linear", "permute", "channel_affine"):
        assert REGISTRY[name].channels_last, name
    for name in ("softmax", "conv", "bn", "maxpool", "avgpool", "concat", "flatten", "channel_shuffle", "channels",
                 "upsample", "lrn"):
        assert not REGISTRY[name].channels_last, name


# ---- stochastic depth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["row", "batch"])
@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
def test_stochastic_depth_is_torchvisions(p, mode):
    net = load(f'input 4x3x3\nconv(4, 1)\nstochastic_depth: stochastic_depth({p}, mode="{mode}")')
    m = check(net)
    ref = torchvision.ops.StochasticDepth(p, mode)
    assert repr(m.stochastic_depth) == repr(ref)  # print(model) reads as torchvision's
    x = torch.randn(64, 4, 3, 3)
    conv = m.get_submodule("0")
    with torch.no_grad():
        y = conv(x)
        assert torch.equal(m(x), y)  # eval: the identity
        m.train()
        ref.train()
        torch.manual_seed(7)
        got = m(x)
        torch.manual_seed(7)
        want = ref(y)
    assert torch.equal(got, want)
    if 0 < p < 1:
        assert not torch.equal(got, y)


def test_stochastic_depth_on_flat_and_channels_last_inputs():
    net = load("input 3x4x4\nconv(8, 1)\npermute([0, 2, 3, 1])\nsd: stochastic_depth(0.5)\npermute([0, 3, 1, 2])\n"
               "flatten\nsd2: stochastic_depth(0.5)")
    m = check(net).train()
    x = torch.randn(32, 3, 4, 4)
    with torch.no_grad():
        pre = m.get_submodule("0")(x)
        torch.manual_seed(3)
        out = m(x)
        torch.manual_seed(3)
        a = torchvision.ops.stochastic_depth(pre.permute(0, 2, 3, 1), 0.5, "row", True).permute(0, 3, 1, 2)
        b = torchvision.ops.stochastic_depth(torch.flatten(a, 1), 0.5, "row", True)
    assert torch.equal(out, b)


def test_stochastic_depth_helper_is_written_once_and_needs_only_torch():
    blocks = "block blk(p) { c: conv(4, 3, pad=1)  stochastic_depth: stochastic_depth(p) }"
    net = load("input 4x8x8\nfeatures: [blk(0.0125), blk(0.025), blk(0.05)]", blocks)
    text = net.source()
    assert text.count("class StochasticDepth(nn.Module):") == 1
    assert "self.stochastic_depth = StochasticDepth(p, 'row')" in text  # one class, p a parameter
    assert "Blk(4, 0.0125)" in text and "Blk(4, 0.05)" in text
    assert "torchvision" not in re.sub(r'""".*?"""', "", text, flags=re.S)
    imports = [n for n in ast.parse(text).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert {a.name for n in imports for a in n.names} <= {"torch", "torch.nn.functional", "nn"}
    check(net)


def test_stochastic_depth_arguments():
    (d,) = errors('input 3x4x4\nstochastic_depth(0.1, mode="rows")')
    assert 'must be one of "row", "batch"' in d.message
    (d,) = errors("input 3x4x4\nstochastic_depth(1.5)")
    assert "probability" in d.message


# ---- upsample -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, kw, size", [
    ("scale=2", {"scale_factor": 2.0}, (14, 18)),
    ("scale=1.5", {"scale_factor": 1.5}, (10, 13)),
    ("scale=0.5", {"scale_factor": 0.5}, (3, 4)),
    ("scale=(2, 3)", {"scale_factor": (2.0, 3.0)}, (14, 27)),
    ("scale=1.3", {"scale_factor": 1.3}, (9, 11)),  # floor(7 * 1.3) = 9, floor(9 * 1.3) = 11
    ("size=5", {"size": 5}, (5, 5)),
    ("size=(5, 11)", {"size": (5, 11)}, (5, 11)),
    ('size=(4, 4), mode="bilinear"', {"size": 4, "mode": "bilinear"}, (4, 4)),
    ('scale=2, mode="bilinear", align_corners=true', {"scale_factor": 2.0, "mode": "bilinear", "align_corners": True},
     (14, 18)),
])
def test_upsample_sizes_and_values(args, kw, size):
    net = load(f"input 3x7x9\nupsample({args})\nl: upsample({args})")
    assert net.layer("0").shape == (3, *size)
    m = check(net)
    x = torch.randn(2, 3, 7, 9)
    once = F.interpolate(x, **kw)
    assert once.shape[2:] == size
    with torch.no_grad():
        assert torch.equal(m(x), F.interpolate(once, **kw))
    assert "self.l = nn.Upsample(" in net.source() and "x = F.interpolate(x, " in net.source()


@pytest.mark.parametrize("args, message, arg", [
    ("", "needs either `scale` or `size`", None),
    ("scale=2, size=4", "not both", "size"),
    ("scale=2, align_corners=true", "`align_corners` has no meaning", "align_corners"),
    ('scale=2, mode="bicubic"', 'must be one of "nearest", "bilinear"', None),
    ("scale=0", "a positive number or a pair", None),
    ("scale=0.1", "empty shape", None),
])
def test_upsample_errors(args, message, arg):
    (d,) = errors(f"input 3x7x9\nupsample({args})")
    assert message in d.message
    if arg is not None:
        assert d.span.col == len("upsample(") + 1 + args.index(arg)


# ---- layer norm ---------------------------------------------------------------------------------------------


def test_layer_norm_on_chw_is_convnexts_layer_norm_2d():
    from torchvision.models.convnext import LayerNorm2d

    net = load("input 3x9x9\nstem: [conv(12, 3, stride=3), layer_norm(eps=1e-6)]\nln: layer_norm")
    m = check(net)
    assert net.layer("stem.1").params == 24 and "LayerNorm2d(12, eps=1e-06)" in net.source()
    assert {k: tuple(v.shape) for k, v in m.state_dict().items() if k.startswith("stem.1")} == {
        "stem.1.weight": (12,), "stem.1.bias": (12,)}
    ref = LayerNorm2d(12, eps=1e-6)
    with torch.no_grad():
        m.stem[1].weight.normal_()
        m.stem[1].bias.normal_()
        ref.load_state_dict(m.stem[1].state_dict())
        x = torch.randn(2, 3, 9, 9)
        y = m.stem[0](x)
        assert torch.allclose(m.stem(x), ref(y), atol=1e-6)
    assert repr(m.stem[1]) == repr(ref)
    assert isinstance(m.stem[1], torch.nn.LayerNorm)


def test_layer_norm_on_flat_and_channels_last():
    net = load("input 3x4x4\nconv(8, 1)\npermute([0, 2, 3, 1])\nln: layer_norm\npermute([0, 3, 1, 2])\n"
               "avgpool(global) flatten\nln2: layer_norm(affine=false)\nlayer_norm")
    m = check(net)
    assert net.layer("ln").shape == ChannelsLast((4, 4, 8)) and net.layer("ln").params == 16
    assert net.layer("ln2").params == 0
    text = net.source()
    assert "self.ln = nn.LayerNorm(8)" in text and "self.ln2 = nn.LayerNorm(8, elementwise_affine=False)" in text
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        y = m.get_submodule("0")(x).permute(0, 2, 3, 1)
        y = F.layer_norm(y, (8,), m.ln.weight, m.ln.bias).permute(0, 3, 1, 2).mean((2, 3))
        y = F.layer_norm(F.layer_norm(y, (8,)), (8,), m.get_submodule("7").weight, m.get_submodule("7").bias)
        assert torch.allclose(m(x), y, atol=1e-6)
    unlabelled = load("input 3x4x4\nflatten\nlayer_norm(affine=false, eps=1e-6)").source()
    assert "F.layer_norm(x, (48,), eps=1e-06)" in unlabelled


# ---- scale (layer scale) ------------------------------------------------------------------------------------


CNBLOCK = """
block cnblock(dim, layer_scale = 1e-6, sd_prob = 0.0) {
    residual {
        blk: [conv(dim, 7, pad=3, groups=dim), permute([0, 2, 3, 1]), layer_norm(eps=1e-6), linear(4 * dim), gelu,
              linear(dim), permute([0, 3, 1, 2])]
        layer_scale: scale(layer_scale)
        stochastic_depth: stochastic_depth(sd_prob)
    }
}
"""


def test_scale_is_a_bare_parameter_at_its_own_path():
    net = load("input 3x16x16\nfeatures: [[conv(8, 4, stride=4), layer_norm(eps=1e-6)], "
               "[cnblock(8, sd_prob=0.0125), cnblock(8, sd_prob=0.025)], "
               "[layer_norm(eps=1e-6), conv(16, 2, stride=2)], [cnblock(16, sd_prob=0.05)]]", CNBLOCK)
    m = check(net)
    sd = m.state_dict()
    assert tuple(sd["features.1.0.layer_scale"].shape) == (8, 1, 1)
    assert torch.all(sd["features.1.1.layer_scale"] == 1e-6)
    assert "features.1.0.blk.3.weight" in sd and not any(k.startswith("features.1.0.layer_scale.") for k in sd)
    text = net.source()
    assert "self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)" in text
    assert "self.layer_scale * " in text and "Cnblock(8, 8, sd_prob=0.0125)" in text
    assert "Cnblock(16, 16, sd_prob=0.05)" in text
    assert tuple(sd["features.3.0.layer_scale"].shape) == (16, 1, 1)
    assert text.count("class Cnblock(") == 1
    # the block's scope holds a parameter: a class, never an nn.Sequential
    assert isinstance(m.features[1][0], torch.nn.Module) and not isinstance(m.features[1][0], torch.nn.Sequential)
    with torch.no_grad():
        block = m.features[1][0]
        block.layer_scale.normal_()
        x = torch.randn(2, 8, 4, 4)
        assert torch.allclose(block(x), x + block.layer_scale * block.blk(x), atol=1e-6)


def test_scale_shapes_and_positional_names():
    net = load("input 3x4x4\nconv(8, 1)\nscale(0.5)\npermute([0, 2, 3, 1])\ncl: scale\npermute([0, 3, 1, 2])\n"
               "flatten\nflat: scale(2)")
    m = check(net)
    sd = m.state_dict()
    assert tuple(sd["1"].shape) == (8, 1, 1) and tuple(sd["cl"].shape) == (8,) and tuple(sd["flat"].shape) == (128,)
    assert torch.all(sd["1"] == 0.5) and torch.all(sd["flat"] == 2.0)
    text = net.source()
    assert "self.register_parameter('1', nn.Parameter(torch.ones(8, 1, 1) * 0.5))" in text
    assert "getattr(self, '1') * x" in text and "self.cl = nn.Parameter(torch.ones(8))" in text
    assert net.layer("1").params == 8 and net.layer("flat").params == 128


def test_scale_in_a_group_makes_a_class():
    net = load("input 3x4x4\ng: [conv(8, 1), scale, relu]")
    text = net.source()
    assert "nn.Sequential" not in text and "class G(nn.Module):" in text
    assert "self.register_parameter('1', nn.Parameter(torch.ones(8, 1, 1)))" in text
    m = check(net)
    assert list(m.state_dict()) == ["g.1", "g.0.weight", "g.0.bias"]


def test_scale_name_reserved_by_nn_module():
    with pytest.raises(graphdsl.SpecError, match="`forward` cannot name a layer in PyTorch"):
        load("input 3x4x4\nforward: scale").source()


# ---- channel_affine (Inception-v3's transform_input) --------------------------------------------------------


TRANSFORM = ("channel_affine([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5], "
             "[(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5])")


def test_channel_affine_is_inceptions_transform_input():
    from torchvision.models.inception import Inception3

    net = load(f"input 3x11x11\n{TRANSFORM}\nconv(4, 3)")
    m = check(net)
    assert [k for k in m.state_dict() if not k.startswith("1.")] == [] and net.layer("0").params == 0
    x = torch.randn(4, 3, 11, 11) * 3
    want = Inception3._transform_input(types.SimpleNamespace(transform_input=True), x)
    got = load(f"input 3x11x11\n{TRANSFORM}").to_torch()(x)
    assert (got - want).abs().max() <= 1e-6
    with torch.no_grad():
        assert torch.allclose(m(x), m.get_submodule("1")(want), atol=1e-5)
    labelled = load("input 3x2x2\nt: channel_affine([1, 2, 3], [0.5, 0, -1])").to_torch()
    y = torch.randn(1, 3, 2, 2)
    assert torch.equal(labelled(y), torch.cat([y[:, :1] + 0.5, y[:, 1:2] * 2, y[:, 2:] * 3 - 1], 1))


def test_channel_affine_on_flat_and_double_and_errors():
    net = load("input 2\nchannel_affine([2, 3], [1, 1])")
    m = check(net)
    x = torch.randn(3, 2, dtype=torch.float64)
    assert torch.equal(m.double()(x), x * torch.tensor([2.0, 3.0], dtype=torch.float64) + 1)
    (d,) = errors("input 3x4x4\nchannel_affine([1, 2], [0, 0, 0])")
    assert "one `scale` per channel: 2 for 3 channels" in d.message and d.help == "give 3 numbers"
    assert d.span.col == len("channel_affine(") + 1
    (d,) = errors("input 3x4x4\nchannel_affine([1, 2, 3], shift=[0])")
    assert "`shift`" in d.message and d.span.col == len("channel_affine([1, 2, 3], ") + 1
    (d,) = errors('input 3x4x4\nchannel_affine([1, 2, "x"], [0, 0, 0])')
    assert "a list of numbers" in d.message


# ---- channel_shuffle ----------------------------------------------------------------------------------------


def test_channel_shuffle_is_shufflenets():
    from torchvision.models.shufflenetv2 import channel_shuffle

    net = load("input 12x5x5\nchannel_shuffle(3)\nshuffle: channel_shuffle(2)")
    m = check(net)
    assert "F.channel_shuffle(x, 3)" in net.source() and "self.shuffle = nn.ChannelShuffle(2)" in net.source()
    x = torch.randn(2, 12, 5, 5)
    with torch.no_grad():
        assert torch.equal(m(x), channel_shuffle(channel_shuffle(x, 3), 2))
    gm = torch.fx.symbolic_trace(m)
    assert torch.equal(gm(x), m(x))
    ep = torch.export.export(m, (x,))
    assert torch.equal(ep.module()(x), m(x))
    assert torch.equal(torch.compile(m, backend="aot_eager")(x), m(x))


def test_channel_shuffle_errors():
    (d,) = errors("input 12x5x5\nchannel_shuffle(5)")
    assert "needs channels that divide into 5 groups, got 12" in d.message
    assert d.help == "12 channels divide into 2, 3, 4, 6, 12 groups"
    (d,) = errors("input 12\nchannel_shuffle(2)")
    assert "needs a CxHxW input" in d.message


# ---- permute and channels-last ------------------------------------------------------------------------------


def test_permute_round_trip_and_channels_last_linear():
    net = load("input 3x8x8\nconv(16, 2, stride=2)\nhwc: permute([0, 2, 3, 1])\nfc1: linear(32)\ngelu\n"
               "fc2: linear(24, bias=false)\nback: permute([0, 3, 1, 2])")
    g = net.graph
    assert g.nodes["hwc"]["shape"] == ChannelsLast((4, 4, 16)) and isinstance(g.nodes["hwc"]["shape"], ChannelsLast)
    assert g.nodes["fc1"]["shape"] == ChannelsLast((4, 4, 32))
    assert g.nodes["back"]["shape"] == (24, 4, 4) and not isinstance(g.nodes["back"]["shape"], ChannelsLast)
    assert net.layer("fc1").macs == 4 * 4 * 16 * 32 and net.layer("fc1").params == 16 * 32 + 32
    assert net.layer("fc2").params == 32 * 24
    assert fmt_shape(g.nodes["fc1"]["shape"]) == "4x4x32 (HWC)" and fmt_shape((32, 4, 4)) == "32x4x4"
    m = check(net)
    text = net.source()
    assert "self.hwc = Permute([0, 2, 3, 1])" in text and "self.fc1 = nn.Linear(16, 32)" in text
    assert re.search(r"x = self\.fc1\(x\) +# N x 4 x 4 x 32\n", text)  # the runtime order, N x H x W x C
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        y = m.get_submodule("0")(x).permute(0, 2, 3, 1)
        y = m.fc2(F.gelu(m.fc1(y))).permute(0, 3, 1, 2)
        assert torch.equal(m(x), y)
    unlabelled = load("input 3x8x8\npermute([0, 2, 3, 1])\npermute([0, 3, 1, 2])").source()
    assert "torch.permute(x, (0, 2, 3, 1))" in unlabelled


def test_permute_and_linear_errors():
    (d,) = errors("input 3x8x8\npermute([0, 3, 1, 2])")
    assert "does not apply to the channels-first" in d.message and "permute([0, 2, 3, 1])" in d.help
    (d,) = errors("input 3x8x8\npermute([0, 1, 3, 2])")
    assert "takes [0, 2, 3, 1]" in d.message and d.help
    (d,) = errors("input 3x8x8\nlinear(4)")
    assert "`linear` needs a flat input, got 3x8x8" in d.message
    assert "add `flatten` before `linear`" in d.help and "permute([0, 2, 3, 1])" in d.help


def test_channels_last_layout_in_diagram_and_summary_text():
    net = load("input 3x8x8\npermute([0, 2, 3, 1])\nlinear(5)")
    assert "8×8×5 (HWC)" in str(net.summary())
    assert "ChannelsLast" not in repr(net) and "8x8x5 (HWC)" in repr(net)


# ---- mul ----------------------------------------------------------------------------------------------------


def test_mul_broadcasts_a_gate():
    net = load("input 8x6x6\na: conv(16, 3, pad=1)\ns = [avgpool(global), conv(4, 1), relu, conv(16, 1), hardsigmoid]\n"
               "mul(a, s)\nb: conv(16, 1)\nc: conv(1, 1)\nmul(a, b, c)")
    assert net.layer("2").shape == (16, 6, 6) and net.layer("2").other_ops == 16 * 36
    assert net.layer("5").other_ops == 2 * 16 * 36
    m = check(net)
    text = net.source()
    assert re.search(r" = \w+ \* s  +#", text) and re.search(r" = \w+ \* \w+ \* \w+  +#", text)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        a = m.a(x)
        gated = a * m.s(a)
        b = m.b(gated)
        assert torch.allclose(m(x), a * b * m.c(b))


def test_mul_of_branches_and_errors():
    net = load("input 8x6x6\nmul { [conv(8, 1), sigmoid]  identity }")
    check(net)
    (d,) = errors("input 8x6x6\na: conv(16, 1)\nb = [avgpool(global), conv(4, 1)]\nmul(a, b)")
    assert "`mul` needs shapes that broadcast" in d.message and "16x6x6, 4x1x1" in d.message and d.help
    (d,) = errors("input 8x6x6\na: conv(16, 1)\nb = [avgpool(global), flatten]\nmul(a, b)")
    assert "16x6x6, 16" in d.message


def test_mul_of_channels_last_tensors_stays_channels_last():
    net = load("input 8x6x6\npermute([0, 2, 3, 1])\na: linear(8)\nb: linear(8)\nmul(a, b)\npermute([0, 3, 1, 2])")
    assert net.graph.nodes["3"]["shape"] == ChannelsLast((6, 6, 8))
    assert isinstance(net.graph.nodes["3"]["shape"], ChannelsLast)
    check(net)


# ---- channels (chunk / split) -------------------------------------------------------------------------------


def test_channel_slices():
    net = load("input 6x4x4\nc: conv(16, 1)\nx1: channels(0, 8)\nfrom c\nx2: channels(8, 16)\nr: relu(inplace=true)\n"
               "concat(x1, r)\nchannels(3, 5)")
    assert net.layer("x2").shape == (8, 4, 4) and net.output_shapes["output"] == (2, 4, 4)
    m = check(net)
    assert "x[:, 8:16]" in net.source()
    x = torch.randn(2, 6, 4, 4)
    with torch.no_grad():
        c = m.c(x)
        # the in-place relu reads a view of `c`, which x1 still needs: it must not write into it
        assert torch.equal(m(x), c[:, 3:5])
    assert "inplace=True" not in net.source()
    full = load("input 6x4x4\nc: conv(16, 1)\nx1: channels(0, 8)\nfrom c\nx2: channels(8, 16)\nr: relu(inplace=true)\n"
                "concat(x1, r)")
    m = full.to_torch().eval()
    with torch.no_grad():
        c = m.c(x)
        assert torch.equal(m(x), torch.cat([c[:, :8], F.relu(c[:, 8:])], 1))


def test_channel_slice_errors():
    (d,) = errors("input 6x4x4\nchannels(2, 9)")
    assert "reaches past the 6 channels" in d.message and d.span.col == len("channels(2, ") + 1
    (d,) = errors("input 6x4x4\nchannels(4, 4)")
    assert "is empty" in d.message and d.span.col == len("channels(") + 1
    assert load("input 10\nchannels(2, 5)").output_shapes["output"] == (3,)


# ---- helper classes in generated code -----------------------------------------------------------------------


def test_helpers_only_where_used_and_verified():
    plain = load("input 3x8x8\nflatten\nlayer_norm").source()
    assert "class LayerNorm2d" not in plain and "class Permute" not in plain
    text = load("input 3x8x8\nln: layer_norm\np: permute([0, 2, 3, 1])").source()
    assert text.count("class LayerNorm2d(nn.LayerNorm):") == 1 and text.count("class Permute(nn.Module):") == 1
    helpers = [REGISTRY["layer_norm"].torch_helpers[0], REGISTRY["permute"].torch_helpers[0]]
    Generator.verify(text, helpers)
    tampered = text.replace("return torch.permute(x, self.dims)", "return torch.permute(x, self.dims)  # ok\n"
                            "\n    def extra(self):\n        return 1")
    with pytest.raises(AssertionError, match="unexpected member"):
        Generator.verify(tampered, helpers)
    text = load("input 3x8x8\nsd: stochastic_depth(0.1)").source()
    Generator.verify(text, REGISTRY["stochastic_depth"].torch_helpers)
    with pytest.raises(AssertionError, match="unexpected member"):
        Generator.verify(text)  # without the helper texts, `extra_repr` is refused


def test_helper_class_names_win_over_block_names():
    blocks = "block layer_norm2d(c) { conv: conv(c, 1) }\nblock stochastic_depth_(c) { conv: conv(c, 1) }"
    net = load("input 3x8x8\na: layer_norm2d(4)\nb: stochastic_depth_(4)\nln: layer_norm\nsd: stochastic_depth(0.1)",
               blocks, name="permute")
    tree = ast.parse(net.source())
    classes = [c.name for c in tree.body if isinstance(c, ast.ClassDef)]
    assert classes == ["LayerNorm2d", "StochasticDepth", "LayerNorm2d2", "StochasticDepth2", "Permute"]
    check(net)


# ---- outputs: training-only ones ----------------------------------------------------------------------------


HEADS = """
input 3x8x8
stem: conv(8, 3, pad=1)
a = [avgpool(global), flatten, linear(2)]
b = [avgpool(global), flatten, linear(3)]
c = [avgpool(global), flatten, linear(4)]
"""


@pytest.mark.parametrize("outputs, eval_names, train_names", [
    ("output a", ["a"], ["a"]),
    ("output a, b", ["a", "b"], ["a", "b"]),
    ("output a, training: b", ["a"], ["a", "b"]),
    ("output a, b, training: c", ["a", "b"], ["a", "b", "c"]),
    ("output b, training: c, a", ["b"], ["b", "c", "a"]),
])
def test_training_only_outputs(outputs, eval_names, train_names):
    net = load(HEADS + outputs)
    g = net.graph
    assert returned_outputs(g, False) == eval_names and returned_outputs(g, True) == train_names
    m = net.to_torch()
    sizes = {"a": 2, "b": 3, "c": 4}
    x = torch.randn(2, 3, 8, 8)
    for mode, names in (("eval", eval_names), ("train", train_names)):
        getattr(m, mode)()
        out = m(x)
        outs = out if isinstance(out, tuple) else (out,)
        assert isinstance(out, tuple) == (len(names) > 1)
        assert [o.shape[1] for o in outs] == [sizes[n] for n in names]
    text = net.source()
    gated = [n for n in sizes if n in train_names and n not in eval_names]
    for n in gated:  # training-only heads are computed only in training
        assert re.search(rf"if self\.training:\n\s+\w+ = self\.{n}\(", text)
    assert ("if self.training:\n            return" in text) == bool(gated)
    check(net)


def test_without_training_outputs_in_the_ir_every_output_after_the_first_is_auxiliary():
    net = load(HEADS + "output a, b, c")
    del net.graph.graph["training_outputs"]
    assert training_outputs(net.graph) == ["b", "c"] and returned_outputs(net.graph, False) == ["a"]
    m = net.to_torch()
    assert m.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 2)
    assert [o.shape[1] for o in m.train()(torch.randn(2, 3, 8, 8))] == [2, 3, 4]


def test_every_output_training_only_is_a_diagnostic():
    net = load(HEADS + "output a, b, training: c")
    net.graph.graph["training_outputs"] = ["a", "b", "c"]
    with pytest.raises(graphdsl.SpecError, match="every output of the network is training-only"):
        net.source()


# ---- feature extraction (taps) ------------------------------------------------------------------------------


TAPPED = """
block unit(c, stride = 1) {
    residual {
        conv1: conv(c, 3, stride=stride, pad=1, bias=false)  bn1: bn  relu(inplace=true)
        conv2: conv(c, 3, pad=1, bias=false)  bn2: bn
    } shortcut if stride != 1 or in.channels != c { downsample: [conv(c, 1, stride=stride, bias=false), bn] }
    relu(inplace=true)
}
network tapped {
    input 3x16x16
    conv1: conv(8, 3, pad=1, bias=false)  bn1: bn  relu: relu(inplace=true)
    layer1: [unit(8), unit(8)]
    layer2: [unit(16, stride=2), unit(16)]
    aux = [avgpool(global), flatten, linear(3)]
    avgpool: avgpool(global)  flatten
    fc: linear(10)
    output fc, training: aux
}
"""


def test_taps_static_shapes_and_errors():
    net = graphdsl.load(text=TAPPED)
    assert net.taps(["layer1", "layer2.0.conv1", "relu", "fc", "input"]) == {
        "layer1": (8, 16, 16), "layer2.0.conv1": (16, 8, 8), "relu": (8, 16, 16), "fc": (10,), "input": (3, 16, 16)}
    assert net.taps(["layer2.0"]) == {"layer2.0": (16, 8, 8)}
    with pytest.raises(TapError, match=r"no layer or scope `layer2.0.conv_1`; did you mean `layer2.0.conv1`\?"):
        net.taps(["layer2.0.conv_1"])
    with pytest.raises(KeyError, match="did you mean `layer1`"):
        net.to_torch(outputs=["layer_1"])
    with pytest.raises(KeyError, match="at least one"):
        net.taps([])


def test_feature_extractor_returns_a_dict_and_computes_only_what_it_needs():
    net = graphdsl.load(text=TAPPED)
    full = net.to_torch().eval()
    names = ["layer1", "layer2.0.conv1", "layer2.1.bn2"]
    feats = net.to_torch(outputs=names)
    sd = feats.state_dict()
    assert not any(k.startswith(("fc.", "aux.")) for k in sd)
    assert "layer2.1.bn2.running_mean" in sd and "fc.weight" not in sd and "aux.2.weight" not in sd
    assert set(sd) < set(full.state_dict())
    feats.load_state_dict({k: v for k, v in full.state_dict().items() if k in sd}, strict=True)
    seen = {}
    hooks = [full.get_submodule(n).register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o.clone()))
             for n in ("layer1", "layer2.0.conv1", "layer2.1.bn2")]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        full(x)
        for mode in ("eval", "train"):
            getattr(feats, mode)()
            out = feats(x) if mode == "eval" else {k: v.detach() for k, v in feats(x).items()}
            assert isinstance(out, dict) and list(out) == names
            assert {k: tuple(v.shape[1:]) for k, v in out.items()} == net.taps(names)
            if mode == "eval":
                for n in names:
                    assert torch.allclose(out[n], seen[n], atol=1e-6), n
    for h in hooks:
        h.remove()
    text = net.source(outputs=names)
    assert "class TappedFeatures(nn.Module):" in text and "return {'layer1': " in text
    assert "self.training" not in text.split("class TappedFeatures")[1]
    gm = torch.fx.symbolic_trace(feats.eval())
    assert list(gm(x)) == names


def test_tap_on_a_scope_returns_its_output_node():
    net = load("input 3x8x8\nb: [conv(4, 1), relu]\nside = conv(2, 1)\nconv(5, 1)\noutput side")
    assert net.taps(["b"]) == {"b": (4, 8, 8)}
    m = net.to_torch(outputs=["b", "side"])
    out = m.eval()(torch.randn(1, 3, 8, 8))
    assert list(out) == ["b", "side"] and out["side"].shape == (1, 2, 8, 8)
    assert "b.0.weight" in m.state_dict() and "2.weight" not in m.state_dict()


def test_generate_with_outputs_needs_no_torch_import_path():
    net = graphdsl.load(text=TAPPED)
    gen = generate(net, ["layer1"])
    assert gen.class_name == "TappedFeatures" and "layer2" not in gen.source.split("class TappedFeatures")[1]
