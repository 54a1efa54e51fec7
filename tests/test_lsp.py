"""`graphdsl lsp` end to end: a real LSP client (pytest-lsp) drives `python -m graphdsl.lsp` over stdio.

One server per test module (starting one costs ~1 s); each test opens its own documents.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-m", "graphdsl.lsp"]
TIMEOUT = 20

pytestmark = pytest.mark.asyncio(loop_scope="module")


def make_client() -> LanguageClient:
    """pytest-lsp's test client, also keeping the version each document's diagnostics are for (so that a
    test waits for the diagnostics of the text it sent, not those of an earlier one still on the wire)."""
    client = LanguageClient(converter_factory=default_converter)
    client.versions = {}

    def publish(client: LanguageClient, params: types.PublishDiagnosticsParams) -> None:
        client.diagnostics[params.uri] = params.diagnostics
        client.versions[params.uri] = params.version

    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: publish})
    return client


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER, client_factory=make_client), scope="module")
async def client(lsp_client: LanguageClient):
    caps = types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
        publish_diagnostics=types.PublishDiagnosticsClientCapabilities(related_information=True)))
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=caps, root_uri=ROOT.as_uri(), initialization_options={"debounce_ms": 50}))
    yield
    await lsp_client.shutdown_session()


def uri(path: Path) -> str:
    return path.resolve().as_uri()


async def diagnostics_for(client: LanguageClient, doc: str, version: int = 1) -> list[types.Diagnostic]:
    """The diagnostics published for version `version` of `doc`."""
    async def wait():
        while True:
            found = client.diagnostics.get(doc)
            if found is not None and client.versions.get(doc) == version:
                return list(found)
            await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)

    return await asyncio.wait_for(wait(), TIMEOUT)


def open_doc(client: LanguageClient, path: Path, text: str | None = None, version: int = 1) -> str:
    doc = uri(path)
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
        uri=doc, language_id="cnn", version=version, text=path.read_text() if text is None else text)))
    return doc


def change(client: LanguageClient, doc: str, text: str, version: int) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=doc, version=version),
        [types.TextDocumentContentChangeWholeDocument(text=text)]))


def position_of(text: str, needle: str, offset: int = 0, nth: int = 0) -> types.Position:
    """The LSP position (UTF-16) of the `nth` occurrence of `needle`, `offset` characters in."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    at += offset
    line = text.count("\n", 0, at)
    start = text.rfind("\n", 0, at) + 1
    return types.Position(line=line, character=len(text[start:at].encode("utf-16-le")) // 2)


BAD = '''network n {
    """ünïcödé 😀 doc"""
    input 3x32x32
    conv(16, 3, pad=1)  # ⚠ 😀
    let s = "é😀"  conv(16, 3, strid=2)
}
'''


async def test_diagnostic_arrives_with_its_range_and_clears_when_fixed(client: LanguageClient, tmp_path):
    spec = tmp_path / "bad.cnn"
    spec.write_text(BAD)
    doc = open_doc(client, spec)
    found = await diagnostics_for(client, doc)
    # an astral character before the error on its line: UTF-16 counts it twice
    errors = [d for d in found if "strid" in d.message]
    assert len(errors) == 1, found
    d = errors[0]
    assert d.severity == types.DiagnosticSeverity.Error and d.source == "graphdsl"
    start = position_of(BAD, "strid")
    assert d.range.start == start
    assert d.range.end == types.Position(line=start.line, character=start.character + len("strid"))
    assert [r.message for r in d.related_information] == ["help: did you mean `stride`?"]
    assert d.related_information[0].location.uri == doc

    change(client, doc, BAD.replace("strid=", "stride="), 2)
    assert await diagnostics_for(client, doc, 2) == []


async def test_syntax_error_and_warning(client: LanguageClient, tmp_path):
    spec = tmp_path / "syntax.cnn"
    text = "network n {\n    input 3x32x32\n    conv(16, 3\n}\n"
    doc = open_doc(client, spec, text)
    found = await diagnostics_for(client, doc)
    assert found[0].severity == types.DiagnosticSeverity.Error
    assert found[0].range.start.line in (2, 3)
    unused = "network n {\n    input 3x32x32\n    side = conv(8, 1)\n    conv(16, 3)\n}\n"
    change(client, doc, unused, 2)
    found = await diagnostics_for(client, doc, 2)
    assert [d.severity for d in found] == [types.DiagnosticSeverity.Warning]
    assert found[0].range.start == position_of(unused, "side")


def copy_resnet(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "lib").mkdir()
    lib = tmp_path / "lib" / "resnet.cnn"
    shutil.copy(ROOT / "specs" / "lib" / "resnet.cnn", lib)
    net = tmp_path / "resnet50.cnn"
    shutil.copy(ROOT / "specs" / "resnet50.cnn", net)
    (tmp_path / "graphdsl.toml").write_text("")  # the project root: imports stay inside tmp_path
    return lib, net


async def test_hover_on_conv2_of_the_bottleneck(client: LanguageClient, tmp_path):
    lib, net = copy_resnet(tmp_path)
    net_doc = open_doc(client, net)
    assert await diagnostics_for(client, net_doc) == []
    lib_doc = open_doc(client, lib)
    await diagnostics_for(client, lib_doc)
    text = lib.read_text()
    at = position_of(text, "conv2: conv(width", offset=2)
    result = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(lib_doc), at))
    value = result.contents.value
    assert "in 16 instances in `resnet50`" in value  # 3 + 4 + 6 + 3 bottlenecks
    assert "×3 `64×56×56 · 36.9K params · 115.6M MACs · RF 19–35 · stride 4` (first `layer1.0.conv2`)" in value
    assert "256×14×14" in value and "512×7×7" in value

    # a layer of the network's own body, and a block call with its doc string
    top = net.read_text()
    at = position_of(top, "resnet50", nth=0)
    result = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(net_doc), at))
    assert "25.6M params" in result.contents.value and "3×224×224 → 1000" in result.contents.value
    at = position_of(text, "layer3: resnet_stage", offset=10)
    result = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(lib_doc), at))
    assert "n blocks with `planes` channels" in result.contents.value
    assert "`1024×14×14 · 7.1M params" in result.contents.value


