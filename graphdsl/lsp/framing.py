"""The server's standard input, read so that a broken message costs that message and no more.

pygls reads `Content-Length: N` headers line by line, then exactly N bytes of body, and drops a body
that is not JSON. A wrong length is worse: read as N bytes, a body too short leaves its tail glued in
front of the next header (`...}Content-Length: 52`), a body too long swallows the next message's header;
either way every later header is read as part of a line and never matches again, and the server goes
deaf. A length of gigabytes makes it allocate gigabytes, and the exception ends the server.

`ResyncReader` gives pygls the same `readline`/`read` with three repairs:
- a line holding `Content-Length:` after other bytes is cut there, so that the header is read as one;
- a body stops before a header that appears inside it (no JSON text holds `Content-Length: 12` followed
  by a raw CR LF: strings cannot hold a raw line break, and it is no JSON token);
- a length past MAX_BODY is refused: the body is skipped as garbage up to the next header.
The dropped message is logged by pygls ("Unable to handle message"); the next one is read as it should be.
"""

from __future__ import annotations

import os
import re

MAX_BODY = 64 * 2**20  # a spec is at most 10 MB; its JSON, escaped, a few times that
MAX_LINE = 64 * 2**10  # header lines are short: past this without a line end, it is garbage
HEADER = b"Content-Length:"
_HEADER_LINE = re.compile(rb"Content-Length: *\d+\r?\n")
BROKEN = b" "  # what a refused body reads as: not JSON (pygls logs it), and not empty (which means EOF)


class ResyncReader:
    """A blocking reader over a binary stream (the standard input) with pygls' reader interface."""

    def __init__(self, raw, chunk: int = 65536):
        self.raw = raw
        self.chunk = chunk
        self.buf = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        if hasattr(self.raw, "read1"):
            data = self.raw.read1(self.chunk)
        else:
            data = os.read(self.raw.fileno(), self.chunk)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def readline(self) -> bytes:
        """One header line; a header glued behind the rest of a broken body starts a line of its own. Empty
        only at the end of the input."""
        searched = 0
        while True:
            end = self.buf.find(b"\n", searched)
            if end >= 0:
                cut = self.buf.find(HEADER, 1, end)
                stop = cut if cut > 0 else end + 1
                line = bytes(self.buf[:stop])
                del self.buf[:stop]
                return line
            searched = len(self.buf)
            if len(self.buf) > MAX_LINE:  # garbage without line ends: hand it over, keep what may start a header
                keep = len(HEADER)
                line = bytes(self.buf[:-keep])
                del self.buf[:-keep]
                return line
            if not self._fill():
                line = bytes(self.buf)
                self.buf.clear()
                return line

    def read(self, n: int) -> bytes:
        """The body of `n` bytes, or less where a header starts inside it; BROKEN for a length past MAX_BODY.
        Empty only at the end of the input."""
        if n > MAX_BODY:
            return BROKEN
        start = 0
        while True:
            match = _HEADER_LINE.search(self.buf, start, n + 64)
            if match is not None and match.start() < n:
                body = bytes(self.buf[:match.start()])
                del self.buf[:match.start()]
                return body or BROKEN
            if len(self.buf) >= n:
                break
            start = max(0, len(self.buf) - 64)  # what was searched holds no header: search the new part only
            if not self._fill():
                break
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return body
