"""Hostile input: tiny specs that ask for huge work, huge values or deep nesting end quickly in one
located diagnostic; no diagnostic carries a raw control character; positions are those an editor shows.

The budgets are checked before the work (graphdsl.budget, graphdsl.workload): these tests would hang
or exhaust memory, not fail politely, if a budget were checked after. Each bomb runs in-process; the
fuzzer's corpus (tests/test_fuzz.py) replays the same families under a time and memory limit.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdsl
from graphdsl.budget import MAX_ITEMS, MAX_LAYERS, MAX_STEPS
from graphdsl.diagnostics import SpecError
from graphdsl.text import is_terminal_safe


def errors(text: str, **overrides) -> list:
    try:
        graphdsl.load(text=text, **overrides)
    except SpecError as e:
        return e.diagnostics
    return []


def rendered(text: str) -> str:
    try:
        graphdsl.load(text=text)
    except SpecError as e:
        return e.render()
    return ""


def net(body: str, blocks: str = "", params: str = "") -> str:
    return f"{blocks}\nnetwork n{params} {{\n    input 3x8x8\n{body}\n}}\n"


# ---- work: refused before it runs ----------------------------------------------------------------------

BOMBS = {
    "nested loops": net("for i in range(100000) { for j in range(100000) { } }"),
    "nested empty groups": net("[[[ ] * 100000] * 100000] * 100000"),
    "nested repetitions": net("[[conv(8, 1) * 1000] * 1000] * 1000"),
    "loop over a parameter": net("for i in range(k) { for j in range(k) { relu } }", params="(k = 100000)"),
    "comprehension": net("let x = [[0 for j in range(100000)] for i in range(100000)]"),
    "comprehension in a loop": net("for i in range(100000) { let x = [j for j in range(100000)] }"),
    "block doubling": "\n".join(["block b0() { relu }"] + [f"block b{i}() {{ b{i - 1}() b{i - 1}() }}"
                                                            for i in range(1, 41)]) + net("b40()"),
    "sum in a loop": net("for i in range(100000) { let s = sum(range(100000)) }"),
    "triangular loop": net("for i in range(k) { for j in range(i) { } }", params="(k = 100000)"),
}


@pytest.mark.parametrize("name", BOMBS)
def test_a_work_bomb_ends_in_one_located_diagnostic(name):
    diags = errors(BOMBS[name])
    assert len(diags) == 1, [d.message for d in diags]
    d = diags[0]
    assert d.span is not None and d.help
    assert "past the limit" in d.message or "grow past" in d.message, d.message
    assert "GRAPHDSL_MAX_" in d.help  # says how to raise it


def test_nested_bombs_are_refused_before_they_run():
    """The static bound sees through nesting: the outer loop is refused, nothing ran inside it."""
    d = errors(BOMBS["nested loops"])[0]
    assert (d.span.line, d.span.col) == (4, 1)  # the outer `for`
    assert "10,000,200,000 steps" in d.message
    d = errors(BOMBS["nested repetitions"])[0]
    assert "1,000,000,000 layers" in d.message
    d = errors(BOMBS["block doubling"])[0]
    assert "block `b40`" in d.message and f"{2 ** 40:,}" in d.message


def test_layer_cap_stops_everything():
    """Past the layer cap, the remaining iterations do not carry on: one diagnostic, at the cap."""
    diags = errors(net(f"for i in range({MAX_LAYERS // 1000 + 1}) {{ conv(8, 1) * 1000 }}"))
    assert len(diags) == 1 and f"{MAX_LAYERS:,} layers" in diags[0].message


@pytest.mark.parametrize("body", [
    # a `let` in the loop body changes the bound: the static weighing must not use the old value
    "for i in range(3) { let n = 1  for j in range(n) { relu } }",
    # a filtered comprehension makes only what passes the filter
    "let x = [[0 for j in range(90000)] for i in range(50) if i == 0]",
    # a repetition whose count reads the shape is unknown until it runs
    "conv(8, 1)  relu * (in.channels - 7)",
])
def test_bounds_never_refuse_what_fits(body, params="(n = 100000)"):
    assert errors(net(body, params=params)) == []


def test_big_plausible_networks_fit():
    assert errors(net("conv(8, 1) * 20000")) == []
    assert errors(net('for i in range(2000) { "c{i}": conv(8, 1) }')) == []


def test_limits_can_be_raised_through_the_environment(tmp_path):
    import subprocess
    import sys

    spec = tmp_path / "n.cnn"
    spec.write_text(net(f"for i in range(1000) {{ for j in range({MAX_STEPS // 1000}) {{ }} }}"))
    code = "import graphdsl, sys; graphdsl.load(sys.argv[1]); print('ok')"
    low = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True)
    assert "past the limit" in low.stderr
    high = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True,
                          env={**__import__("os").environ, "GRAPHDSL_MAX_STEPS": str(5 * MAX_STEPS)})
    assert high.stdout.strip() == "ok", high.stderr


# ---- values: sizes and their messages -----------------------------------------------------------------

def sharing(levels: int) -> str:
    lines = ["let a0 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    lines += [f"let a{i} = [{', '.join([f'a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines)


def test_a_list_built_by_sharing_is_bounded_and_shown_short():
    diags = errors(net(sharing(8) + "\nconv(a8, 3)"))
    assert len(diags) == 1
    assert f"more than {MAX_ITEMS:,} elements" in diags[0].message
    assert len(rendered(net(sharing(8) + "\nconv(a8, 3)"))) < 2000


def test_a_large_value_in_a_message_is_elided():
    text = rendered(net(sharing(4) + "\nconv(a4, 3)"))  # 11,110 elements: allowed, but not an integer
    assert "more" in text and len(text) < 2000


def test_deep_lists_are_refused():
    diags = errors(net("let x = " + "[" * 40 + "1" + "]" * 40 + "\nrelu"))
    assert len(diags) == 1 and "nested more than 32 deep" in diags[0].message


def test_a_long_string_is_called_a_string():
    diags = errors(net('let s = "ab"\nfor i in range(14) { let s = s + s }\nrelu'))
    assert "a string of 16,384 characters" in diags[0].message


@pytest.mark.parametrize("expr, message", [
    ("range(-9000000000000000000, 9000000000000000000)", "too long"),
    ("9" * 5000, "is too large"),
    ("1e400", "is too large"),
])
def test_huge_numbers_give_diagnostics(expr, message):
    diags = errors(net(f"let x = {expr}\nrelu"))
    assert len(diags) == 1 and message in diags[0].message, [d.message for d in diags]


def test_huge_input_shape():
    diags = errors("network n {\n input 3x" + "9" * 5000 + "x8\n relu\n}")
    assert len(diags) == 1 and "too large" in diags[0].message


def test_overrides_from_python_are_checked():
    deep: object = 1
    for _ in range(50):
        deep = [deep]
    diags = errors(net("relu", params="(x = 1)"), x=deep)
    assert len(diags) == 1 and "x" in diags[0].message
    diags = errors(net("relu", params="(x = 1)"), x=object())
    assert "not a value of the language" in diags[0].message


# ---- parsing: size, nesting, recovery -----------------------------------------------------------------

def test_many_errors_on_one_line_stop_quickly():
    diags = errors(net("= " * 60000))
    assert 1 <= len(diags) <= 10


def test_too_many_tokens():
    diags = errors(net("let x = [" + ", ".join(["1"] * 60_000) + "]"))
    assert len(diags) == 1 and "tokens" in diags[0].message


def test_deep_brackets_are_located():
    diags = errors(net("let x = " + "(" * 500 + "1" + ")" * 500))
    assert len(diags) == 1 and "nested more than" in diags[0].message
    assert diags[0].span.line == 4


def test_deep_block_calls_are_located():
    blocks = "\n".join(["block b0() { relu }"] + [f"block b{i}() {{ b{i - 1}() }}" for i in range(1, 200)])
    diags = errors(net("b199()", blocks=blocks))
    assert len(diags) == 1 and "calls deep" in diags[0].message
    assert len(diags[0].notes) <= 8


def test_errors_are_capped():
    body = "\n".join(f"conv(u{i}, 1)" for i in range(400))
    diags = errors(net(body))
    assert len(diags) == 51 and diags[-1].severity == "note" and "stopped after 50" in diags[-1].message
    assert rendered(net(body)).endswith("50 errors found")


# ---- terminal safety and positions ------------------------------------------------------------------

HIDDEN = ["\x1b]0;owned\x07", "\x1b[2J", "\u202e", "\u2066", "\u200b", "\x85", "\x9b31m", "\x00", "\x7f",
          "\u2028", "\u2029", "\x0b", "\x0c", "\ufeff", "\u00ad"]


@pytest.mark.parametrize("payload", HIDDEN)
@pytest.mark.parametrize("where", ["comment", "string", "label", "name", "doc"])
def test_no_raw_control_character_reaches_a_diagnostic(payload, where):
    line = {"comment": f"conv(8, 3)  linear(10)  # {payload}",
            "string": f'let s = "{payload}"\nconv(s, 3)',
            "label": f"conv{payload}1: conv(8, 3)",
            "name": f"conv(8{payload}, 3)",
            "doc": f'"""{payload}"""\nlinear(10)'}[where]
    text = rendered(net(line))
    assert text or payload in "\x0c\x0b\ufeff\u00ad", "the spec should be invalid"
    assert is_terminal_safe(text), repr(text)


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3000), max_size=12))
@settings(max_examples=150, deadline=None)
def test_any_text_in_a_spec_renders_terminal_safe(junk):
    for spec in (net(f"conv(8, 3) {junk}"), net(f'let s = "{junk}"\nconv(s, 3)'), net(f"# {junk}\nlinear(4)")):
        assert is_terminal_safe(rendered(spec))


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0c", "\x0b", "\x85", "\x1c"])
def test_separators_inside_a_line_do_not_shift_positions(separator):
    text = net(f"# before {separator} after\nconv(8, 3)\nlinear(10)")
    d = errors(text)[0]
    assert (d.span.line, d.span.col) == (6, 1)
    assert "6 | linear(10)" in rendered(text)


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_line_ends_of_other_systems(newline):
    text = net("# a comment\nconv(8, 3)\nlinear(10)").replace("\n", newline)
    d = errors(text)[0]
    assert (d.span.line, d.span.col) == (6, 1), d
    assert "6 | linear(10)" in rendered(text)


def test_tabs_align_the_caret():
    text = rendered(net("\tconv(8, 3)\tlinear(10)"))
    source, caret = [ln for ln in text.splitlines() if ln.startswith(("4 |", "  |"))][1:3]
    assert caret.index("^") == source.index("linear")


@pytest.mark.parametrize("char, named", [("\u200b", "U+200B ZERO WIDTH SPACE"), ("\u043e", "CYRILLIC SMALL LETTER O"),
                                         ("\u00a0", "U+00A0 NO-BREAK SPACE"), ("\u201c", "LEFT DOUBLE QUOTATION")])
def test_strange_characters_are_named(char, named):
    d = errors(net(f"c{char}nv(8, 3)"))[0]
    assert named in d.message


def test_a_long_line_is_quoted_around_the_error():
    text = rendered(net("relu " * 3000 + "zzz"))
    quoted = [ln for ln in text.splitlines() if ln.startswith("4 | ")][0]
    assert len(quoted) < 500 and "zzz" in quoted


# ---- precise diagnostics ------------------------------------------------------------------------------

def test_inplace_with_a_negative_slope_is_refused():
    for call in ("leaky_relu(slope=-0.5, inplace=true)", "elu(alpha=-1.0, inplace=true)"):
        diags = errors(net(f"conv(8, 3)  {call}"))
        assert len(diags) == 1 and "cannot run in place" in diags[0].message
    assert errors(net("conv(8, 3)  leaky_relu(slope=0.2, inplace=true)  elu(inplace=true)")) == []


@pytest.mark.parametrize("body", ["conv(cfg [0], 3)\nrelu", "let c = cfg [1]\nconv(c, 3)"])
def test_a_spaced_index_is_one_precise_error(body):
    diags = errors(net(body, params="(cfg = [16, 32])"))
    assert len(diags) == 1 and "a space between `cfg` and its index" in diags[0].message


@pytest.mark.parametrize("word", ["output", "input", "from"])
def test_a_keyword_as_a_label_is_one_error(word):
    diags = errors(net(f"{word}: conv(8, 3)\nrelu"))
    assert len(diags) == 1 and "reserved word" in diags[0].message


def test_a_label_in_a_loop_is_one_error_without_a_self_note():
    diags = errors(net("for i in range(4) { c1: conv(8, 3, pad=1) }"))
    assert len(diags) == 1
    assert not diags[0].notes  # no "first used at" pointing at itself, no count of repeats


def test_an_unused_side_branch_is_a_warning():
    spec = net("conv(8, 3, pad=1)\ngate = [avgpool(global), conv(8, 1), sigmoid]\nrelu")
    network = graphdsl.load(text=spec)
    (w,) = network.graph.graph["warnings"]
    assert w.severity == "warning" and "`gate` is computed but never used" in w.message
    assert w.span.line == 5
    used = net("x: conv(8, 3, pad=1)\ngate = [avgpool(global), conv(8, 1), sigmoid]\nmul(x, gate)")
    assert graphdsl.load(text=used).graph.graph["warnings"] == []


def test_a_chain_left_behind_by_from_is_a_warning():
    network = graphdsl.load(text=net("conv(8, 3)\nrelu\nfrom in\nconv(4, 1)"))
    (w,) = network.graph.graph["warnings"]
    assert "layer `1`" in w.message


def test_the_zoo_has_no_warnings():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "specs"
    for spec in sorted(root.glob("*.cnn")):
        assert graphdsl.load(spec).graph.graph["warnings"] == [], spec


def test_printable_ascii_needs_no_escaping():
    from graphdsl.text import escape_controls

    assert escape_controls(string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", "")
                           .replace("\t", ""), keep="\n") == string.printable.replace("\x0b", "").replace(
        "\x0c", "").replace("\r", "").replace("\t", "")


# ---- imports: bounded in files, depth, tokens and errors ----------------------------------------------

def _import_errors(main) -> list:
    try:
        graphdsl.load(main)
    except SpecError as e:
        return e.diagnostics
    return []


def test_files_importing_each_other_stop_at_the_error_cap(tmp_path):
    (tmp_path / "graphdsl.toml").write_text("")
    n = 120
    for i in range(1, n + 1):
        (tmp_path / f"m{i}.cnn").write_text("".join(f'import "m{j}.cnn"\n' for j in range(1, n + 1) if j != i))
    (tmp_path / "net.cnn").write_text('import "m1.cnn"\n' + net("relu"))
    diags = _import_errors(tmp_path / "net.cnn")
    assert 1 <= len(diags) <= 50 and all("import" in d.message for d in diags)


def test_a_deep_chain_of_imports_is_refused(tmp_path):
    (tmp_path / "graphdsl.toml").write_text("")
    for i in range(40):
        (tmp_path / f"m{i}.cnn").write_text(f'import "m{i + 1}.cnn"\n')
    (tmp_path / "m40.cnn").write_text("block b() { relu }\n")
    (tmp_path / "net.cnn").write_text('import "m0.cnn"\n' + net("b()"))
    diags = _import_errors(tmp_path / "net.cnn")
    assert any("imports nested more than 32 files deep" in d.message for d in diags)


def test_imported_tokens_count_together(tmp_path):
    (tmp_path / "graphdsl.toml").write_text("")
    big = "block b{i}() {{ let x = [" + ", ".join(["1"] * 40_000) + "] relu }}\n"
    for i in range(6):
        (tmp_path / f"m{i}.cnn").write_text(big.format(i=i))
    (tmp_path / "net.cnn").write_text("".join(f'import "m{i}.cnn"\n' for i in range(6)) + net("relu"))
    diags = _import_errors(tmp_path / "net.cnn")
    assert any("tokens" in d.message for d in diags)


def test_a_loop_repeating_an_error_stops_early():
    diags = errors(net("for i in range(100000) { let x = u }"))
    assert [d.severity for d in diags] == ["error", "note"]
    assert "999 more times" in diags[0].notes[-1] and "stopped after 1,000 errors" in diags[1].message


@pytest.mark.parametrize("text, message", [
    (net('let s = "' + "a" * 2_000_000 + "\nrelu"), "never closed, and runs 2,000,001 characters"),
    ('"""doc\n' + net("relu") + "x" * 1_000_000, "this doc string is never closed"),
    (net('let s = "' + "a" * 20_000 + '"\nrelu'), "a string of 20,002 characters"),
    (net('let s = "abc\nrelu'), "this string is never closed"),
])
def test_long_or_unclosed_strings_are_refused_before_parsing(text, message):
    diags = errors(text)
    assert len(diags) == 1 and message in diags[0].message


def test_strides_compounding_on_a_1x1_map_stay_printable():
    """The fuzzer's find: stride-2 convs on a 1x1 map keep its size while the stride doubles (2^30000)."""
    text = net("avgpool(global)\nconv(4, 3, stride=2, pad=1) * 3000")
    network = graphdsl.load(text=text)
    assert max(network.layers()[-1].jump) <= 2**40
    str(network.summary())
