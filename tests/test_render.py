"""Diagrams (`graphdsl render`, graphdsl.backends.dot): golden DOT sources, determinism, structure,
the fallback without Graphviz's `dot` program, atomic writes, and no torch on the way.

Golden files live in tests/golden/; regenerate them with `GRAPHDSL_REGEN=1 pytest tests/test_render.py`
and review the diff.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import golden_files
import graphviz
import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl.backends import dot
from graphdsl.cli import main
from graphdsl.files import write_atomic
from graphdsl.ops import REGISTRY

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
ROOT = HERE.parent
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's `dot` program is not installed")

# golden name -> (spec, network, render keyword arguments)
CASES = {
    "resnet152": ("resnet152.cnn", None, {}),
    "resnet152_depth2": ("resnet152.cnn", None, {"depth": 2}),
    "branchy_g": ("branchy.cnn", "g", {}),
    "branchy_c": ("branchy.cnn", "c", {}),
    "inception_bottleneck": ("inception.cnn", "inception_bottleneck", {}),
}


def load(spec: str, network: str | None = None, **overrides) -> graphdsl.Network:
    return graphdsl.load(GOLDEN / spec, network, **overrides)


def check_golden(name: str, text: str) -> None:
    golden_files.check_golden(GOLDEN / name, text)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_dot(case):
    spec, network, kwargs = CASES[case]
    check_golden(f"{case}.dot", load(spec, network).render(**kwargs).source)


def test_dot_source_is_the_same_in_fresh_processes():
    """Byte for byte, whatever the hash seed: nothing depends on set or dict-of-hash order."""
    code = ("import sys, graphdsl; n = graphdsl.load(sys.argv[1], sys.argv[2]); "
            "sys.stdout.buffer.write(n.render().source.encode())")
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.append(subprocess.run([sys.executable, "-c", code, str(GOLDEN / "branchy.cnn"), "g"], env=env,
                                   capture_output=True, check=True).stdout)
    assert outs[0] == outs[1] and outs[0].startswith(b"digraph g {")


@needs_dot
def test_render_twice_gives_the_same_bytes(tmp_path):
    runner = CliRunner()
    for name in ("a.svg", "b.svg"):
        result = runner.invoke(main, ["render", str(GOLDEN / "resnet152.cnn"), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    a, b = (tmp_path / "a.svg").read_bytes(), (tmp_path / "b.svg").read_bytes()
    assert a == b and b"<svg" in a


# ---- what the diagram shows -----------------------------------------------------------------


def test_nodes_show_operator_and_edges_the_shape():
    src = load("resnet152.cnn").render().source
    assert "conv 7×7, 64, /2" in src and "maxpool 3×3, /2" in src and "linear 1000" in src
    assert 'label=" 64×56×56"' in src and 'label=" 3×224×224"' in src
    assert "layer1.0 · bottleneck" in src and "layer1.0.downsample" in src
    assert "rankdir=TB" in src


def test_runs_of_identical_blocks_fold():
    src = load("resnet152.cnn").render().source
    assert "bottleneck ×35" in src and "layer3.1 … layer3.35" in src
    assert "layer3.0 · bottleneck" in src  # the first block, with its projection, stays open
    assert '"layer3.5.conv2"' not in src
    expanded = load("resnet152.cnn").render(expand=True).source
    assert '"layer3.5.conv2"' in expanded and "×35" not in expanded
    assert "layer3.5 · bottleneck" in expanded


def test_depth_folds_everything_below():
    net = load("resnet152.cnn")
    d2 = net.render(depth=2).source
    assert '"layer3.0" [' in d2 and "layer3 · bottleneck ×36" in d2 and "bottleneck ×35" in d2
    assert "conv 1×1" not in d2  # every conv inside a block is folded
    d1 = net.render(depth=1).source
    assert "cluster_" not in d1 and "layer4: planes" not in d1
    # folded, layer4 shows that its first bottleneck (stride 2, with a downsample) is not like the other two
    assert ('\tlayer4 [label=<<b>bottleneck, bottleneck ×2</b><br/><font point-size="9" color="#555555">layer4</font>'
            in d1)


def test_a_repeat_that_is_one_run_is_one_box():
    src = load("branchy.cnn", "c").render().source
    assert "basic_a ×3" in src and "layer1 (layer1.0 … layer1.2)" in src
    assert "cluster_layer1 " not in src and "cluster_layer1\n" not in src


def test_residual_and_inception_structure():
    src = load("branchy.cnn", "c").render().source
    assert '"layer2.0.7" [label="+" ' in src and "shape=circle" in src  # the residual add
    assert "subsample /2" in src and "pad_channels 32" in src
    assert '"layer1.2.6 (split)" -> "layer2.0.0"' in src  # the block input splits at a point
    assert '"layer1.2.6 (split)" -> "layer2.0.5"' in src
    g = load("branchy.cnn", "g").render().source
    for b in range(1, 5):
        assert f"cluster_inception4a.branch{b}" in g
    assert "concat" in g


def test_several_outputs_are_drawn():
    src = load("branchy.cnn", "g").render().source
    assert '"output fc" [' in src and '"output aux1" [' in src and "rank=sink" in src
    one = load("branchy.cnn", "g", aux_logits=False).render().source
    assert '"output output" [' in one and "aux1" not in one


@needs_dot
@pytest.mark.parametrize("network, depth", [("inception_bottleneck", None), ("inception_naive", None)])
def test_branches_are_drawn_in_input_order(network, depth):
    """dot keeps concat's branches left to right in channel order (branch1 first)."""
    src = load("inception.cnn", network).render(depth=depth).source
    plain = subprocess.run(["dot", "-Tplain"], input=src, capture_output=True, text=True, check=True).stdout
    x = {}
    for line in plain.splitlines():
        if line.startswith("node "):
            parts = shlex.split(line)
            x[parts[1]] = float(parts[2])
    heads = [x.get(f"branch{b}", x.get(f"branch{b}.0")) for b in range(1, 5)]
    assert heads == sorted(heads), heads