async def test_definition_of_a_block_call_import_and_tensor(client: LanguageClient, tmp_path):
    lib, net = copy_resnet(tmp_path)
    lib_doc = open_doc(client, lib)
    await diagnostics_for(client, lib_doc)
    text = lib.read_text()
    at = position_of(text, "bottleneck(planes, stride=stride", offset=3)
    loc = await client.text_document_definition_async(types.DefinitionParams(types.TextDocumentIdentifier(lib_doc), at))
    assert loc.uri == lib_doc
    assert loc.range.start == position_of(text, "bottleneck(planes, stride = 1")

    net_doc = open_doc(client, net)
    await diagnostics_for(client, net_doc)
    top = net.read_text()
    loc = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(net_doc), position_of(top, "lib/resnet", offset=2)))
    assert loc.uri == lib_doc and loc.range.start == types.Position(line=0, character=0)
    loc = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(net_doc), position_of(top, "= resnet(", offset=3)))
    assert loc.uri == lib_doc and loc.range.start == position_of(text, "resnet(n1")

    spec = tmp_path / "tensors.cnn"
    src = "network t {\n    input 3x8x8\n    stem: conv(4, 1)\n    a = conv(4, 1)\n    add(a, stem)\n}\n"
    doc = open_doc(client, spec, src)
    await diagnostics_for(client, doc)
    for use, name in (("add(a", 4), ("stem)", 0)):
        loc = await client.text_document_definition_async(types.DefinitionParams(
            types.TextDocumentIdentifier(doc), position_of(src, use, offset=name)))
        assert loc.uri == doc
        assert loc.range.start == position_of(src, "a =" if name else "stem:")


