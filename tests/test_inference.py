"""The inference build (graphdsl.inference): BatchNorms folded into convs and eval no-ops removed as a
transform of the spec, checked on the IRs; the folded module computes what the original computes in
eval mode, with the original's (random or trained) weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from specgen import networks

import graphdsl
from graphdsl.inference import FoldError, build, fold, fold_state_dict

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def randomize_norms(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random running statistics and affine parameters in every BatchNorm: with the fresh ones (mean 0,
    variance 1, weight 1, bias 0) a fold that ignored them would pass."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(c, generator=gen) * 2.5 + 0.3)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=gen) * 1.4 + 0.3)
                    m.bias.copy_(torch.rand(c, generator=gen) - 0.5)
    return module


def first(out):
    return out[0] if isinstance(out, tuple) else out


def relative_error(a, b) -> float:
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-6)).item()


def folded_error(net, batch: int = 2, seed: int = 0, channels_last=None, fuse=(False,)) -> float:
    """Relative difference of the inference build and the original module, in eval mode, with random
    BatchNorm statistics; the largest of the builds with each `fuse` setting."""
    torch.manual_seed(seed)
    original = randomize_norms(net.to_torch(), seed).eval()
    x = torch.randn(batch, *net.input_shape)
    errors = []
    with torch.no_grad():
        want = first(original(x))
        for f in fuse:
            module = build(net, state_dict=original.state_dict(), channels_last=channels_last, fuse=f)
            errors.append(relative_error(want, first(module(x))))
    return max(errors)


def ops(net) -> list[tuple[str, str]]:
    return [(n, d["op"]) for n, d in net.graph.nodes(data=True) if n != "input"]


# ---- the transform ------------------------------------------------------------------------------------

BLOCKS = """
block unit(c, stride = 1) {
    residual {
        conv1: conv(c, 3, stride=stride, pad=1, bias=false)  bn1: bn  relu
        conv2: conv(c, 3, pad=1, bias=false)  bn2: bn(eps=0.001)
        dropout(0.1)
    } shortcut if stride != 1 or in.channels != c {
        downsample: [conv(c, 1, stride=stride, bias=false), bn]
    }
    relu
}

