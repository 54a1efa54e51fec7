"""Text -> AST: the Lark grammar in grammar.lark, a Transformer, and curated syntax errors."""

from __future__ import annotations

import functools
import inspect
import math
import re
import threading
import unicodedata
from importlib import resources

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from .diagnostics import Diagnostic, Failure, Span, too_deep
from .text import describe_char, is_hidden
from .values import Symbol

MAX_SYNTAX_ERRORS = 10
MAX_RECOVERIES = 200  # attempts to go on after an error: many errors on one line count too
MAX_TOKENS = 100_000  # a spec of this many tokens is generated, not written; parsing costs ~20 µs a token
MAX_NESTING = 100  # brackets open at once
MAX_DIGITS = 30  # an integer literal of more digits describes nothing (sizes stop at 2^63, 19 digits)
RESERVED = "is a reserved word and cannot name a layer or a tensor"
CALL_HELP = "a call's `(` follows its name directly"
INDEX_HELP = "an index's `[` follows its list directly"

# How tokens are named in "expected ..." messages.
TOKEN_NAMES = {
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "SHAPE": "a shape like `3x224x224`", "COMPARE": "a comparison", "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*`, `/`, `//` or `%`", "LPAR": "`(`", "RPAR": "`)`", "LBRACE": "`{`",
    "RBRACE": "`}`", "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`", "COLON": "`:`",
    "EQUAL": "`=`", "DOT": "`.`", "STAR": "`*`", "MINUS": "`-`", "SEMICOLON": "`;`", "$END": "end of file",
    "INDEX": "`[`", "CALL": "`(` right after a name", "IN": "`in`",
}
# Words of the language: they cannot name a layer, a tensor or a value.
KEYWORDS = ("network", "block", "import", "let", "if", "else", "for", "in", "input", "output", "from", "assert",
            "residual", "shortcut", "inline", "true", "false", "same", "global", "not", "and", "or")
# ... but the words that only start a top-level definition name layers freely inside a body (torchvision
# names modules `block`: ConvNeXt, MobileNetV3, EfficientNet).
NAME_RESERVED = frozenset(KEYWORDS) - {"network", "block", "import"}


@functools.cache
def _parser(keep_comments: bool = False) -> Lark:
    """The parser; with `keep_comments`, one whose lexer hands every (ignored) comment token to
    `_comment_sink.tokens` as it passes (the grammar drops comments, the formatter keeps them)."""
    grammar = resources.files("graphdsl").joinpath("grammar.lark").read_text()
    callbacks = {"COMMENT": _collect_comment} if keep_comments else {}
    return Lark(grammar, parser="lalr", start=["start", "expr"], propagate_positions=True, maybe_placeholders=True,
                lexer_callbacks=callbacks)


class _CommentSink(threading.local):
    tokens: list[Token] | None = None


_comment_sink = _CommentSink()


def _collect_comment(tok: Token) -> Token:
    if _comment_sink.tokens is not None:
        _comment_sink.tokens.append(tok)
    return tok


def parse(text: str, file: str = "<string>", comments: list[Token] | None = None
          ) -> tuple[ast.Module | None, list[Diagnostic]]:
    """Parse one .cnn source. Returns the module, or None and the syntax errors. Where `comments` is a
    list, the comment tokens of the source (`# ...`, with line, column and offsets) are appended to it
    in order; the AST is the same either way."""
    if comments is None:
        return _parse(text, file, _parser())
    _comment_sink.tokens, saved = [], _comment_sink.tokens
    try:
        result = _parse(text, file, _parser(keep_comments=True))
        comments.extend(_comment_sink.tokens)
    finally:
        _comment_sink.tokens = saved
    return result