async def test_completion_after_conv_lists_its_arguments(client: LanguageClient, tmp_path):
    spec = tmp_path / "typing.cnn"
    text = "block b(c, k = 3) {\n    conv(c, k)\n}\nnetwork n {\n    input 3x32x32\n    x = conv(8, 3)\n}\n"
    doc = open_doc(client, spec, text)
    await diagnostics_for(client, doc)
    typing = text.replace("    x = conv(8, 3)\n", "    x = conv(8, 3)\n    conv(16, 3, \n")
    change(client, doc, typing, 2)
    at = position_of(typing, "conv(16, 3, ", offset=len("conv(16, 3, "))
    result = await client.text_document_completion_async(types.CompletionParams(types.TextDocumentIdentifier(doc), at))
    labels = {i.label: i.detail for i in result.items}
    assert labels["stride="] == "default 1" and labels["bias="] == "default true" and labels["pad="] == "default 0"
    assert "out=" not in labels  # given by position
    # outside a call: operators, blocks with their parameters, keywords, named tensors
    typing = text.replace("    x = conv(8, 3)\n", "    x = conv(8, 3)\n    \n")
    change(client, doc, typing, 3)
    at = position_of(typing, "    \n}", offset=4)
    result = await client.text_document_completion_async(types.CompletionParams(types.TextDocumentIdentifier(doc), at))
    kinds = {i.label: (i.kind, i.detail) for i in result.items}
    assert kinds["conv"][0] == types.CompletionItemKind.Function and kinds["maxpool"]
    assert kinds["b"] == (types.CompletionItemKind.Class, "block b(c, k = 3)")
    assert kinds["residual"][0] == types.CompletionItemKind.Keyword
    assert kinds["x"][0] == types.CompletionItemKind.Variable


async def test_document_symbols(client: LanguageClient, tmp_path):
    lib, _ = copy_resnet(tmp_path)
    doc = open_doc(client, lib)
    await diagnostics_for(client, doc)
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
        types.TextDocumentIdentifier(doc)))
    top = {s.name: s for s in symbols}
    assert list(top) == ["basic_block", "bottleneck", "resnet_stage", "resnet"]
    assert top["bottleneck"].kind == types.SymbolKind.Function
    assert top["bottleneck"].detail == "bottleneck(planes, stride = 1, groups = 1, width_per_group = 64)"
    assert top["resnet"].kind == types.SymbolKind.Class
    assert [c.name for c in top["bottleneck"].children] == [
        "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "downsample"]
    assert "layer3" in [c.name for c in top["resnet"].children]


async def test_formatting_returns_one_whole_document_edit(client: LanguageClient, tmp_path):
    fmt = pytest.importorskip("graphdsl.fmt", reason="graphdsl.fmt (the `fmt` helper's module) is not there yet")
    messy = "network n {\ninput 3x32x32\n      conv(16,3)    relu\n}\n"
    expected, _ = fmt.format_source(messy, str(tmp_path / "messy.cnn"))
    spec = tmp_path / "messy.cnn"
    doc = open_doc(client, spec, messy)
    await diagnostics_for(client, doc)
    options = types.FormattingOptions(tab_size=4, insert_spaces=True)
    edits = await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(doc), options))
    assert expected is not None and expected != messy
    assert len(edits) == 1 and edits[0].new_text == expected
    assert edits[0].range.start == types.Position(line=0, character=0)
    change(client, doc, expected, 2)
    await diagnostics_for(client, doc, 2)
    assert not await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(doc), options))
    change(client, doc, "network n {", 3)  # unparsable: no edit
    await diagnostics_for(client, doc, 3)
    assert not await client.text_document_formatting_async(types.DocumentFormattingParams(
        types.TextDocumentIdentifier(doc), options))


