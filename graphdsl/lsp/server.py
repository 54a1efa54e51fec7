"""The protocol layer: pygls over stdio, answering from `analysis.py` and `completion.py`.

Each open document is re-analysed after an edit settles (a debounce, default 200 ms, set by the
initialization option `debounce_ms`): analyses run one at a time in a worker thread, and the newest
text wins (a result for an older version is dropped). Diagnostics are published per file: those an
analysis finds in a file it imports are published against that file, merged with what the other open
documents find there. A failing analysis is logged (stderr and window/logMessage), never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from .. import __version__ as VERSION
from ..diagnostics import Diagnostic, Span
from ..program import read_source
from ..text import escape_controls
from . import analysis as an
from . import navigation
from .completion import complete
from .framing import ResyncReader
from .hover import hover as hover_text
from .positions import UTF16, source_lines, to_point, to_range, units_before

log = logging.getLogger("graphdsl.lsp")
DEBOUNCE_S = 0.2
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "note": types.DiagnosticSeverity.Information}
_AT = re.compile(r"\bat (.+?):(\d+):(\d+)\s*$")  # `first defined at lib/x.cnn:3:7`: a note with a place
SYMBOL_KIND = {"network": types.SymbolKind.Class, "block": types.SymbolKind.Function,
               "layer": types.SymbolKind.Field, "tensor": types.SymbolKind.Variable}
COMPLETION_KIND = {"operator": types.CompletionItemKind.Function, "block": types.CompletionItemKind.Class,
                   "keyword": types.CompletionItemKind.Keyword, "tensor": types.CompletionItemKind.Variable,
                   "argument": types.CompletionItemKind.Property, "parameter": types.CompletionItemKind.Property}


@dataclass
class Document:
    uri: str
    path: str
    text: str
    version: int | None = None
    generation: int = 0  # counts edits: an analysis started at an older one is dropped
    analysis: an.Analysis | None = None  # of the latest text analysed
    parsed: an.Analysis | None = None  # the latest that parsed (names for completion while the text is broken)
    task: asyncio.Task | None = None
    published: dict[str, list] = field(default_factory=dict)  # real path -> [(Diagnostic, lines)] it found there


def uri_path(uri: str) -> str:
    """The file a URI names (an `untitled:` document gets a path in the current folder: it imports nothing)."""
    path = to_fs_path(uri)
    if path is None:
        name = urllib.parse.urlparse(uri).path.rsplit("/", 1)[-1] or "untitled.cnn"
        path = os.path.join(os.getcwd(), name)
    return os.path.abspath(path)


class GraphdslServer(LanguageServer):
    def __init__(self):
        super().__init__("graphdsl", VERSION, text_document_sync_kind=types.TextDocumentSyncKind.Full)
        self.documents: dict[str, Document] = {}
        self.analyser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphdsl-analysis")
        self.debounce = DEBOUNCE_S
        self.related_information = False  # whether the client shows `relatedInformation`
        self.hover_markdown = True  # whether hovers and completion documentation may be markdown
        self.completion_markdown = False

    # ---- reporting ------------------------------------------------------------------------------------------

    def report_server_error(self, error, source):
        """A message that could not be handled (garbage on the wire): logged, not shown as a pop-up."""
        self.log(f"could not handle a message: {error}", types.MessageType.Warning)

    def log(self, message: str, kind=types.MessageType.Log) -> None:
        if kind <= types.MessageType.Warning:
            log.warning(message)
        else:
            log.info(message)
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # no client to tell (before initialize, or the pipe is gone)
            pass

    @property
    def encoding(self) -> str:
        try:
            return str(self.workspace.position_encoding or UTF16)
        except Exception:  # before initialize
            return UTF16

    # ---- analysis -------------------------------------------------------------------------------------------

    def read(self, path: str):
        """How analyses read an imported file: from the editor where it is open (unsaved edits included)."""
        key = an.real(path)
        for doc in list(self.documents.values()):
            if an.real(doc.path) == key:
                return doc.text, None
        return read_source(path)

    def schedule(self, doc: Document, delay: float | None = None) -> None:
        doc.generation += 1
        if doc.task is not None:
            doc.task.cancel()
        wait = self.debounce if delay is None else delay
        doc.task = asyncio.ensure_future(self._reanalyse(doc, doc.generation, wait))

    async def _reanalyse(self, doc: Document, generation: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if doc.generation != generation:
            return
        result = await self.analyse(doc)
        if result is None or doc.generation != generation or self.documents.get(doc.uri) is not doc:
            return  # newer text came in while this one was analysed
        self.publish(doc, result)

    async def analyse(self, doc: Document) -> an.Analysis | None:
        text, path, version = doc.text, doc.path, doc.version
        loop = asyncio.get_running_loop()
        try:
            # a library's blocks are elaborated by the open documents importing it, else by a spec on disk
            context = not self.importers_open(doc)
            result = await loop.run_in_executor(self.analyser, an.analyse_document, text, path, self.read, context)
        except Exception as e:  # a bug in graphdsl: logged, the server goes on
            log.exception("analysis of %s failed", path)
            self.log(f"graphdsl: analysis of {path} failed: {type(e).__name__}: {e}", types.MessageType.Error)
            return None
        result.version = version
        if doc.text is text:
            doc.analysis = result
            if result.module is not None:
                doc.parsed = result
        return result

    async def current(self, doc: Document) -> an.Analysis | None:
        """The analysis to answer from: the latest that parsed; the first, analysed now, if none yet."""
        if doc.analysis is None:
            await self.analyse(doc)
        return doc.parsed or doc.analysis

    def importers_open(self, doc: Document) -> bool:
        key = an.real(doc.path)
        return any(o is not doc and o.parsed is not None and key in o.parsed.inputs for o in self.documents.values())

    def dependents_of(self, doc: Document) -> list[an.Elaboration]:
        """Networks of the other open documents that import `doc`: they elaborate its blocks."""
        key = an.real(doc.path)
        found = []
        for other in list(self.documents.values()):
            a = other.parsed
            if other is not doc and a is not None and key in a.inputs:
                found += a.elaborations
        return found

    # ---- diagnostics ----------------------------------------------------------------------------------------

    def publish(self, doc: Document, result: an.Analysis) -> None:
        before = set(doc.published)
        doc.published = {}
        sources = result.program.sources if result.program else {}
        for d in result.diagnostics:
            file = d.span.file if d.span else doc.path
            key = an.real(file)
            text = doc.text if key == an.real(doc.path) else sources.get(file)
            if text is None:
                text = self.read(file)[0] or ""
            doc.published.setdefault(key, []).append((d, file, source_lines(text)))
        for key in before | set(doc.published) | {an.real(doc.path)}:  # its own file always: empty clears
            self.send_diagnostics(key, result.version if key == an.real(doc.path) else None)

    def send_diagnostics(self, key: str, version: int | None = None) -> None:
        """Publish what every open document finds in the file `key` (a real path), for `version` of it (where
        it is open: the version its own latest analysis read)."""
        if version is None:
            own = next((d for d in list(self.documents.values()) if an.real(d.path) == key), None)
            version = own.analysis.version if own is not None and own.analysis is not None else None
        found = []
        seen = set()
        for doc in list(self.documents.values()):
            for d, file, lines in doc.published.get(key, ()):
                if (d.severity, d.message, d.span) not in seen:
                    seen.add((d.severity, d.message, d.span))
                    found.append(self.to_lsp(d, file, lines))
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=self.uri_of(key), diagnostics=found,
                                                                              version=version))

    def is_open(self, path: str) -> bool:
        key = an.real(path)
        return any(an.real(doc.path) == key for doc in list(self.documents.values()))

    def uri_of(self, path: str) -> str:
        key = an.real(path)
        for doc in list(self.documents.values()):
            if an.real(doc.path) == key:
                return doc.uri
        return from_fs_path(path) or Path(path).as_uri()

    def location(self, span, lines: list[str] | None = None) -> types.Location:
        if lines is None:
            lines = source_lines(self.read(span.file)[0] or "")
        return types.Location(uri=self.uri_of(span.file), range=self.range(span, lines))

    def range(self, span, lines: list[str]) -> types.Range:
        (l0, c0), (l1, c1) = to_range(span, lines, self.encoding)
        return types.Range(types.Position(line=l0, character=c0), types.Position(line=l1, character=c1))

    def to_lsp(self, d: Diagnostic, file: str, lines: list[str]) -> types.Diagnostic:
        """A graphdsl diagnostic for the client: `help:` and notes as related information where the client
        shows it (a note naming a place points there), else in the message."""
        if d.span is not None:
            where = self.range(d.span, lines)
        else:
            where = types.Range(types.Position(line=0, character=0), types.Position(line=0, character=0))
        extra = [f"note: {n}" for n in d.notes] + ([f"help: {d.help}"] if d.help else [])
        related = None
        message = d.message
        if self.related_information and d.span is not None:
            related = []
            here = types.Location(uri=self.uri_of(file), range=where)
            for text in extra:
                place = _AT.search(text)
                loc = here
                if place is not None and (os.path.isfile(place.group(1)) or self.is_open(place.group(1))):
                    line, col = int(place.group(2)), int(place.group(3))
                    loc = self.location(Span(place.group(1), line, col, line, col + 1))
                related.append(types.DiagnosticRelatedInformation(location=loc, message=text))
        elif extra:
            message = "\n".join([message, *extra])
        message = escape_controls(message, keep="\n")
        for info in related or ():
            info.message = escape_controls(info.message)
        return types.Diagnostic(range=where, message=message, severity=SEVERITY.get(d.severity),
                                source="graphdsl", related_information=related or None)


server = GraphdslServer()


def _doc(ls: GraphdslServer, uri: str) -> Document | None:
    return ls.documents.get(uri)


def _point(doc: Document, position: types.Position, encoding: str) -> tuple[int, int]:
    return to_point(source_lines(doc.text), position.line, position.character, encoding)


@server.feature(types.INITIALIZE)
def initialize(ls: GraphdslServer, params: types.InitializeParams) -> None:
    options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
    try:
        ls.debounce = max(0.0, float(options.get("debounce_ms", DEBOUNCE_S * 1000))) / 1000
    except (TypeError, ValueError):
        ls.debounce = DEBOUNCE_S
    caps = params.capabilities.text_document
    diagnostics = caps.publish_diagnostics if caps is not None else None
    ls.related_information = bool(diagnostics and diagnostics.related_information)
    hover_caps = caps.hover if caps is not None else None
    ls.hover_markdown = not (hover_caps and hover_caps.content_format) or (
        types.MarkupKind.Markdown in hover_caps.content_format)
    item_caps = caps.completion.completion_item if caps is not None and caps.completion else None
    ls.completion_markdown = bool(item_caps and item_caps.documentation_format
                                  and types.MarkupKind.Markdown in item_caps.documentation_format)
    try:
        from ..plugins import load_plugins

        load_plugins()  # installed operator plugins, as the command line loads them
    except Exception as e:
        log.warning("operator plugins not loaded: %s", e)


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: GraphdslServer, params: types.DidOpenTextDocumentParams) -> None:
    item = params.text_document
    doc = Document(item.uri, uri_path(item.uri), item.text, item.version)
    ls.documents[item.uri] = doc
    ls.schedule(doc, delay=0)
    _touch_dependents(ls, doc)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: GraphdslServer, params: types.DidChangeTextDocumentParams) -> None:
    doc = _doc(ls, params.text_document.uri)
    if doc is None:
        return
    for change in params.content_changes:  # full sync: each change is the whole text
        if isinstance(change, types.TextDocumentContentChangeWholeDocument):
            doc.text = change.text
    doc.version = params.text_document.version
    ls.schedule(doc)
    if an.reads_buffers():  # the files importing it see its unsaved text: analyse them again (else on save)
        _touch_dependents(ls, doc)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: GraphdslServer, params: types.DidSaveTextDocumentParams) -> None:
    doc = _doc(ls, params.text_document.uri)
    if doc is not None:
        _touch_dependents(ls, doc)


def _touch_dependents(ls: GraphdslServer, doc: Document) -> None:
    """Open documents importing `doc` read its text: analyse them again."""
    key = an.real(doc.path)
    for other in list(ls.documents.values()):
        if other is not doc and other.parsed is not None and key in other.parsed.inputs:
            ls.schedule(other)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: GraphdslServer, params: types.DidCloseTextDocumentParams) -> None:
    doc = ls.documents.pop(params.text_document.uri, None)
    if doc is None:
        return
    if doc.task is not None:
        doc.task.cancel()
    for key in doc.published:
        ls.send_diagnostics(key)


async def _analysed(ls: GraphdslServer, uri: str):
    """(the open document, its current analysis); (None, None) for a document not open."""
    doc = _doc(ls, uri)
    return doc, (await ls.current(doc) if doc is not None else None)


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls: GraphdslServer, params: types.HoverParams) -> types.Hover | None:
    doc, result = await _analysed(ls, params.text_document.uri)
    if result is None:
        return None
    line, col = _point(doc, params.position, ls.encoding)
    try:
        text = hover_text(result, line, col, ls.dependents_of(doc))
    except Exception as e:
        ls.log(f"graphdsl: hover failed: {type(e).__name__}: {e}", types.MessageType.Error)
        return None
    if not text:
        return None
    kind = types.MarkupKind.Markdown if ls.hover_markdown else types.MarkupKind.PlainText
    return types.Hover(contents=types.MarkupContent(kind=kind, value=escape_controls(text, keep="\n")))


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
async def definition(ls: GraphdslServer, params: types.DefinitionParams) -> types.Location | None:
    doc, result = await _analysed(ls, params.text_document.uri)
    if result is None:
        return None
    line, col = _point(doc, params.position, ls.encoding)
    span = navigation.definition(result, line, col)
    if span is None:
        return None
    sources = result.program.sources if result.program else {}
    text = doc.text if an.real(span.file) == an.real(doc.path) else sources.get(span.file)
    return ls.location(span, source_lines(text) if text is not None else None)


@server.feature(types.TEXT_DOCUMENT_COMPLETION,
                types.CompletionOptions(trigger_characters=["(", ","]))
async def completion(ls: GraphdslServer, params: types.CompletionParams) -> types.CompletionList | None:
    doc = _doc(ls, params.text_document.uri)
    if doc is None:
        return None
    result = await ls.current(doc)
    line, col = _point(doc, params.position, ls.encoding)
    items = []
    for i, item in enumerate(complete("\n".join(source_lines(doc.text)), line, col, result)):
        item = replace(item, doc=escape_controls(item.doc, keep="\n"), detail=escape_controls(item.detail))
        items.append(types.CompletionItem(
            label=item.label, kind=COMPLETION_KIND.get(item.kind), detail=item.detail or None,
            documentation=(types.MarkupContent(kind=types.MarkupKind.Markdown, value=item.doc)
                           if ls.completion_markdown else item.doc) if item.doc else None,
            insert_text=item.insert, sort_text=f"{i:04d}"))
    return types.CompletionList(is_incomplete=False, items=items)


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
async def document_symbol(ls: GraphdslServer, params: types.DocumentSymbolParams) -> list | None:
    doc, result = await _analysed(ls, params.text_document.uri)
    if result is None or result.module is None:
        return None
    lines = source_lines(result.text)

    def convert(s: navigation.Symbol) -> types.DocumentSymbol:
        return types.DocumentSymbol(name=s.name, kind=SYMBOL_KIND[s.kind], detail=s.detail or None,
                                    range=ls.range(s.span, lines), selection_range=ls.range(s.name_span, lines),
                                    children=[convert(c) for c in s.children] or None)

    return [convert(s) for s in navigation.symbols(result.module)]


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
async def formatting(ls: GraphdslServer, params: types.DocumentFormattingParams) -> list | None:
    doc = _doc(ls, params.text_document.uri)
    if doc is None:
        return None
    try:
        from ..fmt import format_source
    except ImportError:
        ls.log("graphdsl: formatting needs graphdsl.fmt, which this install lacks", types.MessageType.Warning)
        return None
    text = doc.text
    loop = asyncio.get_running_loop()
    try:
        formatted, _problems = await loop.run_in_executor(ls.analyser, format_source, text, doc.path)
    except Exception as e:
        ls.log(f"graphdsl: formatting failed: {type(e).__name__}: {e}", types.MessageType.Error)
        return None
    if formatted is None or formatted == text or doc.text is not text:
        return []  # unparsable (its errors are the diagnostics), unchanged, or edited meanwhile
    lines = source_lines(text)
    end = types.Position(line=len(lines) - 1, character=units_before(lines[-1], len(lines[-1]), ls.encoding))
    return [types.TextEdit(range=types.Range(types.Position(line=0, character=0), end), new_text=formatted)]


class _BrokenMessage(logging.Filter):
    """pygls logs a message it cannot read with its traceback: one line is enough (`report_server_error`
    says why). Garbage on the wire is the client's, not a bug of the server to debug."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == "Unable to handle message":
            return False  # report_server_error logs the reason
        if message.startswith("Unable to deserialize message"):
            record.msg, record.args, record.exc_info = "a message with malformed parameters was dropped", (), None
        return True


def serve(stdin=None, stdout=None) -> None:
    """Serve the language server protocol on stdin/stdout (binary streams; the process's by default)
    until the client says exit. What `graphdsl lsp` runs."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="graphdsl-lsp: %(levelname)s: %(message)s")
    for name in ("pygls.server", "pygls.protocol.json_rpc"):
        logging.getLogger(name).addFilter(_BrokenMessage())
    reader = ResyncReader(stdin if stdin is not None else sys.stdin.buffer)
    server.start_io(reader, stdout if stdout is not None else sys.stdout.buffer)
