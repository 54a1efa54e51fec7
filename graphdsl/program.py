"""Reading spec files: text checks, imports (relative to the importing file), cycles, block tables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import ast
from .diagnostics import Diagnostic, Span, did_you_mean
from .ops import REGISTRY
from .syntax import parse

MAX_FILE_BYTES = 10_000_000


@dataclass
class Program:
    """The main module, every imported module, and all blocks by name."""

    main: ast.Module | None
    blocks: dict[str, ast.Definition] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)  # real paths of imported files, each read once
    imported_networks: dict[str, ast.Definition] = field(default_factory=dict)  # bases for aliases

    @property
    def networks(self) -> dict[str, ast.Definition]:
        if self.main is None:
            return {}
        return {d.name: d for d in self.main.definitions if d.kind == "network"}


def read_source(path: str) -> tuple[str | None, Diagnostic | None]:
    """The text of a spec file, or a diagnostic saying why it cannot be read."""
    where = Span(path, 1, 1, 1, 1)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        hint = f"did you mean `{path}.cnn`?" if os.path.isfile(path + ".cnn") else "check the path"
        return None, Diagnostic(f"no such file `{path}`", None, help=hint)
    except IsADirectoryError:
        return None, Diagnostic(f"`{path}` is a directory, not a spec file", None)
    except OSError as e:
        return None, Diagnostic(f"cannot read `{path}`: {e.strerror}", None)
    if len(data) > MAX_FILE_BYTES:
        return None, Diagnostic(f"`{path}` is larger than {MAX_FILE_BYTES:,} bytes", where)
    if b"\0" in data:
        return None, Diagnostic(f"`{path}` is a binary file, not a .cnn spec", where,
                                help="a spec is UTF-8 text, e.g. `network name { input 3x224x224 ... }`")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        before = data[:e.start].decode("utf-8-sig", "replace")
        line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
        return None, Diagnostic(f"`{path}` is not UTF-8 text: invalid byte 0x{data[e.start]:02x}",
                                Span(path, line, col, line, col + 1), help="save the spec as UTF-8")


def load_program(text: str, file: str) -> Program:
    """Parse `text` (the contents of `file`) and everything it imports."""
    program = Program(None)
    program.main = _load_module(program, text, file, stack=())
    return program


def _load_module(program: Program, text: str, file: str, stack: tuple[str, ...]) -> ast.Module | None:
    program.sources[file] = text
    module, errors = parse(text, file)
    program.diagnostics += errors
    if module is None:
        return None
    key = os.path.realpath(file) if os.path.exists(file) else file
    for imp in module.imports:
        base = os.path.dirname(file) if os.path.exists(file) else os.getcwd()
        target = os.path.normpath(os.path.join(base, imp.path))
        target_key = os.path.realpath(target)
        if target_key in stack or target_key == key:
            chain = " -> ".join(os.path.basename(p) for p in (*stack, key, target_key))
            program.diagnostics.append(Diagnostic(f"import cycle: {chain}", imp.span,
                                                  help="move the shared blocks into a file that imports neither"))
            continue
        if target_key in program.loaded:
            continue
        src, problem = read_source(target)
        if problem is not None:
            hint = f"the path is relative to `{file}`; resolved to `{target}`"
            if not target.endswith(".cnn") and os.path.isfile(target + ".cnn"):
                hint = f"did you mean `{imp.path}.cnn`?"
            program.diagnostics.append(Diagnostic(f"cannot import `{imp.path}`: {problem.message}", imp.span,
                                                  help=hint))
            continue
        program.loaded.add(target_key)
        _load_module(program, src, target, (*stack, key))
    for definition in module.definitions:
        if definition.kind == "block":
            _add_block(program, definition)
        elif stack:
            program.imported_networks.setdefault(definition.name, definition)
    return module


def _add_block(program: Program, block: ast.Definition) -> None:
    if block.name in REGISTRY:
        program.diagnostics.append(Diagnostic(f"block `{block.name}` has the name of a built-in operator",
                                              block.name_span, help="rename the block"))
        return
    first = program.blocks.get(block.name)
    if first is not None:
        program.diagnostics.append(Diagnostic(
            f"block `{block.name}` is defined twice", block.name_span,
            notes=(f"first defined at {first.name_span}",), help="rename one of them"))
        return
    program.blocks[block.name] = block


def choose_network(program: Program, name: str | None, file: str) -> tuple[ast.Definition | None, Diagnostic | None]:
    """The network to elaborate: the one named, the only one, or the one named like the file."""
    networks = program.networks
    if name is not None:
        if name in networks:
            return networks[name], None
        return None, Diagnostic(f"no network `{name}` in `{file}`", None,
                                help=did_you_mean(name, networks, "networks") or "the file defines no network")
    if len(networks) == 1:
        return next(iter(networks.values())), None
    stem = os.path.splitext(os.path.basename(file))[0]
    if stem in networks:
        return networks[stem], None
    if not networks:
        span = Span(file, 1, 1, 1, 1)
        empty = not program.sources.get(file, "").strip()
        return None, Diagnostic(f"`{file}` is empty" if empty else f"`{file}` defines no network", span,
                                help="write `network name { input 3x224x224 ... }`")
    second = list(networks.values())[1]
    return None, Diagnostic(f"`{file}` defines several networks: " + ", ".join(f"`{n}`" for n in networks),
                            second.name_span, help="choose one with `--network NAME`")
