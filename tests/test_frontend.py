"""The front end on its own: parsing, naming, elaboration, the passes, the IR invariants, the API."""

from __future__ import annotations

import subprocess
import sys

import networkx as nx
import pytest

import graphdsl
from graphdsl.passes import IRError, inputs_of, lint
from graphdsl.syntax import parse


def load(body: str, params: str = "", **overrides):
    return graphdsl.load(text=f"network n{params} {{\n{body}\n}}", **overrides)


def nodes(net) -> list[str]:
    return [n for n in net.graph if n != "input"]


# ---- parsing -----------------------------------------------------------------------------


def test_spans_point_at_the_source():
    module, errors = parse("network n {\n  input 3x8x8\n  c1: conv(4, 3)\n}", "f.cnn")
    assert not errors
    labeled = module.definitions[0].body[1]
    assert (labeled.span.line, labeled.span.col) == (3, 3)
    assert (labeled.item.name_span.line, labeled.item.name_span.col, labeled.item.name_span.end_col) == (3, 7, 11)


def test_separators_are_optional():
    a = load("input 3x8x8\nconv(4, 3)\nrelu")
    b = load("input 3x8x8, conv(4, 3); relu")
    c = load("input 3x8x8 conv(4, 3) relu")
    assert nodes(a) == nodes(b) == nodes(c) == ["0", "1"]


def test_a_separator_after_a_repeat():
    """`[relu * 2, relu]`: a `,` after a repeat's count separates statements, as after any other item (the
    count is an expression, and `,` there once read as the comma of an argument list)."""
    inline = load("input 3x8x8\nstage: [conv(4, 3) * 2, relu]; conv(4, 1) * 2; relu")
    lines = load("input 3x8x8\nstage: [\n conv(4, 3) * 2\n relu\n]\nconv(4, 1) * 2\nrelu")
    assert nodes(inline) == nodes(lines) and len(nodes(inline)) == 6


def test_doc_strings_and_comments():
    net = graphdsl.load(text='"""file"""\nnetwork n { """the doc"""  # comment\n input 3x8x8 relu }')
    assert net.doc == "the doc"


# ---- naming --------------------------------------------------------------------------------


def test_positions_count_every_item_like_sequential():
    net = load("input 3x8x8\nfeatures: [conv(4, 3), relu, pool: maxpool(2), conv(4, 1)]")
    assert nodes(net) == ["features.0", "features.1", "features.pool", "features.3"]


def test_repeat_named_is_a_group_and_unnamed_splices():
    net = load("input 3x8x8\nlayer: relu * 3\nrelu * 2")
    assert nodes(net) == ["layer.0", "layer.1", "layer.2", "1", "2"]


def test_residual_and_concat_are_transparent():
    src = """
block b(c) {
    residual { conv1: conv(c, 3, pad=1) relu } shortcut if in.channels != c { down: conv(c, 1) }
}
network n { input 3x8x8  layer: [b(4), b(4)] }"""
    net = graphdsl.load(text=src)
    assert nodes(net) == ["layer.0.conv1", "layer.0.1", "layer.0.down", "layer.0.3",
                          "layer.1.conv1", "layer.1.1", "layer.1.2"]
    assert net.graph.nodes["layer.1.2"]["op"] == "add"
    assert inputs_of(net.graph, "layer.1.2") == ["layer.1.1", "layer.0.3"]


def test_concat_keeps_branch_order():
    net = load("input 8x8x8\nconcat { a: conv(1, 1)  b: conv(2, 1)  c: conv(3, 1) }")
    merge = nodes(net)[-1]
    assert inputs_of(net.graph, merge) == ["a", "b", "c"]
    assert net.graph.nodes[merge]["shape"] == (6, 8, 8)


def test_side_branches_and_outputs():
    net = load("input 3x8x8\nstem: conv(4, 3, pad=1)\naux = [avgpool(global), flatten, linear(2)]\n"
               "main: conv(4, 1)\nfrom stem\nother: conv(4, 1)\nsum: add(main, other)\noutput sum, aux")
    assert net.output_shapes == {"sum": (4, 8, 8), "aux": (2,)}
    assert inputs_of(net.graph, "main") == ["stem"]


