"""The spec library (specs/) against reference figures: torchvision's models, He et al.'s CIFAR
ResNets and the seed notes. Reference data: tests/reference/ (see its README).

State-dict parity is static: the expected state_dict (keys and shapes) is derived from the IR and
compared with torchvision's `model.state_dict()`, built on the meta device (no weights, no run).
Equal keys and shapes mean `model.load_state_dict(..., strict=True)` will accept what a backend
generated from the spec holds, and vice versa.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl.cli import main as cli
from graphdsl.passes import inputs_of, state_dict

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
REFERENCE = Path(__file__).resolve().parent / "reference"

ALL_SPECS = sorted(p for p in SPECS.rglob("*.cnn") if "lib" not in p.relative_to(SPECS).parts)
TORCHVISION = json.loads((REFERENCE / "torchvision_scope.json").read_text())
CIFAR = json.loads((REFERENCE / "cifar_resnet.json").read_text())
SEED = json.loads((REFERENCE / "seed.json").read_text())

# torchvision model name -> (spec file, network parameters for the spec, builder kwargs)
TV_MODELS = {
    "alexnet": ("alexnet.cnn", {}, {}),
    **{f"vgg{d}{bn}": (f"vgg{d}{bn}.cnn", {}, {}) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "googlenet": ("googlenet.cnn", {"aux_logits": False}, {"aux_logits": False, "init_weights": False}),
    "googlenet_aux": ("googlenet.cnn", {}, {"aux_logits": True, "init_weights": False}),
    **{f"resnet{d}": (f"resnet{d}.cnn", {}, {}) for d in (18, 34, 50, 101, 152)},
}
CIFAR_RESNETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
CIFAR_PLAIN = {"plain20": "resnet20", "plain56": "resnet56"}


def spec_id(path: Path) -> str:
    return str(path.relative_to(SPECS))


def load(name: str, **params) -> graphdsl.Network:
    return graphdsl.load(SPECS / name, **params)


# ---- 1. every spec loads with no flags -------------------------------------------------------


@pytest.mark.parametrize("path", ALL_SPECS, ids=spec_id)
def test_spec_loads(path):
    net = graphdsl.load(path)
    assert net.name == path.stem, "the default network of a file is the one named like the file"
    assert net.doc, f"network `{net.name}` has no doc string"
    for scope, info in net.graph.graph["scopes"].items():
        if info["kind"] == "block":
            assert info["doc"], f"block `{info['block']}` (used at {'.'.join(scope)}) has no doc string"


@pytest.mark.parametrize("path", ALL_SPECS, ids=spec_id)
def test_cli_check(path):
    result = CliRunner().invoke(cli, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"ok: network `{path.stem}`" in result.output


def test_spec_list_is_complete():
    names = {spec_id(p) for p in ALL_SPECS}
    expected = {TV_MODELS[m][0] for m in TV_MODELS} | {"alexnet_original.cnn"}
    expected |= {f"cifar/{n}.cnn" for n in [*CIFAR_RESNETS, *CIFAR_PLAIN]}
    expected |= {f"examples/{n}.cnn" for n in ("inception_naive", "inception_bottleneck", "stacked3x3")}
    assert expected <= names, sorted(expected - names)


# ---- 2. static figures against the references ---------------------------------------------


@pytest.mark.parametrize("model", [m for m in TORCHVISION if "macs" in TORCHVISION[m]])
def test_torchvision_figures(model):
    ref = TORCHVISION[model]
    spec, params, _ = TV_MODELS[model]
    net = load(spec, **params)
    assert net.params == ref["params"]
    assert net.macs == ref["macs"]
    (shape,) = net.output_shapes.values()
    assert [1, *shape] == ref["out"]


def test_googlenet_aux_default():
    net = load("googlenet.cnn")
    assert net.params == TORCHVISION["googlenet_aux"]["params"] == 13_004_888
    # torchvision returns GoogLeNetOutputs(logits, aux_logits2, aux_logits1) in training mode
    assert net.output_shapes == {"fc": (1000,), "aux2": (1000,), "aux1": (1000,)}
    assert net.outputs == {"fc": "fc", "aux2": "aux2.fc2", "aux1": "aux1.fc2"}
    # aux1 after inception4a (512 channels), aux2 after inception4d (528)
    g = net.graph
    assert inputs_of(g, "aux1.0") == ["inception4a.4"] and g.nodes["inception4a.4"]["shape"] == (512, 14, 14)
    assert inputs_of(g, "aux2.0") == ["inception4d.4"] and g.nodes["inception4d.4"]["shape"] == (528, 14, 14)
    without = load("googlenet.cnn", aux_logits=False)
    assert not [n for n in without.graph if n.startswith("aux")]


def test_googlenet_quirks():
    """torchvision's departures from the paper, reproduced on purpose."""
    net = load("googlenet.cnn")
    layers = {layer.name: layer for layer in net.layers()}
    assert layers["inception3a.branch3.1.conv"].attrs["kernel"] == (3, 3)  # the "5x5" branch
    pools = [la for la in layers.values() if la.op == "maxpool"]
    assert pools and all(la.attrs["ceil"] for la in pools)
    bns = [la for la in layers.values() if la.op == "bn"]
    assert bns and all(la.attrs["eps"] == 0.001 for la in bns)
    convs = [la for la in layers.values() if la.op == "conv"]
    assert all(not la.attrs["bias"] for la in convs)
    assert layers["aux1.0"].attrs["adaptive"] == (4, 4) and layers["aux1.dropout"].attrs["p"] == 0.7
    assert layers["dropout"].attrs["p"] == 0.2


