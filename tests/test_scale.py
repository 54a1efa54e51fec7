"""Big but plausible specs through the back ends: wide merges, long chains, many named tensors, deep and
shared values as block arguments, and partial graphs. Moderate sizes and no timings here (the figures
against `check` are tools/bench_scale.py's): what is checked is that each back end finishes with a
correct, bounded result where it used to recurse too deep, draw everything, or print whole values.

Also: folding never merges calls that differ (`cbr(32)` on 16 channels and on 32), and `dot` runs under a
time limit whose expiry is an OSError that says how to narrow the diagram.
"""

from __future__ import annotations

import ast
import os
import stat
import sys
import textwrap

import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl.api import load_partial
from graphdsl.backends import dot
from graphdsl.backends import torch as backend
from graphdsl.backends.scopes import units
from graphdsl.backends.summary import SHOW_FROM, Summary


def load(text: str, **overrides) -> graphdsl.Network:
    return graphdsl.load(text=text, **overrides)


def python_ok(source: str) -> None:
    """The generated source parses and compiles (what importing it would do, without torch)."""
    ast.parse(source)
    compile(source, "<generated>", "exec")


def boxes(source: str) -> int:
    return source.count("tooltip=")


# ---- wide merges ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["branches", "named"])
def test_an_add_of_3000_inputs_compiles_to_valid_python(form):
    n = 3000
    if form == "branches":  # each branch is used once: the sum is written in place, `x.add_(...)`
        text = f"network wide {{ input 4x2x2  add {{ for i in range({n}) {{ conv(4, 1) }} }} }}"
    else:
        lines = "\n".join(f"    t{i} = conv(4, 1)" for i in range(n))
        text = f"network wide {{\n  input 4x2x2\n{lines}\n  add({', '.join(f't{i}' for i in range(n))})\n}}"
    net = load(text)
    gen = backend.generate(net)
    python_ok(gen.source)
    add = next(node for node, d in net.graph.nodes(data=True) if d["op"] == "add")
    assert gen.fx_nodes[add] == n - 1  # the same number of additions, in pieces
    forward = gen.source.split("def forward", 1)[1]
    assert max(line.count("+") + line.count(".add_(") for line in forward.splitlines()) <= backend.MERGE_PIECE
    assert "partial" in forward


@pytest.mark.parametrize("form", ["branches", "named"])
def test_an_add_in_pieces_computes_the_sum(form, monkeypatch):
    """Written in pieces (in place where the branches allow it), the sum is the one-line sum's."""
    torch = pytest.importorskip("torch")
    n = 150  # three pieces: 64, 63 and 23 terms
    if form == "branches":
        text = f"network wide {{ input 2x3x3  add {{ for i in range({n}) {{ conv(2, 1) }} }} }}"
    else:
        lines = "\n".join(f"    t{i} = conv(2, 1)" for i in range(n))
        text = f"network wide {{\n  input 2x3x3\n{lines}\n  add({', '.join(f't{i}' for i in range(n))})\n}}"
    net = load(text)
    source = net.source()
    assert source.count("partial = ") == 2  # then the result
    assert ".add_(" in source  # each conv output is read once and autograd keeps none of it: summed in place
    pieces = net.to_torch(dtype="float64").eval()
    monkeypatch.setattr(backend, "MERGE_PIECE", 1000)
    assert "partial" not in net.source()
    whole = net.to_torch(dtype="float64").eval()
    whole.load_state_dict(pieces.state_dict())
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(pieces(x), whole(x))
    assert backend.node_shapes(net, pieces, x)  # one fx node per addition, as the IR counts them


def test_a_small_add_is_one_line():
    net = load("network n { input 4x2x2  a = conv(4, 1)  b = conv(4, 1)  add(a, b) }")
    assert "partial" not in net.source()


