"""Lifting of LayerGraphs the torch.fx front end does not make: several network outputs (Darknet's YOLO
heads) written as side branches and `output a, b`. Built by hand, so no torch is needed for the spec."""

from __future__ import annotations

import pytest

import graphdsl
from graphdsl.importers.ir import INPUT, ImportFailure, Layer, LayerGraph
from graphdsl.importers.lift import lift, running_concats
from graphdsl.printer import print_module


def _conv(out, kernel, stride=1, pad=0):
    return {"out": out, "kernel": kernel, "stride": stride, "pad": pad, "dilation": 1, "groups": 1, "bias": True}


def two_heads(fork: str = "c2", long: bool = False) -> LayerGraph:
    """A YOLO-like net: head h1 off `fork` (after a conv `hx` if `long`); the flow goes on from c2 to a
    coarser map, is upsampled, concatenated with c2 and ends in head h2."""
    h1_shape = (18, 16, 16) if fork == "c2" else (18, 32, 32)
    if long:
        hx = Layer("hx", "conv", _conv(h1_shape[0], 1), (fork,), "hx", shape=h1_shape, holds_weights=True)
        fork = "hx"
    layers = [
        Layer("c1", "conv", _conv(8, 3, pad=1), (INPUT,), "c1", shape=(8, 32, 32), holds_weights=True),
        Layer("r1", "relu", {"inplace": False}, ("c1",), None, shape=(8, 32, 32)),
        Layer("c2", "conv", _conv(16, 3, 2, 1), ("r1",), "c2", shape=(16, 16, 16), holds_weights=True),
        Layer("h1", "conv", _conv(18, 1), (fork,), "h1", shape=h1_shape, holds_weights=True),
        Layer("c3", "conv", _conv(32, 3, 2, 1), ("c2",), "c3", shape=(32, 8, 8), holds_weights=True),
        Layer("up", "upsample", {"scale": 2}, ("c3",), None, shape=(32, 16, 16)),
        Layer("cat", "concat", {}, ("up", "c2"), None, shape=(48, 16, 16)),
        Layer("h2", "conv", _conv(18, 1), ("cat",), "h2", shape=(18, 16, 16), holds_weights=True),
    ]
    if long:
        layers.insert(3, hx)
    return LayerGraph("two_heads", (3, 32, 32), layers, "h2", outputs=("h1", "h2"))


def _params(graph: LayerGraph) -> int:
    shapes = {layer.name: layer.shape for layer in graph.layers} | {INPUT: graph.input_shape}
    total = 0
    for layer in graph.layers:
        if layer.op == "conv":
            cin = shapes[layer.inputs[0]][0]
            total += layer.args["out"] * cin * layer.args["kernel"] ** 2 + layer.args["out"]
    return total


@pytest.mark.parametrize("fork, long, side", [
    ("c2", False, "c2: conv(16, 3, stride=2, pad=1)\n    h1 = conv(18, 1)\n    c3:"),  # one module: `name = item`
    ("c2", True, "c2: conv(16, 3, stride=2, pad=1)\n    hx: conv(18, 1)\n    h1: conv(18, 1)\n    from c2\n"),
    ("r1", False, "relu1 = relu\n    from relu1\n    h1 = conv(18, 1)\n    c2:"),  # an unnamed fork gets a name
    ("r1", True, "relu1 = relu\n    from relu1\n    hx: conv(18, 1)\n    h1: conv(18, 1)\n    from relu1\n"),
    (INPUT, False, "input 3x32x32\n    h1 = conv(18, 1)\n    c1:"),
    (INPUT, True, "input 3x32x32\n    hx: conv(18, 1)\n    h1: conv(18, 1)\n    from in\n"),
])
def test_several_outputs_are_side_branches_and_an_output_statement(fork, long, side):
    graph = two_heads(fork, long)
    text = print_module(lift(graph))
    assert side in text, text
    assert text.rstrip().endswith("output h1, h2\n}"), text
    net = graphdsl.load(text=text)
    assert net.output_shapes == {"h1": graph.layer("h1").shape, "h2": (18, 16, 16)}
    assert net.params == _params(graph)


def test_outputs_in_the_graphs_order_and_an_intermediate_output():
    # c2 is an output and feeds the rest: it is named, no side branch; the order is the graph's
    graph = two_heads()
    graph.outputs = ("h2", "c2", "h1")
    text = print_module(lift(graph))
    assert "output h2, c2, h1" in text, text
    net = graphdsl.load(text=text)
    assert list(net.output_shapes) == ["h2", "c2", "h1"]
    assert net.output_shapes["c2"] == (16, 16, 16)


