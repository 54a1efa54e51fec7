"""Text -> analysis: the parsed program, the diagnostics `graphdsl check` gives, and the elaborated IR of
every network of the file, from which the language server answers questions about a position
(`hover.py`, `navigation.py`, `completion.py`). Pure: no protocol, no pygls. The server calls
`analyse_document` after each edit settles, in a worker thread.

Which networks: every network of the file whose parameters all have defaults (or an alias, which gives
them), each elaborated with its defaults, so that errors inside block bodies show where they are. A
network with a parameter lacking a default (`network resnet(n1, n2, n3, n4, ...)` in a block library)
is the library's template, not a network to check: it is not elaborated and reports nothing. A library's
blocks are elaborated by the networks of the open files importing it (the server passes them to the
hover), else by those of one spec beside it that imports it (`with_context`).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx

from .. import ast
from ..backends.scopes import gc_paused, scope_tree
from ..diagnostics import Diagnostic, Span, too_deep
from ..elaborate import Elaborator
from ..passes import PASSES, run_passes
from ..program import Program, load_program, read_source
from ..text import normalize_newlines

Reader = Callable[[str], "tuple[str | None, Diagnostic | None]"]


def real(path: str) -> str:
    """The key a file is compared by (spans name files as they were reached: relative, or through links)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


@dataclass
class Elaboration:
    """One network of a file, elaborated with its defaults, and indexes from source spans into its IR."""

    network: str
    file: str  # the file defining the network (for hovers drawn from another file's networks)
    graph: nx.DiGraph
    complete: bool  # elaborated without errors (else a partial graph: what came before the first error)
    _by_span: dict | None = None

    def index(self) -> tuple[dict, dict, dict, dict]:
        """(nodes by span, block-call scopes by span, members by scope path, scope infos), built once."""
        if self._by_span is None:
            nodes: dict[Span, list[str]] = {}
            for n, d in self.graph.nodes(data=True):
                if d["op"] != "input":
                    nodes.setdefault(d["span"], []).append(n)
            infos = self.graph.graph.get("scopes", {})
            calls: dict[Span, list[tuple]] = {}
            for path, info in infos.items():
                if info.get("span") is not None:
                    calls.setdefault(info["span"], []).append(path)
            members: dict[tuple, list[str]] = {}
            stack = [scope_tree(self.graph)]
            while stack:
                scope = stack.pop()
                members[scope.path] = scope.members
                stack.extend(c for c in scope.children if not isinstance(c, str))
            self._by_span = (nodes, calls, members, infos)
        return self._by_span


@dataclass
class Analysis:
    """What one version of a document says."""

    file: str
    text: str
    program: Program | None
    diagnostics: list[Diagnostic] = field(default_factory=list)  # in this file and in the files it imports
    elaborations: list[Elaboration] = field(default_factory=list)
    version: int | None = None  # the editor's version of the text (the server sets it)
    context: str | None = None  # a spec importing this library, whose networks elaborate its blocks

    @property
    def module(self) -> ast.Module | None:
        return self.program.main if self.program is not None else None

    @property
    def inputs(self) -> set[str]:
        """Real paths of the files this analysis read (itself included)."""
        return {real(p) for p in (self.program.inputs if self.program else ())} | {real(self.file)}


def _load(text: str, file: str, read: Reader | None) -> Program:
    """load_program, reading imports through `read` (an editor's unsaved buffers) where graphdsl.program
    accepts a reader; else from disk."""
    if read is not None and "read" in inspect.signature(load_program).parameters:
        return load_program(text, file, from_file=True, read=read)
    return load_program(text, file, from_file=True)


def elaborable(net: ast.Definition) -> bool:
    """A network that can be elaborated with its defaults: an alias, or one whose parameters all have one."""
    return net.base is not None or all(p.default is not None for p in net.params)


def analyse(text: str, file: str, read: Reader | None = None) -> Analysis:
    """Parse `text` as the file at `file` (imports resolve from its folder), and elaborate each of its
    networks with its defaults. Diagnostics are those `graphdsl check --network NAME` gives for each
    network, errors and warnings, without repeats."""
    with gc_paused():
        program = _load(text, file, read)
        result = Analysis(file, text, program, list(program.diagnostics))
        if program.diagnostics or program.main is None:
            return result  # as `check`: syntax and import errors first
        seen = {_key(d) for d in result.diagnostics}
        for net in program.networks.values():
            if not elaborable(net):
                continue
            elaboration, diagnostics = elaborate(program, net)
            if elaboration is not None:
                result.elaborations.append(elaboration)
            for d in diagnostics:
                if _key(d) not in seen:
                    seen.add(_key(d))
                    result.diagnostics.append(d)
    return result


