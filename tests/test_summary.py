"""The static summary (`graphdsl summary`, graphdsl.backends.summary): the seed's figures, rows and
depth, the four formats, partial output on errors, golden tables, and a cross-check against the
compiled torch module where that backend exists.

Golden files live in tests/golden/; regenerate them with `GRAPHDSL_REGEN=1 pytest tests/test_summary.py`
and review the diff.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import golden_files
import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl.backends.summary import Summary, human_bytes
from graphdsl.cli import main

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
SPECS = HERE.parent / "specs"


def load(spec: str, network: str | None = None, **overrides) -> graphdsl.Network:
    return graphdsl.load(GOLDEN / spec, network, **overrides)


def library(path: str, network: str | None = None) -> graphdsl.Network:
    """A spec of the library in specs/ (written alongside): skip until it exists."""
    spec = SPECS / path
    if not spec.exists():
        pytest.skip(f"specs/{path} not written yet")
    return graphdsl.load(spec, network)


def check_golden(name: str, text: str) -> None:
    golden_files.check_golden(GOLDEN / name, text)


def row(summary: Summary, name: str):
    return next(r for r in summary.rows if r.name == name)


def run(*args: str):
    return CliRunner().invoke(main, ["summary", *map(str, args)])


# ---- the seed's figures, where a reader of the seed looks for them ---------------------------------------


def test_alexnet_original_conv1_and_pool1():
    s = library("alexnet_original.cnn").summary()
    conv1, pool1 = row(s, "conv1"), row(s, "pool1")
    assert (conv1.shape, conv1.params) == ((96, 55, 55), 34_944)
    assert (pool1.shape, pool1.params) == ((96, 27, 27), 0)
    table = s.table()
    assert "96×55×55" in table and "34,944" in table and "96×27×27" in table


def test_inception_naive_against_bottleneck():
    naive = library("examples/inception_naive.cnn").summary()
    bottleneck = library("examples/inception_bottleneck.cnn").summary()
    assert naive.totals["macs"] == 854_196_224
    assert bottleneck.totals["macs"] == 271_351_808
    assert "854,196,224 (854.2M)" in naive.table() and "271,351,808 (271.4M)" in bottleneck.table()
    # the lecture's "358M": the per-branch terms sum to 271,351,808; 358M counts the 3x3 term twice
    three = row(bottleneck, "branch2.1")
    assert three.label == "conv 3×3, 192" and three.macs == 86_704_128
    assert sum(r.macs for r in bottleneck.rows) + three.macs == 358_055_936


def test_inception_figures_from_the_test_copy():
    """The same figures from tests/golden/inception.cnn, which does not move with specs/."""
    assert load("inception.cnn", "inception_naive").summary().totals["macs"] == 854_196_224
    assert load("inception.cnn", "inception_bottleneck").summary().totals["macs"] == 271_351_808


def test_stacked_3x3_receptive_fields():
    s = library("examples/stacked3x3.cnn", "stacked3x3").summary()
    assert [r.rf for r in s.rows if r.op == "conv"] == [(3, 3), (5, 5), (7, 7)]
    assert [cells[6] for cells in s.cells() if cells[0].startswith("conv")] == ["3", "5", "7"]


def test_vgg16_total():
    s = library("vgg16.cnn").summary()
    assert s.totals["params"] == 138_357_544
    assert "138,357,544 (138.4M) trainable" in s.table()
    assert "15,470,264,320 (15.5G)" in s.table()


# ---- rows -------------------------------------------------------------------------------------------


def test_one_row_per_layer_with_figures():
    net = load("resnet152.cnn")
    s = net.summary()
    assert [r.name for r in s.rows] == [layer.name for layer in net.layers()]
    for r, layer in zip(s.rows, net.layers()):
        assert (r.shape, r.params, r.buffers, r.macs, r.activations, r.rf, r.jump) == (
            layer.shape, layer.params, layer.buffers, layer.macs, layer.activations, layer.rf, layer.jump)
    assert s.totals["params"] == net.params == 60_192_808
    assert s.totals["macs"] == net.macs and s.totals["buffers"] == net.buffers
    assert s.totals["activation_bytes"] == 4 * net.activations


def test_depth_gives_one_row_per_block():
    net = load("resnet152.cnn")
    d1 = net.summary(depth=1)
    assert [r.name for r in d1.rows] == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                                         "avgpool", "9", "fc"]
    layer3 = row(d1, "layer3")
    assert layer3.label == "bottleneck, bottleneck ×35"  # the first strides: not like the rest
    assert layer3.shape == (1024, 14, 14) and layer3.jump == (16, 16)
    assert layer3.params == sum(r.params for r in net.summary().rows if r.name.startswith("layer3."))
    d2 = net.summary(depth=2)
    assert len(d2.rows) == 4 + 3 + 8 + 36 + 3 + 3
    assert row(d2, "layer2.0").label == "bottleneck(planes=128, stride=2)"
    assert row(d2, "layer2.1").inputs == ("layer2.0",)
    assert sum(r.params for r in d2.rows) == net.params  # folding moves figures, never loses them


def test_connected_from_for_branches():
    s = load("branchy.cnn", "g").summary()
    concat = row(s, "inception4a.4")
    assert concat.op == "concat" and concat.shape == (512, 56, 56)
    assert concat.inputs == ("inception4a.branch1.2", "inception4a.branch2.1.2", "inception4a.branch3.1.2",
                             "inception4a.branch4.1.2")
    assert row(s, "inception4a.branch2.0.conv").inputs == ("maxpool1",)
    assert row(s, "aux1.0").inputs == ("inception4a.4",)
    cells = {c[0]: c[-1] for c in s.cells()}
    assert cells["inception4a.branch1.conv"] == ""  # the row above feeds it: left blank
    assert cells["inception4a.branch2.0.conv"] == "maxpool1"
    assert cells["inception4a.4"].startswith("inception4a.branch1.2, ")


def test_human_units():
    assert human_bytes(553_430_176) == "553.4 MB" and human_bytes(999) == "999 B"
    table = load("resnet152.cnn").summary().table()
    assert "60,192,808 (60.2M)" in table and "11,513,626,624 (11.5G)" in table and "240.8 MB" in table


def test_rich_markup_in_labels_is_text():
    net = graphdsl.load(text='block b(tag) { conv(4, 1) }\nnetwork n { input 3x8x8  x: b("[bold]") }')
    assert 'b(tag="[bold]")' in net.summary(depth=1).table()


# ---- formats ---------------------------------------------------------------------------------------------


def test_json_carries_raw_integers():
    result = run(GOLDEN / "branchy.cnn", "-n", "g", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["network"] == "g" and data["outputs"] == {"fc": [1000], "aux1": [1000]}
    assert data["totals"]["params"] == load("branchy.cnn", "g").params
    first = data["rows"][0]
    assert first["name"] == "conv1.conv" and first["shape"] == [64, 112, 112] and first["params"] == 9408
    assert first["inputs"] == ["input"] and first["activation_bytes"] == 4 * 64 * 112 * 112


def test_csv_carries_raw_integers():
    result = run(GOLDEN / "resnet152.cnn", "--format", "csv", "--depth", "2")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 57 and rows[-1]["name"] == "fc" and rows[-1]["params"] == "2049000"
    layer3 = next(r for r in rows if r["name"] == "layer3.0")
    assert layer3["shape"] == "1024x14x14" and layer3["macs"] == "372506624" and layer3["inputs"] == "layer2.7"


def test_markdown_is_a_table():
    md = load("branchy.cnn", "c").summary().format("markdown")
    lines = md.splitlines()
    assert lines[2] == "| Layer | Operator | Output | Params | MACs | Act. memory | RF | Stride | From |"
    assert lines[3] == "|---|---|---|---:|---:|---:|---:|---:|---|"
    with pytest.raises(ValueError):
        load("branchy.cnn", "c").summary().format("html")


@pytest.mark.parametrize("name, spec, network, depth, fmt", [
    ("summary_resnet152_depth2.txt", "resnet152.cnn", None, 2, "table"),
    ("summary_branchy_g.txt", "branchy.cnn", "g", None, "table"),
    ("summary_branchy_c.md", "branchy.cnn", "c", None, "markdown"),
])
def test_golden_summaries(name, spec, network, depth, fmt):
    text = load(spec, network).summary(depth=depth).format(fmt)
    check_golden(name, text)
    args = [GOLDEN / spec, "--format", fmt, *(["-n", network] if network else []),
            *(["--depth", depth] if depth else [])]
    assert run(*args).output == text  # the CLI prints exactly this


# ---- errors: the rows before the failing node, then the diagnostic ---------------------------------------


def test_partial_summary_then_diagnostic():
    result = CliRunner().invoke(main, ["summary", str(GOLDEN / "broken.cnn")])
    assert result.exit_code == 1
    out = result.stdout
    assert "PARTIAL" in out and [line.split()[0] for line in out.splitlines()[4:7]] == ["conv1", "relu1", "pool1"]
    assert "fc " not in out
    assert "`linear` needs a flat input" in result.stderr and "broken.cnn:7:9" in result.stderr
    check_golden("summary_broken.txt", out)


def test_partial_summary_as_json():
    result = run(GOLDEN / "broken.cnn", "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False and data["partial"] is True
    assert [r["name"] for r in data["rows"]] == ["conv1", "relu1", "pool1"]
    assert data["diagnostics"][0]["location"]["line"] == 7


def test_partial_api():
    net, diagnostics = graphdsl.api.load_partial(GOLDEN / "broken.cnn")
    assert [d.message for d in diagnostics] == [graphdsl.check(GOLDEN / "broken.cnn")[0].message]
    assert [layer for layer in net.graph if layer != "input"] == ["conv1", "relu1", "pool1"]
    assert net.graph.nodes["pool1"]["rf"] == (4, 4) and net.graph.nodes["conv1"]["params"] == 448
    ok, none = graphdsl.api.load_partial(GOLDEN / "resnet152.cnn")
    assert none == [] and ok.params == 60_192_808


def test_nothing_elaborates_before_a_syntax_error(tmp_path):
    spec = tmp_path / "bad.cnn"
    spec.write_text("network n {\n  input 3x8x8\n  conv(4, 3\n}\n")
    result = run(spec)
    assert result.exit_code == 1 and result.stdout == "" and "error" in result.stderr
    data = json.loads(run(spec, "--format", "json").output)
    assert data["ok"] is False and data["diagnostics"]
    with pytest.raises(graphdsl.SpecError):
        graphdsl.api.load_partial(spec)


def test_error_in_a_later_branch_keeps_the_others(tmp_path):
    spec = tmp_path / "branch.cnn"
    spec.write_text("network n {\n  input 3x8x8\n  stem: conv(4, 1)\n  concat {\n    a: conv(4, 1)\n"
                    "    b: conv(4, 3)\n  }\n}\n")
    result = run(spec)
    assert result.exit_code == 1
    assert "stem" in result.stdout and "`concat` needs inputs" in result.stderr


# ---- the compiled torch module agrees, layer by layer --------------------------------------------------


def _torch_module(net):
    if not hasattr(graphdsl.Network, "to_torch"):
        pytest.skip("the torch backend (Network.to_torch) is not there yet")
    torch = pytest.importorskip("torch")
    return torch, net.to_torch()


@pytest.mark.parametrize("spec, network", [pytest.param("resnet152.cnn", None, marks=pytest.mark.slow),
                                           ("branchy.cnn", "g"), ("branchy.cnn", "c")])
def test_summary_matches_the_torch_module(spec, network):
    net = load(spec, network)
    torch, model = _torch_module(net)
    modules = dict(model.named_modules())
    rows = net.summary().rows
    with_params = [r for r in rows if r.params]
    assert all(r.name in modules for r in with_params), [r.name for r in with_params if r.name not in modules]
    for r in rows:
        if r.name in modules:
            own = sum(p.numel() for p in modules[r.name].parameters(recurse=False))
            assert own == r.params, r.name
    assert sum(p.numel() for p in model.parameters()) == net.params
    assert sum(b.numel() for b in model.buffers()) == net.buffers
    shapes = {}
    hooks = [modules[r.name].register_forward_hook(lambda m, i, o, name=r.name: shapes.__setitem__(name, o.shape))
             for r in rows if r.name in modules]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *net.input_shape))
    for h in hooks:
        h.remove()
    assert shapes, "no layer ran"
    for r in rows:
        if r.name in shapes:
            assert tuple(shapes[r.name][1:]) == r.shape, r.name
