"""The modern CNN zoo: every torchvision 0.29.1 classification CNN as a spec, checked statically
against tests/reference/torchvision_zoo.json (made by tools/zoo_reference.py: models built on the
meta device, FlopCounterMode MACs).

For every model: parameters, buffers, conv + linear MACs and the output shape equal the reference,
at the reference's input size; and the state_dict that a module built from the IR holds (keys and
tensor shapes, `graphdsl.passes.state_dict`, without torch) equals torchvision's, so `load_state_dict(...,
strict=True)` accepts it. The spec of model `m` is `specs/m.cnn`, whose default network is `m` with
torchvision's default arguments. Runtime parity is tests/test_zoo_parity.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import networkx as nx
import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl.cli import main as cli
from graphdsl.passes import state_dict

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ZOO = {k: v for k, v in json.loads((Path(__file__).parent / "reference" / "torchvision_zoo.json").read_text()).items()
       if not k.startswith("_")}
MODELS = sorted(ZOO)

# families: the spec of each must stay under a third of torchvision's model code (see the closing note)
FAMILIES = ("resnext", "wide_resnet", "squeezenet", "densenet", "inception_v3", "shufflenet_v2", "mobilenet_v2",
            "mobilenet_v3", "mnasnet", "efficientnet", "regnet", "convnext")


def spec_path(model: str) -> Path:
    return SPECS / f"{model}.cnn"


@functools.cache
def load(model: str) -> graphdsl.Network:
    """The model's network, elaborated once for all the tests that read it (none changes it)."""
    return graphdsl.load(spec_path(model))


def test_every_model_has_a_spec():
    missing = [m for m in MODELS if not spec_path(m).exists()]
    assert missing == [], f"models of torchvision_zoo.json without a spec: {missing}"


def _require(model: str) -> None:
    if not spec_path(model).exists():
        pytest.skip(f"specs/{model}.cnn is not written yet")  # test_every_model_has_a_spec fails meanwhile


@pytest.mark.parametrize("model", MODELS)
def test_static_figures(model):
    _require(model)
    ref = ZOO[model]
    net = load(model)
    assert net.name == model
    assert net.doc, f"network `{model}` has no doc string"
    assert list(net.input_shape) == ref["input"]
    assert net.params == ref["params"]
    assert net.buffers == ref["buffers"]
    # static MACs count every head; auxiliary heads run in training only (inception_v3: macs_train)
    assert net.macs == ref.get("macs_train", ref["macs"])
    g = net.graph
    eval_nodes = set().union(*(nx.ancestors(g, node) | {node} for name, node in g.graph["outputs"]
                               if name not in g.graph["training_outputs"]))
    assert sum(g.nodes[n]["macs"] for n in eval_nodes) == ref["macs"], "MACs of what eval mode computes"
    main = [name for name, _ in net.graph.graph["outputs"] if name not in net.graph.graph["training_outputs"]]
    assert [[1, *net.output_shapes[name]] for name in main] == [ref["out"]]
    if "aux_out" in ref:  # inception_v3: the auxiliary head, returned in training only
        aux = net.graph.graph["training_outputs"]
        assert [[1, *net.output_shapes[name]] for name in aux] == [ref["aux_out"]]


@pytest.mark.parametrize("model", MODELS)
def test_state_dict(model):
    _require(model)
    theirs = {k: tuple(v) for k, v in ZOO[model]["state_dict"].items()}
    net = load(model)
    ours = state_dict(net.graph)
    assert sorted(set(ours) - set(theirs)) == [], "keys the spec has and torchvision does not"
    assert sorted(set(theirs) - set(ours)) == [], "keys torchvision has and the spec does not"
    assert {k: s for k, s in ours.items() if theirs[k] != s} == {}, "shapes differ"


@pytest.mark.parametrize("model", MODELS)
def test_block_docs(model):
    _require(model)
    for scope, info in load(model).graph.graph["scopes"].items():
        if info["kind"] == "block":
            assert info["doc"], f"block `{info['block']}` (used at {'.'.join(scope)}) has no doc string"


@pytest.mark.parametrize("model", ["convnext_tiny", "mobilenet_v3_small", "inception_v3"])
def test_state_dict_is_the_built_modules(model):
    """passes.state_dict is what the generated module really holds (bare parameters, buffers, aux heads)."""
    torch = pytest.importorskip("torch")
    net = load(model)
    with torch.device("meta"):
        module = net.to_torch()
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == state_dict(net.graph)


@pytest.mark.parametrize("model", MODELS)
def test_every_command_on_every_model(model, tmp_path):
    """check, summary, render (DOT) and compile (source) through the real CLI, for every zoo spec."""
    _require(model)
    path = str(spec_path(model))
    for args in (["check", path], ["summary", path, "--format", "csv"], ["render", path, "-o", str(tmp_path / "n.dot")],
                 ["compile", path, "-o", str(tmp_path / "n.py")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, (args[0], result.output)
    compile((tmp_path / "n.py").read_text(), "n.py", "exec")


def test_convnext_layer_scale_reaches_every_block():
    """`-D layer_scale=0.5` initialises every block's layer scale, as torchvision's `layer_scale=0.5`."""
    net = graphdsl.load(spec_path("convnext_tiny"), layer_scale=0.5)
    source = net.source()
    assert "nn.Parameter(torch.ones(c, 1, 1) * layer_scale)" in source and "layer_scale=0.5" in source
    scales = [v for k, v in net.to_torch().state_dict().items() if k.endswith("layer_scale")]
    assert len(scales) == 18 and all(bool((s == 0.5).all()) for s in scales)
