"""Every example in docs/language.md runs: `cnn` blocks check, `cnn-error` blocks fail as shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import graphdsl
from graphdsl.syntax import parse

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"
BLOCK = re.compile(r"```(cnn|cnn-error|text)\n(.*?)```", re.S)


def examples():
    found = BLOCK.findall(DOC.read_text())
    cases = []
    for i, (kind, body) in enumerate(found):
        if kind == "cnn":
            cases.append(pytest.param(body, None, id=f"ok-{i}"))
        elif kind == "cnn-error":
            assert found[i + 1][0] == "text", "a cnn-error example is followed by its expected text"
            cases.append(pytest.param(body, found[i + 1][1], id=f"error-{i}"))
    return cases


@pytest.mark.parametrize("source, expected", examples())
def test_doc_example(source, expected):
    if expected is None:
        module, errors = parse(source)
        assert not errors
        for definition in module.definitions:
            if definition.kind == "network":  # every network of the example checks
                net = graphdsl.load(text=source, network=definition.name)
                assert net.params >= 0 and net.output_shapes
        return
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.load(text=source)
    rendered = info.value.render()
    for line in expected.strip().splitlines():
        assert line in rendered


def test_doc_has_examples():
    kinds = [k for k, _ in BLOCK.findall(DOC.read_text())]
    assert kinds.count("cnn") >= 8 and kinds.count("cnn-error") >= 3
