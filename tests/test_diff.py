"""`graphdsl.diff`: two networks compared layer by layer (matched by module path), and the diff diagram.

Golden files live in tests/golden/diff/ (text and markdown of the four documented pairs and one spec
under two `-D` settings); regenerate them with `GRAPHDSL_REGEN=1 pytest tests/test_diff.py` and review
the diff.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import golden_files
import pytest
import specgen
from hypothesis import given, settings
from hypothesis import strategies as st

import graphdsl
from graphdsl.backends import dot
from graphdsl.diff import FORMATS, TOTALS, diff
from graphdsl.text import is_terminal_safe

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOLDEN = HERE / "golden" / "diff"
SUFFIX = {"text": "txt", "markdown": "md"}


@functools.cache
def load(spec: str, **overrides) -> graphdsl.Network:
    return graphdsl.load(ROOT / "specs" / spec, **overrides)


# golden name -> (a, b, a's overrides, b's overrides, labels)
PAIRS = {
    "resnet50_v1__resnet50": ("examples/resnet50_v1.cnn", "resnet50.cnn", {}, {}, None),
    "plain56__resnet56": ("cifar/plain56.cnn", "cifar/resnet56.cnn", {}, {}, None),
    "vgg16__vgg19": ("vgg16.cnn", "vgg19.cnn", {}, {}, None),
    "inception_naive__inception_bottleneck": ("examples/inception_naive.cnn", "examples/inception_bottleneck.cnn",
                                              {}, {}, None),
    "resnet50__num_classes10": ("resnet50.cnn", "resnet50.cnn", {}, {"num_classes": 10},
                                ("specs/resnet50.cnn", "specs/resnet50.cnn -B num_classes=10")),
}


def pair(name: str):
    """The diff labelled as the CLI labels it: the file, and the overrides of that side."""
    a, b, da, db, labels = PAIRS[name]
    return diff(load(a, **da), load(b, **db), labels=labels or (f"specs/{a}", f"specs/{b}"))


@pytest.mark.parametrize("fmt", ["text", "markdown"])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_golden(name, fmt):
    golden_files.check_golden(GOLDEN / f"{name}.{SUFFIX[fmt]}", pair(name).format(fmt))


# ---- the documented pairs -----------------------------------------------------------------------


def test_resnet_v1_against_v15_same_params_231m_more_macs():
    d = pair("resnet50_v1__resnet50")
    assert d.totals["params"] == (25_557_032, 25_557_032)
    assert d.totals["macs"] == (3_857_973_248, 4_089_184_256)
    assert d.delta("macs") == 231_211_008
    assert not d.added and not d.removed
    # the stride moves from conv1 to conv2 in the first block of stages 2-4; conv1's output grows 4x
    changed = {c.path: c for c in d.changed}
    for stage in ("layer2", "layer3", "layer4"):
        conv1, conv2 = changed[f"{stage}.0.conv1"], changed[f"{stage}.0.conv2"]
        assert conv1.a.attrs["stride"] == (2, 2) and conv1.b.attrs["stride"] == (1, 1)
        assert conv2.a.attrs["stride"] == (1, 1) and conv2.b.attrs["stride"] == (2, 2)
        assert conv1.delta("macs") == 77_070_336 and conv1.delta("params") == 0
        assert "stride 2→1" in conv1.what() and f"shape {conv1.a.shape[0]}×" in conv1.what()
    assert {c.path.rsplit(".", 1)[1] for c in d.changed} == {"conv1", "bn1", "2", "conv2"}
    assert [s.name for s in d.scopes if s.changed] == ["layer2", "layer3", "layer4"]
    assert d.outputs == [("output", (1000,), (1000,), "fc", "fc")] and d.input == ((3, 224, 224), (3, 224, 224))


def test_plain_against_resnet_adds_the_shortcuts():
    d = pair("plain56__resnet56")
    assert d.delta("params") == 0 and d.delta("macs") == 0
    assert d.arguments == [("shortcuts", False, True)]
    added_ops = {r.op for r in d.added}
    assert added_ops == {"relu", "add", "pad_channels"}
    assert sum(1 for c in d.changed if c.a.op == "relu" and c.b.op == "add") == 25  # 27 blocks, 2 with projections
    assert [c.path for c in d.calls] == ["layer1", "layer2", "layer3"]


def test_vgg16_against_vgg19():
    d = pair("vgg16__vgg19")
    assert d.totals["layers"] == (40, 46) and len(d.added) == 6
    assert d.delta("params") == 143_667_240 - 138_357_544
    assert [(c.path, c.text()) for c in d.calls] == [("features", "vgg_features: cfg 16→19")]


def test_inception_naive_against_bottleneck():
    d = pair("inception_naive__inception_bottleneck")
    assert d.totals["macs"] == (854_196_224, 271_351_808)
    assert [r.path for r in d.removed] == ["branch2", "branch3", "branch4"]
    assert [c.path for c in d.changed] == ["4"] and d.outputs[0][1:3] == ((672, 28, 28), (480, 28, 28))


def test_one_spec_under_two_settings_shows_just_the_fc():
    d = pair("resnet50__num_classes10")
    assert [c.path for c in d.changed] == ["fc"] and not d.added and not d.removed and not d.rf_only
    assert d.arguments == [("num_classes", 1000, 10)]
    assert d.changed[0].what(figures=False) == "out 1000→10; shape 1000 → 10"
    assert d.delta("params") == -(2048 + 1) * 990


@pytest.mark.parametrize("spec", ["resnet50.cnn", "googlenet.cnn", "cifar/resnet56.cnn",
                                  "examples/inception_naive.cnn", "convnext_tiny.cnn"])
def test_a_spec_against_itself_is_empty(spec):
    d = diff(load(spec), load(spec))
    assert d.empty and not d
    assert d.format("text").endswith("no differences\n")
    assert "No differences." in d.format("markdown")
    assert json.loads(d.format("json"))["empty"] is True
    assert not d.highlight()


# ---- properties ------------------------------------------------------------------------------


def check_properties(a: graphdsl.Network, b: graphdsl.Network) -> None:
    d, back = diff(a, b), diff(b, a)
    fa, fb = a.figures(), b.figures()
    for key in TOTALS:
        assert d.totals[key] == (fa[key], fb[key])
        assert d.delta(key) == fb[key] - fa[key]
    ga, gb = a.graph, b.graph
    assert all(r.path in gb and r.path not in ga for r in d.added)
    assert all(r.path in ga and r.path not in gb for r in d.removed)
    assert all(c.path in ga and c.path in gb for c in d.changed + d.rf_only)
    # every layer is counted once
    assert len(d.changed) + len(d.rf_only) + d.unchanged + len(d.added) == fb["layers"]
    assert len(d.changed) + len(d.rf_only) + d.unchanged + len(d.removed) == fa["layers"]
    # symmetric
    assert {r.path for r in d.added} == {r.path for r in back.removed}
    assert {r.path for r in d.removed} == {r.path for r in back.added}
    assert {c.path for c in d.changed} == {c.path for c in back.changed}
    assert d.empty == back.empty
    assert {k: (y, x) for k, (x, y) in d.totals.items()} == back.totals
    # scope counts add up
    assert sum(s.changed for s in d.scopes) == len(d.changed)
    assert sum(s.added for s in d.scopes) == len(d.added)
    assert sum(s.removed for s in d.scopes) == len(d.removed)
    assert diff(a, a).empty and diff(b, b).empty
    for fmt in FORMATS:
        assert is_terminal_safe(d.format(fmt))


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_properties_of_the_documented_pairs(name):
    a, b, da, db, _ = PAIRS[name]
    check_properties(load(a, **da), load(b, **db))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.tuples(specgen.networks(), specgen.networks()))
def test_properties_of_generated_networks(nets):
    a, b = (graphdsl.load(text=n.render()) for n in nets)
    check_properties(a, b)


def test_json_is_plain_data():
    data = json.loads(pair("resnet50_v1__resnet50").format("json"))
    assert data["totals"]["macs"] == {"a": 3_857_973_248, "b": 4_089_184_256, "delta": 231_211_008}
    assert data["counts"] == {"added": 0, "removed": 0, "changed": 12, "rf_only": 125, "unchanged": 38}
    first = data["changed"][0]
    assert first["path"] == "layer2.0.conv1"
    assert {"field": "attrs.stride", "a": [2, 2], "b": [1, 1]} in first["changes"]
    call = data["calls"][0]
    assert (call["path"], call["a"]["block"], call["b"]["block"]) == ("layer1", "resnet_v1_stage", "resnet_stage")
    assert call["a"]["args"] == call["b"]["args"] == {"planes": 64, "n": 3, "stride": 1, "bottleneck": True,
                                                      "groups": 1, "width_per_group": 64}


def test_unknown_format():
    with pytest.raises(ValueError, match="unknown diff format"):
        pair("vgg16__vgg19").format("html")


def test_spec_text_is_escaped():
    """A string argument holding ESC and a bidi override reaches no output raw."""
    text = 'network n(tag = "x") { input 3x8x8  c: conv(4, 3) }'
    a = graphdsl.load(text=text)
    b = graphdsl.load(text=text, tag="\x1b[31mred\u202e")
    d = diff(a, b, labels=("a\x1b]0;title\x07", "b"))
    assert not d.empty and d.arguments
    for fmt in FORMATS:
        out = d.format(fmt)
        assert is_terminal_safe(out) and "\x1b" not in out and "\u202e" not in out
    assert "\\x1b" in d.format("text")
    source = dot.diff_diagram(d).source  # DOT's own tabs aside, nothing hidden
    assert is_terminal_safe(source.replace("\t", " ")) and "\x1b" not in source


# ---- the diagram ------------------------------------------------------------------------------


def fills(source: str, node: str) -> str:
    """The DOT attributes of a node statement."""
    found = re.search(rf'^\s*"?{re.escape(node)}"? \[(.*)\]$', source, re.M)
    assert found, f"no node {node}"
    return found.group(1)


def test_diagram_colours_changed_and_added_nodes():
    d = pair("inception_naive__inception_bottleneck")
    source = dot.diff_diagram(d).source
    changed, added = dot.DIFF_COLOURS["changed"][0], dot.DIFF_COLOURS["added"][0]
    assert changed in fills(source, "4")
    for n in ("branch2.0", "branch2.1", "branch4.1"):
        assert added in fills(source, n)
    assert dot.UNCHANGED in fills(source, "branch1")
    for n in ("branch2", "branch3", "branch4"):  # a's layers, drawn apart
        assert "dashed" in fills(source, f"{n} (removed)")
    assert "specs/examples/inception_naive.cnn → specs/examples/inception_bottleneck.cnn" in source


def test_diagram_colours_the_fold_that_holds_a_change():
    d = pair("resnet50_v1__resnet50")
    changed = dot.DIFF_COLOURS["changed"][0]
    source = dot.diff_diagram(d, depth=2).source
    for stage in ("layer2", "layer3", "layer4"):
        assert changed in fills(source, f"{stage}.0") and "4 changed" in fills(source, f"{stage}.0")
        assert changed not in fills(source, f"{stage}.1..{stage}.{ {'layer2': 3, 'layer3': 5, 'layer4': 2}[stage]}")
    assert changed not in fills(source, "layer1.0")
    deep = dot.diff_diagram(d, depth=1).source  # whole stages folded
    assert changed in fills(deep, "layer2") and changed not in fills(deep, "layer1")


def test_diagram_of_no_difference_has_no_colour():
    d = diff(load("vgg16.cnn"), load("vgg16.cnn"))
    source = dot.diff_diagram(d).source
    assert all(colour not in source for colour, _ in dot.DIFF_COLOURS.values() if colour != "#ffffff")
    assert "(removed)" not in source and "no differences" in source


def test_plain_diagram_is_unchanged_by_the_diff_mode():
    net = load("examples/inception_bottleneck.cnn")
    assert dot.diagram(net.graph).source == dot.diagram(net.graph, highlight=None).source
    assert dot.UNCHANGED not in dot.diagram(net.graph).source


# ---- the docs ----------------------------------------------------------------------------------


def test_docs_show_real_output():
    """Every line of an output shown in docs/diff.md (text blocks, the markdown tables) is a line of a golden."""
    doc = (ROOT / "docs" / "diff.md").read_text(encoding="utf-8")
    golden = {line for p in GOLDEN.iterdir() for line in p.read_text(encoding="utf-8").splitlines()}
    shown = [line for block in re.findall(r"```text\n(.*?)```", doc, re.S) for line in block.splitlines()]
    shown += [line for line in doc.splitlines() if line.startswith("| ~ ") or line.startswith("| + ")]
    assert len(shown) > 100
    missing = [line for line in shown if line.strip() not in ("", "…") and line not in golden]
    assert not missing, missing[:5]


# ---- the command line ----------------------------------------------------------------------------------

def _cli(*args: str, cwd: Path = ROOT):
    import os

    from click.testing import CliRunner

    from graphdsl.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, list(args))
    finally:
        os.chdir(old)


def test_cli_one_spec_under_two_settings_matches_the_golden():
    result = _cli("diff", "specs/resnet50.cnn", "-B", "num_classes=10")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (GOLDEN / "resnet50__num_classes10.txt").read_text().strip()
    assert "fc" in result.stdout and "1000→10" in result.stdout


def test_cli_exit_code_and_formats(tmp_path):
    assert _cli("diff", "specs/resnet18.cnn", "specs/resnet18.cnn", "--exit-code").exit_code == 0
    differ = _cli("diff", "specs/vgg16.cnn", "specs/vgg19.cnn", "--exit-code", "--format", "json")
    assert differ.exit_code == 1
    data = json.loads(differ.stdout)
    assert data["totals"]["params"]["delta"] == 5_309_696
    md = _cli("diff", "specs/vgg16.cnn", "specs/vgg19.cnn", "--format", "markdown")
    assert md.exit_code == 0 and md.stdout.startswith("**a:**")


def test_cli_draws_the_diff_and_refuses_bad_input(tmp_path):
    out = tmp_path / "d.svg"
    result = _cli("diff", "specs/examples/inception_naive.cnn", "specs/examples/inception_bottleneck.cnn",
                  "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().lstrip().startswith(("<?xml", "<svg"))
    bad = tmp_path / "bad.cnn"
    bad.write_text("network bad { input 3x8x8 conv(8, 3) linear(10) }")
    result = _cli("diff", "specs/resnet18.cnn", str(bad), "-o", str(tmp_path / "x.svg"))
    assert result.exit_code == 1 and "error:" in result.stderr
    assert not (tmp_path / "x.svg").exists()
