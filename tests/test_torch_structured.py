"""The spec's structure in the generated PyTorch code (graphdsl.backends.torch_layout): one class per
block, the network's parameters as constructor keywords. For every shipped spec the generated module,
built with its defaults, has the IR's state_dict (the keys torchvision's weights load into; full
output parity: test_torch_parity.py, test_zoo_parity.py); built with other values it is the module
`graphdsl compile -D` builds. torch.fx, torch.export and torch.compile go through the optional
submodules (`if self.downsample is not None:`) and the auxiliary heads.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import graphdsl  # noqa: E402
from graphdsl.backends.torch import Generator, build, camel, generate, load_generated, node_shapes  # noqa: E402
from graphdsl.backends.torch_layout import Unsupported  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("specs/*.cnn"), *ROOT.glob("specs/cifar/*.cnn"),
                                                  *ROOT.glob("specs/examples/*.cnn")])
# every shipped spec is written one class per block (a spec using what the layout does not translate keeps one
# class per distinct structure: test_a_spec_the_layout_does_not_translate_says_why)
STRUCTURED = SPECS


def structured(net):
    return Generator(net).generate_structured()


def shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def small_batch(net):
    """Two inputs of the network's channels, at most 64x64 (every network here pools adaptively), except
    Inception v3 at its 299x299 (the auxiliary head's 5x5 pool and 5x5 valid conv need its 17x17 grid)."""
    c, *hw = net.input_shape
    side = 299 if net.graph.graph["name"].startswith("inception_v3") else 64
    return torch.randn(2, c, *(min(d, side) for d in hw))


def network_class(gen, **params):
    return getattr(load_generated(gen), gen.class_name)(**params)


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(path, **overrides):
        key = (path, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = graphdsl.load(ROOT / path, **overrides)
        return cache[key]
    return get


@pytest.mark.parametrize("path", SPECS)
def test_every_spec_builds_the_irs_state_dict(path, loaded):
    """Structured or not, the generated module built with its defaults has the IR's parameters and buffers
    (the per-structure layout of before is the reference: its keys are torchvision's)."""
    net = loaded(path)
    gen = generate(net)
    with torch.device("meta"):
        module = build(gen)
        reference = build(Generator(net).generate())
    assert shapes(module) == shapes(reference)
    if path in STRUCTURED:
        assert gen.source == structured(net).source


@pytest.mark.parametrize("path", STRUCTURED)
def test_structured_specs_have_one_class_per_block(path, loaded):
    net = loaded(path)
    source = structured(net).source
    classes = [n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef)]
    blocks = {info["block"] for info in net.graph.graph["scopes"].values() if info.get("kind") == "block"}
    generator = Generator(net)
    gen = generator.generate_structured()
    assert {camel(b) for b in blocks} <= set(classes)
    # every class is a block of the spec's files, named after it, the network, or an op's helper module
    # (StochasticDepth): no numbered copies
    helpers = set(generator.helpers)
    assert set(classes) - {gen.class_name} - helpers <= {camel(b) for b in net.graph.graph["blocks"]}, classes
    assert len(classes) == len(set(classes))


def test_a_spec_the_layout_does_not_translate_says_why():
    """A condition on `in.height` is not translated: Unsupported names it, and `generate` falls back to one
    class per distinct structure."""
    net = graphdsl.load(text="network n(c = 4) { input 3x8x8  conv(c, 1)  if in.height > 4 { relu } }")
    with pytest.raises(Unsupported, match="in.height"):
        structured(net)
    assert "class N(nn.Module)" in generate(net).source


@pytest.mark.parametrize("path, params", [
    ("specs/resnet18.cnn", {"num_classes": 10}),
    ("specs/resnet18.cnn", {"bottleneck": True, "n1": 1, "n4": 3}),
    ("specs/resnet50.cnn", {"groups": 32, "width_per_group": 4}),
    ("specs/resnet50.cnn", {"bottleneck": False}),
    ("specs/googlenet.cnn", {"aux_logits": False, "num_classes": 7}),
    ("specs/cifar/resnet20.cnn", {"n": 1, "shortcuts": False}),
    ("specs/cifar/resnet20.cnn", {"n": 2, "num_classes": 100}),
    ("specs/alexnet.cnn", {"num_classes": 5}),
    ("specs/mobilenet_v2.cnn", {"width_mult": 0.75, "num_classes": 10}),
    ("specs/mobilenet_v2.cnn", {"settings": ((1, 16, 1, 1), (6, 24, 2, 2), (4, 40, 3, 2)), "round_nearest": 4}),
    ("specs/efficientnet_b0.cnn", {"width_mult": 0.5, "depth_mult": 1.4, "num_classes": 10}),
    ("specs/mobilenet_v3_small.cnn", {"num_classes": 10, "width_mult": 0.75}),
    ("specs/regnet_y_400mf.cnn", {"num_classes": 10, "stem_width": 24}),
    ("specs/regnet_x_400mf.cnn", {"se_ratio": 0.25, "num_classes": 10}),  # SE translated at a stand-in
    ("specs/mnasnet0_5.cnn", {"alpha": 0.75, "num_classes": 10}),
    ("specs/squeezenet1_0.cnn", {"num_classes": 10}),
    ("specs/squeezenet1_0.cnn", {"version": "1_1", "dropout": 0.2}),  # `from` and concat of named tensors
    ("specs/densenet121.cnn", {"num_classes": 10, "growth_rate": 12, "block_config": (2, 3, 2)}),
    ("specs/densenet169.cnn", {"num_init_features": 16, "bn_size": 2, "drop_rate": 0.2}),  # a loop of layers
    ("specs/shufflenet_v2_x1_0.cnn", {"num_classes": 10, "stages_out_channels": (24, 48, 96, 192, 1024)}),
    ("specs/shufflenet_v2_x0_5.cnn", {"stages_repeats": (1, 2, 1)}),  # chunk, `from`, stages in a loop
    ("specs/efficientnet_v2_s.cnn", {"num_classes": 10, "stem": 16}),  # Fused-MBConv's add, in place or not
    ("specs/efficientnet_v2_m.cnn", {"setting": (("fused", 1, 3, 1, 16, 2), ("fused", 4, 3, 2, 32, 1),
                                                 ("mbconv", 4, 3, 2, 64, 2)), "dropout": 0.1}),
    ("specs/convnext_tiny.cnn", {"num_classes": 10, "dims": (32, 64, 96, 128), "depths": (1, 1, 2, 1)}),
    ("specs/convnext_small.cnn", {"dims": (16, 32, 48, 64), "layer_scale": 0.5,  # channels-last, a bare parameter
                                  "stochastic_depth_prob": 0.3}),
    # at 299x299 (the auxiliary head needs it): slow
    pytest.param("specs/inception_v3.cnn", {"num_classes": 10, "aux_logits": False}, marks=pytest.mark.slow),
    pytest.param("specs/inception_v3.cnn", {"transform_input": True, "dropout": 0.2},  # tuples as block arguments
                 marks=pytest.mark.slow),
])
def test_other_parameters_build_the_D_compile(path, params, loaded):
    """`Resnet18(num_classes=10)` is the module `graphdsl compile -D num_classes=10` builds."""
    net = loaded(path)
    mine = network_class(structured(net), **params)
    theirs = loaded(path, **params).to_torch()
    assert shapes(mine) == shapes(theirs)
    mine.load_state_dict(theirs.state_dict(), strict=True)
    x = small_batch(net)
    for training in (False, True):
        torch.manual_seed(0)
        mine.train(training)
        theirs.train(training)
        with torch.no_grad():
            torch.manual_seed(1)
            a = mine(x)
            torch.manual_seed(1)
            b = theirs(x)
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        assert len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))


