"""AST -> .cnn text in one canonical layout: the printer of `graphdsl fmt` and of every importer.

`print_module(module)` prints any valid AST (spans may be synthetic); the text parses back to the same
AST, spans aside. Given the `source` the AST was parsed from and its comment tokens
(`syntax.parse(text, comments=[...])`), it keeps what the AST does not hold: comments, blank lines,
doc strings verbatim, literals as written (`1e-6`, `(3, 3)` against `[3, 3]`, `3x224x224`), and whether
a group or a `{ }` body was written on one line.

The layout (docs in graphdsl/fmt.py): 4 spaces a level, one statement a line, at most one blank line
between statements, one between top-level definitions; `a + b`, `k=v` in calls, `name = default` in
parameters; argument lists, lists and groups that do not fit in LINE_LENGTH columns filled onto lines
aligned after their opening bracket; trailing comments aligned within a run of consecutive lines.
"""

from __future__ import annotations

import bisect
import inspect
import math
import re
from dataclasses import dataclass

from . import ast
from .values import Symbol

LINE_LENGTH = 100
INDENT = 4
COMMENT_GAP = 2  # spaces at least between code and its trailing comment

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT = re.compile(r"\d+\Z")
_FLOAT = re.compile(r"(\d+\.\d*([eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+([eE][+-]?\d+)?)\Z")
_SHAPE = re.compile(r"\d+([x×]\d+)*\Z")
_STRING = re.compile(r'"""[\s\S]*?"""|"(?:[^"\\\n]|\\.)*"')
_SKIP = re.compile(r"(?:\s+|#[^\n]*)*")  # whitespace and comments
_SKIP_SEP = re.compile(r"(?:[\s,;]+|#[^\n]*)*")  # ... and statement separators
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}
_TOUCH_BEFORE_INDEX = re.compile(r'[A-Za-z0-9_)\]"]\Z')  # what an index's `[` may follow (grammar: INDEX)