@pytest.mark.parametrize("model", CIFAR_RESNETS)
def test_cifar_resnet_figures(model):
    ref = CIFAR[model]
    net = load(f"cifar/{model}.cnn")
    assert net.params == ref["params"]
    (shape,) = net.output_shapes.values()
    assert [1, *shape] == ref["out"]
    n = ref["blocks_per_stage"]
    convs = [la for la in net.layers() if la.op in ("conv", "linear")]
    assert len(convs) == 6 * n + 2
    assert net.macs > 0 and net.buffers > 0


@pytest.mark.parametrize("model", CIFAR_RESNETS)
def test_cifar_resnet_option_a(model):
    """Parameter-free shortcuts exactly where the shape changes: the first block of stages 2 and 3."""
    net = load(f"cifar/{model}.cnn")
    g = net.graph
    shortcuts = sorted(".".join(d["scope"][:2]) for n, d in g.nodes(data=True) if d["op"] == "pad_channels")
    assert shortcuts == ["layer2.0", "layer3.0"]
    adds = [n for n, d in g.nodes(data=True) if d["op"] == "add"]
    assert len(adds) == 3 * CIFAR[model]["blocks_per_stage"]


@pytest.mark.parametrize("plain", sorted(CIFAR_PLAIN))
def test_cifar_plain_figures(plain):
    resnet = CIFAR_PLAIN[plain]
    net = load(f"cifar/{plain}.cnn")
    assert net.params == CIFAR[resnet]["params"]
    (shape,) = net.output_shapes.values()
    assert [1, *shape] == CIFAR[resnet]["out"]
    assert not [n for n, d in net.graph.nodes(data=True) if d["op"] in ("add", "pad_channels", "subsample")]
    assert net.macs == load(f"cifar/{resnet}.cnn").macs


def test_cifar_resnet1202():
    """The lib scales to the paper's deepest net: resnet110's spec with n = 200 (an override of
    the alias's own argument)."""
    net = graphdsl.load(SPECS / "cifar" / "resnet110.cnn", n=200)
    assert net.params == CIFAR["resnet1202"]["params"]
    assert net.output_shapes == {"output": (10,)}


# ---- 3. the seed notes' figures ---------------------------------------------------------------


def test_seed_alexnet_conv1_pool1():
    net = load("alexnet_original.cnn")
    assert list(net.input_shape) == SEED["alexnet_conv1"]["input"]
    conv1, pool1 = net.layer("conv1"), net.layer("pool1")
    ref = SEED["alexnet_conv1"]
    assert list(conv1.shape) == ref["output"] == [96, 55, 55]
    assert conv1.attrs["out"] == ref["filters"]
    assert conv1.attrs["kernel"] == (ref["kernel"],) * 2 and conv1.attrs["stride"] == (ref["stride"],) * 2
    assert conv1.params == ref["weights"] + ref["filters"] == 34_944
    assert list(pool1.shape) == SEED["alexnet_pool1"]["output"] == [96, 27, 27]
    assert pool1.params == SEED["alexnet_pool1"]["params"] == 0
    assert pool1.attrs["kernel"] == (3, 3) and pool1.attrs["stride"] == (2, 2)


def test_seed_alexnet_two_gpu_split():
    net = load("alexnet_original.cnn")
    groups = {la.name: la.attrs["groups"] for la in net.layers() if la.op == "conv"}
    assert groups == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}
    assert net.layer("pool5").shape == (256, 6, 6)
    assert [la.name for la in net.layers() if la.op == "lrn"] == ["norm1", "norm2"]
    assert net.params == 60_965_224


@pytest.mark.parametrize("name", ["inception_naive", "inception_bottleneck"])
def test_seed_inception(name):
    ref = SEED[name]
    net = load(f"examples/{name}.cnn")
    assert list(net.input_shape) == ref["input"]
    (shape,) = net.output_shapes.values()
    assert list(shape) == ref["output"]
    assert net.macs == ref["conv_macs"]


def test_seed_stacked3x3():
    net = load("examples/stacked3x3.cnn")
    assert [net.graph.nodes[f"conv{i}"]["rf"] for i in (1, 2, 3)] == [(3, 3), (5, 5), (7, 7)]
    c = 64
    assert net.params == 27 * c * c
    single = graphdsl.load(SPECS / "examples" / "stacked3x3.cnn", network="single7x7")
    assert single.graph.nodes["conv1"]["rf"] == (7, 7)
    assert single.params == 49 * c * c
    assert load("examples/stacked3x3.cnn", C=32).params == 27 * 32 * 32


# ---- 4. static state_dict parity with torchvision ------------------------------------------


def expected_state_dict(net: graphdsl.Network) -> dict[str, tuple[int, ...]]:
    """The state_dict keys and shapes a PyTorch module tree built from the IR holds (passes.state_dict)."""
    sd = state_dict(net.graph)
    # the derivation agrees with the IR's own counts
    params = sum(math.prod(s) for k, s in sd.items() if k.rsplit(".", 1)[1] in ("weight", "bias"))
    assert params == net.params
    assert sum(math.prod(s) for k, s in sd.items() if k.rsplit(".", 1)[1].startswith(("running", "num"))) == net.buffers
    return sd


@pytest.mark.parametrize("model", sorted(TV_MODELS))
def test_state_dict_parity(model):
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("torchvision.models")
    spec, params, kwargs = TV_MODELS[model]
    builder = "googlenet" if model.startswith("googlenet") else model
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        reference = models.get_model(builder, weights=None, **kwargs)
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    ours = expected_state_dict(load(spec, **params))
    assert sorted(set(ours) - set(theirs)) == [], "keys the spec has and torchvision does not"
    assert sorted(set(theirs) - set(ours)) == [], "keys torchvision has and the spec does not"
    assert {k: s for k, s in ours.items() if theirs[k] != s} == {}, "shapes differ"
    assert load(spec, **params).params == sum(p.numel() for p in reference.parameters())