def test_compiled_network_returns_every_output():
    torch = pytest.importorskip("torch")
    net = graphdsl.load(text=print_module(lift(two_heads())))
    module = net.to_torch().eval()
    assert set(module.state_dict()) == {f"{n}.{w}" for n in ("c1", "c2", "h1", "c3", "h2") for w in ("weight", "bias")}
    with torch.no_grad():
        h1, h2 = module(torch.randn(2, 3, 32, 32))
    assert h1.shape == (2, 18, 16, 16) and h2.shape == (2, 18, 16, 16)


def test_an_unnamed_output_inside_a_merge_branch_gets_a_name():
    graph = two_heads()
    graph.outputs = ("h1", "h2", "up")
    text = print_module(lift(graph))
    assert "upsample1 = upsample(scale=2)\n    from upsample1\n    concat(upsample1, c2)" in text, text
    assert "output h1, h2, upsample1" in text, text
    assert graphdsl.load(text=text).output_shapes["upsample1"] == (32, 16, 16)


def test_running_concats_keeps_outputs_and_weights():
    graph = two_heads()
    graph.layers.insert(6, Layer("one", "concat", {}, ("up",), None, shape=(32, 16, 16)))
    graph.layers[7] = Layer("cat", "concat", {}, ("one", "c2"), None, shape=(48, 16, 16))
    graph = LayerGraph(graph.name, graph.input_shape, graph.layers, "h2", outputs=("h1", "h2"),
                       weights={"h1.bias": [0.0] * 18})
    rebuilt = running_concats(graph)
    assert rebuilt is not graph and "one" not in rebuilt.by_name
    assert rebuilt.outputs == ("h1", "h2") and rebuilt.weights is graph.weights
    assert rebuilt.layer("cat").inputs == ("up", "c2")


def test_a_second_output_inside_a_module_that_gives_another_tensor_is_refused():
    graph = two_heads()
    from graphdsl.importers.ir import Scope

    scope = (Scope("body", "Body"),)
    for layer in graph.layers:
        if layer.name in ("c3", "up", "cat", "h2", "h1"):
            layer.scopes = scope
    with pytest.raises(ImportFailure, match="gives 2 tensors out"):
        lift(graph)


def crossed(training: bool = False) -> LayerGraph:
    """A residual whose output a later concat reads (YOLO's route to a shortcut), and a tensor that two
    concats read (yolov4-tiny): no chain of residuals and branches, so each tensor a later layer reads
    out of order gets a name. With `training`, a second head returned in training only."""
    layers = [
        Layer("c1", "conv", _conv(8, 3, pad=1), (INPUT,), "c1", shape=(8, 16, 16), holds_weights=True),
        Layer("r1", "relu", {"inplace": False}, ("c1",), None, shape=(8, 16, 16)),
        Layer("c2", "conv", _conv(8, 3, pad=1), ("r1",), "c2", shape=(8, 16, 16), holds_weights=True),
        Layer("add", "add", {}, ("c2", "r1"), None, shape=(8, 16, 16)),
        Layer("c3", "conv", _conv(8, 3, pad=1), ("add",), "c3", shape=(8, 16, 16), holds_weights=True),
        Layer("cat1", "concat", {}, ("c3", "add"), "route1", shape=(16, 16, 16)),
        Layer("c4", "conv", _conv(8, 1), ("cat1",), "c4", shape=(8, 16, 16), holds_weights=True),
        Layer("cat2", "concat", {}, ("c4", "c3"), None, shape=(16, 16, 16)),
        Layer("h", "conv", _conv(4, 1), ("cat2",), "h", shape=(4, 16, 16), holds_weights=True),
    ]
    graph = LayerGraph("crossed", (3, 16, 16), layers, "h")
    if training:
        layers.append(Layer("aux", "conv", _conv(4, 1), ("cat1",), "aux", shape=(4, 16, 16), holds_weights=True))
        graph = LayerGraph("crossed", (3, 16, 16), layers, "h", outputs=("h", "aux"), training_outputs=("aux",))
    return graph