network n(num_classes = 5) {
    input 3x16x16
    stem: [conv(8, 3, pad=1), bn(affine=false), relu]
    layer1: unit(8) * 2
    layer2: unit(16, stride=2)
    branches: concat { [conv(4, 1, bias=false), bn]  identity }
    avgpool(global)  flatten
    drop: dropout(0.5)
    fc: linear(num_classes)
}
"""


def test_folds_every_bn_after_a_conv_and_drops_the_no_ops():
    net = graphdsl.load(text=BLOCKS)
    folded = fold(net)
    assert [(f.conv, f.bn, f.folded) for f in folded.folds] == [
        ("stem.0", "stem.1", "stem.0"),
        ("layer1.0.conv1", "layer1.0.bn1", "layer1.0.conv1"), ("layer1.0.conv2", "layer1.0.bn2", "layer1.0.conv2"),
        ("layer1.1.conv1", "layer1.1.bn1", "layer1.1.conv1"), ("layer1.1.conv2", "layer1.1.bn2", "layer1.1.conv2"),
        ("layer2.conv1", "layer2.bn1", "layer2.conv1"), ("layer2.conv2", "layer2.bn2", "layer2.conv2"),
        ("layer2.downsample.0", "layer2.downsample.1", "layer2.downsample.0"),
        ("branches.0.0", "branches.0.1", "branches.0.0"),
    ]
    assert [f.eps for f in folded.folds][:3] == [1e-5, 1e-5, 0.001]
    # dropout in the residual bodies and before fc; the identity is a branch of its own: it stays
    assert folded.dropped == ("layer1.0.5", "layer1.1.5", "layer2.5", "drop")
    kept = {op for _, op in ops(folded.network)}
    assert "bn" not in kept and "dropout" not in kept and "identity" in kept
    # unlabelled layers after a removed one take the next position, as in nn.Sequential
    assert folded.node_map["stem.2"] == "stem.1"
    assert all(d["attrs"]["bias"] for _, d in folded.network.graph.nodes(data=True) if d["op"] == "conv")


def test_static_figures_are_the_folded_networks():
    net = graphdsl.load(SPECS / "resnet50.cnn")
    folded = fold(net)
    bn_params = sum(d["params"] for _, d in net.graph.nodes(data=True) if d["op"] == "bn")
    new_biases = sum(net.graph.nodes[f.conv]["shape"][0] for f in folded.folds)  # resnet convs have no bias
    assert len(folded.folds) == 53
    assert folded.params == net.params - bn_params + new_biases == 25_530_472
    assert folded.macs == net.macs
    assert folded.network.buffers == 0  # no running statistics left
    assert folded.params == sum(p.numel() for p in build(folded, channels_last=False).parameters())
    shown = "\n".join(f"# {line}" for line in folded.describe().splitlines())
    assert shown in (ROOT / "docs" / "inference.md").read_text()  # the doc's example is what it prints


def test_a_fold_that_is_illegal_in_one_instance_is_made_in_none():
    # in the second use the conv's output is also read by `add`: its bn stays, in both uses
    text = """
    block b(tap) {
        c: conv(4, 3, pad=1, bias=false)
        bn
        r: relu
        if tap { add(c, r) }
    }
    network n { input 3x8x8  conv(4, 1, bias=false)  bn  first: b(false)  second: b(true) }
    """
    net = graphdsl.load(text=text)
    folded = fold(net)
    assert [f.bn for f in folded.folds] == ["1"]
    assert [(s.node, s.reason) for s in folded.skipped] == [("second.1", "the output of `second.c` is read by more "
                                                              "than this BatchNorm")]
    assert [op for _, op in ops(folded.network)].count("bn") == 2
    assert folded_error(net) <= 1e-5


def test_a_bn_whose_name_is_read_stays():
    text = "network n { input 3x8x8  c: conv(4, 3, pad=1, bias=false)  b: bn  relu  concat(b, c) }"
    folded = fold(graphdsl.load(text=text))
    assert folded.folds == () and [op for _, op in ops(folded.network)] == ["conv", "bn", "relu", "concat"]


def test_bn_under_a_condition_folds_with_a_conditional_bias():
    # VGG's `conv(v, 3)  if batch_norm { bn }`: the conv gets a bias exactly where the bn was
    text = """
    block unit(norm) { conv(4, 3, pad=1, bias=false)  if norm { bn }  relu }
    network n(norm = true) { input 3x8x8  unit(norm)  unit(false) }
    """
    for norm in (True, False):
        net = graphdsl.load(text=text, norm=norm)
        folded = fold(net)
        assert [f.conv for f in folded.folds] == (["0.0"] if norm else [])
        biases = [d["attrs"]["bias"] for _, d in folded.network.graph.nodes(data=True) if d["op"] == "conv"]
        assert biases == [norm, False]
    folded = fold(graphdsl.load(SPECS / "vgg11_bn.cnn"))
    assert len(folded.folds) == 8 and len(folded.dropped) == 2


def test_the_no_op_of_a_residual_body_stays_where_it_is_the_only_layer():
    text = "network n { input 3x8x8  conv(4, 1)  residual { relu  dropout }  residual { identity } }"
    folded = fold(graphdsl.load(text=text))
    assert folded.dropped == ("2",)  # `residual` is transparent: its layers number in the network
    assert [op for _, op in ops(folded.network)] == ["conv", "relu", "add", "identity", "add"]


def test_a_removal_that_breaks_the_spec_is_given_up():
    # without its dropout the residual body would be empty, adding the input to itself: the no-ops stay
    text = "network n { input 3x8x8  conv(4, 1, bias=false)  bn  residual { if true { dropout } } }"
    folded = fold(graphdsl.load(text=text))
    assert [f.bn for f in folded.folds] == ["1"] and folded.dropped == ()
    assert [op for _, op in ops(folded.network)] == ["conv", "dropout", "add"]


def test_every_shipped_spec_folds_all_its_conv_bns(tmp_path):
    """Each bn that directly follows a conv is folded: in every shipped spec the folds and the bns left
    over add up to the bns, and no bn left over reads a conv whose output only it reads."""
    for spec in sorted(SPECS.glob("*.cnn")):
        net = graphdsl.load(spec)
        folded = fold(net)
        g = folded.network.graph
        for n, d in g.nodes(data=True):
            if d["op"] != "bn":
                continue
            (c,) = g.predecessors(n)
            assert not (g.nodes[c]["op"] == "conv" and g.out_degree(c) == 1), (spec.name, n)
        assert not folded.skipped, spec.name
        assert folded.params <= net.params and folded.macs == net.macs


def test_the_original_network_is_left_as_it_was():
    net = graphdsl.load(text=BLOCKS)
    before = ops(net), net.params
    fold(net)
    assert (ops(net), net.params) == before


def test_folding_twice_changes_nothing_more():
    again = fold(fold(graphdsl.load(text=BLOCKS)).network)
    assert again.folds == () and again.dropped == () and len(again.node_map) == len(again.network.graph) - 1


def test_fold_needs_the_sources():
    net = graphdsl.load(text=BLOCKS)
    stripped = graphdsl.Network(net.graph, {}, ())
    with pytest.raises(FoldError, match="no sources"):
        fold(stripped)
    with pytest.raises(ValueError, match="not an inference build"):
        fold_state_dict(net, net, {})


def test_folding_does_not_import_torch():
    code = ("import sys, graphdsl; from graphdsl.inference import fold; "
            "f = fold(graphdsl.load('specs/resnet18.cnn')); print(len(f.folds), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.split() == ["20", "False"]


# ---- outputs: the folded module computes what the original computes -------------------------------------


def test_outputs_of_the_text_network():
    assert folded_error(graphdsl.load(text=BLOCKS)) <= 1e-5


def test_outputs_double_precision_and_state_dict_keys():
    net = graphdsl.load(text=BLOCKS)
    folded = fold(net)
    original = randomize_norms(net.to_torch(dtype=torch.float64)).eval()
    state = fold_state_dict(net, folded, original.state_dict())
    module = folded.network.to_torch(dtype=torch.float64).eval()
    assert set(state) == set(module.state_dict())
    module.load_state_dict(state, strict=True)
    assert state["stem.0.weight"].dtype == torch.float64
    x = torch.randn(3, *net.input_shape, dtype=torch.float64)
    with torch.no_grad():
        assert relative_error(original(x), module(x)) <= 1e-12


def test_build_is_eval_without_gradients_and_channels_last_on_cpu():
    net = graphdsl.load(text=BLOCKS)
    module = build(net)
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    plain = build(net, channels_last=False, dtype="float64")
    assert all(c.weight.is_contiguous() and c.weight.dtype == torch.float64
               for c in plain.modules() if isinstance(c, torch.nn.Conv2d))


@pytest.mark.parametrize("spec, overrides", [
    ("cifar/resnet20.cnn", {}),
    ("mobilenet_v2.cnn", {}),
    ("googlenet.cnn", {"aux_logits": False}),
    ("efficientnet_b0.cnn", {}),
])
def test_zoo_outputs_with_random_statistics(spec, overrides):
    assert folded_error(graphdsl.load(SPECS / spec, **overrides), batch=1, fuse=(False, True)) <= 1e-4


def test_fused_convolutions():
    net = graphdsl.load(text=BLOCKS)
    module = build(net, fuse=True)
    fused = [m for m in module.modules() if type(m).__name__ == "FusedConv2d"]
    convs = sum(1 for _, d in fold(net).network.graph.nodes(data=True) if d["op"] == "conv")
    assert len(fused) == convs and not any(isinstance(m, torch.nn.Conv2d) for m in module.modules())
    # stem: conv + relu; each unit: conv1 + relu, conv2 + the residual's add + relu; the shortcut's conv alone
    assert [(m.binary, m.unary) for m in fused][:5] == [(None, "relu"), (None, "relu"), ("add", "relu"),
                                                       (None, "relu"), ("add", "relu")]
    assert ("add", "relu") in [(m.binary, m.unary) for m in fused[-4:]] and (None, "none") in [
        (m.binary, m.unary) for m in fused]
    assert folded_error(net, fuse=(True,), channels_last=False) <= 1e-5
    with pytest.raises(ValueError, match="float32"):
        build(net, dtype=torch.float64, fuse=True)


def test_dropout_network_outputs():
    # a small VGG-11 with batch norm (its classifier has two dropouts), at 32x32
    text = ('import "specs/lib/vgg.cnn"\nnetwork v { input 3x32x32  features: vgg_features(11, batch_norm=true) '
            " flatten  classifier: vgg_classifier(10) }")
    net = graphdsl.load(text=text)
    folded = fold(net)
    assert len(folded.folds) == 8 and len(folded.dropped) == 2
    assert folded_error(net) <= 1e-4


def test_trained_state_dict_from_torchvision():
    """torchvision's ResNet-18 with (as if trained) random BatchNorm statistics: the spec's inference
    build with its state_dict computes torchvision's eval outputs."""
    torch.manual_seed(0)
    tv = randomize_norms(torchvision.models.resnet18(num_classes=10), seed=3).eval()
    net = graphdsl.load(SPECS / "resnet18.cnn", num_classes=10)
    module = build(net, state_dict=tv.state_dict())
    x = torch.randn(2, 3, 64, 64)  # the spec's 224x224 is only its static input: the module takes any size
    with torch.no_grad():
        assert relative_error(tv(x), module(x)) <= 1e-4


@settings(max_examples=60)
@given(net=networks(), fuse=st.booleans())
def test_random_networks_fold_to_the_same_outputs(net, fuse):
    """Random networks (tests/specgen.py): the inference build computes the original's eval outputs,
    with fused convolutions too."""
    loaded = graphdsl.load(text=net.render())
    assert folded_error(loaded, seed=1, fuse=(fuse,)) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["resnet50.cnn", "vgg16_bn.cnn", "densenet121.cnn", "inception_v3.cnn",
                                  "mobilenet_v3_large.cnn", "regnet_y_400mf.cnn", "shufflenet_v2_x1_0.cnn",
                                  "convnext_tiny.cnn"])
def test_zoo_outputs_slow(spec):
    assert folded_error(graphdsl.load(SPECS / spec), batch=1) <= 1e-4