@needs_dot
def test_googlenet_branches_in_order_at_every_depth():
    spec = ROOT / "specs" / "googlenet.cnn"
    if not spec.exists():
        pytest.skip("specs/googlenet.cnn not written yet")
    net = graphdsl.load(spec)
    for depth in (2, 3, None):
        plain = subprocess.run(["dot", "-Tplain"], input=net.render(depth=depth).source, capture_output=True,
                               text=True, check=True).stdout
        x: dict[str, list[float]] = {}
        for line in plain.splitlines():
            if line.startswith("node "):
                parts = shlex.split(line)
                x.setdefault(parts[1], []).append(float(parts[2]))
        modules = sorted({n.split(".")[0] for n in x if ".branch" in n})
        assert len(modules) == 9
        for m in modules:
            centre = []
            for b in range(1, 5):
                xs = [v for n, vs in x.items() if n.startswith(f"{m}.branch{b}") for v in vs]
                centre.append(sum(xs) / len(xs))
            assert centre == sorted(centre), (depth, m, centre)


# ---- colours and labels ------------------------------------------------------------------------------


def test_every_family_has_a_fixed_colour():
    families = {op.family for op in REGISTRY.values()}
    assert families <= set(dot.FAMILY_COLOURS), families - set(dot.FAMILY_COLOURS)
    assert dot.family_colour("conv") == "#cfe2f3"


def test_unknown_families_hash_to_a_stable_colour():
    assert dot.family_colour("attention") == dot.family_colour("attention") in dot.PALETTE
    assert dot.family_colour("attention") == "#dae8fc"  # sha256, not Python's salted hash()


def test_labels_use_the_multiplication_sign():
    net = graphdsl.load(text="""network n { input 3x32x32
        a: conv(8, (3, 5), stride=(2, 1), pad=1, dilation=2, groups=1)
        b: maxpool(3, stride=1, pad=1)
        c: avgpool(adaptive=(2, 3))
        d: relu(inplace=true)
        flatten
        e: dropout(0.2)
        f: linear(10) }""")
    labels = {layer.name: REGISTRY[layer.op].label(layer.attrs) for layer in net.layers()}
    assert labels["a"] == "conv 3×5, 8, /2×1, d2"
    assert labels["b"] == "maxpool 3×3, /1"
    assert labels["c"] == "avgpool adaptive 2×3"
    assert labels["d"] == "relu"
    assert labels["e"] == "dropout 0.2"
    assert labels["f"] == "linear 10"


# ---- files: formats, atomic writes, errors, no `dot` -------------------------------------------------


