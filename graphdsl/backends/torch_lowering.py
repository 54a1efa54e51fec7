"""One operator of the registry lowered at symbolic arguments, for graphdsl.backends.torch_layout.

`Lowered(op, attrs, tensor)` runs the op's shape rule and its PyTorch forms (`Op.torch_module`,
`Op.torch_call`) on arguments that are Syms (graphdsl.backends.torch_values): at SymInts that print
as their code, twice, with other numbers each time, and the text must come out the same; a lowering
that coerces its numbers (`int(a["stride"])`) gets plain marker numbers put back as code, also twice.
The output size is a Sym where the shape rule computes it from the arguments (`conv`: `out`), a
constant where it does not depend on them, and Unsupported otherwise.
"""

from __future__ import annotations

import ast as pyast
import copy
import re
from dataclasses import dataclass

from ..ops import ArgError, OpError
from ..ops.base import ChannelsLast, is_channels_last
from .torch_values import Sym, Unsupported, fold, sample

SCALES = (3, 5)  # the two samples of every symbolic number a lowering sees: same text, or not translated
FUNCTION_NAMES = frozenset({"int", "float", "abs", "min", "max", "len", "sum", "round", "range", "make_divisible",
                            "math", "enumerate", "zip"})


@dataclass
class Unknown:
    """A spatial size that depends on the instance; `real` is one instance's, for the samples."""

    real: int


@dataclass
class Tensor:
    var: str  # the forward variable holding it
    ch: object  # channels (or features): a constant or a Sym
    dims: tuple  # spatial sizes: ints, or Unknown
    fresh: bool  # nothing else reads it: the next op may overwrite it (the IR's `writable`)
    fresh_if: object = None  # a condition (Sym) where the freshness depends on the class's arguments
    last: bool = False  # channels-last (N x H x W x C, between ConvNeXt's permutes): `ch` is the last dimension



