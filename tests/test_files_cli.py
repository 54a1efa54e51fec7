"""Files and the command line under hostile input (issue 8): outputs never replace a device, a pipe or an
input of the run; reading never blocks nor reads without bound; imports stay in the project; paths are
paths; line ends as editors count them; a closed pipe or a full disk is no traceback; warnings.

We run as root: no test touches a system file. Devices and FIFOs are private ones made in tmp_path.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import graphdsl
from graphdsl import api
from graphdsl.cli import main
from graphdsl.diagnostics import Diagnostic, Span
from graphdsl.files import OutputRefused, write_atomic
from graphdsl.program import MAX_FILE_BYTES, project_root, read_source

ROOT = Path(__file__).resolve().parent.parent
NET = "network net {\n    input 3x8x8\n    conv(4, 3)\n    relu\n}\n"


def cli(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    return result


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "net.cnn"
    path.write_text(NET)
    return path


def null_device(path: Path) -> Path:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("cannot make device nodes here")
    return path


@pytest.fixture
def deadline():
    """Fail, not hang, where something blocks: SIGALRM after 5 s interrupts a blocking open()."""
    def expire(signum, frame):
        raise TimeoutError("blocked for 5 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ---- outputs -------------------------------------------------------------------------------------------


def refused(result, what: str):
    assert result.exit_code == 1, result.output
    assert f"error: `{Path(what)}`" in result.stderr, result.stderr
    assert "\nhelp: " in result.stderr and "wrote" not in result.stdout


@pytest.mark.parametrize("command", ["compile", "render"])
def test_an_output_on_a_device_or_fifo_or_folder_is_refused(spec, tmp_path, command):
    dev = null_device(tmp_path / "null.dot")
    fifo = tmp_path / "fifo.dot"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.dot"
    folder.mkdir()
    link = tmp_path / "link.dot"
    link.symlink_to(dev)
    for out, kind in ((dev, "a character device"), (fifo, "a named pipe"), (folder, "a directory"),
                      (link, "a character device")):
        result = cli(command, spec, "-o", out)
        refused(result, out)
        assert kind in result.stderr
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.lstat(dev).st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISLNK(os.lstat(link).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.dot", "folder.dot", "link.dot", "net.cnn", "null.dot"]


def test_compile_never_overwrites_the_spec_or_an_import(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib.cnn").write_text("block cbr(c) { conv(c, 3, pad=1) bn relu }\n")
    main_spec = tmp_path / "net.cnn"
    main_spec.write_text('import "lib.cnn"\nnetwork net { input 3x8x8 cbr(4) }\n')
    (tmp_path / "hard.cnn").hardlink_to(main_spec)
    (tmp_path / "soft.py").symlink_to(tmp_path / "lib.cnn")
    before = {p: p.read_bytes() for p in (main_spec, tmp_path / "lib.cnn")}
    for out in ("net.cnn", "./sub/../net.cnn", "lib.cnn", "hard.cnn", "soft.py", str(main_spec)):
        (tmp_path / "sub").mkdir(exist_ok=True)
        result = cli("compile", "net.cnn", "-o", out)
        refused(result, out)
        assert "an input of this run" in result.stderr
    assert {p: p.read_bytes() for p in before} == before


def test_render_never_overwrites_the_spec_even_through_the_dot_fallback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "net.dot"  # a spec may be called anything
    spec.write_text(NET)
    refused(cli("render", "net.dot", "-o", "net.dot"), "net.dot")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no Graphviz: the fallback writes net.dot
    result = cli("render", "net.dot", "-o", "net.svg")
    assert result.exit_code == 1 and "an input of this run" in result.stderr, result.output
    assert "`dot` program is not on PATH" in result.stderr
    assert spec.read_text() == NET and not (tmp_path / "net.svg").exists()


def test_a_symlink_to_a_file_is_followed_and_kept(spec, tmp_path):
    real = tmp_path / "real.py"
    real.write_text("old")
    link = tmp_path / "out.py"
    link.symlink_to(real)
    assert cli("compile", spec, "-o", link).exit_code == 0
    assert link.is_symlink() and "class Net" in real.read_text()


def test_a_long_output_name_fits(spec, tmp_path):
    out = tmp_path / ("n" * 247 + ".py")  # 250 characters: the most many file systems allow is 255
    result = cli("compile", spec, "-o", out)
    assert result.exit_code == 0, result.output
    assert "class Net" in out.read_text()


def test_write_atomic_refuses_before_writing(tmp_path):
    dev = null_device(tmp_path / "null")
    with pytest.raises(OutputRefused, match="character device"):
        write_atomic(dev, "x")
    spec = tmp_path / "in.cnn"
    spec.write_text("keep")
    with pytest.raises(OutputRefused, match="an input of this run"):
        write_atomic(tmp_path / "." / "in.cnn", "x", inputs=[spec])
    assert spec.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["in.cnn", "null"]
    assert write_atomic(tmp_path / "new" / "out.txt", "x") == tmp_path / "new" / "out.txt"


# ---- reading -------------------------------------------------------------------------------------------


def test_fifos_and_devices_are_refused_without_blocking(tmp_path, monkeypatch, deadline):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "pipe.cnn")
    null_device(tmp_path / "dev.cnn")
    for name, kind in (("pipe.cnn", "a named pipe (FIFO)"), ("dev.cnn", "a character device")):
        result = cli("check", name)
        assert result.exit_code == 1 and f"`{name}` is {kind}, not a spec file" in result.stderr, result.output
        (tmp_path / "main.cnn").write_text(f'import "{name}"\nnetwork n {{ input 3x8x8 relu }}\n')
        result = cli("check", "main.cnn")
        assert result.exit_code == 1 and f"main.cnn:1:8: error: cannot import `{name}`" in result.stderr
        assert kind in result.stderr
    (tmp_path / "main.cnn").write_text('import "/dev/stdin"\nnetwork n { input 3x8x8 relu }\n')
    result = cli("check", "main.cnn")
    assert result.exit_code == 1 and "cannot import `/dev/stdin`: it is not a .cnn spec" in result.stderr


def test_reading_is_bounded(tmp_path):
    status, problem = read_source("/proc/self/status")  # a pseudo-file: size 0, but regular
    assert problem is None and "Name:" in status
    big = tmp_path / "big.cnn"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 100)  # sparse: cheap to make
    text, problem = read_source(str(big))
    assert text is None and "larger than 10,000,000 bytes" in problem.message
    text, problem = read_source(str(tmp_path))
    assert "is a directory" in problem.message


# ---- imports -------------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    """proj/ (with a graphdsl.toml) holding a/main.cnn and lib/blocks.cnn; outside.cnn and secret.txt beside it."""
    monkeypatch.chdir(tmp_path)
    proj = tmp_path / "proj"
    (proj / "a").mkdir(parents=True)
    (proj / "lib").mkdir()
    (proj / "graphdsl.toml").write_text("")
    (proj / "lib" / "blocks.cnn").write_text("block cbr(c) { conv(c, 1) relu }\n")
    (tmp_path / "outside.cnn").write_text("block far(c) { conv(c, 1) }  # SECRET-LINE-OF-A-SPEC\n")
    (tmp_path / "secret.txt").write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    return proj


def importing(project: Path, *paths: str) -> Path:
    spec = project / "a" / "main.cnn"
    spec.write_text("".join(f'import "{p}"\n' for p in paths) + "network main { input 3x8x8 cbr(4) }\n")
    return spec


def test_imports_stay_inside_the_project_root(project, tmp_path):
    spec = importing(project, "../lib/blocks.cnn")
    assert cli("check", spec).exit_code == 0
    for target in ("../../outside.cnn", str(tmp_path / "outside.cnn")):
        spec = importing(project, "../lib/blocks.cnn", target)
        result = cli("check", spec)
        assert result.exit_code == 1 and "main.cnn:2:8: error: cannot import" in result.stderr
        assert f"outside the project root `{project}`" in result.stderr
        assert f"help: to allow it, pass `--import-root {tmp_path}`" in result.stderr
        assert "SECRET" not in result.output
        assert cli("check", spec, "--import-root", tmp_path).exit_code == 0
        assert graphdsl.load(spec, import_roots=[tmp_path]).name == "main"


def test_imports_of_other_files_are_refused_unread(project, tmp_path):
    for target in (str(tmp_path / "secret.txt"), "../../secret.txt"):
        spec = importing(project, "../lib/blocks.cnn", target)
        result = cli("check", spec, "--import-root", tmp_path)  # allowed folder: still not a spec
        assert result.exit_code == 1 and "it is not a .cnn spec" in result.stderr
        assert "SECRET" not in result.output
    (project / "lib" / "sneaky.cnn").symlink_to(tmp_path / "secret.txt")
    result = cli("check", importing(project, "../lib/blocks.cnn", "../lib/sneaky.cnn"), "--import-root", tmp_path)
    assert result.exit_code == 1 and "not a .cnn spec" in result.stderr and "SECRET" not in result.output


def test_the_project_root(tmp_path, monkeypatch):
    assert project_root(str(ROOT / "specs" / "cifar" / "resnet44.cnn")) == str(ROOT)  # .git, pyproject.toml
    monkeypatch.chdir(tmp_path)  # resnet44 imports ../lib/cifar.cnn: fine from anywhere
    assert graphdsl.load(ROOT / "specs" / "cifar" / "resnet44.cnn").name == "resnet44"
    (tmp_path / "x" / "y").mkdir(parents=True)
    assert project_root(str(tmp_path / "x" / "y" / "n.cnn")) == str(tmp_path)  # no marker: the current folder
    monkeypatch.chdir(tmp_path / "x" / "y")
    assert project_root(str(tmp_path / "x" / "n.cnn")) == str(tmp_path / "x")  # outside it: the spec's folder


# ---- paths are paths -----------------------------------------------------------------------------------


def test_the_cli_reads_every_file_argument_as_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir{1}").mkdir()
    (tmp_path / "dir{1}" / "net.cnn").write_text(NET)
    result = cli("check", "dir{1}/net.cnn")
    assert result.exit_code == 0 and result.stdout.startswith("dir{1}/net.cnn: ok: network `net`"), result.output
    odd = "odd\nname\x1b]0;owned\x07.cnn"
    (tmp_path / odd).write_text(NET)
    result = cli("check", odd)
    assert result.exit_code == 0 and result.stdout.startswith("odd\\nname\\x1b]0;owned\\x07.cnn: ok")
    result = cli("check", "network n { input 3x8x8 }")
    assert result.exit_code == 1 and "no such file" in result.stderr


def test_the_api_takes_text_by_keyword_only(tmp_path):
    text = "network n { input 3x8x8 relu }"
    assert graphdsl.load(text=text).name == "n"
    assert graphdsl.check(text=text) == [] and api.load_partial(text=text)[1] == []
    with pytest.raises(graphdsl.SpecError, match="no such file") as info:
        graphdsl.load(text)
    assert "pass it as `text=...`" in info.value.render()
    with pytest.raises(TypeError):
        graphdsl.load(tmp_path / "x.cnn", text=text)
    (tmp_path / "{x}.cnn").write_text(text)
    assert graphdsl.load(str(tmp_path / "{x}.cnn")).name == "n"


# ---- definitions, line ends ----------------------------------------------------------------------------


def test_two_networks_of_one_name_are_an_error():
    (diag,) = graphdsl.check(text="network n { input 3x8x8 }\nnetwork m { input 3x8x8 }\nnetwork n { input 1x8x8 }")
    assert diag.message == "network `n` is defined twice" and (diag.span.line, diag.span.col) == (3, 9)
    assert diag.notes == ("first defined at <string>:1:9",)


@pytest.mark.parametrize("end", ["\r\n", "\r"])
def test_cr_line_ends_count_as_editors_count(tmp_path, end):
    text = end.join(["network n {", "    # a comment", "    input 3x8x8", "    conv(4, 9)", "}", ""])
    spec = tmp_path / "n.cnn"
    spec.write_bytes(text.encode())
    for kwargs in ({"path": spec}, {"text": text}):
        with pytest.raises(graphdsl.SpecError) as info:
            graphdsl.load(**kwargs)
        (diag,) = info.value.diagnostics
        assert "larger than" in diag.message and (diag.span.line, diag.span.col) == (4, 13), diag
        assert "\r" not in "".join(info.value.sources.values())
        assert "4 |     conv(4, 9)" in info.value.render()


# ---- the output stream ---------------------------------------------------------------------------------

GRAPHDSL = [sys.executable, "-m", "graphdsl.cli"]


def test_a_closed_pipe_is_quiet(spec):
    for args in (["check", str(spec)], ["summary", str(spec)], ["ops"]):
        proc = subprocess.Popen([*GRAPHDSL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        proc.stdout.close()  # the reader is gone before the first line: `| head -0`
        err = proc.stderr.read()
        assert proc.wait(timeout=30) == 1 and err == b"", err


def test_a_full_device_is_an_error_line(spec, tmp_path):
    full = tmp_path / "full"
    try:
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("cannot make device nodes here")
    with open(full, "w") as out:
        proc = subprocess.run([*GRAPHDSL, "check", str(spec)], stdout=out, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr == "error: cannot write the output: No space left on device\n"


def test_the_console_script_is_the_wrapper():
    script = Path(sys.executable).parent / "graphdsl"
    if script.exists():
        assert "from graphdsl.cli import run" in script.read_text()


def test_json_is_ascii(spec):
    for args in (["check", spec, "--format", "json"], ["summary", spec, "--format", "json"]):
        result = cli(*args)
        assert result.exit_code == 0 and result.stdout.isascii(), result.stdout
        json.loads(result.stdout)
    result = cli("summary", spec, "--format", "json")
    assert "\\u00d7" in result.stdout or "x" in json.loads(result.stdout)["input"]


# ---- warnings ------------------------------------------------------------------------------------------

SIDE = "network side {\n    input 3x8x8\n    a: conv(8, 1)\n    b = conv(8, 1)\n    relu\n}\n"


@pytest.fixture
def warned(tmp_path, monkeypatch):
    """A spec with an unused side branch, its warning there whether or not the lint finds it."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "side.cnn"
    spec.write_text(SIDE)
    original = api.run_passes

    def with_warning(graph):
        original(graph)
        if graph.graph["name"] == "side" and not graph.graph.get("warnings"):
            graph.graph["warnings"] = [Diagnostic("`b` is computed but never used\x1b[2J", Span(str(spec), 4, 5, 4, 6),
                                                  severity="warning")]

    monkeypatch.setattr(api, "run_passes", with_warning)
    return spec


def test_warnings_go_to_stderr_before_the_output(warned, tmp_path):
    assert graphdsl.load(warned).warnings and graphdsl.load(text=NET).warnings == []
    for args in (["check", warned], ["summary", warned], ["compile", warned, "-o", tmp_path / "side.py"],
                 ["render", warned, "-o", tmp_path / "side.dot"]):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert "warning: " in result.stderr and "never used" in result.stderr and "\x1b" not in result.stderr
        assert "side.cnn:4:" in result.stderr and "warning:" not in result.stdout
    data = json.loads(cli("check", warned, "--format", "json").stdout)
    assert data["ok"] is True and data["warnings"][0]["severity"] == "warning"
    assert "never used" in data["warnings"][0]["message"]
    assert json.loads(cli("check", warned.with_name("side.cnn"), "--format", "json").stdout)["warnings"]


def test_an_unused_side_branch_warns_for_real(tmp_path):
    spec = tmp_path / "side.cnn"
    spec.write_text(SIDE)
    warnings = graphdsl.load(spec).warnings
    if not warnings:
        pytest.skip("the unused-result lint is not in yet")
    assert warnings[0].severity == "warning" and warnings[0].span.line == 4
