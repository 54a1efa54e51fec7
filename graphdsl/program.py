"""Reading spec files: text checks, imports (relative to the importing file), cycles, block tables."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import ast
from .diagnostics import Diagnostic, Span, did_you_mean
from .files import file_kind
from .ops import REGISTRY
from .syntax import MAX_TOKENS, count_tokens, parse
from .text import normalize_newlines

MAX_FILE_BYTES = 10_000_000
MAX_FILES = 200  # spec files one program reads, the main one included
MAX_IMPORT_DEPTH = 32  # files importing files
MAX_PROGRAM_TOKENS = 2 * MAX_TOKENS  # all files together: parsing costs ~20 µs a token
MAX_IMPORT_ERRORS = 50  # past these, reading more files only finds more of the same


@dataclass
class Program:
    """The main module, every imported module, and all blocks by name."""

    main: ast.Module | None
    blocks: dict[str, ast.Definition] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    loaded: set[str] = field(default_factory=set)  # real paths of imported files, each read once
    imported_networks: dict[str, ast.Definition] = field(default_factory=dict)  # bases for aliases
    roots: tuple[str, ...] = ()  # real paths of the folders imports may come from
    inputs: list[str] = field(default_factory=list)  # the files read (main first): never an output
    tokens: int = 0  # of every file read, counted as the parser will see them

    @property
    def networks(self) -> dict[str, ast.Definition]:
        if self.main is None:
            return {}
        return {d.name: d for d in self.main.definitions if d.kind == "network"}


# How a spec file is opened: never blocking (a FIFO with no writer, a terminal), never becoming the
# controlling terminal, not inherited by child processes.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def _not_a_file(path: str, mode: int) -> Diagnostic:
    kind = file_kind(mode)
    if stat.S_ISDIR(mode):
        return Diagnostic(f"`{path}` is a directory, not a spec file", None, help="name a .cnn file in it")
    return Diagnostic(f"`{path}` is {kind}, not a spec file", None,
                      help="graphdsl reads regular files only (a pipe or a device may never end); save the spec "
                           "to a file")


def read_source(path: str) -> tuple[str | None, Diagnostic | None]:
    """The text of a spec file, or a diagnostic saying why it cannot be read.

    Only a regular file is read, and at most MAX_FILE_BYTES of it: a FIFO, a device (the standard input,
    a terminal), a socket or a directory is refused before it is opened (and again on the open file,
    which is opened non-blocking), so reading never waits for a writer nor reads without end. Files
    in /proc say they are empty but are regular: the bounded read takes what they hold.
    """
    where = Span(path, 1, 1, 1, 1)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            return None, _not_a_file(path, st.st_mode)
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        hint = f"did you mean `{path}.cnn`?" if os.path.isfile(path + ".cnn") else "check the path"
        return None, Diagnostic(f"no such file `{path}`", None, help=hint)
    except OSError as e:
        return None, Diagnostic(f"cannot read `{path}`: {e.strerror}", None)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the stat and the open
            return None, _not_a_file(path, st.st_mode)
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as e:
        return None, Diagnostic(f"cannot read `{path}`: {e.strerror}", None)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return None, Diagnostic(f"`{path}` is larger than {MAX_FILE_BYTES:,} bytes", where)
    if b"\0" in data:
        return None, Diagnostic(f"`{path}` is a binary file, not a .cnn spec", where,
                                help="a spec is UTF-8 text, e.g. `network name { input 3x224x224 ... }`")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        before = normalize_newlines(data[:e.start].decode("utf-8-sig", "replace"))
        line, col = before.count("\n") + 1, len(before) - before.rfind("\n")
        return None, Diagnostic(f"`{path}` is not UTF-8 text: invalid byte 0x{data[e.start]:02x}",
                                Span(path, line, col, line, col + 1), help="save the spec as UTF-8")


# What marks the top folder of a project: imports stay inside it unless more folders are allowed.
ROOT_MARKERS = (".git", "pyproject.toml", "graphdsl.toml")


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or below it (both real, absolute paths)."""
    if not folder:
        return False
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def project_root(file: str | None) -> str:
    """The folder a spec's imports must stay in (a real path): the nearest folder above the spec that
    holds `.git`, `pyproject.toml` or `graphdsl.toml`; else the current folder if the spec is below it;
    else the spec's own folder. For spec text (`file` None) the spec's folder is the current one; where
    that was removed, the root is "" (nothing is inside it)."""
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the current folder was removed
        cwd = None
    start = os.path.dirname(os.path.realpath(file)) if file is not None else cwd
    if start is None:
        return ""
    folder = start
    while True:
        if any(os.path.lexists(os.path.join(folder, marker)) for marker in ROOT_MARKERS):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    if cwd is not None and _inside(start, cwd):
        return cwd
    return start