MAX_CONTEXT_FILES = 500  # .cnn files looked at for one that imports a library
MAX_CONTEXT_BYTES = 1_000_000
_IMPORT = re.compile(r'^\s*import\s+"([^"\n]+)"', re.M)
_imports_seen: dict[str, tuple[float, tuple[str, ...]]] = {}  # file -> (mtime, real paths it imports)


def importers(file: str) -> list[str]:
    """Spec files on disk, in the folder of `file` and the folder above, that import `file`, in name order:
    the networks a block library is written for (`specs/resnet101.cnn` for `specs/lib/resnet.cnn`)."""
    key = real(file)
    folder = os.path.dirname(os.path.abspath(file))
    found = []
    candidates: list[str] = []
    for where in dict.fromkeys((folder, os.path.dirname(folder))):
        try:
            candidates += sorted(os.path.join(where, n) for n in os.listdir(where) if n.endswith(".cnn"))
        except OSError:
            continue
    for path in candidates[:MAX_CONTEXT_FILES]:
        if real(path) != key and key in _imported_by(path):
            found.append(path)
    return found


def _imported_by(path: str) -> tuple[str, ...]:
    try:
        st = os.stat(path)
        known = _imports_seen.get(path)
        if known is not None and known[0] == st.st_mtime:
            return known[1]
        if st.st_size > MAX_CONTEXT_BYTES:
            return ()
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return ()
    base = os.path.dirname(path)
    imports = tuple(real(os.path.join(base, m.group(1))) for m in _IMPORT.finditer(text))
    _imports_seen[path] = (st.st_mtime, imports)
    return imports


@functools.cache
def reads_buffers() -> bool:
    """Whether graphdsl.program reads imports through a reader (so an analysis sees unsaved buffers)."""
    return "read" in inspect.signature(load_program).parameters


def with_context(result: Analysis, read: Reader | None = None) -> Analysis:
    """A block library analysed alone elaborates nothing (its network, if any, needs arguments): add the
    elaborations of one spec on disk that imports it (`importers`), and the diagnostics they find in the
    library. Only where that spec sees the library's text as analysed: through `read` (unsaved buffers,
    where graphdsl.program takes a reader), or because the text is the one saved."""
    module = result.module
    if module is None or result.elaborations or not any(d.kind == "block" for d in module.definitions):
        return result
    if not (read is not None and reads_buffers()):
        saved, _ = read_source(result.file)
        if saved is None or normalize_newlines(saved) != normalize_newlines(result.text):
            return result
    key = real(result.file)
    for spec in importers(result.file):
        text, problem = read_source(spec)
        if problem is not None:
            continue
        context = analyse(text, spec, read)
        if not context.elaborations:
            continue
        result.elaborations += context.elaborations
        seen = {_key(d) for d in result.diagnostics}
        result.diagnostics += [d for d in context.diagnostics
                               if d.span is not None and real(d.span.file) == key and _key(d) not in seen]
        result.context = spec
        break
    return result


def analyse_document(text: str, file: str, read: Reader | None = None, context: bool = True) -> Analysis:
    """`analyse`, and for a block library (with `context`) the networks of a spec that imports it."""
    result = analyse(text, file, read)
    return with_context(result, read) if context else result


def _key(d: Diagnostic) -> tuple:
    return d.severity, d.message, d.span


def elaborate(program: Program, net: ast.Definition) -> tuple[Elaboration | None, list[Diagnostic]]:
    """One network's IR with the passes' figures (a partial graph where elaboration failed) and its
    diagnostics, as `graphdsl check` finds them."""
    elaborator = Elaborator(program)
    try:
        graph = elaborator.network(net, {})
    except RecursionError:
        return None, [too_deep(net.span.file)]
    diagnostics = list(elaborator.diagnostics)
    if not diagnostics:
        run_passes(graph)
        diagnostics = list(graph.graph.get("warnings", ()))
        complete = True
    else:
        complete = False
        try:
            for figures in PASSES:  # no lint: a partial graph is not a whole network
                figures(graph)
        except Exception:  # a partial graph the passes cannot read: keep the diagnostics, drop the figures
            return None, diagnostics
    return Elaboration(net.name, net.span.file, graph, complete), diagnostics
