"""One fuzz input: a command line and the folder it runs in.

File contents are lists of `(chunk, times)` parts, so that a 2 MB list literal or 60,000 `= `
tokens stay a few bytes in the corpus: `[(b"let x = [", 1), (b"0, ", 200_000), (b"0]", 1)]`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

Parts = list[tuple[bytes, int]]

# Private copies of character devices, made with mknod inside the case folder (as root). Never the
# system's own nodes: a bug that replaces the node at an output path must not touch /dev.
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "urandom": (1, 9)}

# Options whose value is a path the command writes.
OUTPUT_OPTIONS = ("-o", "--output")


def blob(data: bytes | str) -> Parts:
    return [(data.encode("utf-8") if isinstance(data, str) else data, 1)]


def join(parts: Parts) -> bytes:
    return b"".join(chunk * times for chunk, times in parts)


def size(parts: Parts) -> int:
    return sum(len(chunk) * times for chunk, times in parts)


@dataclass
class Case:
    """What one run of `graphdsl ARGS` sees. Paths are relative to the working folder `w` of the
    case's box; `../x` is a sibling of `w` inside the box (a file outside the "project")."""

    args: list[str]
    files: dict[str, Parts] = field(default_factory=dict)
    main: str | None = "net.cnn"  # the spec the command reads: minimised first, measured for coverage
    fifos: list[str] = field(default_factory=list)
    devices: dict[str, str] = field(default_factory=dict)  # path -> a key of DEVICES
    dirs: list[str] = field(default_factory=list)
    symlinks: dict[str, str] = field(default_factory=dict)  # path -> target (inside the box)
    stdout: str = "capture"  # "capture", "closed" (the reader left: `| head -1`), "full" (a full device)
    env: dict[str, str] = field(default_factory=dict)
    exec: bool = False  # a fresh interpreter (what the interpreter does at exit is part of the case)
    expect_ok: bool = False  # a valid spec at an odd path: any exit but 0 is a wrong reject
    secrets: list[str] = field(default_factory=list)  # files (box paths or absolute) whose lines must not show
    outputs: list[str] = field(default_factory=list)  # files of `files` that a run may replace (earlier outputs)
    origin: str = ""

    @property
    def command(self) -> str:
        return self.args[0] if self.args else ""

    def main_text(self) -> bytes:
        return join(self.files[self.main]) if self.main in self.files else b""

    def size(self) -> int:
        return sum(size(p) for p in self.files.values())

    # ---- the corpus form ------------------------------------------------------------------------

    def to_json(self) -> dict:
        out: dict = {"args": self.args}
        out["files"] = {path: _parts_json(parts) for path, parts in self.files.items()}
        for key in ("main", "fifos", "devices", "dirs", "symlinks", "stdout", "env", "exec", "expect_ok", "secrets",
                    "outputs", "origin"):
            value = getattr(self, key)
            if value != getattr(Case([]), key) or key == "main":
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> Case:
        files = {path: _parts_from_json(v) for path, v in data.get("files", {}).items()}
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("files", "args")}
        return cls(list(data["args"]), files, **known)

    def is_plain_check(self) -> bool:
        """A `check` of one spec and nothing else: the corpus keeps it as a bare .cnn file."""
        plain = Case(["check", "net.cnn"], {"net.cnn": []})
        return (self.args == plain.args and list(self.files) == ["net.cnn"] and self.main == "net.cnn"
                and all(getattr(self, k) == getattr(plain, k) for k in
                        ("fifos", "devices", "dirs", "symlinks", "stdout", "env", "exec", "expect_ok", "secrets",
                         "outputs"))
                and len(self.files["net.cnn"]) <= 1 and (not self.files["net.cnn"] or self.files["net.cnn"][0][1] == 1))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:10]

    # ---- making the folder ----------------------------------------------------------------------

    def check_safe(self, box: Path) -> None:
        """Refuse a case that could write outside its box: an output path or link target outside it."""
        work = box / "w"
        for i, a in enumerate(self.args):
            value = None
            if a in OUTPUT_OPTIONS and i + 1 < len(self.args):
                value = self.args[i + 1]
            elif a.startswith("--output="):
                value = a.split("=", 1)[1]
            if value not in (None, "-") and not _inside(box, work / value):
                raise ValueError(f"unsafe case: output {value!r} outside the box")
        for path in (*self.files, *self.fifos, *self.devices, *self.dirs, *self.symlinks):
            if not _inside(box, work / path):
                raise ValueError(f"unsafe case: {path!r} outside the box")
        for path, target in self.symlinks.items():
            if not _inside(box, (work / path).parent / target):
                raise ValueError(f"unsafe case: link {path!r} -> {target!r} leaves the box")

    def materialise(self, box: Path) -> None:
        """Make the box: `box/w` is the working folder."""
        self.check_safe(box)
        work = box / "w"
        work.mkdir(parents=True)
        for d in self.dirs:
            (work / d).mkdir(parents=True, exist_ok=True)
        for path, parts in self.files.items():
            p = work / path
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "wb") as f:
                for chunk, times in parts:
                    if times > 1 and len(chunk) * times > 1 << 20:
                        block = chunk * max(1, (1 << 20) // max(1, len(chunk)))
                        whole, rest = divmod(times, max(1, (1 << 20) // max(1, len(chunk))))
                        for _ in range(whole):
                            f.write(block)
                        f.write(chunk * rest)
                    else:
                        f.write(chunk * times)
        for path in self.fifos:
            p = work / path
            p.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(p)
        for path, kind in self.devices.items():
            p = work / path
            p.parent.mkdir(parents=True, exist_ok=True)
            os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(*DEVICES[kind]))
        for path, target in self.symlinks.items():
            p = work / path
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, p)


def _inside(box: Path, path: Path) -> bool:
    real = os.path.normpath(os.path.abspath(path))
    return real == str(box) or real.startswith(str(box) + os.sep)


def _parts_json(parts: Parts):
    def one(chunk: bytes) -> dict:
        try:
            return {"text": chunk.decode("utf-8")}
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(chunk).decode("ascii")}

    if len(parts) == 1 and parts[0][1] == 1:
        return one(parts[0][0])
    return {"parts": [[one(chunk), times] for chunk, times in parts]}


def _parts_from_json(value) -> Parts:
    def one(d: dict) -> bytes:
        return d["text"].encode("utf-8") if "text" in d else base64.b64decode(d["base64"])

    if "parts" in value:
        return [(one(chunk), int(times)) for chunk, times in value["parts"]]
    return [(one(value), 1)]


def can_make_devices() -> bool:
    """Whether this process may mknod (root): the device-node cases need it."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        try:
            os.mknod(os.path.join(d, "n"), stat.S_IFCHR | 0o600, os.makedev(*DEVICES["null"]))
            with open(os.path.join(d, "n"), "wb") as f:
                f.write(b"x")
        except OSError:
            return False
    return True