@needs_dot
@pytest.mark.parametrize("ext, magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF"), ("dot", b"digraph")])
def test_formats_by_extension(tmp_path, ext, magic):
    out = tmp_path / f"net.{ext}"
    result = CliRunner().invoke(main, ["render", str(GOLDEN / "inception.cnn"), "-n", "inception_naive",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left behind


def test_dot_source_to_stdout():
    result = CliRunner().invoke(main, ["render", str(GOLDEN / "branchy.cnn"), "-n", "c", "-o", "-"])
    assert result.exit_code == 0
    assert result.output == load("branchy.cnn", "c").render().source


def test_defines_and_default_output_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["render", str(GOLDEN / "resnet152.cnn"), "-D", "num_classes=10",
                                       "--depth", "1", "-o", "r.dot"])
    assert result.exit_code == 0, result.output
    assert 'label=" 10"' in (tmp_path / "r.dot").read_text()
    if HAVE_DOT:
        result = CliRunner().invoke(main, ["render", str(GOLDEN / "resnet152.cnn"), "--depth", "1"])
        assert result.exit_code == 0 and (tmp_path / "resnet152.svg").exists()


def test_spec_error_writes_nothing(tmp_path):
    out = tmp_path / "broken.svg"
    result = CliRunner().invoke(main, ["render", str(GOLDEN / "broken.cnn"), "-o", str(out)])
    assert result.exit_code == 1
    assert "needs a flat input" in result.output
    assert list(tmp_path.iterdir()) == []


def test_bad_options_write_nothing(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["render", str(GOLDEN / "branchy.cnn"), "-n", "c", "-o", str(tmp_path / "x.jpg")])
    assert result.exit_code == 2 and "use one of .svg, .png, .pdf, .dot" in result.output
    result = runner.invoke(main, ["render", str(GOLDEN / "branchy.cnn"), "-n", "c", "--depth", "1", "--expand"])
    assert result.exit_code == 2 and "exclude each other" in result.output
    assert list(tmp_path.iterdir()) == []


def test_without_dot_program_writes_the_dot_source(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # graphviz finds no `dot` executable
    out = tmp_path / "net.png"
    result = CliRunner().invoke(main, ["render", str(GOLDEN / "inception.cnn"), "-n", "inception_naive",
                                       "-o", str(out)])
    assert result.exit_code == 3
    assert not out.exists()
    assert (tmp_path / "net.dot").read_text() == load("inception.cnn", "inception_naive").render().source
    assert "`dot` program is not on PATH" in result.output and "install Graphviz" in result.output
    assert f"dot -Tpng {tmp_path / 'net.dot'} -o {out}" in result.output
    # the .dot format itself needs no Graphviz
    result = CliRunner().invoke(main, ["render", str(GOLDEN / "inception.cnn"), "-n", "inception_naive",
                                       "-o", str(tmp_path / "direct.dot")])
    assert result.exit_code == 0


def test_write_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "net.dot"
    out.write_text("old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(out, b"new")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["net.dot"]


# ---- the Python API ----------------------------------------------------------------------------------


def test_network_render_returns_the_graphviz_object(tmp_path):
    net = load("branchy.cnn", "c")
    graph = net.render()
    assert isinstance(graph, graphviz.Digraph)
    assert net.render(tmp_path / "c.dot").source == graph.source == (tmp_path / "c.dot").read_text()
    if HAVE_DOT:
        net.render(tmp_path / "c.out", format="svg")
        assert (tmp_path / "c.out").read_bytes().startswith(b"<?xml")


def test_jupyter_shows_the_diagram(monkeypatch, tmp_path):
    net = load("branchy.cnn", "c")
    if HAVE_DOT:
        svg = net._repr_svg_()
        assert svg.startswith("<?xml") and "basic_a ×3" in svg
    monkeypatch.setenv("PATH", str(tmp_path))
    assert net._repr_svg_() is None  # without `dot`, Jupyter falls back to the repr


def test_no_torch_is_imported():
    """The diagram and the summary are static: they never import torch (4 s), directly or not."""
    code = f"""
import sys
import graphdsl.backends.dot, graphdsl.backends.summary
from click.testing import CliRunner
from graphdsl.cli import main
import graphdsl
net = graphdsl.load({str(GOLDEN / "branchy.cnn")!r}, "g")
net.render().source
str(net.summary()); net.summary(depth=1).format("json"); net.summary().format("csv"); net.summary().format("markdown")
for args in (["render", {str(GOLDEN / "resnet152.cnn")!r}, "-o", "-"], ["summary", {str(GOLDEN / "broken.cnn")!r}]):
    CliRunner().invoke(main, args)
assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runs_do_not_fold_calls_on_other_input_shapes():
    """`cbr(32)` on 16 channels (4,640 params) and on 32 (9,248) are not the same box."""
    from graphdsl.backends.scopes import units

    net = graphdsl.load(text="block cbr(c) { conv: conv(c, 3, pad=1) relu }\n"
                        "network t { input 16x8x8  a: cbr(32)  b: cbr(32)  c: cbr(32) }")
    assert [(u.kind, u.id, u.label) for u in units(net.graph, fold_runs=True)] == [
        ("node", "a.conv", ""), ("node", "a.1", ""), ("run", "b..c", "cbr ×2")]


def test_runs_fold_across_rates(tmp_path):
    """Blocks that differ only in a real-valued rate (stochastic depth) have the same layers: they fold."""
    from graphdsl.backends.scopes import units

    net = graphdsl.load(text="block b(p) { conv(8, 3, pad=1)  stochastic_depth(p) }\n"
                        "network t { input 8x8x8  s: [for i in range(4) { b(0.1 * i) }] }")
    assert [(u.kind, u.label) for u in units(net.graph, fold_runs=True)] == [("run", "b ×4")]


def test_render_folds_big_networks_to_a_depth(tmp_path):
    """A diagram of more than dot.MAX_BOXES boxes is drawn to the deepest level that fits, with a note."""
    from graphdsl.cli import main as cli_main

    spec = tmp_path / "wide.cnn"
    spec.write_text("block b(i) { conv(8, 1)  relu }\n"
                    "network wide { input 8x8x8  s: [for i in range(200) { b(i) }] }")  # 400 boxes, no two alike
    out = tmp_path / "wide.dot"
    result = CliRunner().invoke(cli_main, ["render", str(spec), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "drawn to --depth 2" in result.output  # s.0 .. s.199 one box each
    assert "relu" not in out.read_text()
    full = CliRunner().invoke(cli_main, ["render", str(spec), "-o", str(out), "--expand"])
    assert full.exit_code == 0 and "drawn to --depth" not in full.output
