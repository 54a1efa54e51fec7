"""`graphdsl check` on valid specs: the text and JSON reports, `--network` and `-D` overrides."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from graphdsl.cli import main, parse_define

TINY = """\
network tiny(num_classes = 10, width = 8, use_bn = true) {
    input 3x32x32
    conv1: conv(width, 3, pad=1, bias=false)
    if use_bn { bn1: bn }
    relu
    pool: avgpool(global)
    flatten
    fc: linear(num_classes)
}
"""
# conv1 3*8*9 = 216, bn1 2*8 = 16, fc 8*10 + 10 = 90
TINY_PARAMS = 216 + 16 + 90
TINY_MACS = 8 * 32 * 32 * 3 * 9 + 8 * 10

TWO = """\
network small {
    input 3x32x32
    conv(16, 3)
}
network large {
    input 3x64x64
    conv(32, 3, stride=2, pad=1)
}
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.cnn").write_text(TINY)
    return "tiny.cnn"


def check(*args):
    result = CliRunner().invoke(main, ["check", *args])
    assert "Traceback" not in result.output
    return result


def test_text(tiny):
    result = check(tiny)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "tiny.cnn: ok: network `tiny`"
    report = {m[1]: m[2] for m in (re.match(r"\s+(\w[\w ]*?)\s{2,}(.*)", line) for line in lines[1:]) if m}
    assert report["input"] == "3x32x32"
    assert report["outputs"] == "output 10"
    assert report["parameters"].split()[0] == f"{TINY_PARAMS:,}"
    assert report["MACs"].split()[0] == f"{TINY_MACS:,}"
    assert result.stderr == ""


def test_json(tiny):
    result = check(tiny, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["network"] == "tiny"
    assert report["input"] == [3, 32, 32]
    assert report["outputs"] == {"output": [10]}
    assert report["params"] == TINY_PARAMS
    assert report["macs"] == TINY_MACS


def test_defines(tiny):
    result = check(tiny, "--format", "json", "-D", "num_classes=100", "-D", "width=16", "-D", "use_bn=false")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outputs"] == {"output": [100]}
    assert report["params"] == 3 * 16 * 9 + 16 * 100 + 100  # no batch norm
    assert report["macs"] == 16 * 32 * 32 * 3 * 9 + 16 * 100


def test_define_changes_text_report(tiny):
    result = check(tiny, "-D", "num_classes=1000")
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s+outputs\s+output 1000$", result.stdout, re.M)


def test_define_of_unknown_parameter(tiny):
    result = check(tiny, "-D", "num_clases=10")
    assert result.exit_code == 1
    assert result.stderr.startswith("tiny.cnn:1:9: error: network `tiny` has no parameter `num_clases`")
    assert "help: did you mean `num_classes`?" in result.stderr


def test_define_without_value_is_a_usage_error(tiny):
    result = check(tiny, "-D", "num_classes")
    assert result.exit_code == 2
    assert "expected name=value" in result.output


@pytest.mark.parametrize("text, value", [("10", 10), ("-3", -3), ("0.5", 0.5), ("true", True), ("false", False),
                                         ('"wide"', "wide"), ("wide", "wide"), (" 7 ", 7)])
def test_parse_define(text, value):
    name, parsed = parse_define(f"x={text}")
    assert name == "x"
    assert parsed == value and type(parsed) is type(value)


def test_network_choice(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.cnn").write_text(TWO)
    ambiguous = check("two.cnn")
    assert ambiguous.exit_code == 1
    assert "defines several networks" in ambiguous.stderr
    for name, shape in (("small", [16, 30, 30]), ("large", [32, 32, 32])):
        result = check("two.cnn", "--network", name, "--format", "json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["network"] == name
        assert report["outputs"] == {"output": shape}


def test_errors_in_json_go_to_stdout(tiny, tmp_path):
    (tmp_path / "bad.cnn").write_text(TINY.replace("linear(num_classes)", "linear(num_classes, bais=false)"))
    result = check("bad.cnn", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    (diag,) = report["diagnostics"]
    assert diag["message"] == "`linear` has no argument `bais`"
    assert diag["location"] == {"file": "bad.cnn", "line": 8, "col": 29, "end_line": 8, "end_col": 33}
    assert diag["help"] == "did you mean `bias`?"


def test_define_takes_a_list(tmp_path):
    """`-D` writes a list as the spec does, and the spec's check of its kind still applies."""
    from graphdsl.cli import main

    spec = tmp_path / "n.cnn"
    spec.write_text("network n(widths = [8, 16]) { input 3x8x8  for w in widths { conv(w, 1) } }")
    ok = CliRunner().invoke(main, ["check", str(spec), "-D", "widths=[4, 4, 4]", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["outputs"] == {"output": [4, 8, 8]}
    bad = CliRunner().invoke(main, ["check", str(spec), "-D", "widths=[4, 4"])
    assert bad.exit_code == 2 and "is never closed" in bad.output


def test_check_marks_training_only_outputs():
    from graphdsl.cli import main

    spec = str(Path(__file__).resolve().parent.parent / "specs" / "googlenet.cnn")
    text = CliRunner().invoke(main, ["check", spec])
    assert "outputs     fc 1000, aux2 1000 (training only), aux1 1000 (training only)" in text.output
    data = json.loads(CliRunner().invoke(main, ["check", spec, "--format", "json"]).output)
    assert data["training_outputs"] == ["aux2", "aux1"]
