"""`graphdsl fmt` and the printer: idempotent, meaning-preserving, comment-preserving; goldens for the
tricky layouts (GRAPHDSL_REGEN=1 rewrites tests/golden/fmt/*.out.cnn); the command end to end."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import specgen
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdsl
from graphdsl import ast
from graphdsl.diagnostics import Span
from graphdsl.fmt import fmt_command, format_source
from graphdsl.printer import Unprintable, print_expr, print_module
from graphdsl.syntax import parse
from graphdsl.values import Symbol

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "fmt"
REGEN = os.environ.get("GRAPHDSL_REGEN") == "1"
SHIPPED = sorted([*ROOT.glob("specs/**/*.cnn"), *ROOT.glob("examples/**/*.cnn")])
DOC_BLOCK = re.compile(r"```cnn\n(.*?)```", re.S)


def doc_examples() -> list[tuple[str, str]]:
    """(name, text) of every `cnn` code block of docs/*.md (as tests/test_docs.py finds them)."""
    found = []
    for doc in sorted(ROOT.glob("docs/*.md")):
        for i, body in enumerate(DOC_BLOCK.findall(doc.read_text())):
            found.append((f"{doc.name}#{i}", body))
    return found


def strip_spans(node):
    """The AST as plain values with every span (and the file name) left out: what must survive printing."""
    if isinstance(node, Span):
        return None
    if dataclasses.is_dataclass(node):
        return (type(node).__name__,) + tuple(strip_spans(getattr(node, f.name)) for f in dataclasses.fields(node)
                                              if f.name != "file")
    if isinstance(node, tuple):
        return tuple(strip_spans(x) for x in node)
    if isinstance(node, (bool, int, float)):
        return (type(node).__name__, node)
    return node


def comments_of(text: str) -> list[str]:
    found: list = []
    module, errors = parse(text, "x.cnn", comments=found)
    assert module is not None, errors
    return [str(c).rstrip() for c in found]


def check_formatting(text: str, name: str = "x.cnn") -> str:
    """Format `text` and assert the three properties; returns the formatted text."""
    formatted, errors = format_source(text, name)
    assert formatted is not None, errors
    before, _ = parse(text, name)
    after, errors = parse(formatted, name)
    assert after is not None, f"formatted text does not parse: {errors}\n{formatted}"
    assert strip_spans(after) == strip_spans(before), formatted
    again, _ = format_source(formatted, name)
    assert again == formatted, "not idempotent"
    assert comments_of(formatted) == comments_of(text)
    return formatted


def graph_facts(net) -> dict:
    g = net.graph
    return {n: (d["op"], repr(d.get("attrs")), d.get("shape"), tuple(g.predecessors(n))) for n, d in g.nodes(data=True)}


# ---- the shipped specs and the doc examples ---------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_spec_formats_idempotently_and_keeps_its_ast_and_comments(path):
    check_formatting(path.read_text(), str(path))


@pytest.mark.parametrize("name, text", doc_examples(), ids=[n for n, _ in doc_examples()])
def test_doc_example_formats(name, text):
    formatted = check_formatting(text, name)
    module, _ = parse(text)
    for definition in module.definitions:
        if definition.kind == "network":
            original = graphdsl.load(text=text, network=definition.name)
            assert graph_facts(graphdsl.load(text=formatted, network=definition.name)) == graph_facts(original)


@pytest.mark.parametrize("spec", ["resnet50.cnn", "inception_v3.cnn", "mobilenet_v3_large.cnn", "densenet121.cnn",
                                  "efficientnet_v2_s.cnn", "shufflenet_v2_x1_0.cnn", "squeezenet1_0.cnn"])
def test_formatted_shipped_spec_elaborates_to_the_same_graph(spec, tmp_path):
    """The spec and every lib file formatted into a copy of specs/: the same nodes, ops, args, shapes."""
    for source in ROOT.glob("specs/**/*.cnn"):
        target = tmp_path / source.relative_to(ROOT / "specs")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(format_source(source.read_text(), str(source))[0])
    (tmp_path / "graphdsl.toml").write_text("")
    original = graphdsl.load(ROOT / "specs" / spec)
    assert graph_facts(graphdsl.load(tmp_path / spec)) == graph_facts(original)


def test_shipped_specs_are_formatted():
    """Every shipped spec, example and doc example is in the canonical layout (`graphdsl fmt --check`)."""
    unformatted = [str(p.relative_to(ROOT)) for p in SHIPPED
                   if format_source(p.read_text(), str(p))[0] != p.read_text()]
    unformatted += [name for name, text in doc_examples() if format_source(text, name)[0] != text]
    assert not unformatted, f"not in the canonical layout (run `graphdsl fmt`): {unformatted}"


# ---- generated specs -------------------------------------------------------------------------------


@settings(max_examples=60)
@given(specgen.networks())
def test_generated_spec_formats_and_elaborates_the_same(net):
    text = net.render()
    formatted = check_formatting(text)
    assert graph_facts(graphdsl.load(text=formatted)) == graph_facts(graphdsl.load(text=text))


