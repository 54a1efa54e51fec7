"""Located diagnostics: errors are values with spans until a face prints them."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field


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

    def render(self, sources: dict[str, str] | None = None) -> str:
        """rustc-style text: location, message, the source line with a caret span, help."""
        where = f"{self.span}: " if self.span else ""
        lines = [f"{where}{self.severity}: {self.message}"]
        text = (sources or {}).get(self.span.file) if self.span else None
        if text is not None:
            src_lines = text.splitlines()
            if 0 < self.span.line <= len(src_lines):
                src = src_lines[self.span.line - 1].expandtabs(1)
                num = str(self.span.line)
                pad = " " * len(num)
                end = self.span.end_col if self.span.end_line == self.span.line else len(src) + 1
                width = max(1, end - self.span.col)
                lines += [f"{pad} |", f"{num} | {src}", f"{pad} | {' ' * (self.span.col - 1)}{'^' * width}"]
        lines += [f"note: {n}" for n in self.notes]
        if self.help:
            lines.append(f"help: {self.help}")
        return "\n".join(lines)

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

    def render(self) -> str:
        body = "\n\n".join(d.render(self.sources) for d in self.diagnostics)
        n = len(self.diagnostics)
        return f"{body}\n\n{'error' if n == 1 else f'{n} errors'} found"


class Failure(Exception):
    """Raised inside the core to abandon one statement; caught and collected by the caller."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def error(message: str, span: Span | None = None, help: str | None = None) -> Failure:
    return Failure(Diagnostic(message, span, help))


def too_deep(file: str) -> Diagnostic:
    """Nesting deeper than Python's stack: no traceback, a diagnostic."""
    return Diagnostic("the spec is nested too deeply", Span(file, 1, 1, 1, 1),
                      help="flatten the nesting: use blocks, `*` repetition or `for` loops")


def did_you_mean(name: str, choices, what: str = "") -> str | None:
    """A `help:` text suggesting the closest known name, or listing the few there are."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    if choices and len(choices) <= 8:
        return f"known {what or 'names'}: " + ", ".join(f"`{c}`" for c in choices)
    return None
