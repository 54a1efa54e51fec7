"""Operator plugins (graphdsl/plugins.py): `--ops FILE|MODULE` on every command, installed plugins
found through the entry point group `graphdsl.ops` (off with GRAPHDSL_NO_PLUGINS=1), `graphdsl ops`,
broken plugins as clean errors, the example plugin compiled and run, no torch on the static path,
and the examples of docs/operators.md.

The command-line tests run the real CLI in a subprocess, so that each starts with a fresh registry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import graphdsl
from graphdsl import plugins
from graphdsl.ops import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = ROOT / "examples" / "plugins"
EXAMPLE_PKG = EXAMPLE_DIR / "graphdsl_example_ops" / "graphdsl_example_ops"
MISH_NET = EXAMPLE_DIR / "mish_net.cnn"
DOC = ROOT / "docs" / "operators.md"

TWICE = '''\
"""A test plugin: `twice` doubles the channels by concatenating the input with itself."""

from graphdsl.ops.base import Op


class Twice(Op):
    name = "twice"
    family = "reshape"
    known_as = ("Twice",)

    def output_shape(self, a, ins):
        return (2 * ins[0][0], *ins[0][1:])

    def torch_call(self, a, args, ins):
        return f"torch.cat([{args[0]}, {args[0]}], 1)"


OPS = [Twice]


def register_ops():
    return [Twice]
'''

SPEC = """\
network n {
    input 3x8x8
    twice
    conv(4, 1)
}
"""


def cli(*args, cwd=None, env=None, pythonpath=None, no_plugins=None, script=False):
    """Run the real command line in a subprocess; returns the CompletedProcess (text)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("GRAPHDSL_NO_PLUGINS", "PYTHONPATH")}
    if pythonpath is not None:
        environ["PYTHONPATH"] = str(pythonpath)
    if no_plugins is not None:
        environ["GRAPHDSL_NO_PLUGINS"] = no_plugins
    environ.update(env or {})
    command = [str(Path(sys.executable).parent / "graphdsl")] if script else [sys.executable, "-m", "graphdsl.cli"]
    result = subprocess.run([*command, *map(str, args)], cwd=cwd, env=environ, capture_output=True, text=True,
                            timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def plugin_dir(tmp_path):
    """A folder with the plugin module `twice_ops.py` and the spec `n.cnn`."""
    (tmp_path / "twice_ops.py").write_text(TWICE)
    (tmp_path / "n.cnn").write_text(SPEC)
    return tmp_path


@pytest.fixture
def clean_registry():
    """Load plugins in this process and leave no trace: the registry and plugin state are restored."""
    saved = (dict(REGISTRY), dict(plugins._loaded), dict(plugins._providers), plugins._discovered)
    yield
    REGISTRY.clear()
    REGISTRY.update(saved[0])
    plugins._loaded.clear()
    plugins._loaded.update(saved[1])
    plugins._providers.clear()
    plugins._providers.update(saved[2])
    plugins._discovered = saved[3]


def fake_install(site: Path, value: str = "fake_plugin", source: str = TWICE, name: str = "fake") -> Path:
    """An installed distribution, as pip leaves it: `fake_plugin.py` and a `*.dist-info` folder whose
    entry_points.txt declares `name = value` in the group graphdsl.ops."""
    site.mkdir(exist_ok=True)
    module = value.split(":")[0]
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[graphdsl.ops]\n{name} = {value}\n")
    return site


# ---- (a) --ops FILE and --ops MODULE ----------------------------------------------------------------------


def test_without_the_plugin_the_operator_is_unknown_where_it_is_used(plugin_dir):
    result = cli("check", "n.cnn", cwd=plugin_dir, no_plugins="1")
    assert result.returncode == 1
    assert "n.cnn:3:5: error: unknown operator or block `twice`" in result.stderr
    assert "3 |     twice" in result.stderr


@pytest.mark.parametrize("ops", ["twice_ops.py", "./twice_ops.py", "{dir}/twice_ops.py", "twice_ops"])
def test_ops_file_or_module_makes_check_accept_the_operator(plugin_dir, ops):
    result = cli("check", "n.cnn", "--ops", ops.format(dir=plugin_dir), "--format", "json", cwd=plugin_dir,
                 pythonpath=plugin_dir if "." not in ops else None)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outputs"] == {"output": [4, 8, 8]} and report["params"] == 6 * 4 + 4


def test_the_console_script_takes_ops_and_says_how_to_reach_a_module_in_the_current_folder(plugin_dir):
    if not (Path(sys.executable).parent / "graphdsl").exists():
        pytest.skip("the graphdsl console script is not installed next to this Python")
    ok = cli("check", "n.cnn", "--ops", "twice_ops.py", cwd=plugin_dir, script=True)
    assert ok.returncode == 0 and "ok: network `n`" in ok.stdout
    missing = cli("check", "n.cnn", "--ops", "twice_ops", cwd=plugin_dir, script=True)
    assert missing.returncode == 1
    assert "error: operator plugin `twice_ops`: no module named `twice_ops`" in missing.stderr
    assert "--ops ./twice_ops.py" in missing.stderr


@pytest.mark.parametrize("command, shows", [(["render", "-o", "-"], "twice"), (["summary"], "twice"),
                                           (["compile", "-o", "-"], "torch.cat([x, x], 1)"), (["check"], "ok")])
def test_every_command_takes_ops(plugin_dir, command, shows):
    result = cli(*command, "n.cnn", "--ops", "twice_ops.py", "--ops", "twice_ops.py", cwd=plugin_dir)
    assert result.returncode == 0, result.stderr
    assert shows in result.stdout


def test_ops_that_name_nothing_are_errors(plugin_dir):
    for ops, message in [("no_such_module_xyz", "no module named `no_such_module_xyz`"),
                         ("missing.py", "`missing.py`: no such file"),
                         (".", "no Python package (it has no __init__.py)")]:
        result = cli("check", "n.cnn", "--ops", ops, cwd=plugin_dir)
        assert result.returncode == 1 and message in result.stderr, result.stderr


# ---- (b) installed plugins: entry point discovery -----------------------------------------------------------


@pytest.mark.parametrize("value", ["fake_plugin", "fake_plugin:Twice", "fake_plugin:OPS", "fake_plugin:register_ops"])
def test_installed_plugins_are_found_through_their_entry_point(plugin_dir, tmp_path, value):
    site = fake_install(tmp_path / "site", value)
    result = cli("check", "n.cnn", cwd=plugin_dir, pythonpath=site)
    assert result.returncode == 0, result.stderr
    assert "ok: network `n`" in result.stdout
    listing = cli("ops", cwd=plugin_dir, pythonpath=site)
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith("twice "))
    assert row.split() == ["twice", "reshape", "fake"]
    assert re.search(r"^conv +conv +builtin +out, kernel, stride=1", listing.stdout, re.M)