def load_program(text: str, file: str, import_roots: Iterable[str | os.PathLike] = (), *,
                 from_file: bool | None = None, read=read_source) -> Program:
    """Parse `text` (the contents of `file`, or spec text when not `from_file`) and everything it imports.

    Imports resolve relative to the importing file and must stay inside the project root of the main
    file (`project_root`) or one of `import_roots`; only `.cnn` files are imported. `read(path)` reads an
    imported file, as `read_source` does (the language server reads the editor's unsaved buffers first).
    """
    if from_file is None:
        from_file = os.path.isfile(file)
    roots = [project_root(file if from_file else None)]
    roots += [os.path.realpath(os.fspath(r)) for r in import_roots]
    program = Program(None, roots=tuple(dict.fromkeys(roots)))
    if from_file:
        program.inputs.append(os.path.realpath(file))
    program.main = _load_module(program, text, file, stack=(), from_file=from_file, read=read)
    return program


def _import_limit(program: Program, stack: tuple[str, ...]) -> str | None:
    """Which limit reading one more file would pass, if any."""
    if len(stack) + 1 >= MAX_IMPORT_DEPTH:
        return f"imports nested more than {MAX_IMPORT_DEPTH} files deep"
    if len(program.sources) >= MAX_FILES:
        return f"the spec would read more than {MAX_FILES} files"
    if program.tokens > MAX_PROGRAM_TOKENS:
        return f"the files read so far hold more than {MAX_PROGRAM_TOKENS:,} tokens"
    return None


def _refused_import(program: Program, imp: ast.Import, target: str, real: str) -> Diagnostic | None:
    """Why an import may not be read, before it is read: it is no .cnn spec, or lies outside the roots."""
    if not target.endswith(".cnn") or not real.endswith(".cnn"):
        hint = "only .cnn specs can be imported"
        if os.path.isfile(target + ".cnn"):
            hint = f"did you mean `{imp.path}.cnn`?"
        what = "is not a .cnn spec" if not target.endswith(".cnn") else f"resolves to `{real}`, not a .cnn spec"
        return Diagnostic(f"cannot import `{imp.path}`: it {what}", imp.span, help=hint)
    if not any(_inside(real, root) for root in program.roots):
        shown = " or ".join(f"`{r}`" for r in program.roots)
        folder = os.path.dirname(real)
        return Diagnostic(f"cannot import `{imp.path}`: it is outside the project root {shown}", imp.span,
                          notes=("imports stay inside the project root: the nearest folder above the main spec "
                                 "holding `.git`, `pyproject.toml` or `graphdsl.toml`, else the current folder "
                                 "if the spec is below it, else the spec's own folder",),
                          help=f"to allow it, pass `--import-root {folder}` (API: `import_roots=[{folder!r}]`)")
    return None


def _load_module(program: Program, text: str, file: str, stack: tuple[str, ...],
                 from_file: bool = True, read=read_source) -> ast.Module | None:
    text = normalize_newlines(text)  # CR-only and CRLF files: lines and columns as an editor shows them
    program.sources[file] = text
    program.tokens += count_tokens(text, MAX_PROGRAM_TOKENS)
    module, errors = parse(text, file)
    program.diagnostics += errors
    if module is None:
        return None
    key = os.path.realpath(file) if from_file else file
    try:
        base = os.path.dirname(file) if from_file else os.getcwd()
    except OSError:  # spec text, and the current folder was removed: nothing to import relative to
        program.diagnostics += [Diagnostic(f"cannot import `{imp.path}`: the current folder no longer exists",
                                           imp.span, help="run graphdsl from an existing folder")
                                for imp in module.imports]
        base = None
    for imp in module.imports if base is not None else ():
        if len(program.diagnostics) >= MAX_IMPORT_ERRORS:
            break
        target = os.path.normpath(os.path.join(base, imp.path))
        target_key = os.path.realpath(target)
        refused = _refused_import(program, imp, target, target_key)
        if refused is not None:
            program.diagnostics.append(refused)
            continue
        if target_key in stack or target_key == key:
            chain = " -> ".join(os.path.basename(p) for p in (*stack, key, target_key))
            program.diagnostics.append(Diagnostic(f"import cycle: {chain}", imp.span,
                                                  help="move the shared blocks into a file that imports neither"))
            continue
        if target_key in program.loaded:
            continue
        too_much = _import_limit(program, stack)
        if too_much is not None:
            program.diagnostics.append(Diagnostic(f"cannot import `{imp.path}`: {too_much}", imp.span,
                                                  help="a network's blocks live in a few files; import fewer"))
            continue
        src, problem = read(target)
        if problem is not None:
            hint = problem.help
            if problem.message.startswith("no such file"):
                hint = f"the path is relative to `{file}`; resolved to `{target}`"
            program.diagnostics.append(Diagnostic(f"cannot import `{imp.path}`: {problem.message}", imp.span,
                                                  help=hint))
            continue
        program.loaded.add(target_key)
        program.inputs.append(target_key)
        _load_module(program, src, target, (*stack, key), read=read)
    networks: dict[str, ast.Definition] = {}
    for definition in module.definitions:
        if definition.kind == "block":
            _add_block(program, definition)
            continue
        first = networks.setdefault(definition.name, definition)
        if first is not definition:
            program.diagnostics.append(Diagnostic(
                f"network `{definition.name}` is defined twice", definition.name_span,
                notes=(f"first defined at {first.name_span}",), help="rename one of them"))
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
