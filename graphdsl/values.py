"""Values of the language: int, float, bool, str, tuples of values, and a few symbols."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Symbol:
    """A keyword value such as `same` (padding) or `global` (pooling window)."""

    name: str

    def __str__(self) -> str:
        return self.name


def show(value) -> str:
    """A value as the spec would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # as the spec would write it, escapes included
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{escaped}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(show(v) for v in value) + ")"
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
