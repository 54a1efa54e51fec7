"""Protocol Buffers text format (Caffe's `.prototxt`): read with the Lark grammar prototxt.lark into
messages whose fields keep their line and column, so that a diagnostic points at the field.

The parser is LALR with the tree built during the parse (no recursion: a deeply nested file cannot
exhaust the stack), and nesting is bounded. Syntax errors become located ImportFailures; the end of
the file inside a message points at the `{` left open.

Caffe (as Darknet) reads bytes: a file in another encoding than UTF-8 works there as long as its odd
bytes are in comments (or strings). `decode` keeps each such byte as one character (so lines and
columns stay the file's), the parsers refuse it elsewhere, and `displayable` shows it as U+FFFD.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from ..diagnostics import Span
from .ir import ImportFailure

MAX_DEPTH = 32  # nesting of messages: Caffe's deepest is four (layer > param > shape)
MAX_NUMBER_CHARS = 64  # a longer number is no size of a network (and int() of 5000 digits refuses)
MAX_OPEN_SHOWN = 3  # the lines of the messages left open that a diagnostic lists
STRAY_BYTE = re.compile("[\udc80-\udcff]")  # a byte that is not UTF-8, as `decode` keeps it


def decode(data: bytes) -> str:
    """A text file's bytes as text: UTF-8 without its byte-order mark, each byte that is not UTF-8 one
    character U+DC80..U+DCFF (Python's surrogateescape), found by STRAY_BYTE."""
    return data.decode("utf-8", "surrogateescape").removeprefix("\ufeff")


def displayable(text: str) -> str:
    """`text` with each stray byte as U+FFFD: one character for one, so that columns stay."""
    return STRAY_BYTE.sub("\ufffd", text)


def stray_byte_failure(char: str, what: str, free: str = "comments") -> tuple[str, str]:
    """(message, help) for a byte that is not UTF-8 outside the `free` parts of a `what` file."""
    return (f"byte 0x{ord(char) - 0xDC00:02X} is not UTF-8 text",
            f"{what} reads bytes, but outside {free} its files are ASCII text: remove the byte, or save the "
            "file as UTF-8")


class Ident(str):
    """A bare name as a value: an enum (`MAX`, `ACROSS_CHANNELS`) or `true` / `false`."""


@dataclass
class Message:
    """A message `{ ... }`: its fields in file order (a repeated field is several), where it opens."""

    fields: list[Field]
    line: int = 1
    col: int = 1
    depth: int = 0

    def all(self, name: str) -> list[Field]:
        return [f for f in self.fields if f.name == name]

    def first(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass
class Field:
    """`name: value` or `name { ... }`: the value (str, Ident, int, float or Message) and the span from
    the name to the end of the value (to the `{` for a message)."""

    name: str
    value: object
    line: int
    col: int
    end_line: int
    end_col: int

    def span(self, file: str) -> Span:
        return Span(file, self.line, self.col, self.end_line, self.end_col)


class QuotedFailure(ImportFailure):
    """An ImportFailure whose diagnostic quotes the line of the text it points into."""

    def __init__(self, message: str, help: str | None = None, span: Span | None = None, text: str | None = None):
        super().__init__(message, help, span)
        self.text = displayable(text) if text is not None else None

    def diagnostic(self):
        diagnostic, sources = super().diagnostic()
        if self.span is not None and self.text is not None:
            sources = {**sources, self.span.file: self.text}
        return diagnostic, sources


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("graphdsl.importers").joinpath("prototxt.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer="basic", maybe_placeholders=True, transformer=_Build())


@dataclass
class _Value:
    value: object
    end_line: int
    end_col: int


class _TooDeep(Exception):
    def __init__(self, token: Token):
        self.token = token


class _BadValue(Exception):
    def __init__(self, message: str, first: Token, last: Token, help: str | None = None):
        self.message, self.first, self.last, self.help = message, first, last, help


_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v",
            "\\": b"\\", "'": b"'", '"': b'"', "?": b"?"}
_ESCAPE = re.compile(r"\\([0-7]{1,3}|x[0-9A-Fa-f]{1,2}|.)", re.S)


def _unquote(token: Token) -> str:
    """A string literal's text: C escapes (octal and hex bytes too) decoded, the bytes read as UTF-8 (a
    byte that is not, as `\\xff`: names stay apart, and printable)."""
    body, out, pos = token[1:-1], bytearray(), 0
    for m in _ESCAPE.finditer(body):
        out += body[pos:m.start()].encode("utf-8", "surrogateescape")
        code = m.group(1)
        if code[0] in "01234567":
            out.append(int(code, 8) & 0xFF)
        elif code[0] == "x" and len(code) > 1:
            out.append(int(code[1:], 16))
        elif code in _ESCAPES:
            out += _ESCAPES[code]
        else:
            raise _BadValue(f"unknown escape `\\{code}` in a string", token, token,
                            help="write a backslash as `\\\\`")
        pos = m.end()
    out += body[pos:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", errors="backslashreplace")


def _end(token: Token) -> tuple[int, int]:
    return token.end_line, token.end_column


class _Build(Transformer):
    """Parse-time callbacks: tokens to values, fields and messages (positions from the tokens)."""

    def string(self, tokens):
        return _Value("".join(_unquote(t) for t in tokens), *_end(tokens[-1]))

    def number(self, tokens):
        negative = tokens[0].type == "MINUS"
        text = str(tokens[-1])
        if len(text) > MAX_NUMBER_CHARS:
            raise _BadValue(f"a number of {len(text)} characters", tokens[0], tokens[-1],
                            help=f"no size in a network definition needs more than {MAX_NUMBER_CHARS} digits")
        if text[:2].lower() == "0x":
            value = int(text, 16)
        elif re.fullmatch(r"\d+", text):
            value = int(text)
        else:
            value = float(text.rstrip("fF"))
        return _Value(-value if negative else value, *_end(tokens[-1]))

    def ident(self, tokens):
        name = str(tokens[-1])
        if tokens[0].type == "MINUS":
            if name.lower() not in ("inf", "infinity", "nan"):
                raise _BadValue(f"`-{name}` is no value", tokens[0], tokens[-1],
                                help="a minus sign goes before a number (or inf)")
            return _Value(-float(name), *_end(tokens[-1]))
        return _Value(Ident(name), *_end(tokens[-1]))

    def scalar_field(self, children):
        name, value = children
        return Field(str(name), value.value, name.line, name.column, value.end_line, value.end_col)

    def list_field(self, children):
        name, *items = children
        fields = []
        for item in items:
            if item is None:
                continue
            if isinstance(item, Message):
                fields.append(Field(str(name), item, name.line, name.column, item.line, item.col + 1))
            else:
                fields.append(Field(str(name), item.value, name.line, name.column, item.end_line, item.end_col))
        return fields

    def message_field(self, children):
        name, message = children
        return Field(str(name), message, name.line, name.column, message.line, message.col + 1)

    def message(self, children):
        opening, *fields, _closing = children
        fields = _flat(fields)
        depth = 1 + max((f.value.depth for f in fields if isinstance(f.value, Message)), default=0)
        if depth > MAX_DEPTH:
            raise _TooDeep(opening)
        return Message(fields, opening.line, opening.column, depth)

    def start(self, children):
        fields = _flat(children)
        depth = max((f.value.depth for f in fields if isinstance(f.value, Message)), default=0)
        return Message(fields, 1, 1, depth)


def _flat(children) -> list[Field]:
    out = []
    for c in children:
        if isinstance(c, list):
            out.extend(c)
        elif isinstance(c, Field):
            out.append(c)
    return out


def parse(text: str, file: str) -> Message:
    """The file's top-level message. Raises QuotedFailure (located) on a syntax error."""

    def fail(message, line, col, end_line=None, end_col=None, help=None):
        end_line = end_line or line
        end_col = end_col or col + 1
        raise QuotedFailure(message, help, Span(file, line, col, end_line, end_col), text) from None

    try:
        return _parser().parse(text)
    except VisitError as e:  # a callback's exception, wrapped (older Lark)
        error = e.orig_exc
    except (_TooDeep, _BadValue) as e:
        error = e
    except UnexpectedEOF:
        error = None
    except UnexpectedToken as e:
        if e.token.type == "$END":
            error = None
        else:
            token = e.token
            shown = str(token)[:40]
            help = _token_help(token, e.expected)
            fail(f"unexpected `{shown}`", token.line, token.column, token.end_line, token.end_column, help)
    except UnexpectedCharacters as e:
        char = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else "?"
        if STRAY_BYTE.fullmatch(char):
            message, help = stray_byte_failure(char, "Caffe", "comments and strings")
            fail(message, e.line, e.column, help=help)
        if char in "\"'":
            fail("a string that does not end on its line", e.line, e.column,
                 help=f"close it with {char} (a string cannot span lines; adjacent strings concatenate)")
        fail(f"unexpected character `{char}`" if char.isprintable() else f"unexpected character U+{ord(char):04X}",
             e.line, e.column, help="a field is `key: value` or `key { ... }`; `#` starts a comment")
    except UnexpectedInput as e:  # any other kind Lark may add
        fail(f"syntax error: {type(e).__name__}", getattr(e, "line", 1) or 1, getattr(e, "column", 1) or 1)
    except LarkError as e:
        fail(f"cannot parse the file: {e}", 1, 1)
    if isinstance(error, _TooDeep):
        fail(f"messages nested more than {MAX_DEPTH} deep", error.token.line, error.token.column,
             help="a Caffe network nests four deep at most")
    if isinstance(error, _BadValue):
        fail(error.message, error.first.line, error.first.column, error.last.end_line, error.last.end_column,
             error.help)
    if error is not None:
        raise error
    _unclosed(text, file)
    fail("the file ends in the middle of a field", *_last_position(text),
         help="the file may be truncated: complete the last field")
    raise AssertionError("unreachable")


def _token_help(token: Token, expected) -> str:
    if token.type in ("RBRACE", "RANGLE"):
        return f"no message is open here: remove this `{token}`, or open the message it closes"
    if token.type == "LBRACE" or token.type == "LANGLE":
        return "a message needs a name before it: `name { ... }`"
    if "COLON" in expected and len(set(expected)) <= 3:
        return "write `key: value` or `key { ... }`"
    return "a field is `key: value` (a string, number or name) or `key { ... }`"


def _unclosed(text: str, file: str) -> None:
    """Raise at the innermost `{` (or `<`) the end of the file leaves open, if there is one."""
    open_: list[Token] = []
    try:
        for token in _parser().lex(text):
            if token.type in ("LBRACE", "LANGLE"):
                open_.append(token)
            elif token.type in ("RBRACE", "RANGLE") and open_:
                open_.pop()
    except LarkError:
        return
    if not open_:
        return
    token = open_[-1]
    outer = [f"line {t.line}" for t in open_[:-1][:MAX_OPEN_SHOWN]]
    if len(open_) - 1 > MAX_OPEN_SHOWN:
        outer.append(f"{len(open_) - 1 - MAX_OPEN_SHOWN:,} more")
    where = f" (inside the messages opened on {', '.join(outer[:-1])} and {outer[-1]})" if len(outer) > 1 else \
        f" (inside the message opened on {outer[0]})" if outer else ""
    closer = "}" if token.type == "LBRACE" else ">"
    raise QuotedFailure(f"the file ends before this `{token}` is closed{where}",
                        f"the file may be truncated; close the message with `{closer}`",
                        Span(file, token.line, token.column, token.line, token.column + 1), text)


def _last_position(text: str) -> tuple[int, int]:
    lines = text.rstrip().split("\n")
    return len(lines), len(lines[-1]) + 1
