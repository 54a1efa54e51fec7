"""Golden tests of the diagnostics: every malformed spec gives located, readable errors, never a traceback.

Each case is `tests/malformed/<name>.cnn` (files in sub-folders such as `lib_cycle/` are helpers that
cases import, not cases). `<name>.err` holds the exact text `graphdsl check` prints to stderr, run from
the repository root with the relative path, so the golden files are machine independent. An optional
`<name>.args` holds extra command-line arguments (e.g. `-D num_clases=10` or `--network x`).

To rewrite the golden files after a deliberate change of the messages, run

    GRAPHDSL_REGEN=1 pytest tests/test_diagnostics.py

and review the diff of `tests/malformed/*.err` before committing it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from golden_files import check_golden

import graphdsl
from graphdsl.cli import main, parse_define

ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = Path("tests") / "malformed"  # relative to ROOT: paths in the messages stay machine independent
CASES = sorted(p.stem for p in (ROOT / CASES_DIR).glob("*.cnn"))
LOCATION = re.compile(r"^(?P<file>[^\s:]+\.cnn):(?P<line>\d+):(?P<col>\d+): error: ", re.M)


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def case_args(name: str) -> list[str]:
    extra = ROOT / CASES_DIR / f"{name}.args"
    return shlex.split(extra.read_text()) if extra.exists() else []


def run_check(name: str, *options: str):
    args = ["check", str(CASES_DIR / f"{name}.cnn"), *case_args(name), *options]
    return CliRunner().invoke(main, args)


def load_kwargs(name: str) -> dict:
    """The `.args` of a case as keyword arguments of `graphdsl.load`."""
    args, kwargs = case_args(name), {}
    for flag, value in zip(args[::2], args[1::2]):
        if flag == "-D":
            key, v = parse_define(value)
            kwargs[key] = v
        elif flag in ("--network", "-n"):
            kwargs["network"] = value
        else:
            raise AssertionError(f"{name}.args: unknown option {flag}")
    return kwargs


def test_there_are_enough_cases():
    assert len(CASES) >= 45


@pytest.mark.parametrize("name", CASES)
def test_golden(name):
    result = run_check(name)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    check_golden(ROOT / CASES_DIR / f"{name}.err", result.stderr)


@pytest.mark.parametrize("name", CASES)
def test_rules(name):
    """The project's rules for messages, checked on every golden file."""
    text = (ROOT / CASES_DIR / f"{name}.err").read_text(encoding="utf-8")
    count = text.rstrip().splitlines()[-1]
    assert count == "error found" or re.fullmatch(r"\d+ errors found", count)
    for message in re.findall(r"^(?:\S+: )?error: (.*)$", text, re.M):
        assert message[0].islower() or message[0] == "`", message
        assert not message.endswith("."), message
    for located in LOCATION.finditer(text):
        assert not os.path.isabs(located["file"]), "paths must be relative to the repository root"


@pytest.mark.parametrize("name", CASES)
def test_load_raises_spec_error(name):
    """The Python face reports the same diagnostics as the command line."""
    golden = (ROOT / CASES_DIR / f"{name}.err").read_text(encoding="utf-8")
    count = golden.rstrip().splitlines()[-1]
    expected = 1 if count == "error found" else int(count.split()[0])
    with pytest.raises(graphdsl.SpecError) as info:
        graphdsl.load(str(CASES_DIR / f"{name}.cnn"), **load_kwargs(name))
    assert len(info.value.diagnostics) == expected
    assert "Traceback" not in info.value.render()


@pytest.mark.parametrize("name", ["unknown_operator", "several_errors", "error_in_block", "syntax_missing_rparen",
                                  "import_cycle"])
def test_json(name):
    result = run_check(name, "--format", "json")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False
    text = (ROOT / CASES_DIR / f"{name}.err").read_text(encoding="utf-8")
    locations = [(m["file"], int(m["line"]), int(m["col"])) for m in LOCATION.finditer(text)]
    assert len(report["diagnostics"]) == len(locations)
    for diag, (file, line, col) in zip(report["diagnostics"], locations):
        assert diag["severity"] == "error"
        assert diag["message"] and diag["message"] in text
        loc = diag["location"]
        assert set(loc) == {"file", "line", "col", "end_line", "end_col"}
        assert (loc["file"], loc["line"], loc["col"]) == (file, line, col)
        assert (loc["end_line"], loc["end_col"]) > (loc["line"], loc["col"])
        assert isinstance(diag["notes"], list)


def test_json_notes_name_the_call_site():
    report = json.loads(run_check("error_in_block", "--format", "json").stdout)
    (diag,) = report["diagnostics"]
    assert any(n.startswith("in block `bottleneck` used at tests/malformed/error_in_block.cnn:") for n in diag["notes"])
    assert diag["help"]


def test_missing_file():
    result = CliRunner().invoke(main, ["check", "tests/malformed/no_such_spec.cnn"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: no such file `tests/malformed/no_such_spec.cnn`")


def test_binary_case_is_binary():
    """git must keep the binary case byte for byte (see tests/malformed/.gitattributes)."""
    data = (ROOT / CASES_DIR / "binary_file.cnn").read_bytes()
    assert b"\0" in data
    attributes = (ROOT / CASES_DIR / ".gitattributes").read_text()
    assert re.search(r"^binary_file\.cnn\s+binary$", attributes, re.M)


def test_binary_written_now(tmp_path):
    """A binary file written by the test itself, in case a checkout mangled the committed one."""
    spec = tmp_path / "weights.cnn"
    spec.write_bytes(bytes(range(256)) * 4)
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 1
    assert "is a binary file, not a .cnn spec" in result.stderr
    assert "Traceback" not in result.output
