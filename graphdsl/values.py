"""Values of the language: int, float, bool, str, tuples of values, and a few symbols."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Symbol:
    """A keyword value such as `same` (padding) or `global` (pooling window)."""

    name: str

    def __str__(self) -> str:
        return self.name


SHOW_ITEMS = 32  # a longer list is shown by its first items and a count: messages stay short
SHOW_CHARS = 200  # of one string
SHOW_TOTAL = 400  # of the whole value, nested lists included: lists made by sharing stay short too


def show(value, limit: int = SHOW_TOTAL) -> str:
    """A value as the spec would write it, in at most about `limit` characters: long lists and strings
    elided (`(0, 1, 2, … 99,997 more)`), through nesting too."""
    out: list[str] = []
    _show(value, out, [limit], 0)
    return "".join(out)


SHOW_DEPTH = 12


def _show(value, out: list[str], left: list[int], depth: int) -> None:
    """Append `value` to `out`, spending `left[0]` characters; past it, or deeper than SHOW_DEPTH, elide."""
    if isinstance(value, tuple):
        if left[0] <= 0 or depth >= SHOW_DEPTH:
            out.append(f"(… {len(value):,} values)" if len(value) > 1 else "(…)")
            return
        out.append("(")
        left[0] -= 1
        shown = len(value) if len(value) <= SHOW_ITEMS else 8
        for i, v in enumerate(value[:shown]):
            if i:
                out.append(", ")
                left[0] -= 2
            if left[0] <= 0:
                out.append(f"… {len(value) - i:,} more")
                break
            _show(v, out, left, depth + 1)
        else:
            if shown < len(value):
                out.append(f", … {len(value) - shown:,} more")
            elif len(value) == 1:
                out.append(",")
        out.append(")")
        return
    text = _scalar(value)
    out.append(text)
    left[0] -= len(text)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # as the spec would write it, escapes included
        more = f"… {len(value) - SHOW_CHARS:,} more characters" if len(value) > SHOW_CHARS else ""
        value = value[:SHOW_CHARS] if more else value
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}{more}"'
    if isinstance(value, float):
        return repr(value)
    return str(value)


def type_name(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, tuple):
        return "list"
    return "symbol"
