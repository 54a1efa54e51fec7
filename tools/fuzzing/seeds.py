"""Where mutations start: every shipped spec (with the files it imports), every doc example, the
malformed specs of the test suite and the plugin example."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_IMPORT = re.compile(rb'^\s*import\s+"([^"\n]+)"', re.M)
_FENCE = re.compile(r"```(cnn|cnn-error)\n(.*?)```", re.S)


@dataclass(frozen=True)
class Seed:
    name: str  # where it came from: `specs/resnet50.cnn`, `docs/language.md#3`
    main: str  # its path in a case's folder
    files: dict[str, bytes] = field(hash=False)  # the main file and what it imports
    valid: bool  # a shipped spec or a `cnn` doc example: checks
    args: tuple[str, ...] = ()  # extra options the seed needs (`--network wide`)


@cache
def load_seeds(root: Path = ROOT) -> tuple[Seed, ...]:
    seeds: list[Seed] = []
    specs = root / "specs"
    for path in sorted(specs.rglob("*.cnn")):
        rel = path.relative_to(specs).as_posix()
        seeds.append(Seed(f"specs/{rel}", rel, _with_imports(specs, rel), valid=True))
    for doc in sorted((root / "docs").glob("*.md")):
        for i, (kind, body) in enumerate(_FENCE.findall(doc.read_text(encoding="utf-8"))):
            seeds.append(Seed(f"docs/{doc.name}#{i}", "net.cnn", {"net.cnn": body.encode()}, valid=kind == "cnn"))
    malformed = root / "tests" / "malformed"
    for path in sorted(malformed.rglob("*.cnn")):
        rel = path.relative_to(malformed).as_posix()
        args_file = path.with_suffix(".args")
        args = tuple(args_file.read_text().split()) if args_file.exists() else ()
        seeds.append(Seed(f"tests/malformed/{rel}", rel, _with_imports(malformed, rel), valid=False, args=args))
    plugin = root / "examples" / "plugins" / "mish_net.cnn"
    if plugin.exists():
        seeds.append(Seed("examples/plugins/mish_net.cnn", "net.cnn", {"net.cnn": plugin.read_bytes()}, valid=False))
    return tuple(seeds)


def valid_seeds(small: bool = False) -> tuple[Seed, ...]:
    """The seeds that check; `small`: the cheap ones without imports (for the file-system cases)."""
    out = tuple(s for s in load_seeds() if s.valid and not s.args)
    if small:
        out = tuple(s for s in out
                    if len(s.files) == 1 and len(s.files[s.main]) < 1500 and b"network" in s.files[s.main])
    return out


def _with_imports(base: Path, rel: str) -> dict[str, bytes]:
    """`rel` and everything it imports (transitively), as paths relative to `base`; imports that leave
    `base` or do not exist are left out (the case will then say the import is missing)."""
    files: dict[str, bytes] = {}
    todo = [rel]
    while todo:
        cur = todo.pop()
        if cur in files:
            continue
        path = (base / cur).resolve()
        if not path.is_file() or base.resolve() not in path.parents:
            continue
        data = path.read_bytes()
        files[cur] = data
        for m in _IMPORT.finditer(data):
            target = (Path(cur).parent / m.group(1).decode("utf-8", "replace")).as_posix()
            norm = _normpath(target)
            if norm is not None:
                todo.append(norm)
    return files


def _normpath(path: str) -> str | None:
    parts: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)
