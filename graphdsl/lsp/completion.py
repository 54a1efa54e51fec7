"""What may be typed at a position: operator names, block names, keywords and named tensors; after `conv(`
the operator's arguments with their defaults, after `bottleneck(` the block's parameters.

While one types, the text rarely parses: the context comes from the text before the cursor (which call's
parentheses are open, what the word so far is), and the names from the last analysis that parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import ast
from ..ops import REGISTRY
from ..syntax import KEYWORDS
from ..values import show
from .analysis import Analysis
from .navigation import signature, tensor_definitions

# Strings (doc strings first), comments, brackets: enough of the lexer to know which brackets are open.
_SKIP_OR_BRACKET = re.compile(r'"""[\s\S]*?(?:"""|\Z)|"(?:[^"\\\n]|\\.)*(?:"|$)|#[^\n]*|[()\[\]{}]', re.M)
_SKIP_OR_COMMA = re.compile(r'"(?:[^"\\\n]|\\.)*"?|[()\[\]{},]')
_NAMED = re.compile(r"\s*[A-Za-z_]\w*\s*=(?!=)")
_CALL_NAME = re.compile(r"([A-Za-z_]\w*)\Z")
_WORD = re.compile(r"[A-Za-z_]\w*\Z")
_FROM = re.compile(r"\bfrom\s+[A-Za-z_]?\w*\Z")
_DEFINITION = re.compile(r"^(network|block)\s+([A-Za-z_]\w*)", re.M)


@dataclass(frozen=True)
class Item:
    label: str
    kind: str  # "operator", "block", "keyword", "tensor", "argument", "parameter"
    detail: str = ""
    doc: str = ""
    insert: str | None = None  # what to insert, where it differs from the label (`stride=`)


def _open_call(before: str) -> tuple[str | None, str, bool]:
    """(name of the call whose `(` is open at the end of `before`, the text since that `(`, whether the end
    of `before` lies inside a string or comment)."""
    stack: list[int] = []
    inside = False
    for m in _SKIP_OR_BRACKET.finditer(before):
        tok = m.group()
        if tok in "([{":
            stack.append(m.start())
        elif tok in ")]}":
            if stack:
                stack.pop()
        elif m.end() == len(before):
            inside = tok.startswith("#") or not _closed(tok)
    if not stack or before[stack[-1]] != "(":
        return None, "", inside
    start = stack[-1]
    name = _CALL_NAME.search(before[:start])
    return (name.group(1) if name else None), before[start + 1:], inside


def _closed(string: str) -> bool:
    quote = '"""' if string.startswith('"""') else '"'
    return len(string) >= 2 * len(quote) and string.endswith(quote)


def _tensors(analysis: Analysis | None, line: int) -> list[str]:
    """Named tensors of the definition around `line` (from the last analysis that parsed)."""
    module = analysis.module if analysis is not None else None
    if module is None:
        return []
    around = [d for d in module.definitions if d.span.line <= line]
    if not around:
        return []
    definition = around[-1]
    names = dict.fromkeys(name for name, _, _ in tensor_definitions(definition.body))
    return [*names, "in"]


def complete(text: str, line: int, col: int, analysis: Analysis | None) -> list[Item]:
    """Completions at (line, col) (1-based, code points) of `text`; `analysis` is the document's latest
    analysis that parsed (for block names, their parameters and tensor names), or None."""
    lines = text.split("\n")
    row = min(max(line, 1), len(lines)) - 1
    before = "\n".join(lines[:row] + [lines[row][: max(col, 1) - 1]])
    call, args, inside = _open_call(before)
    if inside:
        return []
    program = analysis.program if analysis is not None else None
    blocks = program.blocks if program is not None else {}
    tensors = _tensors(analysis, line)
    if _FROM.search(before):
        return [Item(t, "tensor") for t in tensors]
    if call is not None:
        *done, segment = _top_level_args(args)
        if "=" not in segment:  # an argument's name may come here
            given = {a.split("=", 1)[0].strip() for a in done if _NAMED.match(a)}
            positional = sum(1 for a in done if not _NAMED.match(a))
            found = _arguments(call, blocks, given, positional)
            if call in REGISTRY and REGISTRY[call].merges:
                found += [Item(t, "tensor") for t in tensors]
            return found + [Item(k, "keyword") for k in ("true", "false", "same", "global")]
        return [Item(k, "keyword") for k in ("true", "false", "same", "global")]
    items = [Item(name, "operator", _op_signature(name), REGISTRY[name].doc) for name in sorted(REGISTRY)]
    items += [Item(name, "block", signature(b), b.doc or "") for name, b in sorted(blocks.items())]
    items += [Item(k, "keyword") for k in KEYWORDS]
    items += [Item(t, "tensor") for t in tensors if t != "in"]
    return items


def _op_signature(name: str) -> str:
    parts = [a.name if a.required else f"{a.name}={show(a.default)}" for a in REGISTRY[name].args]
    return f"{name}({', '.join(parts)})"


def _top_level_args(args: str) -> list[str]:
    """The arguments typed so far in a call's parentheses, split at the commas outside brackets and strings
    (`8, (3, 3), st` -> `8`, `(3, 3)`, `st`)."""
    parts, depth, start = [], 0, 0
    for m in _SKIP_OR_COMMA.finditer(args):
        tok = m.group()
        if tok in "([{":
            depth += 1
        elif tok in ")]}":
            depth -= 1
        elif tok == "," and depth == 0:
            parts.append(args[start:m.start()])
            start = m.end()
    return [*parts, args[start:]]


def _arguments(call: str, blocks: dict[str, ast.Definition], given: set[str], positional: int = 0) -> list[Item]:
    """The arguments of operator or block `call` not given yet (by name, or by position: the first
    `positional`), in order, with their defaults."""
    if call in REGISTRY:
        op = REGISTRY[call]
        return [Item(f"{a.name}=", "argument", "required" if a.required else f"default {show(a.default)}", a.doc,
                     insert=f"{a.name}=") for a in op.args[positional:] if a.name not in given]
    block = blocks.get(call)
    if block is None:
        return []
    return [Item(f"{p.name}=", "parameter", "required" if p.default is None else
                 f"default {signature_default(p)}", block.doc or "", insert=f"{p.name}=")
            for p in block.params[positional:] if p.name not in given]


def signature_default(param: ast.Param) -> str:
    return signature(ast.Definition("block", "_", (param,), (), None, param.span, param.span)).split(" = ", 1)[1][:-1]