def _parse(text: str, file: str, parser: Lark) -> tuple[ast.Module | None, list[Diagnostic]]:
    errors: list[Diagnostic] = []
    too_large = _prescan(text, file)
    if too_large is not None:
        return None, [too_large]
    attempts = 0

    def record(e: UnexpectedInput) -> str:
        diag, kind = _syntax_error(e, text, file)
        at_end = isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END")
        # one per line skips the cascade; the end of the file may point back at an unclosed bracket
        if at_end and errors and kind != "unclosed":
            return kind  # the end of the file after an error elsewhere: a follow-on of that error
        if not errors or diag.span.line > errors[-1].span.line or (at_end and diag not in errors):
            errors.append(diag)
        return kind

    def on_error(e: UnexpectedInput) -> bool:
        nonlocal attempts
        attempts += 1
        if attempts > MAX_RECOVERIES:
            return False
        if record(e) == "final":
            return False  # recovery after a keyword used as a name, or a call split from its `(`, only cascades
        if isinstance(e, UnexpectedToken):
            _insert_closer(e)
        return len(errors) < MAX_SYNTAX_ERRORS

    try:
        tree = parser.parse(text, start="start", on_error=on_error)
    except UnexpectedInput as e:
        if len(errors) < MAX_SYNTAX_ERRORS and attempts <= MAX_RECOVERIES:
            record(e)
        return None, sorted(errors, key=lambda d: (d.span.line, d.span.col))
    except RecursionError:
        return None, [too_deep(file)]
    if errors:
        return None, sorted(errors, key=lambda d: (d.span.line, d.span.col))
    try:
        return _ToAst(file).transform(tree), []
    except RecursionError:
        return None, [too_deep(file)]
    except VisitError as e:
        if isinstance(e.orig_exc, RecursionError):
            return None, [too_deep(file)]
        if isinstance(e.orig_exc, Failure):
            return None, [e.orig_exc.diagnostic]
        raise


# Strings, comments, then words and numbers, then any other character: what the parser would see as
# tokens, counted at regex speed before the parser spends ~20 µs on each.
_ROUGH_TOKEN = re.compile(r'"""[\s\S]*?(?:"""|\Z)|"(?:[^"\\\n]|\\.)*"?|#[^\n]*|\w+|[()\[\]{}]|[^\s\w]')


MAX_STRING_LITERAL = 10_000  # characters of a "string" in the source
MAX_DOC_LITERAL = 100_000  # of a """doc string"""


def _string_problem(token: str) -> tuple[str, str] | None:
    """A string literal the parser should not be given: a doc string never closed (the parser's pattern
    for it would scan and backtrack through the rest of the file), or one of megabytes."""
    if token.startswith('"""'):
        if len(token) < 6 or not token.endswith('"""'):
            return "this doc string is never closed", 'close it with `"""`'
        if len(token) > MAX_DOC_LITERAL:
            return (f"a doc string of {len(token):,} characters (at most {MAX_DOC_LITERAL:,})",
                    "a doc string says what a network or block is for, in a few lines")
        return None
    if len(token) > MAX_STRING_LITERAL:
        closed = len(token) > 1 and token.endswith('"')
        return (f"a string of {len(token):,} characters (at most {MAX_STRING_LITERAL:,})" if closed else
                f"this string is never closed, and runs {len(token):,} characters"), \
            'strings are short and end on their line with `"`'
    return None


def count_tokens(text: str, limit: int = MAX_TOKENS) -> int:
    """About how many tokens the parser will see in `text` (strings and comments count one each), counted
    up to `limit` + 1: past it, the exact number does not matter."""
    count = 0
    for _ in _ROUGH_TOKEN.finditer(text):
        count += 1
        if count > limit:
            break
    return count


def _prescan(text: str, file: str) -> Diagnostic | None:
    """Refuse, before parsing, a source too large to parse in reasonable time or nested too deeply."""
    count = depth = 0
    for m in _ROUGH_TOKEN.finditer(text):
        count += 1
        ch = m.group()
        if ch[:1] == '"':
            problem = _string_problem(ch)
            if problem is not None:
                line, col = _line_col(text, m.start())
                return Diagnostic(problem[0], _token_span(file, line, col, 3 if ch.startswith('"""') else 1),
                                  help=problem[1])
        elif ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                line, col = _line_col(text, m.start())
                return Diagnostic(f"brackets nested more than {MAX_NESTING} deep", _token_span(file, line, col),
                                  help="flatten the nesting: use blocks, `*` repetition or `for` loops")
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if count > MAX_TOKENS:
            break
    if count > MAX_TOKENS:
        return Diagnostic(f"the spec has more than the {MAX_TOKENS:,} tokens a spec may have",
                          Span(file, 1, 1, 1, 1),
                          help="build long networks with `for` loops, `*` repetition and blocks, or split "
                               "the spec into files")
    return None


