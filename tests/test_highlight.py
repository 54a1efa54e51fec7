"""Syntax highlighting: the Pygments lexer (through Pygments' entry point discovery), colour in
diagnostics (on only when asked, never letting control characters through), and the TextMate grammar
(editors/cnn.tmLanguage.json) cross-checked against the lexer by a small interpreter of its rules."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, String

import graphdsl
from graphdsl.diagnostics import Diagnostic, Span
from graphdsl.highlight import CnnLexer, colorize, use_color
from graphdsl.text import is_terminal_safe

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*ROOT.glob("specs/**/*.cnn"), *ROOT.glob("examples/**/*.cnn")])
GRAMMAR = ROOT / "editors" / "cnn.tmLanguage.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tokens(text: str):
    return [(t, v) for _, t, v in CnnLexer().get_tokens_unprocessed(text)]


def test_pygments_finds_the_lexer_through_the_entry_point():
    assert isinstance(get_lexer_by_name("cnn"), CnnLexer)
    assert isinstance(get_lexer_by_name("graphdsl"), CnnLexer)
    assert isinstance(get_lexer_for_filename("resnet50.cnn"), CnnLexer)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_spec_lexes_without_errors_and_round_trips(path):
    text = path.read_text()
    toks = tokens(text)
    assert not [v for t, v in toks if t in Error], path
    assert "".join(v for _, v in toks) == text


def test_known_tokens_get_known_types():
    text = ('"""Doc."""\nimport "lib/x.cnn"\nblock stage(c = 3) {\n    conv1: conv(in.channels, 3, pad=same)  # c\n'
            '    "layer{i}": relu\n    let x = [1.5e-3, 2] * 2\n    input 3x224x224\n    output a, training: b\n'
            '    if true { residual { bn } shortcut { relu } }\n    for i in range(3) { from in }\n}\n')
    found = {v: t for t, v in tokens(text) if v.strip()}
    assert found['"""Doc."""'] in String.Doc
    assert found["import"] in Keyword and found['"lib/x.cnn"'] in String
    assert found["block"] in Keyword.Declaration and found["stage"] in Name.Class
    assert found["conv1"] in Name.Label and found["conv"] in Name.Builtin and found["relu"] in Name.Builtin
    assert found["channels"] in Name.Attribute and found["same"] in Keyword.Constant
    assert found["# c"] in Comment and found['"layer{i}"'] in String
    assert found["1.5e-3"] in Number.Float and found["2"] in Number.Integer and found["3x224x224"] in Number
    for word in ("let", "input", "output", "training", "if", "residual", "shortcut", "for", "in", "from"):
        assert found[word] in Keyword, word
    assert found["true"] in Keyword.Constant and found["range"] in Name.Function


def test_unknown_characters_are_error_tokens_and_the_text_survives():
    text = "network n { input 3x8x8 ` conv(8, 3) }"
    toks = tokens(text)
    assert (Error, "`") in toks and "".join(v for _, v in toks) == text


# ---- colour in diagnostics -----------------------------------------------------------------------------

SPEC = "network n {\n    input 3x8x8\n    conv(8, 3, strid=2)  # \x1b]0;title\x07 \u202e\n}\n"


def diagnostic() -> tuple[Diagnostic, dict]:
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.load(text=SPEC)
    return info.value.diagnostics[0], info.value.sources


def test_uncoloured_render_has_no_escape_sequences_and_is_unchanged():
    d, sources = diagnostic()
    plain = d.render(sources)
    assert plain == d.render(sources, color=False)
    assert "\x1b" not in plain and is_terminal_safe(plain)
    assert "3 |     conv(8, 3, strid=2)  # \\x1b]0;title\\x07 \\u202e" in plain


def test_coloured_render_colours_the_source_line_only_and_escapes_the_spec():
    d, sources = diagnostic()
    coloured = d.render(sources, color=True)
    assert ANSI.sub("", coloured) == d.render(sources)  # the same text, with colour codes added
    assert "\x1b[" in coloured.splitlines()[2] and "\x1b[" in coloured.splitlines()[3]
    assert "\x1b]" not in coloured and "\x07" not in coloured and "\u202e" not in coloured
    assert is_terminal_safe(ANSI.sub("", coloured))
    assert coloured.splitlines()[0] == d.render(sources).splitlines()[0]  # the message itself stays plain


def test_spec_error_render_passes_colour_on():
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.load(text=SPEC)
    assert "\x1b[" in info.value.render(color=True) and "\x1b[" not in info.value.render()


def test_colorize_keeps_the_text():
    text = 'conv1: conv(64, 3) # x \\x1b'
    assert ANSI.sub("", colorize(text)) == text


class Stream:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("env, tty, expected", [
    ({}, True, True), ({}, False, False), ({"NO_COLOR": ""}, True, False), ({"TERM": "dumb"}, True, False),
    ({"FORCE_COLOR": "1"}, False, True), ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, False, True),
])
def test_use_color(monkeypatch, env, tty, expected):
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert use_color(Stream(tty)) is expected


def test_colour_finds_the_quoted_line_below_a_message_of_several_lines():
    d = Diagnostic("first line\nsecond line", Span("f.cnn", 1, 4, 1, 8), help="h")
    lines = d.render({"f.cnn": "ab conv(1)"}, color=True).splitlines()
    assert lines[:2] == ["f.cnn:1:4: error: first line", "second line"]
    assert lines[3].startswith("1 | ab \x1b[") and "\x1b[1;31m^^^^" in lines[4]


def test_diagnostic_without_source_renders_the_same_with_colour():
    d = Diagnostic("no such file `x`", Span("x.cnn", 1, 1, 1, 2), help="check the path")
    assert d.render({}, color=True) == d.render({})


# ---- the TextMate grammar -----------------------------------------------------------------------------------


def grammar() -> dict:
    return json.loads(GRAMMAR.read_text())


def test_grammar_is_valid_json_with_compiling_regexes():
    g = grammar()
    assert g["scopeName"] == "source.cnn" and "cnn" in g["fileTypes"]
    for rule in g["patterns"]:
        for key in ("match", "begin", "end"):
            if key in rule:
                re.compile(rule[key])  # the subset used is common to Oniguruma and Python's re
        assert "name" in rule or "captures" in rule


def textmate_scopes(text: str) -> list[str]:
    """The scope of each character, by the grammar's top-level `match` and `begin`/`end` rules applied
    line by line as a TextMate engine does (the earliest match wins, then the first rule)."""
    rules = [(r, re.compile(r.get("match") or r["begin"]), re.compile(r["end"]) if "end" in r else None)
             for r in grammar()["patterns"]]
    scopes = [""] * len(text)
    inside = None  # the begin/end rule whose end is being looked for
    base = 0
    for line in text.split("\n"):
        pos = 0
        while pos < len(line):
            if inside is not None:
                rule, end = inside
                m = end.search(line, pos)
                stop = m.end() if m else len(line)
                scopes[base + pos:base + stop] = [rule["name"]] * (stop - pos)
                pos = stop
                if m:
                    inside = None
                continue
            best = None
            for rule, pattern, end in rules:
                m = pattern.search(line, pos)
                if m and m.end() > m.start() and (best is None or m.start() < best[1].start()):
                    best = (rule, m, end)
            if best is None:
                break
            rule, m, end = best
            if "name" in rule:
                scopes[base + m.start():base + m.end()] = [rule["name"]] * (m.end() - m.start())
            for group, capture in rule.get("captures", {}).items():
                if m.group(int(group)) is not None:
                    a, b = m.span(int(group))
                    scopes[base + a:base + b] = [capture["name"]] * (b - a)
            pos = m.end()
            if end is not None:
                inside = (rule, end)
        base += len(line) + 1
    return scopes


def category_of_scope(scope: str) -> str | None:
    for prefix, category in (("comment", "comment"), ("string", "string"), ("constant.numeric", "number"),
                             ("keyword.operator", None), ("keyword", "keyword"), ("constant.language", "keyword")):
        if scope.startswith(prefix):
            return category
    return None


def category_of_token(token) -> str | None:
    for parent, category in ((Comment, "comment"), (String, "string"), (Number, "number"), (Keyword, "keyword")):
        if token in parent:
            return category
    return None


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_textmate_grammar_agrees_with_the_lexer(path):
    text = path.read_text()
    scopes = textmate_scopes(text)
    pygments_cats: list[str | None] = []
    for _, token, value in CnnLexer().get_tokens_unprocessed(text):
        pygments_cats += [category_of_token(token)] * len(value)
    disagreements = [(i, text[i]) for i in range(len(text)) if not text[i].isspace() and
                     category_of_scope(scopes[i]) != pygments_cats[i]]
    assert not disagreements, f"{path}: {disagreements[:5]}"