# ---- values and conditions -------------------------------------------------------------------


def test_arithmetic_and_conditions():
    net = load("input 3x8x8\nlet c = 16 / 2 + 7 // 2 - 10 % 4\nconv(c, 1)\nif in.channels == 9 and not false { relu }")
    assert net.output_shapes["output"] == (9, 8, 8)
    assert [net.graph.nodes[n]["op"] for n in nodes(net)] == ["conv", "relu"]


def test_for_range_and_builtins():
    net = load("input 3x8x8\nfor i in range(1, 4) { conv(i * 2, 1) }\nconv(max(2, len([1, 2, 3])), 1)")
    assert [net.graph.nodes[n]["shape"][0] for n in nodes(net)] == [2, 4, 6, 3]


def test_overrides():
    net = load("input 3x8x8\nconv(c, 1)", "(c = 4)", c=7)
    assert net.output_shapes["output"] == (7, 8, 8)


# ---- ops and shape rules -----------------------------------------------------------------------


@pytest.mark.parametrize("layer, shape", [
    ("conv(8, 3)", (8, 30, 30)),
    ("conv(8, 3, stride=2, pad=1)", (8, 16, 16)),
    ("conv(8, 3, pad=same, dilation=2)", (8, 32, 32)),
    ("conv(8, (1, 7), pad=(0, 3))", (8, 32, 32)),
    ("conv(8, 3, dilation=2)", (8, 28, 28)),
    ("maxpool(3, stride=2)", (4, 15, 15)),
    ("maxpool(3, stride=2, ceil=true)", (4, 16, 16)),
    ("maxpool(2, stride=2, pad=1, ceil=true)", (4, 17, 17)),
    ("avgpool(global)", (4, 1, 1)),
    ("avgpool(adaptive=(6, 5))", (4, 6, 5)),
    ("subsample(3)", (4, 11, 11)),
    ("pad_channels(10)", (10, 32, 32)),
    ("flatten", (4096,)),
])
def test_shape_rules(layer, shape):
    assert load(f"input 4x32x32\n{layer}").output_shapes["output"] == shape


def test_ceil_mode_drops_a_window_starting_in_the_padding():
    # torch: MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5 -> 3 (not 4)
    assert load("input 1x5x5\nmaxpool(2, stride=2, pad=1, ceil=true)").output_shapes["output"] == (1, 3, 3)


def test_costs_by_hand():
    net = load("input 3x227x227\nconv1: conv(96, 11, stride=4)\npool1: maxpool(3, stride=2)\nbn\n"
               "flatten\nfc: linear(10)")
    conv1 = net.layer("conv1")
    assert conv1.shape == (96, 55, 55) and conv1.params == 34_944
    assert conv1.macs == 96 * 55 * 55 * 3 * 11 * 11
    assert net.layer("pool1").shape == (96, 27, 27) and net.layer("pool1").params == 0
    bn = net.layer("2")
    assert (bn.params, bn.buffers) == (192, 193)
    assert net.layer("fc").macs == 96 * 27 * 27 * 10
    assert net.params == 34_944 + 192 + 96 * 27 * 27 * 10 + 10
    assert net.activations == sum(x.activations for x in net.layers())


def test_grouped_conv_params():
    net = load("input 96x27x27\nconv2: conv(256, 5, pad=2, groups=2)")
    assert net.layer("conv2").params == 256 * 48 * 25 + 256


def test_receptive_field_of_stacked_3x3():
    net = load("input 8x32x32\na: conv(8, 3, pad=1)\nb: conv(8, 3, pad=1)\nc: conv(8, 3, pad=1)")
    assert [net.layer(n).rf for n in "abc"] == [(3, 3), (5, 5), (7, 7)]


def test_receptive_field_through_branches_is_the_largest():
    net = load("input 8x32x32\nconcat { conv(4, 1)  conv(4, 5, pad=2)  [conv(4, 3, pad=1), conv(4, 3, pad=1)] }")
    merge = net.layers()[-1]
    assert merge.rf == (5, 5) and merge.jump == (1, 1)


