"""Where things are: graphdsl spans (1-based lines and columns, counted in code points, lines split at
`\\n` once CR and CRLF are made LF) against LSP positions (0-based lines, columns counted in the code
units of the negotiated encoding: UTF-16 unless the client offers another).

LSP ends lines at `\\n`, `\\r\\n` and `\\r`, as `graphdsl.text.normalize_newlines` does; a form feed or
U+2028 inside a line stays inside it on both sides (Python's `str.splitlines` would split there, so it
is not used here).

>>> lines = source_lines('x = "é😀" conv(64)')
>>> to_range(Span("f", 1, 11, 1, 15), lines)  # `conv` after one BMP and one astral character
((0, 11), (0, 15))
>>> to_point(lines, 0, 11)
(1, 11)
"""

from __future__ import annotations

from ..diagnostics import Span
from ..text import normalize_newlines

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def source_lines(text: str) -> list[str]:
    """The lines of a document as both graphdsl and LSP count them."""
    return normalize_newlines(text).split("\n")


def _units(ch: str, encoding: str) -> int:
    cp = ord(ch)
    if encoding == UTF32:
        return 1
    if encoding == UTF8:
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 2 if cp > 0xFFFF else 1


def units_before(line: str, chars: int, encoding: str = UTF16) -> int:
    """Code units of the first `chars` characters of `line`."""
    head = line[:chars]
    if encoding == UTF32 or head.isascii():
        return len(head)
    return sum(_units(c, encoding) for c in head)


def chars_before(line: str, units: int, encoding: str = UTF16) -> int:
    """How many characters of `line` the first `units` code units cover (a position inside a surrogate
    pair or a multi-byte character falls after it)."""
    if encoding == UTF32 or line.isascii():
        return min(max(units, 0), len(line))
    seen = 0
    for i, c in enumerate(line):
        if seen >= units:
            return i
        seen += _units(c, encoding)
    return len(line)


def to_position(lines: list[str], line: int, col: int, encoding: str = UTF16) -> tuple[int, int]:
    """A 1-based (line, column in code points) as an LSP (line, character), clamped into the document."""
    if not lines:
        return 0, 0
    row = min(max(line, 1), len(lines)) - 1
    if line > len(lines):  # past the end (an error at end of file): the end of the last line
        return row, units_before(lines[row], len(lines[row]), encoding)
    return row, units_before(lines[row], max(col, 1) - 1, encoding)


def to_range(span: Span, lines: list[str], encoding: str = UTF16) -> tuple[tuple[int, int], tuple[int, int]]:
    """A span as an LSP range ((line, character), (line, character)); never empty, so that an editor shows
    it (a span at a line end covers the line end)."""
    start = to_position(lines, span.line, span.col, encoding)
    end = to_position(lines, span.end_line, span.end_col, encoding)
    if end <= start:
        end = (start[0], start[1] + 1)
    return start, end


def to_point(lines: list[str], line: int, character: int, encoding: str = UTF16) -> tuple[int, int]:
    """An LSP position as a 1-based (line, column in code points)."""
    if not lines:
        return 1, 1
    row = min(max(line, 0), len(lines) - 1)
    return row + 1, chars_before(lines[row], character, encoding) + 1