def malformed_specs() -> list[Path]:
    tests = ROOT / "tests"
    found = sorted((tests / "malformed").glob("*.cnn")) + sorted((tests / "fuzz_corpus").glob("*.cnn"))
    return [p for p in found if p.stat().st_size < 2_000_000]


async def test_malformed_specs_never_crash_the_server(client: LanguageClient, tmp_path):
    """Every malformed spec of the repository, opened at its own path (imports resolve) and then typed over
    one document: the server answers hover afterwards, and has published diagnostics for each."""
    specs = malformed_specs()
    assert len(specs) > 100
    docs = [open_doc(client, p, p.read_text(errors="replace")) for p in specs]
    await asyncio.wait_for(_all_published(client, docs), 120)
    scratch = tmp_path / "scratch.cnn"
    doc = open_doc(client, scratch, "")
    for version, p in enumerate(specs, start=2):
        change(client, doc, p.read_text(errors="replace"), version)
    ok = "network ok {\n    input 3x8x8\n    probe: conv(4, 3)\n}\n"
    change(client, doc, ok, len(specs) + 2)
    assert await diagnostics_for(client, doc, len(specs) + 2) == []
    result = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(doc), position_of(ok, "probe", offset=1)))
    assert "4×6×6" in result.contents.value
    for d in docs:
        client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(d)))


async def _all_published(client: LanguageClient, docs: list[str]) -> None:
    while not all(d in client.diagnostics for d in docs):
        await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)


async def test_errors_in_an_imported_file_are_published_there(client: LanguageClient, tmp_path):
    """A block's mistake found while elaborating the network of another file shows in the block's file,
    with the place of the call as related information; it clears when that file closes."""
    (tmp_path / "graphdsl.toml").write_text("")
    lib = tmp_path / "blocks.cnn"
    lib.write_text("block b(c) {\n    conv(c, 3, pad=1)\n    bn(mom=0.1)\n}\n")
    main = tmp_path / "net.cnn"
    text = 'import "blocks.cnn"\n\nnetwork net {\n    input 3x8x8\n    b(8)\n}\n'
    doc = open_doc(client, main, text)
    assert await diagnostics_for(client, doc) == []
    lib_uri = uri(lib)
    found = await diagnostics_for(client, lib_uri, None)
    (d,) = found
    assert d.range.start == types.Position(line=2, character=7) and "mom" in d.message
    notes = {r.message: r.location for r in d.related_information}
    used = next(loc for m, loc in notes.items() if m.startswith("note: in block `b` used at"))
    assert used.uri == doc and used.range.start == position_of(text, "b(8)")
    client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(doc)))
    await asyncio.wait_for(_until(lambda: not client.diagnostics[lib_uri]), TIMEOUT)


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.02)


async def test_saving_a_library_rechecks_the_open_files_importing_it(client: LanguageClient, tmp_path):
    (tmp_path / "graphdsl.toml").write_text("")
    lib = tmp_path / "blocks.cnn"
    lib.write_text("block b(c) {\n    conv(c, 3, pad=1)\n    bn(mom=0.1)\n}\n")
    main = tmp_path / "net.cnn"
    main.write_text('import "blocks.cnn"\n\nnetwork net {\n    input 3x8x8\n    b(8)\n}\n')
    net_doc = open_doc(client, main)
    await diagnostics_for(client, net_doc)
    lib_doc = open_doc(client, lib)
    # the library's own analysis (no network) and the network's (the block's error) both publish: the union
    await asyncio.wait_for(_until(lambda: any("mom" in d.message for d in client.diagnostics.get(lib_doc, ()))),
                           TIMEOUT)
    fixed = "block b(c) {\n    conv(c, 3, pad=1)\n    bn(momentum=0.1)\n}\n"
    change(client, lib_doc, fixed, 2)
    lib.write_text(fixed)
    client.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(lib_doc)))
    await asyncio.wait_for(_until(lambda: not client.diagnostics[lib_doc]), TIMEOUT)