def test_graphdsl_no_plugins_turns_discovery_off(plugin_dir, tmp_path):
    site = fake_install(tmp_path / "site")
    off = cli("check", "n.cnn", cwd=plugin_dir, pythonpath=site, no_plugins="1")
    assert off.returncode == 1 and "unknown operator or block `twice`" in off.stderr
    listing = cli("ops", "--format", "json", cwd=plugin_dir, pythonpath=site, no_plugins="1")
    assert "twice" not in {op["name"] for op in json.loads(listing.stdout)}
    # --ops still loads what it names; and the same file as entry point and --ops is one plugin
    named = cli("check", "n.cnn", "--ops", site / "fake_plugin.py", cwd=plugin_dir, pythonpath=site, no_plugins="1")
    assert named.returncode == 0, named.stderr
    both = cli("ops", "twice", "--ops", site / "fake_plugin.py", cwd=plugin_dir, pythonpath=site, no_plugins="0")
    assert both.returncode == 0, both.stderr
    assert "  from      fake\n" in both.stdout and "  known as  Twice" in both.stdout


def test_ops_lists_documentation_and_rejects_unknown_names():
    result = cli("ops", "conv", "add", no_plugins="1")
    assert result.returncode == 0
    assert result.stdout.startswith("conv(out, kernel, stride=1, pad=0, dilation=1, groups=1, bias=true)\n")
    assert "add(a, b, ...)" in result.stdout and "  from      builtin" in result.stdout
    wrong = cli("ops", "comv", no_plugins="1")
    assert wrong.returncode == 1 and "error: no operator `comv`" in wrong.stderr and "`conv`" in wrong.stderr


# ---- (c) broken plugins: exit 1, a message naming the plugin, no traceback --------------------------------------