def test_cumulative_stride():
    net = load("input 3x64x64\nconv(8, 7, stride=2, pad=3)\nmaxpool(3, stride=2, pad=1)\nlast: conv(8, 3, pad=1)")
    assert net.layer("last").jump == (4, 4)
    assert net.layer("last").rf == (7 + 2 * 2 + 2 * 4,) * 2


# ---- the IR ---------------------------------------------------------------------------------------


def test_lint_accepts_every_loaded_graph_and_rejects_broken_ones():
    net = load("input 3x8x8\na: conv(4, 1)\nb: conv(4, 1)\nadd(a, b)")
    lint(net.graph)
    broken = net.graph.copy()
    broken.add_edge("b", "a", index=1)
    with pytest.raises(IRError):
        lint(broken)
    unnamed = net.graph.copy()
    unnamed.nodes["a"]["shape"] = (0, 8, 8)
    with pytest.raises(IRError):
        lint(unnamed)


def test_graph_order_is_topological():
    net = load("input 3x8x8\na: conv(4, 1)\nb = conv(4, 1)\nc: conv(4, 1)\nconcat(c, b)")
    order = list(net.graph)
    assert all(order.index(u) < order.index(v) for u, v in net.graph.edges)
    assert nx.is_directed_acyclic_graph(net.graph)


# ---- API -------------------------------------------------------------------------------------------


def test_load_path_and_text(tmp_path):
    spec = tmp_path / "two.cnn"
    spec.write_text("network two { input 3x8x8 relu }\nnetwork other { input 1x4x4 relu }")
    assert graphdsl.load(spec).name == "two"
    assert graphdsl.load(str(spec), network="other").input_shape == (1, 4, 4)
    with pytest.raises(graphdsl.SpecError, match="no network `othr`"):
        graphdsl.load(spec, network="othr")


def test_check_returns_diagnostics():
    diags = graphdsl.check(text="network n { input 3x8x8 conv(4, 9) }")
    assert len(diags) == 1 and diags[0].span.line == 1 and "larger than" in diags[0].message


def test_register_custom_operator():
    class Twice(graphdsl.Op):
        name = "twice_channels"
        family = "reshape"

        def output_shape(self, a, ins):
            return (2 * ins[0][0], *ins[0][1:])

    graphdsl.register(Twice)
    try:
        assert load("input 3x8x8\ntwice_channels").output_shapes["output"] == (6, 8, 8)
    finally:
        del graphdsl.REGISTRY["twice_channels"]