@settings(max_examples=60)
@given(specgen.edge_networks())
def test_edge_spec_formats(net):
    check_formatting(net.render())


# Every run of whitespace of a spec (outside strings and comments) redrawn: a space, line ends, blank
# lines, a trailing comment or a comment on a line of its own. The tree stays the same; comments land
# in every corner of the syntax (inside argument lists, conditions, between `}` and `else`, ...).
_PIECES = re.compile(r'"""[\s\S]*?"""|"(?:[^"\\\n]|\\.)*"|#[^\n]*|\s+|[^\s"#]+|.')
RELAYOUT_SOURCES = sorted([*ROOT.glob("specs/lib/*.cnn"), *ROOT.glob("specs/examples/*.cnn"),
                           *GOLDEN.glob("*.in.cnn")])


def relayout(text: str, draw) -> str:
    out: list[str] = []
    n = 0
    for m in _PIECES.finditer(text):
        piece = m.group()
        if piece.isspace():
            choice = draw(st.integers(0, 7))
            n += 1
            piece = [" ", "\n", "\n\n\n", f"  # c{n}\n", f"\n# own {n}\n", "   ", piece, piece][choice]
            if out and out[-1].startswith("#") and "\n" not in piece:
                piece = "\n"  # a comment ends at its line end
        out.append(piece)
    return "".join(out)


@settings(max_examples=80)
@given(st.data())
def test_any_layout_and_comments_format_safely(data):
    path = data.draw(st.sampled_from(RELAYOUT_SOURCES))
    text = relayout(path.read_text(), data.draw)
    check_formatting(text, path.name)


# ---- goldens ------------------------------------------------------------------------------------------


GOLDEN_CASES = sorted(GOLDEN.glob("*.in.cnn"))


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=lambda p: p.name.removesuffix(".in.cnn"))
def test_golden(case):
    formatted = check_formatting(case.read_text(), case.name)
    expected = case.with_name(case.name.replace(".in.cnn", ".out.cnn"))
    if REGEN:
        expected.write_text(formatted)
    assert formatted == expected.read_text()
    assert all(len(line) <= 100 or "#" in line or '"' in line for line in formatted.splitlines())


def test_goldens_exist():
    assert len(GOLDEN_CASES) >= 10


# ---- printing built ASTs (what importers do) ------------------------------------------------------------

S = Span("<built>", 1, 1, 1, 1)


def test_built_module_prints_and_parses_back():
    c = lambda v: ast.Const(v, S)  # noqa: E731
    conv = ast.Call("conv", (ast.Arg(None, c(64), S), ast.Arg(None, c(3), S), ast.Arg("pad", c(1), S),
                             ast.Arg("bias", c(False), S)), S, S)
    body = (
        ast.Doc('A "quoted" doc\nof two lines', S),
        ast.Input((c(3), c(32), c(32)), S),
        ast.Let("w", ast.BinOp("*", ast.Var("width", S), ast.BinOp("+", c(1), c(2), S), S), S),
        ast.Labeled("conv1", conv, S, S),
        ast.Labeled(ast.Template(("layer", ast.BinOp("+", ast.Var("w", S), c(1), S)), S),
                    ast.Repeat(ast.Group((ast.Call("relu", (), S, S), ast.Call("bn", (), S, S)), S), c(2), S), S, S),
        ast.Call("dropout", (ast.Arg("p", c(0.1), S),), S, S),
        ast.Call("avgpool", (ast.Arg(None, c(Symbol("global")), S),), S, S),
        ast.Call("flatten", (), S, S),
        ast.Labeled("fc", ast.Call("linear", (ast.Arg(None, ast.Var("n", S), S),), S, S), S, S),
        ast.Assert(ast.BinOp(">", ast.Var("n", S), c(0), S), 'n is "positive"\t', S),
    )
    params = (ast.Param("width", c(16), S), ast.Param("n", c(10), S))
    module = ast.Module("<built>", "Built in code.", (ast.Import("lib/x.cnn", S),),
                        (ast.Definition("network", "built", params, body, body[0].text, S, S),))
    text = print_module(module)
    parsed, errors = parse(text)
    assert not errors, text
    assert strip_spans(parsed) == strip_spans(module)
    assert 'network built(width = 16, n = 10) {' in text and "conv1: conv(64, 3, pad=1, bias=false)" in text
    assert format_source(text)[0] == text  # what the printer prints is already formatted


@pytest.mark.parametrize("source", [
    "a - (b - c)", "(a - b) - c", "-(a * b)", "-a * b", "not (a and b)", "(not a) == b", "a // (b * c)",
    "[x * 2 for x in xs if x > 1]", "(1, 2)[0]", "xs[1:]", "xs[:-1]", "f(a, start=1)", '"a\\"b\\n"', "(3,)",
    "1e-06", "(a or b) and c", "-(-a)", "(a < b) == c",
])
def test_expressions_print_back_to_the_same_tree(source):
    from graphdsl.syntax import parse_expression

    expr = parse_expression(source)
    printed = print_expr(expr)
    assert strip_spans(parse_expression(printed)) == strip_spans(expr), printed