def parse_expression(text: str, file: str = "<value>"):
    """One expression (`[3, 3, 9, 3]`, `(1, 16)`) as an AST, or raises Failure with the syntax error."""
    too_large = _prescan(text, file)
    if too_large is not None:
        raise Failure(too_large)
    try:
        return _ToAst(file).transform(_parser().parse(text, start="expr"))
    except UnexpectedInput as e:
        raise Failure(_syntax_error(e, text, file)[0]) from None
    except VisitError as e:
        if isinstance(e.orig_exc, Failure):
            raise e.orig_exc from None
        raise


CLOSERS = {"RPAR": ")", "RSQB": "]", "RBRACE": "}"}
PAIRS = {"(": ")", "[": "]", "{": "}"}
_BRACKET_OR_SKIP = re.compile(r'"""[\s\S]*?(?:"""|\Z)|"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[()\[\]{}]')


def _insert_closer(e: UnexpectedToken) -> None:
    """Recover from a missing or mismatched `)`, `]` or `}`: close the bracket that is open and go on with
    the token that came instead (a wrong closing bracket is taken for the right one)."""
    if e.token.type == "$END":
        return
    for kind in sorted(CLOSERS.keys() & (e.accepts or e.expected)):
        tokens = [Token(kind, CLOSERS[kind])] + ([] if e.token.type in CLOSERS else [e.token])
        trial = e.interactive_parser.copy()
        try:
            for tok in tokens:
                trial.feed_token(tok)
        except UnexpectedInput:
            continue
        for tok in tokens:
            e.interactive_parser.feed_token(tok)
        return


def _open_brackets(text: str, end: int | None = None) -> list[tuple[str, int, int]]:
    """The brackets still open at offset `end` (strings and comments skipped): (bracket, line, column)."""
    stack: list[tuple[str, int]] = []
    for m in _BRACKET_OR_SKIP.finditer(text, 0, len(text) if end is None else end):
        ch = m.group()
        if ch in PAIRS:
            stack.append((ch, m.start()))
        elif ch in PAIRS.values() and any(PAIRS[b] == ch for b, _ in stack):
            while PAIRS[stack.pop()[0]] != ch:  # a closer also closes what was left open inside it
                pass
    return [(b, *_line_col(text, pos)) for b, pos in stack]


def _line_col(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)


def _token_span(file: str, line: int, col: int, length: int = 1) -> Span:
    return Span(file, line, col, line, col + max(1, length))


def _syntax_error(e: UnexpectedInput, text: str, file: str) -> tuple[Diagnostic, str]:
    """The diagnostic, and its kind: "unclosed" (a bracket open at the end), "final" (recovering from it
    would only cascade: a keyword used as a name, a call split from its `(`) or "token"."""
    diag = _describe_error(e, text, file)
    if diag.message.endswith("is never closed"):
        return diag, "unclosed"
    final = diag.message.endswith(RESERVED) or (diag.help or "").startswith((CALL_HELP, INDEX_HELP))
    return diag, "final" if final else "token"


