"""The language server's analysis, without a server: positions, diagnostics (those of `graphdsl check`),
hover figures (those of the passes), definitions, completion and symbols."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import graphdsl
from graphdsl.api import check
from graphdsl.diagnostics import Span
from graphdsl.lsp.analysis import analyse, analyse_document, reads_buffers
from graphdsl.lsp.completion import complete
from graphdsl.lsp.hover import hover
from graphdsl.lsp.navigation import definition, symbols
from graphdsl.lsp.positions import UTF8, UTF16, UTF32, source_lines, to_point, to_range

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "specs" / "lib" / "resnet.cnn"
RESNET152 = ROOT / "specs" / "resnet152.cnn"


# ---- positions ---------------------------------------------------------------------------------------------


def test_columns_count_code_units_of_the_encoding():
    line = 'let s = "é😀\t\x0c"  conv(16, 3, strid=2)'
    col = line.index("strid") + 1  # graphdsl: 1-based code points
    span = Span("f", 3, col, 3, col + 5)
    lines = source_lines(f"a\r\nb\r{line}\n")  # CRLF and a lone CR end lines, a form feed does not
    assert lines[2] == line
    utf16 = len(line[: col - 1].encode("utf-16-le")) // 2
    assert to_range(span, lines, UTF16) == ((2, utf16), (2, utf16 + 5))
    assert to_range(span, lines, UTF8)[0] == (2, len(line[: col - 1].encode()))
    assert to_range(span, lines, UTF32)[0] == (2, col - 1)
    assert to_point(lines, 2, utf16, UTF16) == (3, col)
    inside_pair = line.index("😀")  # the second unit of the surrogate pair: after the character
    assert to_point(lines, 2, inside_pair + 1, UTF16) == (3, inside_pair + 2)


def test_ranges_stay_inside_the_document_and_are_never_empty():
    lines = source_lines("network n {\n")
    assert to_range(Span("f", 9, 1, 9, 1), lines) == ((1, 0), (1, 1))  # past the end: the last line
    assert to_range(Span("f", 1, 12, 1, 12), lines) == ((0, 11), (0, 12))


# ---- diagnostics: those of `graphdsl check` -------------------------------------------------------------------


def malformed() -> list[Path]:
    return sorted((ROOT / "tests" / "malformed").glob("*.cnn"))


def test_diagnostics_are_those_of_check():
    """For every malformed spec `check` judges as a network (one network, or one named like the file, with
    defaults), the analysis reports the same errors at the same places. Not compared: what `check` says of
    the file as a whole (several networks, none, empty, a network needing arguments): in an editor, each
    network is elaborated, and a file of blocks is a library, not a mistake."""
    whole_file = ("defines several networks", "needs a value", "defines no network", "is empty")
    compared = 0
    for path in malformed():
        expected = check(path)
        if any(w in d.message for d in expected for w in whole_file):
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        if "\ufffd" in text or "\0" in text:  # check refuses the bytes before parsing; an editor would not
            continue
        got = analyse(text, str(path)).diagnostics
        errors = [d for d in got if d.severity == "error"]
        want = [d for d in expected if d.severity == "error"]
        assert {(d.message, d.span) for d in errors} >= {(d.message, d.span) for d in want}, path.name
        compared += 1
    assert compared > 80


def test_warnings_have_warning_severity():
    text = "network n {\n    input 3x8x8\n    side = conv(4, 1)\n    conv(4, 3)\n}\n"
    (d,) = analyse(text, "/tmp/w.cnn").diagnostics
    assert d.severity == "warning" and d.span.line == 3 and d.span.col == 5


def test_a_library_reports_errors_of_its_blocks_through_a_spec_importing_it(tmp_path):
    (tmp_path / "graphdsl.toml").write_text("")
    (tmp_path / "lib").mkdir()
    lib = tmp_path / "lib" / "blocks.cnn"
    lib.write_text("block b(c) {\n    conv(c, 3, pad=1)\n    bn(mom=0.1)\n}\n\n"
                   "network template(width) {\n    input 3x8x8\n    b(width)\n}\n")
    main = tmp_path / "net.cnn"
    main.write_text('import "lib/blocks.cnn"\n\nnetwork net {\n    input 3x8x8\n    b(8)\n}\n')
    alone = analyse(lib.read_text(), str(lib))
    assert alone.diagnostics == [] and alone.elaborations == []  # the template needs `width`: not elaborated
    found = analyse(main.read_text(), str(main)).diagnostics
    assert [(Path(d.span.file).resolve(), d.span.line) for d in found] == [(lib.resolve(), 3)]
    library = analyse_document(lib.read_text(), str(lib))  # beside a spec importing it: its networks elaborate
    assert library.context == str(main) and [d.span.line for d in library.diagnostics] == [3]


@pytest.mark.skipif(not reads_buffers(), reason="graphdsl.program.load_program takes no `read=` yet (asked of "
                    "the lead): imports are read from disk, not from the editor's unsaved buffers")
def test_imports_are_read_through_the_editor(tmp_path):
    (tmp_path / "graphdsl.toml").write_text("")
    lib = tmp_path / "lib.cnn"
    lib.write_text("block b(c) {\n    conv(c, 3, pad=1)\n}\n")
    main = tmp_path / "net.cnn"
    main.write_text('import "lib.cnn"\n\nnetwork net {\n    input 3x8x8\n    b(8)\n}\n')
    unsaved = "block b(c) {\n    conv(c, 3, pad=1, strid=2)\n}\n"

    def read(path):
        return (unsaved, None) if Path(path).resolve() == lib.resolve() else (Path(path).read_text(), None)

    assert analyse(main.read_text(), str(main)).diagnostics == []
    (d,) = analyse(main.read_text(), str(main), read).diagnostics
    assert "strid" in d.message and d.span.line == 2


# ---- hover: the passes' figures, found by span ----------------------------------------------------------------


def resnet152():
    text = RESNET152.read_text()
    return analyse(text, str(RESNET152)), analyse(LIB.read_text(), str(LIB))


def at(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    i = text.index(needle) + offset
    return text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i)


def test_hover_figures_are_the_passes():
    net, lib = resnet152()
    layer = graphdsl.load(RESNET152).layer("layer3.7.conv2")
    text = hover(lib, *at(LIB.read_text(), "conv2: conv(width", 1), net.elaborations)
    assert "in 50 instances in `resnet152`, 4 distinct:" in text
    line = next(x for x in text.split("\n") if "256×14×14" in x)
    assert line.startswith(f"- ×36 `256×14×14 · {graphdsl.units.human(layer.params)} params · "
                           f"{graphdsl.units.human(layer.macs)} MACs · RF 171–1291 · stride 16`")
    conv1 = graphdsl.load(RESNET152).layer("conv1")
    text = hover(lib, *at(LIB.read_text(), "conv1: conv(64, 7"), net.elaborations)
    assert f"`64×112×112 · 9.4K params · 118.0M MACs · RF {conv1.rf[0]} · stride {conv1.jump[0]}`" in text
    assert "as `conv1` in `resnet152`" in text


def test_hover_on_a_block_call_sums_its_instance_and_shows_the_doc():
    net, lib = resnet152()
    g = net.elaborations[0].graph
    members = [n for n in g if n.startswith("layer2.")]
    text = hover(lib, *at(LIB.read_text(), "layer2: resnet_stage", 10), net.elaborations)
    assert "torchvision's `_make_layer`" in text
    params = sum(g.nodes[n]["params"] for n in members)
    assert f"`512×28×28 · {graphdsl.units.human(params)} params" in text


def test_hover_on_named_tensors_and_networks():
    text = ("network t {\n    input 3x8x8\n    stem: conv(4, 1)\n    a = conv(6, 1)\n"
            "    b = maxpool(2)\n    concat(a, stem)\n}\n")
    result = analyse(text, "/tmp/t.cnn")
    assert hover(result, *at(text, "concat(a", 7)).startswith("`a` = `conv`")
    assert "`6×8×8 · " in hover(result, *at(text, "concat(a", 7))
    assert "`3×8×8 → 10×8×8 · " in hover(result, *at(text, "network t", 8))
    assert hover(result, 2, 1) is None  # indentation: nothing


def test_hover_in_a_library_alone_uses_a_spec_importing_it():
    lib = analyse_document(LIB.read_text(), str(LIB))
    text = hover(lib, *at(LIB.read_text(), "conv2: conv(width", 1))
    assert "(networks of `resnet101.cnn`, which imports this file)" in text


# ---- definitions, completion, symbols --------------------------------------------------------------------------


def test_definitions():
    net, lib = resnet152()
    src = LIB.read_text()
    block = lib.program.blocks["bottleneck"]
    assert definition(lib, *at(src, "bottleneck(planes, stride=stride", 2)) == block.name_span
    top = RESNET152.read_text()
    where = definition(net, *at(top, "lib/resnet", 1))
    assert Path(where.file).resolve() == LIB.resolve() and where.line == 1
    where = definition(net, *at(top, "= resnet(", 3))
    assert (Path(where.file).resolve(), where.line, where.col) == (LIB.resolve(), *at(src, "resnet(n1"))
    text = "network t {\n    input 3x8x8\n    x = conv(4, 1)\n    x2: relu\n    from x\n    output x2\n}\n"
    result = analyse(text, "/tmp/t.cnn")
    assert definition(result, *at(text, "from x", 5)).line == 3
    assert definition(result, *at(text, "output x2", 8)).line == 4


def completions(text: str, analysis=None) -> dict[str, str]:
    lines = text.split("\n")
    return {i.label: i.detail for i in complete(text, len(lines), len(lines[-1]) + 1, analysis)}


def test_completion_contexts():
    _, lib = resnet152()
    head = LIB.read_text() + "\nnetwork x {\n    input 3x32x32\n    y = conv(8, 1)\n"
    after_conv = completions(head + "    conv(8, (3, 3), ", lib)
    assert "out=" not in after_conv and "kernel=" not in after_conv and after_conv["pad="] == "default 0"
    assert completions(head + "    conv(8, 3, stride=2, ", lib).keys() >= {"pad=", "groups="}
    assert "stride=" not in completions(head + "    conv(8, 3, stride=2, ", lib)
    block = completions(head + "    bottleneck(64, ", lib)
    assert block == {"stride=": "default 1", "groups=": "default 1", "width_per_group=": "default 64",
                     "true": "", "false": "", "same": "", "global": ""}
    assert completions(head + "    # conv(", lib) == {}
    assert completions(head + '    assert true, "conv(', lib) == {}
    everything = completions(head + "    ", lib)
    assert everything["conv"].startswith("conv(out, kernel, stride=1") and "bottleneck" in everything
    assert "residual" in everything and "maxpool" in everything
    assert "conv1" in completions(head + "    from ", lib)


def test_symbols_nest_named_layers():
    _, lib = resnet152()
    found = {s.name: s for s in symbols(lib.module)}
    assert found["resnet_stage"].detail == "resnet_stage(planes, n, stride = 1, bottleneck = false, groups = 1, " \
                                           "width_per_group = 64)"
    assert [c.name for c in found["basic_block"].children] == ["conv1", "bn1", "conv2", "bn2", "downsample"]
    assert found["resnet"].kind == "network"


def test_the_analysis_needs_neither_pygls_nor_torch():
    code = ("import sys, graphdsl.lsp, graphdsl.lsp.analysis, graphdsl.lsp.completion; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('pygls', 'lsprotocol', 'torch')]; "
            "assert not bad, bad; import graphdsl.lsp.server; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ})


def test_without_pygls_graphdsl_imports_and_the_server_says_what_to_install():
    code = ("import sys; sys.modules['pygls'] = None; sys.modules['lsprotocol'] = None\n"
            "import graphdsl, graphdsl.cli, graphdsl.lsp.analysis\n"
            "from graphdsl.lsp import ServerUnavailable, serve\n"
            "try:\n    serve()\nexcept ServerUnavailable as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "pip install 'graphdsl[lsp]'" in done.stdout


def test_a_failing_analysis_is_logged_and_the_server_goes_on(monkeypatch):
    """A bug in graphdsl met while analysing: the server logs it, answers nothing from it, and goes on."""
    import asyncio

    from graphdsl.lsp import analysis, server

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(analysis, "analyse_document", broken)
    ls = server.GraphdslServer()
    doc = server.Document("file:///x.cnn", "/x.cnn", "network n { input 3x8x8 }")
    logged = []
    monkeypatch.setattr(ls, "log", lambda message, kind=None: logged.append(message))
    assert asyncio.run(ls.analyse(doc)) is None
    assert doc.analysis is None and "ZeroDivisionError: a bug" in logged[0]


def test_hover_on_an_argument_shows_its_call():
    _, lib = resnet152()
    net, _ = resnet152()
    text = hover(lib, *at(LIB.read_text(), "conv(width, 3, stride=stride", 11), net.elaborations)
    assert "in 50 instances" in text  # `stride` (a parameter) inside conv2's call: conv2's figures


def test_what_the_spec_says_reaches_the_editor_escaped():
    """A bidi override or an escape sequence in a name shows as an escape in the editor's problem list, as
    in the terminal (graphdsl.text.escape_controls)."""
    from graphdsl.lsp import server

    text = 'network n {\n    input 3x8x8\n    assert 1 == 2, "bad \u202e message"\n    conv(8, 3)\n}\n'
    (d,) = analyse(text, "/tmp/bidi.cnn").diagnostics
    assert "\u202e" in d.message
    ls = server.GraphdslServer()
    shown = ls.to_lsp(d, "/tmp/bidi.cnn", source_lines(text))
    assert "\u202e" not in shown.message and "\\u202e" in shown.message