def test_every_numeric_parameter_of_the_structured_specs_is_honoured(loaded):
    """num_classes=10 for each structured spec that has it: the same keys and shapes as -D (meta tensors)."""
    for path in STRUCTURED:
        net = loaded(path)
        if "num_classes" not in (net.graph.graph.get("params") or {}):
            continue
        with torch.device("meta"):
            mine = network_class(structured(net), num_classes=10)
            theirs = build(generate(graphdsl.load(ROOT / path, num_classes=10)))
        assert shapes(mine) == shapes(theirs), path


def test_an_assertion_of_the_spec_is_a_python_error(loaded):
    gen = structured(loaded("specs/resnet18.cnn"))
    with pytest.raises(ValueError, match="BasicBlock only supports groups=1"):
        network_class(gen, groups=2)


def test_the_per_structure_layout_refuses_other_parameters():
    net = graphdsl.load(text="network n(c = 4) { input 3x8x8  a: conv(c, 1)  if in.height > 4 { relu } }")
    gen = generate(net)
    assert "class N(nn.Module)" in gen.source
    cls = getattr(load_generated(gen), gen.class_name)
    assert isinstance(cls(c=4), torch.nn.Module)
    with pytest.raises(ValueError, match=r"generated for \(c,\) = \(4,\); .* -D name=value"):
        cls(c=5)