def test_a_2000_way_concat_through_every_back_end():
    n = 2000
    net = load(f"network wide {{ input 4x2x2  concat {{ for i in range({n}) {{ conv(1, 1) }} }} }}")
    python_ok(net.source())
    summary = net.summary()
    assert len(summary.rows) == n + 1
    merge = summary.cells()[-1]
    assert merge[-1].endswith(f"… {n - SHOW_FROM:,} more") and merge[-1].count(", ") == SHOW_FROM  # From: capped
    assert summary.rows[-1].inputs == tuple(str(i) for i in range(n))  # the data keeps them all
    assert len(summary.csv().splitlines()) == n + 2
    assert dot.auto_depth(net.graph) == 1
    source = dot.diagram(net.graph, depth=1).source
    assert boxes(source) <= dot.MAX_BOXES + 3  # input, output
    assert f"{n + 1 - dot.MAX_ITEMS + 1:,} boxes not drawn" in source and "--depth N" in source
    assert "conv ×" in source  # the box standing for the rest says what they are


def test_many_named_tensors_compile_with_distinct_names():
    n = 2000
    lines = "\n".join(f"    t{i} = conv(1, 1)" for i in range(n))
    net = load(f"network named {{\n  input 4x2x2\n{lines}\n  concat({', '.join(f't{i}' for i in range(n))})\n}}")
    source = net.source()
    python_ok(source)
    assert "self.t1999 = nn.Conv2d(4, 1, kernel_size=1)" in source  # each layer keeps its name
    assert "out_2000 = self.t1999(x)" not in source and "out_1999 = self.t1998(x)" in source  # variables: one each


def test_a_long_chain_is_capped_in_the_diagram_and_whole_in_the_summary():
    n = 5000
    net = load(f"network chain {{ input 4x2x2  conv(4, 1) * {n} }}")
    assert len(net.summary().rows) == n
    python_ok(net.source())
    for source in (net.render().source, net.render(expand=True).source):
        assert boxes(source) <= dot.MAX_BOXES + 3
        assert "layers not drawn" in source


def test_a_long_chain_in_a_group_folds_or_caps():
    net = load("block b(c) { conv(c, 1) relu }  network n { input 4x2x2  body: [b(4) * 2000]  head: b(4) }")
    depth = dot.auto_depth(net.graph)
    source = dot.diagram(net.graph, depth=depth).source
    assert boxes(source) <= dot.MAX_BOXES + 3


# ---- values as block arguments ----------------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize("depth", [30, 400])
def test_deeply_nested_block_arguments(depth):
    text = f"block b(cfg) {{ conv(4, 1) }}\nnetwork n {{ input 4x2x2  x: b({nested(depth)})  y: b({nested(depth)}) }}"
    try:
        net = load(text)
    except graphdsl.SpecError:
        assert depth > 32  # the front end caps the nesting of values
        return
    python_ok(net.source())
    assert net.summary(depth=1).table()
    assert [u.kind for u in units(net.graph, fold_runs=True)] == ["run"]
    assert boxes(net.render(depth=1).source) == 3  # input, x..y, output


def test_a_big_shared_list_as_a_block_argument_is_shown_elided():
    text = textwrap.dedent("""
        block b(cfg) { conv(4, 1) }
        network n {
            input 4x2x2
            let a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
            let b = [a, a, a, a, a, a, a, a, a, a]
            let c = [b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b, b]
            x: b(c)
            y: b(c)
            z: b([c, c])
        }
    """)
    try:
        net = load(text)
    except graphdsl.SpecError:
        pytest.skip("the front end refuses a value this big")
    python_ok(net.source())
    table = net.summary(depth=1).table()
    assert max(len(line) for line in table.splitlines()) < 400
    source = net.render(depth=1).source
    assert max(len(line) for line in source.splitlines()) < 2000
    assert [u.label for u in units(net.graph, fold_runs=True)][:1] == ["b ×2"]  # x, y alike; z is not


# ---- folding ----------------------------------------------------------------------------------------------

CBR = "block cbr(c) { conv(c, 3, pad=1) bn relu }\n"


