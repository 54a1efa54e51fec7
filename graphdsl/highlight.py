"""Syntax highlighting of .cnn text: a Pygments lexer (`pygmentize -l cnn spec.cnn`, registered through the
`pygments.lexers` entry point) and the colouring of the source lines quoted in diagnostics.

Colour never lets a spec's text reach the terminal raw: `colorize` lexes text that `graphdsl.text` has
already escaped (every control character shown as `\\x1b`, ...), and the escape sequences it adds are
Pygments' own.
"""

from __future__ import annotations

import os

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, Punctuation, String, Whitespace

from .evaluate import BUILTINS
from .ops import REGISTRY

KEYWORDS = ("import", "input", "output", "let", "if", "else", "for", "in", "from", "assert", "residual", "shortcut",
            "inline", "training", "and", "or", "not")
CONSTANTS = ("true", "false", "same", "global")
_IDENT_END = r"(?![A-Za-z0-9_])"


class CnnLexer(RegexLexer):
    """The .cnn language of graphdsl: networks, blocks, layers and their arguments."""

    name = "cnn"
    aliases = ["cnn", "graphdsl"]
    filenames = ["*.cnn"]
    mimetypes = ["text/x-cnn"]

    tokens = {
        "root": [
            (r"[^\S\n]+", Whitespace),
            (r"\n", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'"""[\s\S]*?"""', String.Doc),
            (r'"(?:[^"\\\n]|\\.)*"(?=\s*:)', String.Symbol),  # a computed label: "layer{i}":
            (r'"(?:[^"\\\n]|\\.)*"', String.Double),
            (r"(network|block)([^\S\n]+)([A-Za-z_][A-Za-z0-9_]*)(?=\s*[({=])",
             bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"(training)(\s*)(:)", bygroups(Keyword, Whitespace, Punctuation)),
            (r"(in)(\.)([A-Za-z_][A-Za-z0-9_]*)", bygroups(Keyword, Punctuation, Name.Attribute)),
            (r"([A-Za-z_][A-Za-z0-9_]*)([^\S\n]*)(:)(?![:\]])", bygroups(Name.Label, Whitespace, Punctuation)),
            (words(("network", "block"), suffix=_IDENT_END), Keyword.Declaration),
            (words(CONSTANTS, suffix=_IDENT_END), Keyword.Constant),
            (words(KEYWORDS, suffix=_IDENT_END), Keyword),
            (words(sorted(REGISTRY), suffix=_IDENT_END), Name.Builtin),
            (words(sorted(BUILTINS), suffix=r"(?=\()"), Name.Function.Magic),
            (r"[A-Za-z_][A-Za-z0-9_]*", Name),
            (r"\d+(?:[x×]\d+)+(?![A-Za-z0-9_.])", Number.Other),  # a shape: 3x224x224
            (r"(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+", Number.Float),
            (r"\d+", Number.Integer),
            (r"//|==|!=|<=|>=|[-+*/%<>=]", Operator),
            (r"[()\[\]{},;:.]", Punctuation),
            (r"[^\s]", Error),
        ],
    }


# ANSI colours of token types (16-colour codes, readable on dark and light terminals).
_COLOURS = {Keyword.Declaration: "1;35", Keyword.Constant: "36", Keyword: "35", Name.Builtin: "34",
            Name.Function.Magic: "34", Name.Class: "1;33", Name.Label: "33", String.Doc: "32", String: "32",
            Number: "36", Comment: "90", Error: "31"}


def _colour_of(token) -> str | None:
    while token is not None:
        if token in _COLOURS:
            return _COLOURS[token]
        token = token.parent
    return None


def colorize(display_text: str) -> str:
    """ANSI-coloured `display_text`: text already escaped for the terminal (`graphdsl.text.displayed`),
    so that each token's characters are printable; unknown text stays as it is."""
    out = []
    for _, token, value in CnnLexer().get_tokens_unprocessed(display_text):
        code = _colour_of(token)
        out.append(f"\x1b[{code}m{value}\x1b[0m" if code and value.strip() else value)
    return "".join(out)


def use_color(stream) -> bool:
    """Whether to colour what goes to `stream`: FORCE_COLOR set (non-empty) forces it; otherwise a
    terminal, with NO_COLOR unset and TERM not `dumb`."""
    if os.environ.get("FORCE_COLOR"):
        return True
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


__all__ = ["CnnLexer", "colorize", "use_color"]