BROKEN = "import graphdsl\n\nx = 1 / 0\n"
COLLIDES = '''\
from graphdsl.ops.base import Op


class MyConv(Op):
    name = "conv"
    family = "conv"
'''
SELF_REGISTERS = '''\
import graphdsl
from graphdsl.ops.base import Op


class MyConv(Op):
    name = "conv"
    family = "conv"


graphdsl.register(MyConv)
'''
KEYWORD = "from graphdsl.ops.base import Op\n\n\nclass Residual(Op):\n    name = 'residual'\n    family = 'merge'\n"


@pytest.mark.parametrize("source, message", [
    (BROKEN, "failed to import: ZeroDivisionError: division by zero (at {file}:3)"),
    (COLLIDES, "defines the operator `conv`, which is a built-in operator"),
    (SELF_REGISTERS, "defines the operator `conv`, which is a built-in operator"),
    (KEYWORD, "defines the operator `residual`, which is a keyword of the language"),
    ("x = 1\n", "provides no operators"),
    ("import no_such_dependency_xyz\n", "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"),
])
def test_a_broken_plugin_is_an_error_naming_it(plugin_dir, source, message):
    bad = plugin_dir / "bad_ops.py"
    bad.write_text(source)
    result = cli("check", "n.cnn", "--ops", "twice_ops.py", "--ops", "bad_ops.py", cwd=plugin_dir)
    assert result.returncode == 1
    assert result.stderr.startswith("error: operator plugin `bad_ops.py`: ")
    assert message.format(file=bad) in result.stderr, result.stderr
    assert result.stdout == ""


def test_a_broken_installed_plugin_names_its_entry_point_and_the_way_out(plugin_dir, tmp_path):
    site = fake_install(tmp_path / "site", "fake_plugin", COLLIDES, name="clash")
    result = cli("summary", "n.cnn", cwd=plugin_dir, pythonpath=site)
    assert result.returncode == 1
    assert ("error: operator plugin `clash` (entry point graphdsl.ops: clash = fake_plugin (fake-plugin 1.0)): "
            "defines the operator `conv`, which is a built-in operator") in result.stderr
    assert "GRAPHDSL_NO_PLUGINS=1" in result.stderr and "uninstall fake-plugin" in result.stderr
    assert cli("ops", "conv", cwd=plugin_dir, pythonpath=site, no_plugins="1").returncode == 0


def test_a_failed_plugin_registers_nothing_and_leaves_builtins_alone(plugin_dir, clean_registry):
    conv = REGISTRY["conv"]
    (plugin_dir / "half.py").write_text(SELF_REGISTERS + TWICE)  # `conv` is refused, so `twice` is not kept
    with pytest.raises(plugins.PluginError, match="built-in operator") as info:
        graphdsl.load_plugins(plugin_dir / "half.py", entry_points=False)
    assert info.value.plugin == f"`{plugin_dir / 'half.py'}`"
    assert REGISTRY["conv"] is conv and "twice" not in REGISTRY


def test_two_plugins_cannot_define_one_name(plugin_dir, clean_registry):
    (plugin_dir / "other.py").write_text(TWICE.replace("Twice", "Other"))
    graphdsl.load_plugins(plugin_dir / "twice_ops.py", entry_points=False)
    with pytest.raises(plugins.PluginError, match=r"`twice`, which the plugin `.*twice_ops.py` already provides"):
        graphdsl.load_plugins(plugin_dir / "other.py", entry_points=False)


# ---- loading is once per process and idempotent --------------------------------------------------------