def test_calls_on_other_input_shapes_are_separate_boxes():
    """`cbr(32)` maps 16 -> 32 channels (4,640 conv params), the next 32 -> 32 (9,248): never one box."""
    net = load(CBR + "network n { input 16x8x8  a: cbr(32)  b: cbr(32)  c: cbr(32) }")
    got = [(u.kind, u.id, u.label) for u in units(net.graph, depth=1, fold_runs=True)]
    assert got == [("scope", "a", "cbr"), ("run", "b..c", "cbr ×2")]
    rows = Summary(net.graph, depth=1).rows
    assert rows[0].params != rows[1].params


def test_a_folded_repeat_of_unlike_calls_says_so():
    net = load(CBR + "network n { input 16x8x8  s: cbr(32) * 3  t: cbr(32) * 2 }")
    labels = {r.name: r.label for r in net.summary(depth=1).rows}
    assert labels == {"s": "cbr, cbr ×2", "t": "cbr ×2"}
    assert "<b>cbr, cbr ×2</b>" in net.render(depth=1).source
    assert "s · cbr ×3" in net.render().source  # drawn open, its parts are visible: the count is enough


def test_calls_that_differ_in_parameters_only_do_not_fold():
    net = load("block b(c, k) { conv(c, k, pad=k // 2) }\n"
               "network n { input 8x8x8  a: b(8, 1)  c: b(8, 3) }")
    assert [u.kind for u in units(net.graph, fold_runs=True)] == ["node", "node"]


# ---- partial graphs ---------------------------------------------------------------------------------------


def test_summary_of_a_partial_graph():
    text = "network n { input 4x8x8  conv(4, 1) * 3000  flatten  conv(4, 3) }"
    net, diagnostics = load_partial(text=text)
    assert diagnostics
    summary = Summary(net.graph, partial=True)
    assert len(summary.rows) >= 3000 and "PARTIAL" in summary.table()


# ---- dot under a time limit -------------------------------------------------------------------------------


def fake_dot(tmp_path, body: str):
    """A `dot` on PATH that runs `body` (a Python program) instead of graphviz."""
    folder = tmp_path / "bin"
    folder.mkdir()
    exe = folder / "dot"
    exe.write_text(f"#!{sys.executable}\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.mark.skipif(os.name != "posix", reason="a shell-less fake `dot` needs a POSIX exec")
def test_dot_past_its_time_limit_is_an_oserror_that_says_how_to_narrow(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_dot(tmp_path, "import time; time.sleep(30)")))
    net = load(CBR + "network n { input 16x8x8  a: cbr(32) }")
    out = tmp_path / "n.svg"
    with pytest.raises(dot.DotTimeout) as caught:
        dot.write(net.render(), out, timeout=0.5)
    assert isinstance(caught.value, OSError) and "--depth N" in str(caught.value)
    assert not out.exists() and not list(tmp_path.glob(".n.svg*"))  # nothing written, no temporary left

    monkeypatch.setenv("GRAPHDSL_DOT_TIMEOUT", "0.5")
    assert dot.default_timeout() == 0.5
    spec = tmp_path / "n.cnn"
    spec.write_text(CBR + "network n { input 16x8x8  a: cbr(32) }")
    from graphdsl.cli import main

    result = CliRunner().invoke(main, ["render", str(spec), "-o", str(out)])
    assert result.exit_code == 1 and "--depth N" in result.output, result.output
    assert not out.exists()


@pytest.mark.skipif(os.name != "posix", reason="a shell-less fake `dot` needs a POSIX exec")
def test_a_failing_dot_is_reported_with_its_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(fake_dot(tmp_path, "import sys; sys.stderr.write('syntax error\\x1b[2J'); "
                                                      "sys.exit(2)")))
    with pytest.raises(dot.DotError) as caught:
        dot.run_dot("digraph { a }", "svg")
    assert "syntax error\\x1b[2J" in str(caught.value) and caught.value.returncode == 2


def test_default_timeout_ignores_nonsense(monkeypatch):
    for value in ("", "x", "-1", "0"):
        monkeypatch.setenv("GRAPHDSL_DOT_TIMEOUT", value)
        assert dot.default_timeout() == dot.TIMEOUT
