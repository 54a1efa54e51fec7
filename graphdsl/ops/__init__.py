"""The operator registry: every op by name. Adding an op is one class plus its tests."""

from __future__ import annotations

from . import activation, conv, linear, merge, norm, pool, shape
from .base import Arg, ArgError, Op, OpError, Saved, Shape, Window, fmt_shape, numel

REGISTRY: dict[str, Op] = {}


def register(op: Op | type[Op]) -> Op:
    """Add an operator (an `Op` subclass or instance) under its name; later specs can use it."""
    instance = op() if isinstance(op, type) else op
    REGISTRY[instance.name] = instance
    return instance


for _module in (conv, pool, norm, activation, linear, shape, merge):
    for _obj in list(vars(_module).values()):
        defined_here = isinstance(_obj, type) and _obj.__module__ == _module.__name__
        if defined_here and issubclass(_obj, Op) and "name" in vars(_obj):
            register(_obj)

__all__ = ["REGISTRY", "register", "Arg", "ArgError", "Op", "OpError", "Saved", "Shape", "Window", "fmt_shape", "numel"]