def test_loading_is_once_per_process_and_idempotent(plugin_dir, clean_registry, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    first = graphdsl.load_plugins(plugin_dir / "twice_ops.py", entry_points=False)
    op = REGISTRY["twice"]
    again = graphdsl.load_plugins(str(plugin_dir / "twice_ops.py"), "twice_ops", entry_points=False)
    assert again[0] is first[0] and REGISTRY["twice"] is op  # the file loads once
    assert again[1].ops == ("twice",)  # the module holds the same class: the same operator
    graphdsl.register(type(op))  # registering the class again from Python is harmless too
    assert graphdsl.load(text=SPEC).output_shapes["output"] == (4, 8, 8)
    assert plugins.provider("twice") == str(plugin_dir / "twice_ops.py") and plugins.provider("conv") == "builtin"


# ---- (d) the example plugin compiles and runs; static shapes are the runtime shapes -------------------------------


def test_example_plugin_compiles_and_runs(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "mish_net.py"
    result = cli("compile", MISH_NET, "--ops", EXAMPLE_PKG, "-o", out, "--run", no_plugins="1")
    assert result.returncode == 0, result.stderr
    assert "ran on cpu, eval mode, batch 1: output 1x10" in result.stdout
    source = out.read_text()
    assert "nn.PixelUnshuffle(2)" in source and "F.mish(x)" in source and "graphdsl_example_ops" not in source


def test_example_plugin_static_shapes_and_parameters_are_the_module_s(clean_registry):
    torch = pytest.importorskip("torch")
    from graphdsl.backends.torch import node_shapes

    (plugin,) = graphdsl.load_plugins(EXAMPLE_PKG / "__init__.py", entry_points=False)
    assert plugin.ops == ("mish", "space_to_depth")
    net = graphdsl.load(MISH_NET)
    model = net.to_torch()
    assert sum(p.numel() for p in model.parameters()) == net.params
    assert sum(b.numel() for b in model.buffers()) == net.buffers
    for batch in (1, 3):
        shapes = node_shapes(net, model, torch.randn(batch, *net.input_shape))
        assert shapes == {n: d["shape"] for n, d in net.graph.nodes(data=True)}
    assert net.layer("stem").rf == (2, 2) and net.layer("down").jump == (4, 4)
    model.train()
    model(torch.randn(2, *net.input_shape)).sum().backward()  # `mish(inplace=true)` leaves autograd intact
    (diag,) = graphdsl.check(text="network n {\n    input 3x9x9\n    space_to_depth(2)\n}")
    assert "does not split into 2x2 blocks" in diag.message and (diag.span.line, diag.span.col) == (3, 20)


def test_example_plugin_declares_its_entry_point():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((EXAMPLE_PKG.parent / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["graphdsl.ops"] == {"example": "graphdsl_example_ops"}


def test_example_plugin_as_installed(tmp_path):
    """The example package on the path with the dist-info pip would write: found by its entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "graphdsl_example_ops").symlink_to(EXAMPLE_PKG, target_is_directory=True)
    info = site / "graphdsl_example_ops-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: graphdsl-example-ops\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[graphdsl.ops]\nexample = graphdsl_example_ops\n")
    result = cli("check", MISH_NET, pythonpath=site)
    assert result.returncode == 0, result.stderr
    # --ops naming the installed package's file is the same plugin, not a clash
    both = cli("ops", "mish", "--ops", EXAMPLE_PKG / "__init__.py", pythonpath=site)
    assert both.returncode == 0 and "  from      example\n" in both.stdout, both.stderr


# ---- (e) plugins on the static path do not import torch ----------------------------------------------------


def test_check_with_plugins_does_not_import_torch(plugin_dir, tmp_path):
    site = fake_install(tmp_path / "site")
    code = textwrap.dedent(f"""
        import sys
        from graphdsl.cli import main
        for args in (["check", {str(MISH_NET)!r}, "--ops", {str(EXAMPLE_PKG)!r}], ["check", "n.cnn"],
                     ["summary", "n.cnn"], ["render", "n.cnn", "-o", "-"], ["ops"]):
            try:
                main(args)
            except SystemExit as e:
                assert e.code in (0, None), (args, e.code)
        assert "torch" not in sys.modules, "torch was imported"
    """)
    environ = {**os.environ, "PYTHONPATH": str(site)}
    environ.pop("GRAPHDSL_NO_PLUGINS", None)
    result = subprocess.run([sys.executable, "-c", code], cwd=plugin_dir, env=environ, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr


# ---- docs/operators.md: every python example runs -----------------------------------------------------------


def test_operator_guide_examples_run(clean_registry, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 5
    defined = re.findall(r'^    name = "(\w+)"', "".join(blocks), re.M)
    taken = [n for n in defined if n in REGISTRY]
    assert not taken, f"the guide's example operators {taken} are built-in now: rename them in docs/operators.md"
    if any("import torch" in b for b in blocks):
        pytest.importorskip("torch")
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "operators_md"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC}:python-{i}", "exec"), namespace)  # noqa: S102 - our documentation


def test_operator_guide_error_text_is_what_graphdsl_prints(clean_registry):
    text = DOC.read_text()
    first = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    exec(compile(first, "first", "exec"), {"__name__": "operators_md"})  # noqa: S102
    expected = re.search(r"```text\n(<string>:3:13.*?)```", text, re.S)[1]
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.load(text="network n {\n    input 3x8x8\n    clip(1, 0)\n}")
    assert info.value.diagnostics[0].render(info.value.sources) == expected.rstrip("\n")