# Precedence levels of the grammar's expression rules, loosest first.
OR, AND, NOT, COMPARE, SUM, PRODUCT, UNARY, POSTFIX, ATOM = range(1, 10)
_BINARY = {"or": OR, "and": AND, "==": COMPARE, "!=": COMPARE, "<=": COMPARE, ">=": COMPARE, "<": COMPARE,
           ">": COMPARE, "+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "//": PRODUCT, "%": PRODUCT}


class Unprintable(ValueError):
    """An AST that no .cnn text parses to (a name that is no name, a float that is not finite, ...)."""


def print_module(module: ast.Module, source: str | None = None, comments=()) -> str:
    """The module as .cnn text. `source` and `comments` (tokens with `start_pos`, `line` and a text) are
    the text the module was parsed from and its comments, or nothing for a module built in code."""
    return Printer(source, comments).module(module)


def print_expr(expr: ast.Expr) -> str:
    """One expression on one line: `in.channels // 2`, `[(3, 64), (5, 128)]`."""
    return Printer().flat(expr)


def quote(text: str) -> str:
    """A string literal of `text`: `"..."` with `\\n`, `\\t`, `\\\\` and `\\"` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def unquote(token: str) -> str:
    """What a string token says (as syntax.py reads it); raises ValueError on an unknown escape."""
    if token.startswith('"""'):
        return token[3:-3]
    parts = re.split(r"(\\.)", token[1:-1])
    for i in range(1, len(parts), 2):
        parts[i] = _ESCAPES[parts[i][1]]
    return "".join(parts)


@dataclass
class Comment:
    offset: int
    line: int
    text: str

    @property
    def end(self) -> int:
        return self.offset + len(self.text)


@dataclass
class Line:
    text: str  # with its indentation
    comment: str | None = None
    verbatim: bool = False  # a line of a doc string: never re-indented, not aligned
    cont: bool = False  # continues the line above (an argument list or a list over several lines)


@dataclass
class Elem:
    """One element of a bracketed, comma-separated sequence: its one-line text, how to lay it out over
    lines from a column, and where it was."""

    flat: str
    render: object  # (col, tail) -> list[Line], the first line without indentation
    start: int | None = None
    end: int | None = None
    line: int | None = None
    rowsable: object = None  # () -> bool: whether all its comments stand between its own elements


@dataclass
class Body:
    """A `{ }` or `[ ]` body with the offsets of its brackets in the source (None for a built AST)."""

    stmts: tuple
    opener: int | None = None
    closer: int | None = None
    one_line: bool | None = None  # as written: None where unknown
    first_on_opener_line: bool = False


class Printer:
    def __init__(self, source: str | None = None, comments=(), line_length: int = LINE_LENGTH):
        self.src = source
        self.width = line_length
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)] if source is not None else []
        self.comments = [Comment(c.start_pos, c.line, str(c).rstrip()) for c in comments]
        self.comment_offsets = [c.offset for c in self.comments]
        self.next_comment = 0
        self.out: list[Line] = []
        self.last_end = 0  # source offset of the last thing printed, for blank lines
        self.ind = 0  # indentation of the statement being printed

    # ---- the source -----------------------------------------------------------------------------

    def offset(self, line: int, col: int) -> int | None:
        if self.src is None or not 0 < line <= len(self.line_starts):
            return None
        return min(self.line_starts[line - 1] + col - 1, len(self.src))

    def start(self, node) -> int | None:
        span = getattr(node, "span", None)
        return None if span is None else self.offset(span.line, span.col)

    def end(self, node) -> int | None:
        span = getattr(node, "span", None)
        return None if span is None else self.offset(span.end_line, span.end_col)

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.line_starts, offset)

    def raw(self, node) -> str | None:
        a, b = self.start(node), self.end(node)
        return None if a is None or b is None else self.src[a:b]

    def skip(self, offset: int, seps: bool = False) -> int:
        return (_SKIP_SEP if seps else _SKIP).match(self.src, offset).end()

    def expect(self, offset: int | None, chars: str, seps: bool = False) -> int | None:
        """The offset of the next significant character after `offset` if it is one of `chars`."""
        if offset is None:
            return None
        at = self.skip(offset, seps)
        return at if at < len(self.src) and self.src[at] in chars else None

    def word_after(self, offset: int | None, word: str) -> int | None:
        """The offset just after `word` where it is the next significant text after `offset`."""
        if offset is None:
            return None
        at = self.skip(offset)
        return at + len(word) if self.src.startswith(word, at) else None

    # ---- comments ---------------------------------------------------------------------------------

    def has_comments(self, a: int | None, b: int | None) -> bool:
        """Whether comments not printed yet lie between offsets `a` and `b`."""
        if a is None or b is None:
            return False
        i = max(self.next_comment, bisect.bisect_left(self.comment_offsets, a))
        return i < len(self.comments) and self.comments[i].offset < b

    def _pending(self) -> Comment | None:
        return self.comments[self.next_comment] if self.next_comment < len(self.comments) else None

    def leading(self, until: int | None, ind: int, body_start: bool) -> bool:
        """Print the comments before `until` on lines of their own; returns whether the next line
        follows them directly (for the blank-line rule)."""
        while until is not None and (c := self._pending()) is not None and c.offset < until:
            self.next_comment += 1
            if not body_start:
                self.blank_before(c.offset)
            self.out.append(Line(" " * ind + c.text))
            self.last_end = c.end
            body_start = False
        return body_start

    def blank_before(self, offset: int | None) -> None:
        """One blank line where the source has one or more between the last thing printed and `offset`."""
        if offset is None or self.src is None or not self.out or not self.out[-1].text.strip():
            return
        if re.search(r"\n[ \t]*\n", self.src[self.last_end:offset]):
            self.out.append(Line(""))

    def trailing(self, anchor: int | None, line: Line | None = None) -> None:
        """Give `line` (the last printed) the comment that follows `anchor` on its source line."""
        if anchor is None:
            return
        line = line or self.out[-1]
        inside = self._take_before(anchor)  # comments inside what was printed: on lines of their own
        after = False
        if inside:
            at = len(self.out) - 1 - self.out[::-1].index(line)
            # above the whole of a line that continues others, up to the last line with a comment
            while self.out[at].cont and at > 0 and self.out[at - 1].comment is None and \
                    not self.out[at - 1].text.lstrip().startswith("#"):
                at -= 1
            target = self.out[at]
            indent = len(target.text) - len(target.text.lstrip(" ")) if not target.verbatim else self.ind
            # `} else {`: above it would be inside the body it closes, so below, in the body it opens
            after = target is line and line.text.lstrip().startswith("}") and line.text.rstrip().endswith("{")
            if after:
                indent += INDENT
                self.out[at + 1:at + 1] = [Line(" " * indent + c.text) for c in inside]
            else:  # above it; inside the body or list that it closes, if it starts with the closer
                indent += INDENT if target.text.lstrip()[:1] in ("}", "]", ")") else 0
                self.out[at:at] = [Line(" " * indent + c.text) for c in inside]
            self.last_end = inside[-1].end
        c = self._pending()
        if c is not None and line.comment is None and self.line_of(c.offset) == self.line_of(anchor) and \
                not self.src[anchor:c.offset].strip(" \t,;"):
            self.next_comment += 1
            self.last_end = c.end
            if after:  # after the comments put below the line, in order
                at = len(self.out) - 1 - self.out[::-1].index(line) + len(inside)
                self.out.insert(at + 1, Line(" " * indent + c.text))
            else:
                line.comment = c.text
        self.last_end = max(self.last_end, anchor)

    # ---- the module -------------------------------------------------------------------------------

    def module(self, m: ast.Module) -> str:
        pos = self.skip(0) if self.src is not None else None
        if m.doc is not None:
            self.leading(pos, 0, body_start=True)
            raw = None
            if pos is not None and (match := _STRING.match(self.src, pos)) and self._is_doc(match.group(), m.doc):
                raw = match.group()
            self.doc_lines(m.doc, raw, 0)
            if raw is not None:
                self.trailing(match.end())
        items = [*m.imports, *m.definitions]
        if self.src is not None:
            items.sort(key=lambda n: self.start(n) or 0)
        previous = None
        for item in items:
            start = self.start(item)
            tight = isinstance(item, ast.Import) and isinstance(previous, ast.Import) or (
                _is_alias(item) and _is_alias(previous))
            if self.out:
                if tight:
                    self.blank_before(min(start, self._pending().offset) if start is not None and self._pending()
                                      else start)
                elif self.out[-1].text.strip():
                    self.out.append(Line(""))
            if self.leading(start, 0, body_start=True) is False:
                self.blank_before(start)
            if isinstance(item, ast.Import):
                self.out.append(Line(f"import {self.string(item.path, item)}"))
                self.trailing(self.end(item))
            else:
                self.definition(item)
            previous = item
        self.leading(len(self.src) + 1 if self.src is not None else None, 0, body_start=not self.out)
        return self.render()

    def definition(self, d: ast.Definition) -> None:
        self.ind = 0
        if d.base is not None:
            call = self.call_elems(d.base)
            head = f"network {_name(d.name)} = "
            self.emit_prefixed(0, head, self.seq_or_bare(d.base.name, call, d.base, len(head), parens=True), "")
            end = self._alias_call_end(d)
            self.trailing(end)
            if d.doc is not None:
                raw = None
                if end is not None and (doc_at := self.expect(end, '"')) is not None:
                    match = _STRING.match(self.src, doc_at)
                    if match and self._is_doc(match.group(), d.doc):
                        raw = match.group()
                        self.last_end = match.end()
                self.doc_lines(d.doc, raw, 0)
                if raw is not None:
                    self.trailing(self.last_end)
            return
        head = f"{d.kind} {_name(d.name)}"
        params = [self.param_elem(p) for p in d.params]
        body = self.brace_body(d.body, self._after_params(d))
        if params:
            opener = closer = None
            if self.src is not None:
                opener = self.expect(self.offset(d.name_span.end_line, d.name_span.end_col), "(")
                closer = self.expect(params[-1].end, ")", seps=True)
            elems = self.seq_lines("(", params, ")", len(head), len(" {"), trailing_comma=True, opener=opener,
                                   closer=closer)
            self.emit_prefixed(0, head, elems, " {", anchor=body.opener + 1 if body.opener is not None else None)
        else:
            self.out.append(Line(head + " {"))
            self.trailing(body.opener + 1 if body.opener is not None else None)
        self.block(body, INDENT)
        self.out.append(Line("}"))
        self.trailing(self.end(d))

    def _alias_call_end(self, d: ast.Definition) -> int | None:
        """The offset after the `)` of `network a = b(...)`."""
        if self.src is None:
            return None
        after = self.end(d.base.args[-1]) if d.base.args else self.offset(d.base.name_span.end_line,
                                                                          d.base.name_span.end_col)
        close = self.expect(after, ")", seps=True)
        if close is None:
            close = self.expect(self.expect(after, "(") + 1 if self.expect(after, "(") is not None else None, ")")
        return None if close is None else close + 1

    def _after_params(self, d: ast.Definition) -> int | None:
        after = self.end(d.params[-1]) if d.params else self.offset(d.name_span.end_line, d.name_span.end_col)
        if after is None:
            return None
        at = self.skip(after, seps=True)
        if self.src.startswith("(", at):  # `block b() {`
            at = self.skip(at + 1)
        if self.src.startswith(")", at):
            at += 1
        return at

    def param_elem(self, p: ast.Param) -> Elem:
        if p.default is None:
            text = _name(p.name)
            return Elem(text, lambda col, tail, t=text: [Line(t)], self.start(p), self.end(p), p.span.line)
        head = f"{_name(p.name)} = "
        value = self.elem(p.default)
        return self.prefixed_elem(head, value, p)

    # ---- statements ---------------------------------------------------------------------------------

    def brace_body(self, stmts: tuple, after_header: int | None) -> Body:
        """The body whose `{` is the next significant character after `after_header`."""
        body = Body(stmts)
        if self.src is None or after_header is None:
            return body
        body.opener = self.expect(after_header, "{")
        return self._close(body, "}")

    def _close(self, body: Body, closer: str) -> Body:
        if body.opener is None:
            return body
        last = self.end(body.stmts[-1]) if body.stmts else body.opener + 1
        body.closer = self.expect(last, closer, seps=True)
        if body.closer is None:
            body.opener = None
            return body
        body.one_line = self.line_of(body.opener) == self.line_of(body.closer)
        if body.stmts:
            body.first_on_opener_line = self.line_of(self.start(body.stmts[0])) == self.line_of(body.opener)
        return body

    def block(self, body: Body, ind: int) -> None:
        """The statements of a body, one a line at `ind`, with their comments."""
        body_start = True
        for s in body.stmts:
            start = self.start(s)
            body_start = self.leading(start, ind, body_start)
            if not body_start:
                self.blank_before(start)
            self.statement(s, ind)
            body_start = False
        self.leading(body.closer, ind, body_start)

    def statement(self, s, ind: int) -> None:
        self.ind = ind
        pad = " " * ind
        if isinstance(s, ast.Doc):
            raw = self.raw(s)
            self.doc_lines(s.text, raw if raw is not None and self._is_doc(raw, s.text) else None, ind)
        elif isinstance(s, ast.Labeled):
            label = _name(s.label) if isinstance(s.label, str) else self.template(s.label)
            self.item(s.item, ind, f"{label}: ", "")
        elif isinstance(s, ast.Bind):
            self.item(s.item, ind, f"{_name(s.name)} = ", "")
        elif isinstance(s, ast.Split):
            names = ", ".join(_name(n) for n, _ in s.names)
            self.item(s.call, ind, f"({names}) = ", "")
        elif isinstance(s, ast.Let):
            head = f"{pad}let {_target(s.name)} = "
            self.emit_prefixed(ind, head, self.elem(s.value).render(len(head), 0), "")
        elif isinstance(s, ast.If):
            self.if_stmt(s, ind, pad)
        elif isinstance(s, ast.For):
            head = f"{pad}for {_target(s.var)} in {self.flat(s.iterable)} "
            body = self.brace_body(s.body, self.end(s.iterable))
            self.braces(head, body, ind, "")
        elif isinstance(s, ast.Input):
            self.out.append(Line(f"{pad}input {self.shape(s.dims)}"))
        elif isinstance(s, ast.Output):
            text = f"{pad}output " + ", ".join(_name(n) for n, _ in s.names)
            if s.training:
                text += ", training: " + ", ".join(_name(n) for n, _ in s.training)
            self.out.append(Line(text))
        elif isinstance(s, ast.From):
            self.out.append(Line(f"{pad}from {'in' if s.name == 'in' else _name(s.name)}"))
        elif isinstance(s, ast.Assert):
            cond = f"{pad}assert {self.flat(s.condition)}"
            if s.message is None:
                self.out.append(Line(cond))
            elif len(cond) + 2 + len(quote(s.message)) <= self.width:
                self.out.append(Line(f"{cond}, {quote(s.message)}"))
            else:
                self.out.append(Line(cond + ","))
                self.out.append(Line(" " * (ind + len("assert ")) + quote(s.message)))
        else:
            self.item(s, ind, "", "")
        self.trailing(self.end(s))

    def if_stmt(self, s: ast.If, ind: int, pad: str) -> None:
        head = f"{pad}if {self.flat(s.condition)} "
        then = self.brace_body(s.then, self.end(s.condition))
        if not s.orelse:
            self.braces(head, then, ind, "")
            return
        after_else = self.word_after(then.closer + 1 if then.closer is not None else None, "else")
        nested = len(s.orelse) == 1 and isinstance(s.orelse[0], ast.If)
        if nested and after_else is not None:
            inner_opener = self.expect(self.end(s.orelse[0].condition), "{")
            # `else if`, not `else { if ... }`; and no comment between the `}` and the `{` of the `if`
            nested = self.expect(after_else, "{") is None and inner_opener is not None and \
                not self.has_comments(then.closer, inner_opener)
        if nested:
            inner: ast.If = s.orelse[0]
            mark = len(self.out)
            self.braces(head, then, ind, " else ")
            rest = len(self.out)
            self.if_stmt(inner, ind, "")
            # the `else if` continues the line that closed the first body
            joined = self.out[mark:rest]
            joined[-1].text += self.out[rest].text.lstrip()
            joined[-1].comment = self.out[rest].comment
            self.out[mark:] = joined + self.out[rest + 1:]
            return
        orelse = self.brace_body(s.orelse, after_else)
        compact = self.compact(then) is not None and self.compact(orelse) is not None
        if compact:
            text = f"{head}{{ {self.compact(then)} }} else {{ {self.compact(orelse)} }}"
            if len(text) <= self.width:
                self.out.append(Line(text))
                return
        self.braces(head, then, ind, " else ", force_block=True)
        self.out[-1].text += "{"
        self.trailing(orelse.opener + 1 if orelse.opener is not None else None)
        self.block(orelse, ind + INDENT)
        self.out.append(Line(" " * ind + "}"))

    def braces(self, head: str, body: Body, ind: int, suffix: str, force_block: bool = False) -> None:
        """`head { body }suffix` on one line where the body may stay on one, else the body a block."""
        compact = None if force_block else self.compact(body)
        if compact is not None:
            text = f"{head}{{ {compact} }}" if compact else f"{head}{{}}"
            if len(text) + len(suffix) <= self.width:
                self.out.append(Line(text + suffix))
                if body.closer is not None:
                    self.trailing(body.closer + 1)
                return
        self.out.append(Line(head + "{"))
        self.trailing(body.opener + 1 if body.opener is not None else None)
        self.block(body, ind + INDENT)
        self.out.append(Line(" " * ind + "}" + suffix))
        self.trailing(body.closer + 1 if body.closer is not None else None)

    def compact(self, body: Body) -> str | None:
        """The body on one line (`a, b`), where it was written so (or, built in code, holds one short
        statement) and holds no comment; else None."""
        if body.opener is not None and (not body.one_line or self.has_comments(body.opener, body.closer)):
            return None
        if not body.stmts:
            return ""
        if body.opener is None and len(body.stmts) > 1:
            return None
        if len(body.stmts) == 1:
            return self.inline_stmt(body.stmts[0], alone=True)
        parts = [self.inline_stmt(s) for s in body.stmts]
        return None if None in parts else ", ".join(parts)

    def inline_stmt(self, s, alone: bool = False) -> str | None:
        """A statement on one line inside a one-line body, or None if it takes a line of its own."""
        if isinstance(s, ast.Labeled):
            item = self.inline_item(s.item)
            label = _name(s.label) if isinstance(s.label, str) else self.template(s.label)
            return None if item is None else f"{label}: {item}"
        if isinstance(s, ast.Bind):
            item = self.inline_item(s.item)
            return None if item is None else f"{_name(s.name)} = {item}"
        if isinstance(s, ast.Split):
            return f"({', '.join(_name(n) for n, _ in s.names)}) = {self.call_flat(s.call)}"
        if isinstance(s, ast.From):
            return f"from {'in' if s.name == 'in' else _name(s.name)}"
        if isinstance(s, (ast.Call, ast.Repeat, ast.Group)):
            return self.inline_item(s)
        if alone and isinstance(s, (ast.Let, ast.Output, ast.Assert, ast.Input)):
            mark = len(self.out)
            saved = (self.next_comment, self.last_end)
            self.statement(s, 0)
            lines = self.out[mark:]
            del self.out[mark:]
            self.next_comment, self.last_end = saved
            return lines[0].text if len(lines) == 1 and lines[0].comment is None else None
        return None

    def inline_item(self, it) -> str | None:
        if isinstance(it, ast.Call):
            return self.call_flat(it)
        if isinstance(it, ast.Repeat):
            inner = self.inline_item(it.item)
            return None if inner is None else f"{inner} * {self.flat(it.count, POSTFIX)}"
        if isinstance(it, ast.Group):
            body = self.group_body(it)
            if body.opener is not None and (self.has_comments(body.opener, body.closer) or not body.first_on_opener_line
                                            and body.stmts):
                return None
            parts = [self.inline_stmt(s) for s in it.body]
            return None if None in parts else "[" + ", ".join(parts) + "]"
        return None

    def group_body(self, g: ast.Group) -> Body:
        body = Body(g.body)
        if self.src is not None and (start := self.start(g)) is not None and self.src.startswith("[", start):
            body.opener = start
            return self._close(body, "]")
        return body

    # ---- items ---------------------------------------------------------------------------------------

    def item(self, it, ind: int, prefix: str, suffix: str) -> None:
        """An item as a statement: `prefix` before it on its first line, `suffix` after it on its last."""
        pad = " " * ind
        if isinstance(it, ast.Repeat):
            if isinstance(it.item, ast.Repeat):
                raise Unprintable("a repeat of a repeat: group the inner one in `[...]`")
            self.item(it.item, ind, prefix, f" * {self.flat(it.count, POSTFIX)}{suffix}")
        elif isinstance(it, ast.Call):
            head = pad + prefix + ("inline " if it.inline else "")
            self.emit_prefixed(ind, head, self.seq_or_bare(it.name, self.call_elems(it), it, len(head)), suffix)
        elif isinstance(it, ast.Group):
            self.group(it, ind, pad + prefix, suffix)
        elif isinstance(it, ast.Branches):
            body = self.brace_body(it.body, self.offset(it.name_span.end_line, it.name_span.end_col))
            if body.opener is None and self.src is None:
                body.one_line = False
            self.braces(f"{pad}{prefix}{_name(it.op)} ", body, ind, suffix, force_block=body.opener is None)
        elif isinstance(it, ast.Residual):
            self.residual(it, ind, pad + prefix, suffix)
        else:
            raise Unprintable(f"not an item: {type(it).__name__}")

    def group(self, g: ast.Group, ind: int, head: str, suffix: str) -> None:
        body = self.group_body(g)
        fill = body.first_on_opener_line if body.opener is not None else None
        parts = [self.inline_stmt(s) for s in g.body]
        if None in parts or not g.body:
            fill = False if g.body else True
        if fill is None:  # built in code: one line if it fits
            text = f"{head}[{', '.join(parts)}]{suffix}"
            fill = len(text) <= self.width
        if fill:
            elems = [self.stmt_elem(s, p) for s, p in zip(g.body, parts)]
            lines = self.seq_lines("[", elems, "]", len(head), len(suffix), trailing_comma=True,
                                   opener=body.opener, closer=body.closer)
            self.emit_prefixed(ind, head, lines, suffix, anchor=None)
            if body.closer is not None:
                self.last_end = max(self.last_end, body.closer + 1)
            return
        self.out.append(Line(head + "["))
        self.trailing(body.opener + 1 if body.opener is not None else None)
        self.block(body, ind + INDENT)
        self.out.append(Line(" " * ind + "]" + suffix))
        self.trailing(body.closer + 1 if body.closer is not None else None)

    def stmt_elem(self, s, text: str) -> Elem:
        return Elem(text, lambda col, tail, t=text: [Line(t)], self.start(s), self.end(s),
                    s.span.line if self.src is not None else None)

    def residual(self, r: ast.Residual, ind: int, head: str, suffix: str) -> None:
        start = self.start(r)
        after = self.end(r.when) if r.when is not None else (start + len("residual") if start is not None else None)
        body = self.brace_body(r.body, after)
        head = f"{head}residual " + (f"if {self.flat(r.when)} " if r.when is not None else "")
        if r.shortcut is None:
            self.braces(head, body, ind, suffix)
            return
        sc_start = self.offset(r.shortcut_span.line, r.shortcut_span.col) if r.shortcut_span else None
        sc_after = self.end(r.condition) if r.condition is not None else (
            sc_start + len("shortcut") if sc_start is not None else None)
        shortcut = self.brace_body(r.shortcut, sc_after)
        sc_head = "shortcut " + (f"if {self.flat(r.condition)} " if r.condition is not None else "")
        compact, sc_compact = self.compact(body), self.compact(shortcut)
        if compact is not None and sc_compact is not None:
            text = f"{head}{{ {compact} }} {sc_head}{{ {sc_compact} }}{suffix}"
            if len(text) <= self.width:
                self.out.append(Line(text))
                return
        self.braces(head, body, ind, " " + sc_head, force_block=True)
        self.out[-1].text += "{"
        self.trailing(shortcut.opener + 1 if shortcut.opener is not None else None)
        self.block(shortcut, ind + INDENT)
        self.out.append(Line(" " * ind + "}" + suffix))

    def call_flat(self, c: ast.Call) -> str:
        args = ", ".join(self.arg_flat(a) for a in c.args)
        return ("inline " if c.inline else "") + _name(c.name) + (f"({args})" if c.args else "")

    def arg_flat(self, a: ast.Arg) -> str:
        return (f"{_name(a.name)}=" if a.name is not None else "") + self.flat(a.value)

    def call_elems(self, c: ast.Call) -> list[Elem]:
        return [self.prefixed_elem(f"{_name(a.name)}=", self.elem(a.value), a) if a.name is not None
                else self.elem(a.value) for a in c.args]

    def seq_or_bare(self, name: str, elems: list[Elem], node, col: int = 0, parens: bool = False) -> list[Line]:
        name = _name(name)
        if not elems and parens:
            return [Line(name + "()")]
        if not elems:
            return [Line(name)]
        start = self.start(node)
        opener = closer = None
        if start is not None and self.src is not None:
            opener = self.expect(self.offset(node.name_span.end_line, node.name_span.end_col), "(")
            closer = self.expect(elems[-1].end, ")", seps=True) if elems[-1].end is not None else None
        lines = self.seq_lines("(", elems, ")", col + len(name), 0, trailing_comma=True, opener=opener, closer=closer)
        lines[0].text = name + lines[0].text
        return lines

    # ---- lines -------------------------------------------------------------------------------------

    def emit_prefixed(self, ind: int, head: str, lines: list[Line], suffix: str, anchor: int | None = None) -> None:
        """Print `head` + the lines of a laid-out element + `suffix`; the element's first line has no
        indentation, the others have theirs."""
        if not head.startswith(" " * ind):
            head = " " * ind + head
        first = Line(head + lines[0].text, lines[0].comment)
        rest = lines[1:]
        for line in rest:
            line.cont = True
        out = [first, *rest]
        out[-1].text += suffix
        self.out.extend(out)
        if anchor is not None:
            self.trailing(anchor)

    def seq_lines(self, open_: str, elems: list[Elem], close: str, col: int, tail: int, trailing_comma: bool,
                  opener: int | None = None, closer: int | None = None) -> list[Line]:
        """`open_ elem, elem, ... close` laid out from column `col` with `tail` columns to follow on its
        last line: on one line if it fits; else filled onto lines aligned after `open_`; where comments
        stand between the elements, in the rows the source gave them, with the comments."""
        commented: set[int] = set()  # elements with comments inside: laid out by themselves, on several lines
        if opener is not None and closer is not None and self.has_comments(opener, closer):
            commented = {i for i, e in enumerate(elems) if self.has_comments(e.start, e.end)}
            between = [c for c in self.comments[self.next_comment:] if opener < c.offset < closer and not any(
                e.start is not None and e.start <= c.offset < e.end for e in elems)]
            if between and not commented:
                return self.rows(open_, elems, close, col, trailing_comma, opener, closer)
            # an element whose comments all stand between its own elements keeps them in its rows; any
            # other comments (at several depths) go above the statement
            if between or not all(elems[i].rowsable is not None and elems[i].rowsable() for i in commented):
                for c in self._take_before(closer):
                    self.out.append(Line(" " * self.ind + c.text))
                commented = set()
        flat = open_ + ", ".join(e.flat for e in elems) + close
        if not commented and col + len(flat) + tail <= self.width:
            return [Line(flat)]
        inner = col + len(open_)
        lines: list[Line] = []
        cur, cur_col, empty = open_, col, True
        for i, e in enumerate(elems):
            last = i == len(elems) - 1
            after = close if last else ","
            extra = tail if last else 0
            sep = "" if empty else " "
            if i not in commented:
                if cur_col + len(cur) + len(sep) + len(e.flat) + len(after) + extra <= self.width:
                    cur += sep + e.flat + after
                    empty = False
                    continue
                if not empty and inner + len(e.flat) + len(after) + extra <= self.width:
                    lines.append(Line(cur))
                    cur, cur_col = " " * inner + e.flat + after, 0
                    continue
                if not empty:
                    lines.append(Line(cur))
                    cur, cur_col, sep = " " * inner, 0, ""
            sub = e.render(cur_col + len(cur) + len(sep), len(after) + extra)
            cur += sep + sub[0].text
            if len(sub) > 1:
                lines.append(Line(cur, sub[0].comment))
                lines.extend(sub[1:-1])
                cur, cur_col = sub[-1].text, 0
            cur += after
            empty = False
        lines.append(Line(cur))
        return lines

    def rows(self, open_: str, elems: list[Elem], close: str, col: int, trailing_comma: bool, opener: int,
             closer: int) -> list[Line]:
        """A sequence with comments between its elements: the elements of one source line stay on one
        line, each comment at its place; hanging (after an opening bracket that ends its line) unless the
        first element was written on the bracket's line, then aligned after the bracket."""
        for c in self._take_before(opener):  # between the statement's start and the bracket: above it
            self.out.append(Line(" " * self.ind + c.text))
        hanging = elems[0].start is None or self.line_of(elems[0].start) != self.line_of(opener)
        inner = " " * (self.ind + INDENT if hanging else col + len(open_))
        lines = [Line(open_)]
        if hanging:
            self._trail_into(lines[-1], opener + 1)
        row: list[Elem] = []
        groups: list[list[Elem]] = []
        for e in elems:
            if row and self.line_of(e.start) != self.line_of(row[-1].start):
                groups.append(row)
                row = []
            row.append(e)
        groups.append(row)
        for g_i, group in enumerate(groups):
            last_group = g_i == len(groups) - 1
            for c in self._take_before(group[0].start):
                lines.append(Line(inner + c.text))
            text = ", ".join(e.flat for e in group)
            comma = "," if not last_group or (hanging and trailing_comma) else ""
            if hanging or g_i > 0:
                lines.append(Line(inner + text + comma))
            else:
                lines[-1].text += text + comma
            self._trail_into(lines[-1], group[-1].end)
        dangling = self._take_before(closer)
        lines += [Line(inner + c.text) for c in dangling]
        if dangling or lines[-1].comment is not None:  # the bracket on a line of its own
            lines.append(Line((" " * self.ind if hanging else " " * col) + close))
        else:  # the bracket closes the last row
            lines[-1].text = lines[-1].text.rstrip(",") + close
        return lines

    def _take_before(self, offset: int) -> list[Comment]:
        taken = []
        while (c := self._pending()) is not None and c.offset < offset:
            taken.append(c)
            self.next_comment += 1
        return taken

    def _trail_into(self, line: Line, anchor: int) -> None:
        c = self._pending()
        if c is not None and line.comment is None and self.line_of(c.offset) == self.line_of(anchor) and \
                c.offset >= anchor and not self.src[anchor:c.offset].strip(" \t,;"):
            line.comment = c.text
            self.next_comment += 1

    # ---- doc strings -------------------------------------------------------------------------------

    def _is_doc(self, raw: str, text: str) -> bool:
        try:
            return inspect.cleandoc(unquote(raw)) == text
        except (KeyError, IndexError):
            return False

    def doc_lines(self, text: str, raw: str | None, ind: int) -> None:
        if raw is None:
            raw = self.doc_literal(text, ind)
        first, *rest = raw.split("\n")
        self.out.append(Line(" " * ind + first, verbatim=True))
        self.out.extend(Line(r, verbatim=True) for r in rest)

    @staticmethod
    def doc_literal(text: str, ind: int) -> str:
        """A doc string of `text`: in triple quotes, its lines indented to the statement, unless the text
        cannot stand between triple quotes (it holds `\"\"\"` or ends with a quote)."""
        if '"""' in text or text.endswith('"') or "\r" in text:
            return quote(text)
        lines = text.split("\n")
        return '"""' + "\n".join([lines[0]] + [" " * ind + ln if ln.strip() else "" for ln in lines[1:]]) + '"""'

    # ---- expressions ---------------------------------------------------------------------------------

    def flat(self, e, need: int = 0) -> str:
        text, prec = self._expr(e)
        return f"({text})" if prec < need else text

    def _expr(self, e) -> tuple[str, int]:
        if isinstance(e, ast.Const):
            return self.const(e)
        if isinstance(e, ast.Var):
            return _name(e.name), ATOM
        if isinstance(e, ast.InAttr):
            return f"in.{_name(e.attr)}", ATOM
        if isinstance(e, ast.InTensor):
            return "in", ATOM
        if isinstance(e, ast.BinOp):
            prec = _BINARY.get(e.op)
            if prec is None:
                raise Unprintable(f"unknown operator `{e.op}`")
            right_need = prec + 1
            left_need = prec + 1 if prec == COMPARE else prec
            return f"{self.flat(e.left, left_need)} {e.op} {self.flat(e.right, right_need)}", prec
        if isinstance(e, ast.Not):
            return f"not {self.flat(e.operand, NOT)}", NOT
        if isinstance(e, ast.Neg):
            return f"-{self.flat(e.operand, UNARY)}", UNARY
        if isinstance(e, (ast.Index, ast.Slice)):
            target = self.flat(e.target, POSTFIX)
            if not _TOUCH_BEFORE_INDEX.search(target):
                target = f"({target})"
            if isinstance(e, ast.Index):
                return f"{target}[{self.flat(e.index)}]", POSTFIX
            start = "" if e.start is None else self.flat(e.start)
            stop = "" if e.stop is None else self.flat(e.stop)
            return f"{target}[{start}:{stop}]", POSTFIX
        if isinstance(e, ast.Func):
            args = [self.flat(a) for a in e.args] + [f"{_name(k)}={self.flat(v)}" for k, v, _ in e.kwargs]
            return f"{_name(e.name)}({', '.join(args)})", ATOM
        if isinstance(e, ast.Seq):
            items = [self.flat(x) for x in e.items]
            if self.is_tuple(e) and items:
                return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")", ATOM
            return "[" + ", ".join(items) + "]", ATOM
        if isinstance(e, ast.Comprehension):
            text = f"[{self.flat(e.element)} for {_target(e.target)} in {self.flat(e.iterable)}"
            if e.condition is not None:
                text += f" if {self.flat(e.condition)}"
            return text + "]", ATOM
        raise Unprintable(f"not an expression: {type(e).__name__}")

    def is_tuple(self, e: ast.Seq) -> bool:
        start = self.start(e) if self.src is not None else None
        return start is not None and self.src.startswith("(", start)

    def const(self, e: ast.Const) -> tuple[str, int]:
        v = e.value
        if isinstance(v, bool):
            return ("true" if v else "false"), ATOM
        if isinstance(v, Symbol):
            if str(v) not in ("same", "global"):
                raise Unprintable(f"no literal writes the symbol `{v}`")
            return str(v), ATOM
        raw = self.raw(e) if self.src is not None else None
        if isinstance(v, str):
            if raw is not None and raw.startswith('"') and not raw.startswith('"""') and _STRING.fullmatch(raw):
                try:
                    if unquote(raw) == v:
                        return raw, ATOM
                except KeyError:
                    pass
            return quote(v), ATOM
        if isinstance(v, int):
            if raw is not None and _INT.match(raw) and int(raw) == v:
                return raw, ATOM
            return (str(v), ATOM) if v >= 0 else (str(v), UNARY)
        if isinstance(v, float):
            if not math.isfinite(v):
                raise Unprintable(f"no literal writes the number {v}")
            if raw is not None and _FLOAT.match(raw) and float(raw) == v:
                return raw, ATOM
            text = repr(v)
            return (text, ATOM) if v >= 0 and not text.startswith("-") else (text, UNARY)
        raise Unprintable(f"no literal writes {v!r}")

    def string(self, value: str, node) -> str:
        raw = self.raw(node) if self.src is not None else None
        if raw is not None and raw.startswith('"') and not raw.startswith('"""') and _STRING.fullmatch(raw):
            try:
                if unquote(raw) == value:
                    return raw
            except KeyError:
                pass
        return quote(value)

    def shape(self, dims: tuple) -> str:
        if self.src is not None and dims and len({d.span for d in dims}) == 1:
            raw = self.raw(dims[0])
            if raw is not None and _SHAPE.match(raw) and all(isinstance(d, ast.Const) for d in dims) and \
                    [int(x) for x in re.split("[x×]", raw)] == [d.value for d in dims]:
                return raw
        if dims and all(isinstance(d, ast.Const) and type(d.value) is int and d.value >= 0 for d in dims) and (
                len(dims) > 1 or self.src is None):
            return "x".join(str(d.value) for d in dims)
        return "(" + ", ".join(self.flat(d) for d in dims) + ")"

    def template(self, t: ast.Template) -> str:
        parts = []
        for p in t.parts:
            if isinstance(p, str):
                if re.search(r'[{}"\\\n]', p):
                    raise Unprintable(f"a computed label cannot hold {p!r}")
                parts.append(p)
            else:
                parts.append("{" + self.flat(p) + "}")
        return '"' + "".join(parts) + '"'

    def elem(self, e) -> Elem:
        """An expression as an element of a sequence, with its ways to take several lines."""
        start, end = self.start(e), self.end(e)
        line = e.span.line if self.src is not None and getattr(e, "span", None) else None
        flat = self.flat(e)

        def render(col: int, tail: int) -> list[Line]:
            if isinstance(e, ast.Seq):
                tuple_ = self.is_tuple(e) and bool(e.items)
                open_, close = ("(", ")") if tuple_ else ("[", "]")
                elems = [self.elem(x) for x in e.items]
                if tuple_ and len(elems) == 1:
                    return [Line(f"({self.flat(e.items[0])},)")]
                return self.seq_lines(open_, elems, close, col, tail, trailing_comma=True,
                                      opener=start, closer=end - 1 if end is not None else None)
            if isinstance(e, ast.Func):
                elems = [self.elem(x) for x in e.args]
                elems += [self.prefixed_elem(f"{_name(k)}=", self.elem(v), _Spanned(span)) for k, v, span in e.kwargs]
                if elems:
                    opener = start + len(e.name) if start is not None else None
                    lines = self.seq_lines("(", elems, ")", col + len(e.name), tail, trailing_comma=False,
                                           opener=opener, closer=end - 1 if end is not None else None)
                    lines[0].text = _name(e.name) + lines[0].text
                    return lines
            if isinstance(e, ast.Comprehension) and col + len(flat) + tail > self.width:
                head = f"[{self.flat(e.element)}"
                rest = f"for {_target(e.target)} in {self.flat(e.iterable)}"
                if e.condition is not None:
                    rest += f" if {self.flat(e.condition)}"
                return [Line(head), Line(" " * (col + 1) + rest + "]")]
            return [Line(flat)]

        def rowsable() -> bool:
            return isinstance(e, ast.Seq) and len(e.items) > (1 if self.is_tuple(e) else 0) and not any(
                self.has_comments(self.start(x), self.end(x)) for x in e.items)

        return Elem(flat, render, start, end, line, rowsable)

    def prefixed_elem(self, head: str, value: Elem, node) -> Elem:
        flat = head + value.flat

        def render(col: int, tail: int) -> list[Line]:
            lines = value.render(col + len(head), tail)
            lines[0] = Line(head + lines[0].text, lines[0].comment)
            return lines

        start = self.start(node) if node is not None else value.start
        end = self.end(node) if node is not None else value.end
        line = node.span.line if node is not None and self.src is not None else value.line

        def rowsable() -> bool:  # and no comment between `name=` and the value
            return value.rowsable is not None and value.rowsable() and not self.has_comments(start, value.start)

        return Elem(flat, render, start, end, line, rowsable)

    # ---- the text -----------------------------------------------------------------------------------------

    def render(self) -> str:
        """The lines as text: trailing comments aligned within each run of consecutive commented lines."""
        lines = self.out
        while lines and not lines[-1].text.strip() and lines[-1].comment is None:
            lines.pop()
        columns = comment_columns(lines)
        out = []
        for line, column in zip(lines, columns):
            text = line.text if line.verbatim else line.text.rstrip()
            if line.comment is not None:
                text = text + " " * max(COMMENT_GAP, column - len(text)) + line.comment if text.strip() else \
                    line.comment
            out.append(text)
        return "\n".join(out) + "\n" if out else ""