@pytest.mark.parametrize("path", ["specs/cifar/resnet20.cnn", "specs/resnet18.cnn",
                                  pytest.param("specs/googlenet.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/mobilenet_v2.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/efficientnet_b0.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/regnet_y_400mf.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/mnasnet0_5.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/squeezenet1_1.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/densenet121.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/shufflenet_v2_x0_5.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/inception_v3.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/efficientnet_v2_s.cnn", marks=pytest.mark.slow),
                                  pytest.param("specs/convnext_tiny.cnn", marks=pytest.mark.slow)])
def test_fx_export_and_node_shapes_through_the_optional_submodules(path, loaded):
    net = loaded(path)
    m = net.to_torch()
    assert "nn.Module" in net.source() and "Bottleneck2" not in net.source()
    x = small_batch(net)
    for training in (True, False):
        m.train(training)
        gm = torch.fx.symbolic_trace(m)
        torch.manual_seed(0)
        a = gm(x)
        torch.manual_seed(0)
        b = m(x)
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    m.eval()
    ep = torch.export.export(m, (x,))
    assert torch.allclose(ep.module()(x), m(x))
    shapes_ = node_shapes(net, m, torch.randn(1, *net.input_shape))  # the static shapes are at full size
    assert shapes_ == {n: d["shape"] for n, d in net.graph.nodes(data=True)}


def test_torch_compile_of_an_optional_shortcut(loaded):
    m = loaded("specs/cifar/resnet20.cnn").to_torch().eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(torch.compile(m, backend="aot_eager")(x), m(x))


def test_googlenet_without_aux_logits_builds_no_heads(loaded):
    m = network_class(structured(loaded("specs/googlenet.cnn")), aux_logits=False).train()
    assert m.aux1 is None and m.aux2 is None
    assert isinstance(m(torch.randn(2, 3, 64, 64)), torch.Tensor)


def test_verify_accepts_the_make_divisible_helper_only_as_its_text(loaded):
    from graphdsl.backends.torch_values import MAKE_DIVISIBLE

    source = structured(loaded("specs/mobilenet_v2.cnn")).source
    assert MAKE_DIVISIBLE.strip() in source
    Generator.verify(source, [MAKE_DIVISIBLE])
    with pytest.raises(AssertionError, match="unexpected statement"):
        Generator.verify(source.replace("0.9 * v", "0.8 * v"), [MAKE_DIVISIBLE])


def test_a_loop_among_the_members_of_a_class():
    """`for` beside other submodules: each pass adds one under its computed label, `forward` walks them by
    name; the channels after it are the running count where the passes differ (DenseNet's closed form
    `in_channels + n * growth_rate` is in test_other_parameters_build_the_D_compile)."""
    text = """network n(widths = [4, 8]) {
        input 3x16x16
        stem: conv(4, 1)
        for i, w in enumerate(widths) { "stage{i + 1}": [conv(w, 3, pad=1), relu] }
        head: conv(2, 1)
    }"""
    gen = structured(graphdsl.load(text=text))
    assert "self.add_module(name, nn.Sequential(" in gen.source and "for name in self.stage_names:" in gen.source
    mine = network_class(gen, widths=(3, 5, 6))
    theirs = graphdsl.load(text=text, widths=(3, 5, 6)).to_torch()
    assert shapes(mine) == shapes(theirs) and "stage3.0.weight" in shapes(mine)
    mine.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(mine.eval()(x), theirs.eval()(x))
    gm = torch.fx.symbolic_trace(mine)
    assert torch.equal(gm(x), mine(x))


def test_an_argument_zero_in_the_first_instance_is_still_written():
    """`pad` is 0 in the first instance, where `nn.Conv2d` leaves `padding` out: the samples of a zero differ
    (graphdsl.backends.torch_values.sample), so the class writes `padding=pad` for the second instance."""
    net = graphdsl.load(text="""block b(out, kernel, stride = 1, pad = 0) {
            c: conv(out, kernel, stride=stride, pad=pad, bias=false)
        }
        network n { input 3x8x8  first: b(4, 3, stride=2)  second: b(4, 3, pad=1) }""")
    source = structured(net).source
    assert "padding=pad" in source
    out = net.to_torch()(torch.randn(1, 3, 8, 8))
    assert tuple(out.shape[1:]) == net.graph.nodes["second.c"]["shape"]
