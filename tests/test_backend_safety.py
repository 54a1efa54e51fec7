"""No hidden character of a spec reaches a summary, a diagram or generated code raw.

A spec's doc strings and string values may hold ESC sequences, C1 controls, bidi overrides, zero-width and
line-separator characters. Every face shows them escaped: the summary in all its formats (JSON as `\\uXXXX`
escapes, the value kept), the DOT source of the diagram at every depth, and the generated PyTorch source
(escaped docstrings and comments). Checked with graphdsl.text.is_terminal_safe, on fixed payloads and on
random strings (hypothesis).
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphdsl
from graphdsl.backends import dot
from graphdsl.backends.summary import FORMATS, json_text
from graphdsl.text import is_terminal_safe

HIDDEN = ("\x1b]0;title\x07", "\x1b[2J", "\x9b31m", "\x85", "\u202e", "\u2066", "\u2028", "\u2029", "\u200b", "\u200d",
          "\ufeff", "\x7f", "\x00", "\U000e0041", "\r")
PAYLOAD = "a" + "".join(HIDDEN) + "z"


def spec(doc: str, value: str) -> str:
    """A spec with `doc` in every doc string and `value` in block and network string arguments. The value
    may not hold what ends a one-line string (`"`, `\\`, a newline)."""
    return (f'"""file {doc}"""\n'
            f'block b(kind = "{value}", n = 1) {{\n'
            f'    """block {doc}"""\n'
            "    conv(8, 3, pad=1)  relu\n"
            "}\n"
            f'block pair(tag) {{ """pair {doc}"""  first: b(tag)  second: b(tag, 2) }}\n'
            f'network n(tag = "{value}") {{\n'
            f'    """network {doc}"""\n'
            "    input 3x8x8\n"
            f'    s: b("{value}") * 2\n'
            "    t: b()\n"
            "    u: pair(tag)\n"
            "    p = [avgpool(global), flatten]\n"
            "    from u\n"
            "    relu\n"
            "}\n")


def dot_is_safe(source: str) -> bool:
    """DOT text indents with tabs: those are fine, any other hidden character is not."""
    return is_terminal_safe("\n".join(re.sub(r"^\t+", "", line) for line in source.split("\n")))


def outputs(net: graphdsl.Network) -> dict[str, str]:
    """Every text the back ends make of `net`."""
    found = {}
    for depth in (None, 1, 2):
        summary = net.summary(depth)
        for fmt in FORMATS:
            found[f"summary {fmt} depth={depth}"] = summary.format(fmt)
        found[f"dot depth={depth}"] = net.render(depth=depth).source
    found["dot expanded"] = net.render(expand=True).source
    found["torch"] = net.source()
    return found


def assert_safe(net: graphdsl.Network) -> None:
    for name, text in outputs(net).items():
        safe = dot_is_safe(text) if name.startswith("dot") else is_terminal_safe(text)
        assert safe, (name, [c for c in text if not is_terminal_safe(c) and c not in "\t\n"][:5])


def load(doc: str, value: str) -> graphdsl.Network | None:
    try:
        return graphdsl.load(text=spec(doc, value))
    except graphdsl.SpecError:
        return None  # the front end may refuse some characters: then nothing reaches a back end


def test_fixed_payloads_reach_no_output_raw():
    for doc, value in ((PAYLOAD, PAYLOAD.replace("\r", "")), *((h, h) for h in HIDDEN if h != "\r")):
        net = load(doc, value)
        if net is None:
            continue
        assert net.graph.graph["scopes"][("t",)]["args"]["kind"] == value  # it did reach the IR
        assert_safe(net)


def test_the_payload_reaches_the_ir_and_shows_escaped():
    net = load(PAYLOAD, PAYLOAD.replace("\r", ""))
    if net is None:
        pytest.skip("the front end refuses hidden characters in strings")
    table = net.summary(1).table()
    assert "\\x1b]0;title\\x07" in table and "\\u202e" in table  # shown, not dropped
    assert "\\x1b" in net.render(depth=1).source


def test_summary_json_keeps_the_value_and_escapes_it():
    net = load(PAYLOAD, PAYLOAD.replace("\r", ""))
    if net is None:
        pytest.skip("the front end refuses hidden characters in strings")
    summary = net.summary(1)
    text = summary.json()
    assert is_terminal_safe(text)
    assert json.loads(text) == json.loads(json.dumps(summary.to_json()))  # the same data, escaped only
    assert "\\u202e" in text and "\\u001b" in text and "\\udb40\\udc41" in text  # a tag character: a surrogate pair


def test_json_text_is_json():
    data = {"a\u202eb": ["\x1b", "\x85", "é", "\u2028", "\U000e0041", "\ud800", "plain"], "n": 1}
    text = json_text(data)
    assert is_terminal_safe(text) and "é" in text and json.loads(text) == data


def test_dot_tooltips_keep_backslashes_literal():
    net = load("doc", "back\\\\slash")  # the spec's `\\` is one backslash
    assert net is not None
    source = net.render(depth=1).source
    assert dot_is_safe(source)
    tooltips = re.findall(r'tooltip="((?:[^"\\]|\\.)*)"', source)
    assert all(not re.search(r"(?<!\\)\\(?![\\\"])", t.replace("\\\\", "")) for t in tooltips), tooltips


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters='"\\\n'), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.text(st.characters(codec="utf-8", exclude_characters='"'), max_size=12), value=_TEXT)
def test_random_strings_reach_no_output_raw(doc, value):
    net = load(doc, value)
    if net is not None:
        assert_safe(net)


def test_dot_write_escapes_nothing_twice(tmp_path):
    """The DOT text written is the source (atomically): escaping happens once, in diagram()."""
    net = load(PAYLOAD, PAYLOAD.replace("\r", ""))
    if net is None:
        pytest.skip("the front end refuses hidden characters in strings")
    graph = dot.diagram(net.graph, depth=1)
    path = dot.write(graph, tmp_path / "n.dot")
    assert path.read_text(encoding="utf-8") == graph.source