def _describe_error(e: UnexpectedInput, text: str, file: str) -> Diagnostic:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        span = _token_span(file, e.line, e.column)
        if ch == "'":
            return Diagnostic("strings use double quotes", span, help='write "text" instead of \'text\'')
        if ch == '"':
            return Diagnostic("this string is never closed", span,
                              help='end it with `"` on the same line (doc strings of several lines use `"""`)')
        if ch and not (" " < ch < "\x7f"):
            return _strange_character(ch, span)
        return Diagnostic(f"unexpected character `{ch}`", span,
                          help="names are letters, digits and `_`; comments start with `#`")
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        unclosed = _open_brackets(text)
        if unclosed:
            return _unclosed(unclosed[-1], text, file)
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1
        expected = _expected(e.expected if isinstance(e, UnexpectedEOF) else e.accepts or e.expected)
        return Diagnostic(f"unexpected end of file, expected {expected}", _token_span(file, line, col))
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    span = _token_span(file, tok.line, tok.column, len(tok))
    expected_set = e.accepts or e.expected
    before = text[text.rfind("\n", 0, tok.start_pos) + 1:tok.start_pos]
    if tok.type == "INT" and "STAR" in expected_set and re.search(r"\bx\s*$", before):
        x_col = re.search(r"\bx\s*$", before).start() + 1
        return Diagnostic(f"`x {tok}` is not a repeat", Span(file, tok.line, x_col, tok.line, tok.end_column),
                          help=f"repeat an item with `*`: write `* {tok}`")
    # `cfg [0]`: apart from its list, a `[` opens a group of layers, and what follows makes no sense
    spaced_index = re.search(r"([A-Za-z_][A-Za-z0-9_]*)[ \t]+(\[[^\[\]()]*)?$", before)
    if spaced_index and (tok.type == "LSQB") == (spaced_index.group(2) is None) and (
            spaced_index.group(1) not in KEYWORDS) and ("INDEX" in expected_set or spaced_index.group(2)):
        name = spaced_index.group(1)
        bracket = len(before) - len(spaced_index.group(2)) + 1 if spaced_index.group(2) else tok.column
        return Diagnostic(f"a space between `{name}` and its index `[`", _token_span(file, tok.line, bracket),
                          help=f"{INDEX_HELP}: write `{name}[...]`; apart from a name, `[` starts a group of layers")
    keyword_label = _reserved_label(tok, text, before)
    if keyword_label is not None:
        word, col = keyword_label
        return reserved(word, Span(file, tok.line, col, tok.line, col + len(word)))
    spaced = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s+\(\s*$", before)
    if tok.type == "LPAR" and "CALL" in expected_set:  # `max (8, 3)`: the `(` itself is the surprise
        spaced = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s+$", before)
    if spaced and spaced.group(1) not in KEYWORDS:
        return Diagnostic(f"unexpected {_describe(tok)}, expected {_expected(expected_set)}", span,
                          help=f"{CALL_HELP}: write `{spaced.group(1)}(...)`")
    if tok.type == "COLON" and "EQUAL" in expected_set:
        return Diagnostic("unexpected `:`, expected `=`", span,
                          help="keyword arguments and defaults take `=`, e.g. `stride=2`")
    msg = f"unexpected {_describe(tok)}, expected {_expected(expected_set)}"
    return Diagnostic(msg, span, help=_syntax_help(tok, expected_set, text))


# Characters that pass for ASCII ones (pasted from a paper, a chat, a word processor).
LOOKALIKES = {"а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "і": "i", "ѕ": "s", "ј": "j",
              "ο": "o", "ν": "v", "Α": "A", "Β": "B", "Ε": "E", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
              "Τ": "T", "Χ": "X", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
              "С": "C", "Т": "T", "Х": "X", "“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "–": "-", "—": "-",
              "−": "-", "·": ".", "…": "..."}


def _strange_character(ch: str, span: Span) -> Diagnostic:
    """An invisible, look-alike or other non-ASCII character where the grammar takes none: named by its
    code point, so that the user can find what the editor does not show."""
    named = describe_char(ch)
    if is_hidden(ch) or unicodedata.category(ch) == "Zs":
        return Diagnostic(f"unexpected invisible character {named}", span,
                          help="delete it: it does not show in most editors (it often comes with pasted text)")
    ascii_twin = LOOKALIKES.get(ch) or unicodedata.normalize("NFKC", ch)
    if ascii_twin != ch and ascii_twin.isascii():
        return Diagnostic(f"unexpected character `{ch}` ({named}), which looks like `{ascii_twin}`", span,
                          help=f"retype it as the ASCII `{ascii_twin}`")
    return Diagnostic(f"unexpected character `{ch}` ({named})", span,
                      help="names are ASCII letters, digits and `_`; other text goes in strings or `#` comments")


def reserved(word: str, span: Span) -> Diagnostic:
    return Diagnostic(f"`{word}` {RESERVED}", span, help=f"choose another name, e.g. `{word}_` or `{word}1`")


def _leaves(children) -> list[Token]:
    """The name tokens of a `for`/`let` target, nested tuples flattened."""
    out: list[Token] = []
    for c in children:
        out += _leaves(c) if isinstance(c, tuple) else [c] if isinstance(c, Token) else []
    return out


def _as_names(target: tuple) -> tuple:
    return tuple(_as_names(t) if isinstance(t, tuple) else str(t) for t in target)


def _reserved_label(tok: Token, text: str, before: str) -> tuple[str, int] | None:
    """`output: conv(...)`, `in = ...`: a keyword where a label or a tensor name stands."""
    if tok.type in ("COLON", "EQUAL"):
        m = re.search(r"([A-Za-z_]+)\s*$", before)
        if m and m.group(1) in NAME_RESERVED:
            return m.group(1), m.start(1) + 1
    if str(tok.value) in NAME_RESERVED and re.match(r"\s*[:=](?!=)", text[tok.end_pos:]):
        return str(tok.value), tok.column
    return None


def _unclosed(bracket: tuple[str, int, int], text: str, file: str) -> Diagnostic:
    """The end of the file came inside a bracket: point at the bracket, and at a definition swallowed by it."""
    opener, line, col = bracket
    closer = PAIRS[opener]
    help = f"add the missing `{closer}`"
    if opener == "{":
        for n, src in enumerate(text.splitlines()[line:], start=line + 1):
            keyword = re.match(r"\s*(network|block)\s+[A-Za-z_]", src)
            if keyword:
                help = f"add `}}` before `{keyword.group(1)}` on line {n}: definitions cannot nest"
                break
    return Diagnostic(f"`{opener}` is never closed", _token_span(file, line, col), help=help)


def _describe(tok: Token) -> str:
    if tok.type in ("NAME", "INT", "FLOAT", "SHAPE"):
        return f"`{tok.value}`"
    if tok.type == "STRING":
        return "string"
    return f"`{tok.value}`"


def _expected(names) -> str:
    operators = {"ADD_OP", "MUL_OP", "COMPARE", "AND", "OR"}
    pretty = sorted({"an operator" if n in operators else TOKEN_NAMES.get(n, f"`{n.lower()}`")
                     for n in names if n not in ("COMMENT", "WS")}, key=lambda p: (p == "an operator", p))
    if not pretty:
        return "something else"
    if len(pretty) > 6:
        return "a statement or expression"
    return pretty[0] if len(pretty) == 1 else ", ".join(pretty[:-1]) + " or " + pretty[-1]


def _syntax_help(tok: Token, expected, text: str) -> str | None:
    closers = [CLOSERS[k] for k in sorted(CLOSERS.keys() & expected)]
    unclosed = _open_brackets(text, tok.start_pos)
    if closers and unclosed and PAIRS[unclosed[-1][0]] in closers:
        opener, line, _ = unclosed[-1]
        if tok.type in CLOSERS:
            return f"close the `{opener}` on line {line} with `{PAIRS[opener]}`"
        if line < tok.line:
            return f"the `{opener}` on line {line} is not closed: add `{PAIRS[opener]}`"
    if tok.type == "INT" and "STAR" in expected:
        return "repeat an item with `*`, e.g. `bottleneck(64) * 3`"
    if tok.type == "INT" and "SHAPE" in expected:
        return "write the input shape as `3x224x224` or `(channels, height, width)`"
    if tok.type in ("INT", "FLOAT", "STRING") and "RESIDUAL" in expected:
        return "a layer is expected here; bind a value with `let`, e.g. `let width = 64`"
    if tok.type == "COLON":
        return "name a layer with `name: op(...)`; a name cannot be an expression"
    if tok.type == "EQUAL":
        return "compare with `==`; `name=value` arguments go directly in an operator or block call"
    if "RPAR" in expected:
        return "arguments are separated by `,` and the list ends with `)`"
    if "RBRACE" in expected or "RSQB" in expected:
        return "statements are operators like `conv(64, 3)`, blocks, `let`, `if`, `for` and groups"
    return None


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _cut(digits: str) -> str:
    return digits if len(digits) <= 24 else f"{digits[:12]}…{digits[-6:]} ({len(digits):,} digits)"


def _integer(digits: str, span: Span) -> int:
    """An integer literal's value; one of more than MAX_DIGITS digits is refused before it is converted
    (Python refuses past 4,300 digits, and every size in a spec is below 2^63)."""
    if len(digits.lstrip("0")) > MAX_DIGITS:
        raise Failure(Diagnostic(f"the integer `{_cut(digits)}` is too large", span,
                                 help="sizes and counts in a spec are far below 2^63 (19 digits)"))
    return int(digits)


ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}