class Lowered:
    """One op lowered at symbolic arguments: its module form, its call form, its output tensor."""

    def __init__(self, op, attrs: dict, t: Tensor):
        self.op, self.attrs, self.t = op, attrs, t
        shapes = [self.output(k) for k in (1, *SCALES)]
        out0 = shapes[0]
        if any(len(s) != len(out0) or is_channels_last(s) != is_channels_last(out0) for s in shapes):
            raise Unsupported("an output rank that depends on a number")
        last = is_channels_last(out0)
        if last:  # channels-last: the channels first here, as everywhere in this module
            shapes = [(s[-1], *s[:-1]) for s in shapes]
            out0 = shapes[0]
        ch = out0[0]
        if all(isinstance(s[0], type(ch)) for s in shapes) and hasattr(ch, "tree") and len(
                {pyast.dump(s[0].tree) for s in shapes}) == 1:
            channels = Sym(fold(copy.deepcopy(ch.tree)), int.__index__(ch) if isinstance(ch, int) else ch)
            if isinstance(channels.tree, pyast.Constant):
                channels = channels.tree.value
        elif all(type(s[0]) in (int, float) and s[0] == ch for s in shapes):
            channels = ch
        else:
            raise Unsupported(f"the output size of `{op.name}`")
        dims = []
        for k in range(1, len(out0)):
            values = [s[k] for s in shapes]
            if all(type(v) is int and v == values[0] for v in values):
                dims.append(values[0])
            else:
                dims.append(Unknown(int.__index__(values[0]) if isinstance(values[0], int) else 1))
        fresh = t.fresh if op.aliases_input else op.overwritable
        self.out = Tensor(t.var, channels, tuple(dims), fresh, t.fresh_if if op.aliases_input else None, last)
        self.has_state = bool(self.params_of())
        self.module = self.text(lambda a, ins: op.torch_module(a, ins), None)
        # a bare parameter (`scale`) is the call's first argument (`self.layer_scale * x`), made by torch_parameter
        args = ["__p__", "__x__"] if op.bare_parameter else ["__x__"]
        self.call = self.text(lambda a, ins: op.torch_call(a, args, ins), self.rename)
        self.parameter = self.text(lambda a, ins: op.torch_parameter(a, ins), None) if op.bare_parameter else None
        self.reads = set() if self.call is None else {  # what the call form reads in forward (stored if used)
            n.attr for n in pyast.walk(pyast.parse(self.call, mode="eval")) if isinstance(n, pyast.Attribute)
            and isinstance(n.value, pyast.Name) and n.value.id == "self"}

    def rename(self, tree):
        class Rename(pyast.NodeTransformer):
            def visit_Name(inner, node):  # noqa: N805 - the transformer's self is the outer one's
                if node.id in FUNCTION_NAMES or node.id == "self":
                    return node
                return pyast.Attribute(pyast.Name("self", pyast.Load()), node.id, pyast.Load())

        return Rename().visit(copy.deepcopy(tree))

    def inputs(self, scale: int, rename=None):
        t = self.t
        dims = tuple(d if isinstance(d, int) else d.real * scale for d in t.dims)
        ch = sample(t.ch, scale, rename)
        return [ChannelsLast((*dims, ch)) if t.last else (ch, *dims)]

    def output(self, scale: int):
        a = {k: sample(v, scale) for k, v in self.attrs.items()}
        try:
            return self.op.output_shape(a, self.inputs(scale))
        except (OpError, ArgError, TypeError, ValueError, ZeroDivisionError, Unsupported) as e:
            raise Unsupported(f"the shape rule of `{self.op.name}`") from e

    def params_of(self) -> dict:
        a = {k: sample(v, 1) for k, v in self.attrs.items()}
        ins = self.inputs(1)
        try:
            out = self.op.output_shape(a, ins)
            return {**self.op.parameters(a, ins, out), **self.op.buffers(a, ins, out)}
        except Exception as e:  # noqa: BLE001 - any failure: not translated
            raise Unsupported("parameters") from e

    def text(self, form, rename) -> str | None:
        texts = set()
        try:
            for scale in SCALES:
                a = {k: sample(v, scale, rename) for k, v in self.attrs.items()}
                texts.add(form(a, self.inputs(scale, rename)))
        except Unsupported:  # the lowering coerces (`int(a["stride"])`): plain numbers that stand for the code
            texts = {self.text_by_markers(form, rename, run) for run in range(2)}
        except Exception as e:  # noqa: BLE001 - a lowering that cannot take a symbolic number
            raise Unsupported(f"the lowering of `{self.op.name}`") from e
        if len(texts) != 1:
            raise Unsupported(f"the lowering of `{self.op.name}` depends on a number")
        text = texts.pop()
        if text is None:
            return None
        return pyast.unparse(fold(pyast.parse(text, mode="eval")))

    def text_by_markers(self, form, rename, run: int) -> str | None:
        """The lowering's text at plain numbers standing for each symbolic one (large, distinct, other in
        each run), each put back as its code; a number computed from them stays, and the runs differ."""
        codes: dict[int, str] = {}

        def marker(v):
            if isinstance(v, tuple):
                return tuple(marker(x) for x in v)
            if not isinstance(v, Sym):
                return v
            if not isinstance(v.value, int) or isinstance(v.value, bool):
                raise Unsupported("a symbolic number the lowering coerces")
            tree = rename(v.tree) if rename else v.tree
            number = 7_000_003 + 1_000_033 * (len(codes) + 1) + 97 * run
            codes[number] = "(" + pyast.unparse(tree) + ")"
            return number

        a = {k: marker(v) for k, v in self.attrs.items()}
        t = self.t
        dims = tuple(d if isinstance(d, int) else d.real * (3 + 2 * run) for d in t.dims)
        ins = [ChannelsLast((*dims, marker(t.ch))) if t.last else (marker(t.ch), *dims)]
        try:
            text = form(a, ins)
        except Exception as e:  # noqa: BLE001 - not translated
            raise Unsupported(f"the lowering of `{self.op.name}`") from e
        if text is None:
            return None
        for number, code_ in codes.items():
            text = re.sub(rf"(?<![\w.]){number}(?![\w.])", code_, text)
        return text

    def call_text(self, var: str) -> str:
        return self.call.replace("__x__", var)