def test_front_end_never_imports_torch():
    code = ("import sys, graphdsl\n"
            "graphdsl.load(text='network n { input 3x8x8 conv(4, 3) flatten linear(2) }')\n"
            "import graphdsl.cli\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("body", ["x: conv(4, 1) add(x, x)", "concat { [] [] }", "residual { }"])
def test_merging_a_tensor_with_itself_is_a_diagnostic(body):
    with pytest.raises(graphdsl.SpecError, match="would merge a tensor with itself"):
        load(f"input 3x8x8\n{body}")


@pytest.mark.parametrize("depth", [300, 1000])
def test_deep_nesting_is_a_diagnostic_not_a_traceback(depth):
    for body in ("g: [" * depth + "]" * depth, "[" * depth + "relu" + "]" * depth):
        with pytest.raises(graphdsl.SpecError, match="nested too deeply|nested more than"):
            load(f"input 3x8x8\n{body}")


def test_shapes_as_graphdsl_prints_them_and_flat_inputs():
    assert load("input 3×8×8\nconv(4, 3)").output_shapes["output"] == (4, 6, 6)
    assert load("input 784\nlinear(10)").output_shapes["output"] == (10,)


@pytest.mark.parametrize("name, op", [("BatchNorm2d", "bn"), ("ReLU", "relu"), ("fc", "linear"), ("Dense", "linear"),
                                      ("cat", "concat"), ("LeakyReLU", "leaky_relu")])
def test_names_from_other_tools_are_translated(name, op):
    (diag,) = graphdsl.check(text=f"network n {{ input 3x8x8 {name} }}")
    assert diag.help == f"graphdsl calls it `{op}`"


def test_overrides_keep_the_kind_of_their_default():
    src = "network n(c = 4, flag = true, p = 0.5) { input 3x8x8 conv(c, 1) if flag { dropout(p) } }"
    (diag,) = graphdsl.check(text=src, flag="False")
    assert diag.message == '`flag` is a boolean (default true), but it is given the string "False"'
    assert diag.span.col == src.index("flag") + 1  # columns count from 1
    assert graphdsl.check(text=src, p=1) == []  # an integer where a number is expected is fine
    assert len(graphdsl.check(text=src, c=2.5, flag=1)) == 2


def test_one_mistake_in_a_block_is_reported_once():
    src = "block b(c) { conv(c, 3, pad=1, strid=1) }\nnetwork n { input 3x8x8  b(8) * 4  [b(8), b(8)] }"
    (diag,) = graphdsl.check(text=src)
    assert "has no argument `strid`" in diag.message
    assert any("comes up 5 more times" in note for note in diag.notes)


def test_in_features_is_for_flat_inputs():
    (diag,) = graphdsl.check(text="network n { input 3x8x8 conv(in.features, 1) }")
    assert "`in.features` is the size of a flat input" in diag.message


def test_a_mistyped_path_is_not_read_as_spec_text():
    with pytest.raises(graphdsl.SpecError, match="no such file `lenet.cn`"):
        graphdsl.load("lenet.cn")
    with pytest.raises(TypeError):
        graphdsl.load(None)


@pytest.mark.parametrize("source, message", [
    ('network n { "bad \\x" input 3x8x8 }', "unknown escape `\\x` in a string"),
    ("network n { let a = 10000000000 * 10000000000 * 100000 input 3x8x8 }", "too large for a network"),
    ("network n { input 3x8x8 conv(3000000000, 1) }", "at most 2,147,483,647"),
    ("network b(n = 1) { input 3x8x8 relu }\nnetwork a = b(2, n=3)", "parameter `n` given twice"),
    ("network n { input 3x8x8 x: relu output x, x }", "`x` is listed twice in `output`"),
    ("network n { input 3x8x8 avgpool(adaptive=2, pad=1) }", "`pad` has no meaning for adaptive pooling"),
    ("network n { input 3x8x8 maxpool(global, stride=2) }", "`stride` has no meaning for global pooling"),
])
def test_review_findings_are_diagnostics(source, message):
    diags = graphdsl.check(text=source, network=None if "network a" not in source else "a")
    assert diags and message in diags[0].message


def test_strings_know_few_escapes_and_doc_strings_are_raw():
    net = graphdsl.load(text='network n { """raw \\alpha""" input 3x8x8 }')
    assert net.doc == "raw \\alpha"
    assert graphdsl.load(text='network n(s = "a\\"b\\n") { input 3x8x8 }').graph.graph["params"]["s"] == 'a"b\n'


def test_python_lists_are_lists():
    net = graphdsl.load(text="network n(cfg = (1, 2)) { input 3x8x8 for c in cfg { conv(c, 1) } }", cfg=[4, 5])
    assert net.output_shapes["output"] == (5, 8, 8)


def test_figures_print_their_unit_only_where_it_helps():
    from graphdsl.units import figure

    assert figure(672) == "672"
    assert figure(138_357_544) == "138,357,544 (138.4M)"
    assert figure(0, "conv + linear") == "0 (conv + linear)"
    assert figure(11_513_626_624, "conv + linear") == "11,513,626,624 (11.5G, conv + linear)"


def test_receptive_field_through_a_broadcast_gate():
    """A squeeze-excitation gate sees the whole input but does not set the stride of the grid."""
    net = graphdsl.load(text="network se { input 16x56x56  x: conv(16, 3, pad=1)\n"
                        "gate = [avgpool(adaptive=1), conv(16, 1), sigmoid]  y: mul(gate, x)  z: conv(16, 3, pad=1) }")
    g = net.graph
    assert g.nodes["y"]["jump"] == (1, 1) and g.nodes["z"]["jump"] == (1, 1)
    assert g.nodes["z"]["rf"] == (g.nodes["y"]["rf"][0] + 2,) * 2