def _unquote(tok: Token, file: str) -> str:
    """The text of a string token. \"\"\"Doc strings\"\"\" are raw; "strings" know \\n \\t \\\\ \\" only."""
    s = str(tok)
    if s.startswith('"""'):
        return s[3:-3]
    parts = re.split(r"(\\.)", s[1:-1])
    for i in range(1, len(parts), 2):
        if parts[i][1] not in ESCAPES:
            raise Failure(Diagnostic(f"unknown escape `{parts[i]}` in a string", _tok_span(file, tok),
                                     help='strings know `\\n`, `\\t`, `\\\\` and `\\"`; doc strings in """ are raw'))
        parts[i] = ESCAPES[parts[i][1]]
    return "".join(parts)


@v_args(meta=True)
class _ToAst(Transformer):
    """One method per grammar alias; each returns an AST node with its span."""

    def __init__(self, file: str, line: int = 0, col: int = 0):
        super().__init__()
        self.file = file
        self.line, self.col = line, col  # where a label template's `{expr}` starts: its spans shift by this

    def _s(self, meta) -> Span:
        if not self.line:
            return _span(self.file, meta)
        return Span(self.file, self.line, self.col + meta.column, self.line, self.col + meta.end_column)

    def _t(self, tok: Token) -> Span:
        if not self.line:
            return _tok_span(self.file, tok)
        return Span(self.file, self.line, self.col + tok.column, self.line, self.col + tok.end_column)

    # definitions
    def start(self, meta, children):
        doc = None
        if children and isinstance(children[0], ast.Doc):
            doc = children.pop(0).text
        imports = tuple(c for c in children if isinstance(c, ast.Import))
        defs = tuple(c for c in children if isinstance(c, ast.Definition))
        return ast.Module(self.file, doc, imports, defs)

    def import_stmt(self, meta, children):
        path = children[0]
        return ast.Import(_unquote(path, self.file), self._t(path))  # errors point at the path

    def _definition(self, kind, meta, children):
        name, params, body = children
        doc = body[0].text if body and isinstance(body[0], ast.Doc) else None
        return ast.Definition(kind, str(name), params or (), body, doc, self._s(meta), self._t(name))

    def network(self, meta, children):
        return self._definition("network", meta, children)

    def network_alias(self, meta, children):
        name, base, _, args, doc = children
        call = ast.Call(str(base), args, self._s(meta), self._t(base))
        doc = None if doc is None else inspect.cleandoc(_unquote(doc, self.file))
        return ast.Definition("network", str(name), (), (), doc, self._s(meta), self._t(name), call)

    def block(self, meta, children):
        return self._definition("block", meta, children)

    def params(self, meta, children):
        return tuple(c for c in children if c is not None)

    def param(self, meta, children):
        name, default = children
        return ast.Param(self._name(name), default, self._s(meta))

    def body(self, meta, children):
        return tuple(children)

    # statements
    def _name(self, tok: Token) -> str:
        """A name the spec defines (label, tensor, value): keywords that the lexer let through as names
        (`in` where no keyword fits) are refused here."""
        if str(tok) in NAME_RESERVED:
            raise Failure(reserved(str(tok), self._t(tok)))
        return str(tok)

    def labeled(self, meta, children):
        label, item = children
        return ast.Labeled(self._name(label), item, self._s(meta), self._t(label))

    def labeled_template(self, meta, children):
        tok, item = children
        return ast.Labeled(self._template(tok), item, self._s(meta), self._t(tok))

    def _template(self, tok: Token) -> ast.Template:
        """`"denselayer{i + 1}"`: literal text and `{expression}`s, each parsed as an expression."""
        span = self._t(tok)
        text = str(tok)
        if text.startswith('"""') or "\\" in text or "\n" in text:
            raise Failure(Diagnostic("a computed label is a one-line string without escapes", span,
                                     help='e.g. `"denselayer{i + 1}": dense_layer(32)`'))
        body, parts, pos = text[1:-1], [], 0
        for m in re.finditer(r"\{([^{}]*)\}|[{}]", body):
            col = span.col + 1 + m.start()
            if m.group(1) is None or not m.group(1).strip():
                what = "an empty `{}`" if m.group(1) is not None else f"an unmatched `{m.group()}`"
                raise Failure(Diagnostic(f"{what} in a computed label", Span(span.file, span.line, col, span.line,
                                                                             col + len(m.group())),
                                         help='put an expression in braces: `"layer{i + 1}"`'))
            if m.start() > pos:
                parts.append(body[pos:m.start()])
            parts.append(self._template_expr(m.group(1), span.line, col))
            pos = m.end()
        if pos < len(body):
            parts.append(body[pos:])
        return ast.Template(tuple(parts), span)

    def _template_expr(self, source: str, line: int, col: int):
        try:
            tree = _parser().parse(source, start="expr")
        except UnexpectedInput as e:
            at = col + getattr(e, "column", 1)
            raise Failure(Diagnostic("this is not an expression", Span(self.file, line, at, line, at + 1),
                                     help='a computed label holds expressions in braces: `"layer{i + 1}"`')) from None
        return _ToAst(self.file, line, col).transform(tree)

    def split_bind(self, meta, children):
        *names, call = children
        return ast.Split(tuple((self._name(n), self._t(n)) for n in names if n is not None), call, self._s(meta))

    def inline_stmt(self, meta, children):
        call = children[0]
        return ast.Call(call.name, call.args, call.span, call.name_span, inline=True)

    def target(self, meta, children):
        tokens = _leaves(children)
        for i, tok in enumerate(tokens):
            self._name(tok)
            if str(tok) != "_" and str(tok) in map(str, tokens[:i]):  # `_` discards, any number of times
                raise Failure(Diagnostic(f"`{tok}` is bound twice in one unpacking", self._t(tok),
                                         help="give each unpacked value its own name"))
        if len(children) == 1:  # `x`, or `(a, b)` in parentheses: the same as `a, b`
            return str(children[0]) if isinstance(children[0], Token) else _as_names(children[0])
        return _as_names(tuple(children))

    def target_tuple(self, meta, children):
        return tuple(c for c in children if c is not None)  # tokens and tuples: `target` names them

    def bind(self, meta, children):
        name, item = children
        return ast.Bind(self._name(name), item, self._s(meta), self._t(name))

    def let(self, meta, children):
        return ast.Let(children[0], children[1], self._s(meta))

    def if_stmt(self, meta, children):
        cond, then, orelse = children
        if isinstance(orelse, ast.If):
            orelse = (orelse,)
        return ast.If(cond, then, orelse or (), self._s(meta))

    def for_stmt(self, meta, children):
        var, iterable, body = children
        return ast.For(var, iterable, body, self._s(meta))

    def input_stmt(self, meta, children):
        return ast.Input(children[0], self._s(meta))

    def shape_literal(self, meta, children):
        tok = children[0]
        span = self._t(tok)
        return tuple(ast.Const(_integer(d, span), span) for d in re.split("[x×]", str(tok)))  # 3x224x224, 784

    def shape_exprs(self, meta, children):
        return tuple(children)

    def output_stmt(self, meta, children):
        *names, training = children
        return ast.Output(tuple((str(t), self._t(t)) for t in names), self._s(meta), training or ())

    def output_training(self, meta, children):
        word, *names = children
        if str(word) != "training":
            raise Failure(Diagnostic(f"unknown output qualifier `{word}`", self._t(word),
                                     help="`output main, training: aux1, aux2` marks outputs returned in training "
                                          "only"))
        return tuple((str(t), self._t(t)) for t in names)

    def from_stmt(self, meta, children):
        return ast.From(str(children[0]), self._t(children[0]))  # errors point at the name

    def doc(self, meta, children):
        return ast.Doc(inspect.cleandoc(_unquote(children[0], self.file)), self._s(meta))

    def assert_stmt(self, meta, children):
        cond, message = children
        return ast.Assert(cond, None if message is None else _unquote(message, self.file), self._s(meta))

    # items
    def repeat(self, meta, children):
        return ast.Repeat(children[0], children[1], self._s(meta))

    def bare_call(self, meta, children):
        span = self._s(meta)
        return ast.Call(str(children[0]), (), span, span)

    def call(self, meta, children):
        name, _, args = children
        return ast.Call(str(name), args, self._s(meta), self._t(name))

    def args(self, meta, children):
        return tuple(c if isinstance(c, ast.Arg) else ast.Arg(None, c, c.span) for c in children if c is not None)

    def kwarg(self, meta, children):
        return ast.Arg(str(children[0]), children[1], self._s(meta))

    def branches(self, meta, children):
        name, body = children
        return ast.Branches(str(name), body, self._s(meta), self._t(name))

    def group(self, meta, children):
        return ast.Group(children[0], self._s(meta))

    def residual(self, meta, children):
        when, body, shortcut = children
        if shortcut is None:
            return ast.Residual(body, None, None, self._s(meta), None, when)
        cond, sbody, sspan = shortcut
        return ast.Residual(body, sbody, cond, self._s(meta), sspan, when)

    def shortcut(self, meta, children):
        cond, body = children
        return cond, body, self._s(meta)

    # expressions
    def _chain(self, meta, children, op=None):
        result = children[0]
        i = 1
        while i < len(children):
            if op is None:
                sym, right = str(children[i]), children[i + 1]
                i += 2
            else:
                sym, right = op, children[i]
                i += 1
            span = Span(self.file, result.span.line, result.span.col, right.span.end_line, right.span.end_col)
            result = ast.BinOp(sym, result, right, span)
        return result

    def or_expr(self, meta, children):
        return self._chain(meta, children, "or")

    def and_expr(self, meta, children):
        return self._chain(meta, children, "and")

    def comparison(self, meta, children):
        return self._chain(meta, children)

    def sum(self, meta, children):
        return self._chain(meta, children)

    def product(self, meta, children):
        return self._chain(meta, children)

    def not_(self, meta, children):
        return ast.Not(children[0], self._s(meta))

    def neg(self, meta, children):
        return ast.Neg(children[0], self._s(meta))

    def int_(self, meta, children):
        span = self._s(meta)
        return ast.Const(_integer(str(children[0]), span), span)

    def float_(self, meta, children):
        span = self._s(meta)
        value = float(children[0])
        if not math.isfinite(value) or len(str(children[0])) > 4 * MAX_DIGITS:
            raise Failure(Diagnostic(f"the number `{_cut(str(children[0]))}` is too large", span,
                                     help="numbers in a spec are sizes and rates: far below 1e18"))
        return ast.Const(value, span)

    def string(self, meta, children):
        return ast.Const(_unquote(children[0], self.file), self._s(meta))

    def true(self, meta, children):
        return ast.Const(True, self._s(meta))

    def false(self, meta, children):
        return ast.Const(False, self._s(meta))

    def same(self, meta, children):
        return ast.Const(Symbol("same"), self._s(meta))

    def global_(self, meta, children):
        return ast.Const(Symbol("global"), self._s(meta))

    def var(self, meta, children):
        return ast.Var(str(children[0]), self._s(meta))

    def in_attr(self, meta, children):
        return ast.InAttr(str(children[1]), self._s(meta))

    def in_tensor(self, meta, children):
        return ast.InTensor(self._s(meta))

    def index(self, meta, children):
        target, _, index = children
        return ast.Index(target, index, self._s(meta))

    def slice(self, meta, children):
        target, _, start, stop = children
        return ast.Slice(target, start, stop, self._s(meta))

    def comprehension(self, meta, children):
        element, target, iterable, cond = children
        return ast.Comprehension(element, target, iterable, cond, self._s(meta))

    def func(self, meta, children):
        args = [c for c in children[2:] if c is not None]
        kwargs = tuple(a for a in args if isinstance(a, tuple))
        positional = tuple(a for a in args if not isinstance(a, tuple))
        late = [a for a in args[len(positional):] if not isinstance(a, tuple)]
        if late:
            raise Failure(Diagnostic("a positional argument after a keyword argument", late[0].span,
                                     help="give the positional arguments first: `enumerate(xs, start=1)`"))
        return ast.Func(str(children[0]), positional, self._s(meta), kwargs)

    def func_kwarg(self, meta, children):
        return (str(children[0]), children[1], self._s(meta))

    def tuple_(self, meta, children):
        return ast.Seq(tuple(c for c in children if c is not None), self._s(meta))

    def list_(self, meta, children):
        return ast.Seq(tuple(c for c in children if c is not None), self._s(meta))
