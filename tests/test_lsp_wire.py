"""`graphdsl lsp` on the wire: raw bytes to the server's standard input. A broken message (garbage JSON, a
wrong Content-Length, a header without a body) costs that message, and the server answers the next one;
pygls alone goes deaf after a wrong length (see graphdsl/lsp/framing.py)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

from graphdsl.lsp.framing import BROKEN, MAX_BODY, ResyncReader

ROOT = Path(__file__).resolve().parent.parent
SERVER = [sys.executable, "-m", "graphdsl.lsp"]



def frame(message: dict | bytes, length: int | None = None) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return f"Content-Length: {len(body) if length is None else length}\r\n\r\n".encode() + body


def test_server_survives_malformed_messages():
    """Garbage JSON, a body of a wrong length (too short, too long, absurd), a header without a body, a
    valid JSON that is no JSON-RPC message: each is dropped, and the next request is answered."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}, "processId": None}}
    hover = {"jsonrpc": "2.0", "id": 2, "method": "textDocument/hover",
             "params": {"textDocument": {"uri": "file:///nowhere.cnn"}, "position": {"line": 0, "character": 0}}}
    shutdown = {"jsonrpc": "2.0", "id": 3, "method": "shutdown"}
    valid = json.dumps(hover).encode()
    wire = b"".join([
        frame(init),
        frame(b"{this is not json"),
        frame(valid, length=len(valid) - 10),  # too short: its tail lands before the next header
        frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
        frame(valid, length=len(valid) + 40),  # too long: it would swallow the next header
        frame(b"[1, 2, 3]"),
        frame(b'{"jsonrpc": "2.0", "id": 9, "method": "textDocument/hover", "params": {"bad": true}}'),
        frame(b"{}", length=99999999999),  # absurd: refused, its body read as garbage
        b"garbage without a line end",
        frame(hover),  # glued to the garbage: no header at a line start from here on, for pygls alone
        frame(shutdown),
        frame({"jsonrpc": "2.0", "method": "exit"}),
    ])
    done = subprocess.run(SERVER, input=wire, capture_output=True, timeout=60, cwd=ROOT)
    replies = _replies(done.stdout)
    ids = [r.get("id") for r in replies if "id" in r]
    assert 1 in ids and 2 in ids and 3 in ids, (ids, done.stderr.decode()[-2000:])
    assert next(r for r in replies if r.get("id") == 2)["result"] is None
    assert done.returncode == 0
    # each broken message is logged in a line; a request with malformed parameters gets no answer (pygls)
    assert 9 not in ids
    assert b"Traceback" not in done.stderr, done.stderr.decode()[-3000:]
    assert done.stderr.count(b"could not handle a message") >= 5


def _replies(out: bytes) -> list[dict]:
    replies = []
    while out:
        head, _, rest = out.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        replies.append(json.loads(rest[:length]))
        out = rest[length:]
    return replies


def read_messages(reader, count: int) -> list[bytes]:
    """What pygls' read loop (pygls.io_.run) takes from `reader`: up to `count` bodies."""
    header = re.compile(rb"^Content-Length: (\d+)\r\n$")
    bodies, length = [], 0
    while len(bodies) < count:
        line = reader.readline()
        if not line:
            break
        if not length:
            m = header.fullmatch(line)
            if m:
                length = int(m.group(1))
        if length and not line.strip():
            bodies.append(reader.read(length))
            length = 0
    return bodies


def good(i: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": "shutdown"}).encode()


def test_a_wrong_length_costs_one_message():
    body = good(1)
    wire = frame(body, len(body) - 5) + frame(good(2)) + frame(body, len(body) + 30) + frame(good(3)) + frame(good(4))
    bodies = read_messages(ResyncReader(io.BytesIO(wire)), 10)
    assert [b for b in bodies if b in (good(2), good(3), good(4))] == [good(2), good(3), good(4)]
    # the same bytes through a plain stream, as pygls reads stdin: after the first wrong length, nothing
    plain = read_messages(io.BytesIO(wire), 10)
    assert good(3) not in plain and good(4) not in plain


def test_absurd_length_and_endless_garbage():
    wire = b"Content-Length: 99999999999\r\n\r\n" + b"x" * (200 * 1024) + frame(good(1))
    reader = ResyncReader(io.BytesIO(wire))
    assert read_messages(reader, 2) == [BROKEN, good(1)]
    assert 99999999999 > MAX_BODY
    assert reader.readline() == b""  # the end of the input, once everything is read


def test_a_body_spread_over_many_reads():
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"text": "y" * 300_000}}).encode()

    class Trickle(io.BytesIO):
        def read1(self, n=-1):
            return super().read1(min(n, 1000))

    assert read_messages(ResyncReader(Trickle(frame(body) + frame(good(2)))), 2) == [body, good(2)]


def test_positions_in_the_encoding_the_client_chose():
    """A client that counts columns in code points (UTF-32) gets code points back: a definition on a line
    holding astral characters, asked and answered in that encoding."""
    text = 'network n {\n    input 3x8x8\n    let s = "😀😀"  a = conv(4, 1)  add(a, in)\n}\n'
    line = text.split("\n")[2]
    doc = "file:///tmp/graphdsl-utf32.cnn"
    server = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    try:
        server.stdin.write(b"".join(frame(m) for m in [
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "processId": None, "capabilities": {"general": {"positionEncodings": ["utf-32"]}}}},
            {"jsonrpc": "2.0", "method": "initialized", "params": {}},
            {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
                "uri": doc, "languageId": "cnn", "version": 1, "text": text}}},
            {"jsonrpc": "2.0", "id": 2, "method": "textDocument/definition", "params": {
                "textDocument": {"uri": doc}, "position": {"line": 2, "character": line.index("add(a") + 4}}},
        ]))
        server.stdin.flush()
        replies = {}
        while 2 not in replies:  # the answer to the definition, before asking the server to shut down
            reply = _read_message(server.stdout)
            replies[reply.get("id")] = reply
        server.stdin.write(frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"})
                           + frame({"jsonrpc": "2.0", "method": "exit"}))
        server.stdin.close()
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
    assert replies[1]["result"]["capabilities"]["positionEncoding"] == "utf-32"
    assert replies[2]["result"]["range"]["start"] == {"line": 2, "character": line.index("a = ")}


def _read_message(stream) -> dict:
    length = None
    while True:
        header = stream.readline()
        assert header, "the server closed its output"
        if header.startswith(b"Content-Length:"):
            length = int(header.split(b":")[1])
        elif header == b"\r\n" and length is not None:
            return json.loads(stream.read(length))