@pytest.mark.parametrize("training", [False, True])
def test_tensors_read_out_of_order_are_named(training):
    graph = crossed(training)
    text = print_module(lift(graph))
    assert "add1 = add(c2, relu1)\n    from add1\n    c3: conv(8, 3, pad=1)\n" in text, text
    # the concat that the training head reads too is bound by its own name (`route1`)
    cat1 = "route1 = concat(c3, add1)\n    from route1\n" if training else "concat(c3, add1)\n"
    assert cat1 + "    c4: conv(8, 1)\n    concat(c4, c3)" in text, text
    net = graphdsl.load(text=text)
    assert net.params == _params(graph)
    if training:
        assert text.rstrip().endswith("output h, training: aux\n}"), text
        assert net.output_shapes == {"h": (4, 16, 16), "aux": (4, 16, 16)}
    else:
        assert net.output_shapes == {"output": (4, 16, 16)}


# ---- long and deep graphs: no recursion per layer, memory linear in the layers ----------------------------


def relu_chain(n: int, convs: bool = False) -> LayerGraph:
    """n layers in a row: unnamed ReLUs (with `convs`, each after a conv `cI`, half the layers each)."""
    layers, prev = [], INPUT
    for i in range(n // 2 if convs else n):
        if convs:
            layers.append(Layer(f"c{i}", "conv", _conv(3, 1), (prev,), f"conv_{i}", shape=(3, 8, 8),
                                holds_weights=True))
            prev = f"c{i}"
        layers.append(Layer(f"r{i}", "relu", {"inplace": False}, (prev,), None, shape=(3, 8, 8)))
        prev = f"r{i}"
    return LayerGraph("chain", (3, 8, 8), layers, prev)


def test_immediate_dominators_of_residuals_and_branches():
    from graphdsl.importers.structure import immediate_dominators

    # 0 -> 1 -> 2 = add(1, 0); 3, 4 from 2; 5 = concat(3, 4, 2); 6 = add(5, in)
    preds = [["in"], [0], [1, 0], [2], [2], [3, 4, 2], [5, "in"]]
    assert immediate_dominators(preds, "the network") == {"in": None, 0: "in", 1: 0, 2: 0, 3: 2, 4: 2, 5: 2, 6: "in"}
    with pytest.raises(ImportFailure, match="does not start at its input"):
        immediate_dominators([["in"], []], "the network")  # an item computed from nothing


def test_a_chain_of_5000_layers_lifts_prints_and_checks():
    # structure.chain() recursed once per layer (RecursionError from ~1000 layers on), and kept every
    # item's set of dominators (quadratic memory); the printer and the elaborator take 5000 statements
    graph = relu_chain(5000, convs=True)
    text = print_module(lift(graph))
    assert text.count("\n    relu\n") == 2500 and "conv_2499: conv(3, 1)" in text
    net = graphdsl.load(text=text)
    assert net.params == 2500 * (3 * 3 + 3) and net.output_shapes == {"output": (3, 8, 8)}


def test_lifting_takes_memory_linear_in_the_layers():
    import tracemalloc

    graph = relu_chain(3000)
    tracemalloc.start()
    try:
        lift(graph)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6, peak  # ~2 MB; a set of dominators per layer took ~250 MB here


def test_a_long_chain_of_residuals_and_named_merges():
    # 1000 residual adds in a row (each then a ReLU), then 1000 gates `mul(conv(x), x)` of an unnamed ReLU:
    # names `relu1` .. `relu1000`, found without counting from 1 each time
    layers, prev = [], INPUT
    for i in range(2000):
        layers.append(Layer(f"c{i}", "conv", _conv(3, 1), (prev,), f"conv_{i}", shape=(3, 8, 8), holds_weights=True))
        layers.append(Layer(f"m{i}", "add" if i < 1000 else "mul", {}, (f"c{i}", prev), None, shape=(3, 8, 8)))
        layers.append(Layer(f"r{i}", "relu", {"inplace": False}, (f"m{i}",), None, shape=(3, 8, 8)))
        prev = f"r{i}"
    graph = LayerGraph("residuals", (3, 8, 8), layers, prev)
    text = print_module(lift(graph))
    assert text.count("residual { conv_") == 1000 and "residual { conv_998: conv(3, 1) }\n    relu\n" in text
    assert "relu1000 = relu\n    from relu1000\n    conv_1999: conv(3, 1)\n    mul(conv_1999, relu1000)" in text
    assert graphdsl.load(text=text).params == 2000 * 12


def nested_residuals(depth: int) -> LayerGraph:
    """Convs t0 .. t{depth}, then adds back: u{d} = t{d} + (u{d+1} or t{depth}): residuals `depth` deep."""
    layers, prev = [], INPUT
    for d in range(depth + 1):
        layers.append(Layer(f"t{d}", "conv", _conv(3, 1), (prev,), f"t{d}", shape=(3, 4, 4), holds_weights=True))
        prev = f"t{d}"
    for d in range(depth - 1, -1, -1):
        layers.append(Layer(f"u{d}", "add", {}, (prev, f"t{d}"), None, shape=(3, 4, 4)))
        prev = f"u{d}"
    return LayerGraph("nested", (3, 4, 4), layers, prev)


@pytest.mark.parametrize("depth, nested", [(3, True), (32, True), (33, False), (400, False)])
def test_merges_nested_too_deep_are_written_with_tensor_names(depth, nested):
    from graphdsl.importers.structure import MAX_MERGE_NESTING

    assert MAX_MERGE_NESTING == 32
    text = print_module(lift(nested_residuals(depth)))
    assert (text.count("residual {") == depth) if nested else ("residual" not in text and "add1 = add(t" in text)
    assert graphdsl.load(text=text).params == (depth + 1) * 12


# ---- a merge of a tensor with itself: the later copies through `identity` ---------------------------------


def merged_with_itself(op: str, source: str, copies: int = 2) -> LayerGraph:
    """`op` of `copies` times one tensor — conv `c`'s output, or the network's input — then a ReLU."""
    channels = 4 if source == "c" else 3
    out = (channels * (copies if op == "concat" else 1), 8, 8)
    layers = [Layer("c", "conv", _conv(4, 3, pad=1), (INPUT,), "c", shape=(4, 8, 8), holds_weights=True)] \
        if source == "c" else []
    layers += [Layer("m", op, {}, (source,) * copies, None, shape=out, where="node m"),
               Layer("r", "relu", {"inplace": False}, ("m",), None, shape=out)]
    return LayerGraph("itself", (3, 8, 8), layers, "r")


@pytest.mark.parametrize("source", ["c", INPUT])
@pytest.mark.parametrize("op, written", [
    ("add", "residual { identity }"),
    ("mul", "identity1 = identity\n    mul(SOURCE, identity1)"),
    ("concat", "concat {\n        []\n        identity\n    }"),
])
def test_a_merge_of_a_tensor_with_itself_passes_a_copy_through_identity(op, written, source):
    graph = merged_with_itself(op, source)
    text = print_module(lift(graph))
    assert written.replace("SOURCE", "in" if source == INPUT else "c") in text, text
    net = graphdsl.load(text=text)
    assert net.params == (4 * 3 * 9 + 4 if source == "c" else 0)
    assert net.output_shapes == {"output": graph.layer("r").shape}


def test_each_later_copy_gets_its_own_identity():
    from graphdsl.importers.lift import copies_through_identity

    graph = merged_with_itself("add", "c", copies=3)
    graph.layers.insert(0, Layer("m_copy", "relu", {}, (INPUT,), None, shape=(3, 8, 8)))  # the name is taken
    graph.layers[1].inputs = ("m_copy",)
    rebuilt = copies_through_identity(graph)
    copies = [layer for layer in rebuilt.layers if layer.op == "identity"]
    assert [(c.name, c.inputs, c.shape, c.path, c.where) for c in copies] == \
        [("m_copy_2", ("c",), (4, 8, 8), None, "node m"), ("m_copy_3", ("c",), (4, 8, 8), None, "node m")]
    assert rebuilt.layer("m").inputs == ("c", "m_copy_2", "m_copy_3")
    assert [layer.name for layer in rebuilt.layers][-4:] == ["m_copy_2", "m_copy_3", "m", "r"]
    assert copies_through_identity(two_heads()) is not None and \
        copies_through_identity(rebuilt) is rebuilt  # nothing read twice: the graph itself
    text = print_module(lift(graph))
    assert text.count(" = identity\n") == 2 and graphdsl.load(text=text).params == 4 * 3 * 9 + 4


@pytest.mark.parametrize("op", ["add", "mul", "concat"])
def test_a_merge_with_itself_computes_the_same(op):
    torch = pytest.importorskip("torch")
    module = graphdsl.load(text=print_module(lift(merged_with_itself(op, INPUT)))).to_torch().eval()
    x = torch.randn(2, 3, 8, 8)
    expected = {"add": x + x, "mul": x * x, "concat": torch.cat([x, x], 1)}[op].relu()
    with torch.no_grad():
        assert torch.equal(module(x), expected)
