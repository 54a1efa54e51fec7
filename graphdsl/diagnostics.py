"""Located diagnostics: errors are values with spans until a face prints them."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .text import displayed, escape_controls

MAX_CANDIDATES = 300  # names a did-you-mean compares: each costs a string alignment
MAX_LINE_SHOWN = 400  # characters of a quoted source line; a longer one is cut around the caret


@dataclass(frozen=True)
class Span:
    """A region of a source file, 1-based lines and columns, end column exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span | None = None
    help: str | None = None
    notes: tuple[str, ...] = ()
    severity: str = "error"

    def render(self, sources: dict[str, str] | None = None, lines: dict[str, list[str]] | None = None,
               color: bool = False) -> str:
        """rustc-style text: location, message, the source line with a caret span, help. Everything from
        the spec (names, values, the quoted line, the file name) is shown with control characters escaped,
        so that no diagnostic can act on the terminal. `lines` caches the split sources across calls.
        With `color`, the quoted line is syntax-highlighted and the carets red (ANSI colours added after
        the escaping, to text already escaped); without, the text has no escape sequence at all."""
        where = f"{self.span}: " if self.span else ""
        out = [f"{where}{self.severity}: {self.message}"]
        src_lines = _source_lines(self.span.file, sources, lines) if self.span else None
        quoted = None  # the index of the quoted source line among the lines shown
        if src_lines is not None and 0 < self.span.line <= len(src_lines):
            quoted = out[0].count("\n") + 2
            out += _excerpt(src_lines[self.span.line - 1], self.span)
        out += [f"note: {n}" for n in self.notes]
        if self.help:
            out.append(f"help: {self.help}")
        shown = [escape_controls(line) for line in "\n".join(out).split("\n")]
        if color and quoted is not None:
            shown = _coloured(shown, quoted, self.span)
        return "\n".join(shown)

    def to_json(self) -> dict:
        loc = None
        if self.span:
            s = self.span
            loc = {"file": s.file, "line": s.line, "col": s.col, "end_line": s.end_line, "end_col": s.end_col}
        return {"severity": self.severity, "message": self.message, "location": loc,
                "help": self.help, "notes": list(self.notes)}


@dataclass
class SpecError(Exception):
    """An invalid spec. Carries every diagnostic of the run and the sources to show them."""

    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.render()

    def render(self, color: bool = False) -> str:
        lines: dict[str, list[str]] = {}
        body = "\n\n".join(d.render(self.sources, lines, color) for d in self.diagnostics)
        n = sum(d.severity == "error" for d in self.diagnostics)
        return f"{body}\n\n{'error' if n == 1 else f'{n} errors'} found"


def _source_lines(file: str, sources: dict[str, str] | None, cache: dict[str, list[str]] | None) -> list[str] | None:
    """The lines of `file` as the parser counts them: split at `\n` only (the reader has made every line
    end one), so that form feeds and Unicode separators inside a line do not shift the quoted line."""
    text = (sources or {}).get(file)
    if not text:
        return None
    if cache is None:
        return text.split("\n")
    if file not in cache:
        cache[file] = text.split("\n")
    return cache[file]


def _excerpt(line: str, span: Span) -> list[str]:
    """The quoted source line and its caret line: tabs expanded, hidden characters escaped, the caret under
    the characters the span covers; a very long line cut to a window around the caret."""
    src, starts = displayed(line)
    last = len(starts) - 1  # starts[last] is the end of the line
    col = min(max(span.col, 1), last + 1) - 1
    end = span.end_col - 1 if span.end_line == span.line else last
    end = min(max(end, col + 1), last + 1)
    left = starts[col]
    right = starts[end] if end <= last else starts[last] + 1
    width = max(1, right - left)
    if len(src) > MAX_LINE_SHOWN:  # a minified or generated spec: show the neighbourhood of the caret
        begin = max(0, left - MAX_LINE_SHOWN // 2)
        stop = begin + MAX_LINE_SHOWN
        src = ("…" if begin else "") + src[begin:stop] + ("…" if stop < len(src) else "")
        left = left - begin + (1 if begin else 0)
        width = max(1, min(width, len(src) - left))
    num = str(span.line)
    pad = " " * len(num)
    return [f"{pad} |", f"{num} | {src}", f"{pad} | {' ' * left}{'^' * width}"]


def _coloured(shown: list[str], at: int, span: Span) -> list[str]:
    """The rendered lines with the quoted source line (`shown[at]`) highlighted and its carets red. That
    line holds no control character (`displayed` escaped them), and the highlighter only wraps its
    printable tokens in colour codes."""
    from .highlight import colorize

    prefix = f"{span.line} | "
    shown = list(shown)
    shown[at] = prefix + colorize(shown[at][len(prefix):])
    gutter, carets = shown[at + 1][:len(prefix)], shown[at + 1][len(prefix):]
    marks = carets.lstrip(" ")
    shown[at + 1] = f"{gutter}{carets[:len(carets) - len(marks)]}\x1b[1;31m{marks}\x1b[0m"
    return shown


class Failure(Exception):
    """Raised inside the core to abandon one statement; caught and collected by the caller."""

    def __init__(self, diagnostic: Diagnostic, says_it_repeats: bool = False):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic
        self.says_it_repeats = says_it_repeats  # the message explains its own repetition: no count of repeats


def error(message: str, span: Span | None = None, help: str | None = None) -> Failure:
    return Failure(Diagnostic(message, span, help))


def too_deep(file: str) -> Diagnostic:
    """Nesting deeper than Python's stack: no traceback, a diagnostic."""
    return Diagnostic("the spec is nested too deeply", Span(file, 1, 1, 1, 1),
                      help="flatten the nesting: use blocks, `*` repetition or `for` loops")


def did_you_mean(name: str, choices, what: str = "") -> str | None:
    """A `help:` text suggesting the closest known name, or listing the few there are."""
    choices = sorted(set(choices))
    candidates = choices
    if len(choices) > MAX_CANDIDATES:  # thousands of names: compare only those of about the same length
        slack = max(2, len(name) // 3)
        candidates = [c for c in choices if abs(len(c) - len(name)) <= slack][:MAX_CANDIDATES]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if choices and len(choices) <= 8:
        return f"known {what or 'names'}: " + ", ".join(f"`{c}`" for c in choices)
    return None
