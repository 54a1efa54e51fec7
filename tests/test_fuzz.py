"""The fuzzer (tools/fuzz.py) as a test: its oracle catches what it should, every minimised reproducer
in tests/fuzz_corpus/ now runs clean, and a fixed-seed slice of fresh inputs finds nothing.

The fuzzer runs in its own interpreter: it forks a child per input and limits the child's address
space to 1 GB, which a fork of this process (torch loaded by other tests: gigabytes of mappings)
could not live under.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "tools" / "fuzz.py"
CORPUS = ROOT / "tests" / "fuzz_corpus"
SLICE_SEED = 20240601
SLICE_INPUTS = 3000
SLICE_SECONDS = 150  # stop drawing after this long (a slow machine runs a shorter slice, not a longer test)

sys.path.insert(0, str(ROOT / "tools"))

from fuzzing.campaign import load_corpus, write_entry  # noqa: E402
from fuzzing.case import Case, blob  # noqa: E402


def _fuzz(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FUZZ), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def corpus_entries() -> list[str]:
    return [name for name, _ in load_corpus(CORPUS)]


def test_oracle_catches_every_class():
    """Stand-ins that raise, hang, allocate 4 GB, print escape sequences, exit 7, write on error, overwrite
    their spec, replace a device node, show a secret, flood stderr or crash: each must be a finding of
    its class, and well-behaved runs (graphdsl itself on a valid spec) none."""
    run = _fuzz("--self-test", timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FAIL" not in run.stdout


def test_corpus_round_trip(tmp_path):
    case = Case(["compile", "net.cnn", "-o", "lib.cnn"], {"net.cnn": blob("network a { input 3x8x8 relu }"),
                                                          "lib.cnn": [(b"let x = [", 1), (b"0, ", 1000), (b"0]", 1)]},
                fifos=["p"], devices={"n": "null"}, stdout="closed", exec=True, origin="test")
    write_entry(tmp_path, "clobbered-0000", case)
    plain = Case(["check", "net.cnn"], {"net.cnn": blob(b"\x1b]0;t\x07 \xff")})
    write_entry(tmp_path, "terminal-0000", plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clobbered-0000.cnn", "clobbered-0000.json",
                                                          "terminal-0000.cnn"]
    loaded = dict(load_corpus(tmp_path))
    assert loaded["clobbered-0000"].to_json() == case.to_json()
    assert loaded["terminal-0000"].main_text() == plain.main_text()


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("fuzz") / "replay.json"
    run = _fuzz("--replay", "--corpus", str(CORPUS), "--json", str(out))
    assert out.exists(), run.stdout + run.stderr
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", corpus_entries())
def test_corpus_entry_runs_clean(replayed, name):
    """A minimised reproducer of an earlier finding: tests/fuzz_corpus/NAME.cnn (and NAME.json for the
    command and the folder around it). `python tools/fuzz.py --replay` runs them all."""
    found = replayed[name]
    assert not found, "\n".join(f"[{f['class']}] {f['signature']}: {f['detail']}" for f in found)


@pytest.mark.slow
def test_fixed_seed_slice(tmp_path):
    """Fresh inputs from every generator, a fixed seed: no finding. The long run is
    `python tools/fuzz.py --inputs 100000`."""
    out = tmp_path / "slice.json"
    run = _fuzz("--inputs", str(SLICE_INPUTS), "--seed", str(SLICE_SEED), "--jobs", "2", "--max-seconds",
                str(SLICE_SECONDS), "--no-corpus-seeds", "-q", "--json", str(out), timeout=SLICE_SECONDS + 300)
    assert out.exists(), run.stdout + run.stderr
    report = json.loads(out.read_text())
    assert report["inputs"] > 0
    assert not report["findings"], run.stdout[-6000:]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
