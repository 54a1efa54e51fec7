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
SHOW_CHARS = 200


def show(value) -> str:
    """A value as the spec would write it; long lists and strings elided (`(0, 1, 2, … 99,997 more)`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # as the spec would write it, escapes included
        more = f"… {len(value) - SHOW_CHARS:,} more characters" if len(value) > SHOW_CHARS else ""
        value = value[:SHOW_CHARS] if more else value
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}{more}"'
    if isinstance(value, tuple):
        if len(value) > SHOW_ITEMS:
            return "(" + ", ".join(show(v) for v in value[:8]) + f", … {len(value) - 8:,} more)"
        return "(" + ", ".join(show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
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