def comment_columns(lines: list[Line]) -> list[int]:
    """The column of each line's trailing comment: within a run of lines with no blank line and no doc
    string between them, every comment starts at one column, two spaces after the longest code line
    that has one."""
    columns = [0] * len(lines)
    run: list[int] = []

    def close() -> None:
        commented = [i for i in run if lines[i].comment is not None]
        if commented:
            column = max(len(lines[i].text.rstrip()) for i in commented) + COMMENT_GAP
            for i in commented:
                columns[i] = column
        run.clear()

    for i, line in enumerate(lines):
        code = line.text.strip()
        if not code or line.verbatim:
            close()
            if line.comment is not None:
                columns[i] = len(line.text.rstrip()) + COMMENT_GAP
            continue
        run.append(i)
    close()
    return columns


def _name(name: str) -> str:
    from .syntax import NAME_RESERVED

    if not isinstance(name, str) or not _NAME.match(name) or name in NAME_RESERVED:
        raise Unprintable(f"{name!r} is not a name")
    return name


def _target(t) -> str:
    if isinstance(t, str):
        return _name(t)
    return ", ".join(_name(x) if isinstance(x, str) else f"({_target(x)})" for x in t)


@dataclass(frozen=True)
class _Spanned:
    span: object


def _is_alias(node) -> bool:
    return isinstance(node, ast.Definition) and node.base is not None
