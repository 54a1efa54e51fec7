"""Merging several tensors: channel concatenation and elementwise addition."""

from __future__ import annotations

from .base import Op, OpError, fmt_shape, numel, pycall


class Concat(Op):
    name = "concat"
    known_as = ("cat", "Concat", "Concatenate", "concatenate")
    overwritable = True
    family = "merge"
    merges = True
    doc = "concatenates along the channels, as torch.cat(xs, 1): `concat(a, b)` or `concat { branch ... }`"

    def output_shape(self, a, ins):
        first = ins[0]
        for other in ins[1:]:
            if len(other) != len(first) or other[1:] != first[1:]:
                raise OpError("`concat` needs inputs that differ only in channels, got "
                              + ", ".join(fmt_shape(s) for s in ins),
                              help="make the branches downsample alike (same stride and padding)")
        return (sum(s[0] for s in ins), *first[1:])

    def torch_call(self, a, args, ins):
        return pycall("torch.cat", f"[{', '.join(args)}]", 1)


class Add(Op):
    name = "add"
    known_as = ("Add", "Eltwise", "sum")
    overwritable = True
    accumulates = True
    family = "merge"
    merges = True
    doc = "elementwise sum of equal shapes: `add(a, b)`, `add { branch ... }` or the `residual` form"

    def output_shape(self, a, ins):
        if any(s != ins[0] for s in ins[1:]):
            raise OpError("`add` needs equal shapes, got " + ", ".join(fmt_shape(s) for s in ins),
                          help="bring the smaller input to the other's shape, e.g. with a 1x1 `conv(C, 1, stride=s)`")
        return ins[0]

    def other_ops(self, a, ins, out):
        return numel(out) * (len(ins) - 1)

    def torch_call(self, a, args, ins):
        if len(args) == 1:
            return pycall("torch.clone", args[0])
        if a.get("inplace"):  # `out += identity`, as torchvision writes it: no new tensor
            return args[0] + "".join(f".add_({arg})" for arg in args[1:])
        return " + ".join(args)

    def torch_nodes(self, a, n_inputs):
        return max(1, n_inputs - 1)
