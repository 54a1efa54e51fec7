"""Property tests: random networks written as .cnn text (tests/specgen.py), checked against torch.

(a) compiled and run (eval, batch 2), every IR node's runtime shape (backends.torch.node_shapes)
    is its static shape;
(b) the static parameter (and buffer) count is what the compiled module holds;
(c) the static conv + linear MACs are FlopCounterMode's FLOPs / 2 (batch 1). FlopCounterMode counts
    only aten.convolution (2 * N * Cout * Cin/groups * kh * kw * Hout * Wout, bias not counted) and
    aten.mm / aten.addmm (2 * m * n * k, the bias add of addmm not counted); pooling, batch norm,
    LRN, activations, softmax, concat and additions count nothing. So MACs == FLOPs / 2 exactly,
    and any other counted op fails the test. The static MACs include auxiliary heads, which the
    module computes in training mode only: it runs in training mode, batch norm in eval mode;
(d) the static checker accepts exactly the networks that PyTorch runs. The "PyTorch" here is
    specgen.reference_module, an interpreter of the same random description written straight onto
    torch calls, sharing nothing with graphdsl. Two differences are by design and excluded:
    `linear` on an unflattened input (graphdsl asks for `flatten`; torch would apply the layer to
    the last axis) and `pad_channels` to fewer channels (F.pad would crop). `add` is a sum of equal
    shapes in both (the reference uses torch.stack, which refuses what `a + b` would broadcast);
    `mul` broadcasts tensors of one rank in both.
    Where both accept, the output shapes and parameter counts must agree as well;
(e) with the same weights, the compiled module computes what the reference computes;
(f) networks drawn valid are accepted, with the reference's output shapes, parameters and FLOPs
    (independent of the backend).

Bugs these properties found are pinned as regression examples and tests (CEIL_OVERHANG*,
INPLACE_AFTER_ALIAS below).

Profiles (tests/conftest.py): "ci" (default; 200 examples, derandomised), "dev", "thorough";
pick one with HYPOTHESIS_PROFILE=thorough.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import event, example, given, note
from specgen import (
    Bind,
    Branches,
    Group,
    IntentionalDifference,
    Layer,
    Merge,
    Net,
    V,
    edge_networks,
    networks,
    reference_module,
)
from torch.utils.flop_counter import FlopCounterMode

import graphdsl

try:
    from graphdsl.backends import torch as torch_backend

    HAVE_BACKEND = hasattr(torch_backend, "node_shapes") and hasattr(graphdsl.Network, "to_torch")
except ImportError:
    torch_backend = None
    HAVE_BACKEND = False

needs_backend = pytest.mark.skipif(not HAVE_BACKEND, reason="graphdsl.backends.torch (to_torch, node_shapes) missing")

COUNTED = {torch.ops.aten.convolution, torch.ops.aten.mm, torch.ops.aten.addmm}
TORCH_REFUSES = (RuntimeError, ValueError, IndexError)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions take ~10 ms each on a thread pool and ~0.3 ms on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- regression examples -------------------------------------------------------------------------

# FIXED graphdsl bug: a ceil-mode pooling window larger than the padded input. graphdsl refused
# "kernel 3 is larger than the padded input height 2"; torch gives one output per axis, because in
# ceil mode the output size is ceil((n + 2p - k) / s) + 1 >= 1 as long as k <= n + 2p + s - 1.
CEIL_OVERHANG = Net((3, 2, 2), [Layer("maxpool", {"kernel": 3, "stride": 2, "ceil": True}, npos=1)], [])
CEIL_OVERHANG_AVG = Net((6, 10, 10), [Layer("avgpool", {"kernel": (14, 15), "stride": 2, "pad": 2, "ceil": True},
                                            npos=1)], [])
# a valid network around it, with a head (what the compiled-module properties run)
CEIL_OVERHANG_HEAD = Net((4, 5, 5), [Layer("conv", {"out": 4, "kernel": 3, "stride": 2}, npos=2),
                                      Layer("maxpool", {"kernel": 3, "stride": 3, "ceil": True}, npos=1),
                                      Layer("flatten"), Layer("linear", {"out": 3}, npos=1)], [])


# FIXED backend bug: `inplace=true` honoured on a tensor that aliases one still needed. identity,
# dropout (eval), flatten and subsample return their input or a view of it, so
# `concat { [identity, relu(inplace=true)]  identity }` rectified the tensor the second branch
# reads. The backend now follows such aliases back (Generator.shared).
INPLACE_AFTER_ALIAS = Net((1, 2, 2), [Branches("concat", [
    Group([Layer("identity"), Layer("relu", {"inplace": True})]), Layer("identity")])], [])

# Every operator of the modern torchvision CNNs at least once, whatever the derandomised draw holds:
# MobileNetV3's hardswish and squeeze-and-excitation gate, ShuffleNetV2's shuffle and channel split,
# upsampling, ConvNeXt's channels-last block with layer scale and stochastic depth, a training-only head.
ZOO_OPS = Net((4, 7, 7), [
    Layer("conv", {"out": 8, "kernel": 3, "pad": 1}, npos=2),
    Layer("hardswish", {"inplace": True}),
    Group([Layer("conv", {"out": 8, "kernel": 3, "pad": 1, "groups": 8}, npos=2)], "m1"),
    Bind("g1", Group([Layer("avgpool", {"kernel": "global"}, npos=1), Layer("conv", {"out": 8, "kernel": 1}, npos=2),
                      Layer("hardsigmoid")])),
    Merge("mul", ["m1", "g1"]),
    Layer("channel_shuffle", {"groups": 2}, npos=1),
    Layer("upsample", {"scale": 1.5, "mode": V('"bilinear"', "bilinear")}),
    Layer("layer_norm", {"eps": 1e-6}),
    Layer("channels", {"start": 2, "stop": 7}, npos=2),
    Group([Layer("permute", {"dims": [0, 2, 3, 1]}, npos=1), Layer("layer_norm"), Layer("linear", {"out": 12}, npos=1),
           Layer("gelu"), Layer("scale", {"init": 0.5}, npos=1), Layer("stochastic_depth", {"p": 0.2}, npos=1),
           Layer("linear", {"out": 6}, npos=1), Layer("permute", {"dims": [0, 3, 1, 2]}, npos=1)], "cl"),
    Layer("scale", {"init": 2.0}, npos=1, label="ls"),
    Layer("stochastic_depth", {"p": 0.1, "mode": V('"batch"', "batch")}, npos=1),
    Layer("upsample", {"size": (5, 4)}),
    Bind("aux", Group([Layer("avgpool", {"kernel": "global"}, npos=1), Layer("flatten"),
                       Layer("linear", {"out": 3}, npos=1)])),
    Layer("avgpool", {"kernel": "global"}, npos=1), Layer("flatten"), Layer("layer_norm"), Layer("scale"),
    Layer("linear", {"out": 3}, npos=1, label="fc"),
], [], outputs=["fc", "aux"], training=["aux"])




# ---- helpers -----------------------------------------------------------------------------------


def load(net: Net) -> graphdsl.Network:
    text = net.render()
    note(text)
    return graphdsl.load(text=text)


def flops(module, x) -> int:
    """conv + linear FLOPs of one forward; fails on any other counted op."""
    with FlopCounterMode(display=False) as counter:
        module(x)
    counts = counter.get_flop_counts().get("Global", {})
    assert set(counts) <= COUNTED, f"FlopCounterMode counted more than conv/linear: {counts}"
    return sum(counts.values())


def run_reference(net: Net, batch: int = 2):
    """(module, outputs) or raises what torch raises."""
    module = reference_module(net).eval()
    with torch.no_grad():
        outs = module(torch.randn(batch, *net.input))
    return module, outs


def compiled(graph_net: graphdsl.Network):
    return graph_net.to_torch().eval()


# ---- (a), (b), (c): the compiled module against the static figures -----------------------------------


@needs_backend
@given(net=networks())
@example(net=CEIL_OVERHANG_HEAD)
@example(net=ZOO_OPS)
def test_runtime_shapes_equal_static_shapes(net):
    g = load(net)
    module = compiled(g)
    x = torch.randn(2, *g.input_shape)
    with torch.no_grad():
        shapes = torch_backend.node_shapes(g, module, x)
        out = module(x)
    static = {n: tuple(d["shape"]) for n, d in g.graph.nodes(data=True)}
    missing = set(static) - set(shapes) - {"input"}
    assert not missing, f"node_shapes misses nodes {sorted(missing)}"
    wrong = {n: (static[n], tuple(shapes[n])) for n in static if n in shapes and tuple(shapes[n]) != static[n]}
    assert not wrong, f"node: (static, runtime) {wrong}"
    outs = out if isinstance(out, tuple) else (out,)  # eval: the outputs that are not training-only
    returned = [shape for name, shape in g.output_shapes.items() if name not in net.training]
    assert [tuple(o.shape) for o in outs] == [(2, *shape) for shape in returned]


@needs_backend
@given(net=networks())
@example(net=ZOO_OPS)
def test_param_count_equals_module(net):
    g = load(net)
    module = compiled(g)
    assert sum(p.numel() for p in module.parameters()) == g.params
    assert sum(b.numel() for b in module.buffers()) == g.buffers


@needs_backend
@given(net=networks())
@example(net=ZOO_OPS)
def test_macs_equal_flop_counter(net):
    """The static MACs count every node, auxiliary heads included, and the compiled module computes
    those only in training mode: it runs in training mode here, with batch norm in eval mode (batch 1
    has no batch statistics) and dropout irrelevant to FLOPs."""
    g = load(net)
    module = compiled(g).train()
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    with torch.no_grad():
        assert flops(module, torch.randn(1, *g.input_shape)) == 2 * g.macs


def main_output_error(net: Net) -> float:
    """Compiled module against the reference with the same weights: max |a - b| / max |b| of the
    main output (eval, batch 2)."""
    g = load(net)
    module = compiled(g)
    reference, _ = run_reference(net)  # makes the reference's modules, in execution order
    with_state = [m for m in reference.made if any(True for _ in m.parameters()) or any(True for _ in m.buffers())]
    nodes = [n for n, d in g.graph.nodes(data=True) if d["op"] != "input" and (d["params"] or d["buffers"])]
    assert len(with_state) == len(nodes), (len(with_state), nodes)
    for m in module.modules():  # non-trivial running statistics, so that eval-mode BN does something
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    for n, ref in zip(nodes, with_state):
        if g.graph.nodes[n]["op"] == "scale":  # a bare parameter at the node's own path
            param = module.get_parameter(n)
            assert param.shape == ref.weight.shape, (n, param.shape, ref.weight.shape)
            with torch.no_grad():
                param.uniform_(0.5, 1.5)
                ref.weight.copy_(param)
            continue
        target = module.get_submodule(n)
        assert isinstance(target, type(ref)), (n, type(target), type(ref))  # LayerNorm2d is an nn.LayerNorm
        ref.load_state_dict(target.state_dict(), strict=True)
    x = torch.randn(2, *g.input_shape)
    with torch.no_grad():
        want = reference(x.clone())[0]
        got = module(x.clone())
    got = got[0] if isinstance(got, tuple) else got
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-3)).item()


@needs_backend
@given(net=networks())
@example(net=INPLACE_AFTER_ALIAS)
@example(net=ZOO_OPS)
def test_compiled_module_computes_what_the_reference_computes(net):
    """With the same weights, the compiled module and the reference interpreter give the same main
    output: concat order, residual and shortcut wiring, pad_channels' split, subsample's phase,
    `inplace=true` where the input is still needed elsewhere..."""
    assert main_output_error(net) <= 1e-4, "the compiled module computes something else than the reference"


# ---- valid networks against the reference interpreter (no backend needed) ---------------------------


@given(net=networks())
@example(net=CEIL_OVERHANG_HEAD)
@example(net=ZOO_OPS)
def test_valid_networks_match_the_reference(net):
    """Networks drawn valid by PyTorch's rules: graphdsl accepts them, and its output shapes,
    parameters and MACs are what plain torch code gives."""
    module, outs = run_reference(net)  # the generator draws only what torch runs
    g = load(net)
    assert [tuple(o.shape[1:]) for o in outs] == list(g.output_shapes.values())
    assert sum(p.numel() for p in module.parameters()) == g.params
    with torch.no_grad():
        assert flops(module, torch.randn(1, *net.input)) == 2 * g.macs


# ---- (d): the checker accepts exactly what torch runs ---------------------------------------------------


@given(net=edge_networks())
@example(net=CEIL_OVERHANG)
@example(net=CEIL_OVERHANG_AVG)
def test_checker_accepts_exactly_what_torch_runs(net):
    text = net.render()
    note(text)
    try:
        g = graphdsl.load(text=text)
        error = None
    except graphdsl.SpecError as e:
        g, error = None, e
    try:
        module, outs = run_reference(net)
        refused = None
    except IntentionalDifference as e:
        assert error is not None, f"graphdsl accepts a documented refusal: {e}"
        event("intentional difference")
        return
    except TORCH_REFUSES as e:
        refused = e
    event("graphdsl " + ("accepts" if error is None else "refuses") + ", torch " + ("refuses" if refused else "runs"))
    if error is not None:  # which rule: the message without its numbers and names
        first = error.diagnostics[0].message
        event("graphdsl: " + re.sub(r"`[^`]*`|\d+(x\d+)*", "_", first.split(" (")[0])[:70])
    if error is not None and refused is None:
        raise AssertionError(f"graphdsl refuses what torch runs:\n{error.render()}")
    if error is None and refused is not None:
        raise AssertionError(f"graphdsl accepts what torch refuses: {type(refused).__name__}: {refused}")
    if error is None:  # both accept: the figures agree too
        assert [tuple(o.shape[1:]) for o in outs] == list(g.output_shapes.values())
        assert sum(p.numel() for p in module.parameters()) == g.params


@pytest.mark.parametrize("net, shape", [(CEIL_OVERHANG, (3, 1, 1)), (CEIL_OVERHANG_AVG, (6, 1, 1))])
def test_ceil_overhang_regression(net, shape):
    """A ceil-mode window a little larger than the padded input still gives one output."""
    _, outs = run_reference(net)
    assert tuple(outs[0].shape[1:]) == shape
    assert graphdsl.load(text=net.render()).output_shapes["output"] == shape


@needs_backend
@pytest.mark.parametrize("alias", ["identity", "dropout", "flatten", "subsample(1)"])
def test_inplace_after_alias_regression(alias):
    """An in-place activation after a pass-through must not change what another branch reads."""
    net = graphdsl.load(text=f"network n {{ input 1x2x2  concat {{ [{alias}, relu(inplace=true)]  {alias} }} }}")
    x = torch.tensor([[[[-1.0, 2.0], [3.0, -4.0]]]])
    with torch.no_grad():
        y = compiled(net)(x.clone())
    second = y[:, y.shape[1] // 2:].flatten()
    assert second.tolist() == [-1.0, 2.0, 3.0, -4.0], "the second branch saw the rectified input"