def test_unprintable_asts_are_refused():
    with pytest.raises(Unprintable):
        print_expr(ast.Const(float("inf"), S))
    with pytest.raises(Unprintable):
        print_expr(ast.Var("not a name", S))
    with pytest.raises(Unprintable):
        print_expr(ast.Var("for", S))


def test_doc_string_that_cannot_take_triple_quotes():
    text = 'ends with a quote: "x"'
    module = ast.Module("<built>", text, (), ())
    printed = print_module(module)
    assert parse(printed)[0].doc == text


# ---- format_source and the command ------------------------------------------------------------------------


def test_syntax_error_gives_the_located_diagnostics_of_check():
    text = "network n {\n    input 3x8x8\n    conv(8, 3\n    relu(\n}\n"
    formatted, errors = format_source(text)
    assert formatted is None and errors
    assert errors == graphdsl.check(text=text)
    assert all(d.span is not None and d.span.file == "<string>" for d in errors)


def test_statement_separators_become_lines():
    text = "network n { input 3x8x8; conv(8, 3), relu  bn }\n"
    assert format_source(text)[0] == "network n {\n    input 3x8x8\n    conv(8, 3)\n    relu\n    bn\n}\n"


def test_crlf_and_bom_become_plain_lines():
    assert format_source("\ufeffnetwork n {\r\n  input 784\r\n}\r\n")[0] == "network n {\n    input 784\n}\n"


SPEC = "network n {\n  input 3x8x8\n  conv(8,3)   # c\n}\n"
FORMATTED = "network n {\n    input 3x8x8\n    conv(8, 3)  # c\n}\n"


def test_command_rewrites_files(tmp_path):
    a, b = tmp_path / "a.cnn", tmp_path / "b.cnn"
    a.write_text(SPEC)
    b.write_text(FORMATTED)
    result = CliRunner().invoke(fmt_command, [str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert a.read_text() == FORMATTED and b.read_text() == FORMATTED
    assert "reformatted" in result.output and "b.cnn" not in result.output


def test_command_keeps_the_permissions_of_the_file(tmp_path):
    a = tmp_path / "a.cnn"
    a.write_text(SPEC)
    a.chmod(0o640)
    assert CliRunner().invoke(fmt_command, [str(a)]).exit_code == 0
    assert a.read_text() == FORMATTED and a.stat().st_mode & 0o777 == 0o640


def test_command_check_lists_files_and_writes_nothing(tmp_path):
    a, b = tmp_path / "a.cnn", tmp_path / "b.cnn"
    a.write_text(SPEC)
    b.write_text(FORMATTED)
    result = CliRunner().invoke(fmt_command, ["--check", str(a), str(b)])
    assert result.exit_code == 1
    assert "would reformat" in result.output and "a.cnn" in result.output and "b.cnn" not in result.output
    assert a.read_text() == SPEC
    assert CliRunner().invoke(fmt_command, ["--check", str(b)]).exit_code == 0


def test_command_diff(tmp_path):
    a = tmp_path / "a.cnn"
    a.write_text(SPEC)
    result = CliRunner().invoke(fmt_command, ["--diff", str(a)])
    assert result.exit_code == 0
    assert "-  conv(8,3)   # c" in result.output and "+    conv(8, 3)  # c" in result.output
    assert a.read_text() == SPEC


def test_command_refuses_a_file_with_syntax_errors(tmp_path):
    a = tmp_path / "a.cnn"
    a.write_text("network n {\n    input 3x8x8\n    conv(8, 3\n")
    result = CliRunner().invoke(fmt_command, [str(a)])
    assert result.exit_code == 1
    assert f"{a}:" in result.output and "error:" in result.output and "Traceback" not in result.output
    assert a.read_text() == "network n {\n    input 3x8x8\n    conv(8, 3\n"


def test_command_reads_stdin():
    result = CliRunner().invoke(fmt_command, ["-"], input=SPEC)
    assert result.exit_code == 0 and result.output == FORMATTED


def test_command_missing_file(tmp_path):
    result = CliRunner().invoke(fmt_command, [str(tmp_path / "none.cnn")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_fmt_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, graphdsl.fmt, graphdsl.printer; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fmt_through_the_graphdsl_cli(tmp_path):
    from graphdsl.cli import main

    if "fmt" not in main.commands:
        pytest.fail("`graphdsl fmt` is not registered: graphdsl/cli.py needs main.add_command(fmt_command)")
    a = tmp_path / "a.cnn"
    a.write_text(SPEC)
    assert CliRunner().invoke(main, ["fmt", "--check", str(a)]).exit_code == 1
    assert CliRunner().invoke(main, ["fmt", str(a)]).exit_code == 0
    assert a.read_text() == FORMATTED
    assert CliRunner().invoke(main, ["fmt", "--check", str(a)]).exit_code == 0
