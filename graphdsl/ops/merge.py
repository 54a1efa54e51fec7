"""Merging several tensors: channel concatenation, elementwise addition and multiplication."""

from __future__ import annotations

from .base import Op, OpError, Saved, channels, fmt_shape, like, numel, pycall


class Concat(Op):
    name = "concat"
    known_as = ("cat", "Concat", "Concatenate", "concatenate")
    overwritable = True
    family = "merge"
    merges = True
    passes_gradient = True  # its backward hands out slices of the gradient
    doc = "concatenates along the channels, as torch.cat(xs, 1): `concat(a, b)` or `concat { branch ... }`"

    def saved_for_backward(self, a, ins, out, grad=None):
        return []

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
    channels_last = True
    family = "merge"
    merges = True
    passes_gradient = True  # every input's gradient is the output's
    doc = "elementwise sum of equal shapes: `add(a, b)`, `add { branch ... }` or the `residual` form"

    def saved_for_backward(self, a, ins, out, grad=None):
        return []

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


class Mul(Op):
    name = "mul"
    known_as = ("Mul", "multiply", "Multiply", "prod", "product", "gate")
    overwritable = True
    channels_last = True
    family = "merge"
    merges = True
    doc = ("elementwise product, broadcasting sizes of 1 (the squeeze-and-excitation gate: C x H x W times "
           "C x 1 x 1): `mul(a, b)` or `mul { branch ... }`")

    def output_shape(self, a, ins):
        rank = len(ins[0])
        out = []
        if all(len(s) == rank for s in ins):
            for dims in zip(*ins):
                sizes = {d for d in dims if d != 1}
                if len(sizes) > 1:
                    break
                out.append(sizes.pop() if sizes else 1)
        if len(out) != rank:
            counts = sorted({channels(s) for s in ins})
            if len(counts) > 1:  # the usual slip: the gate's last conv has the squeeze width, not C
                fix = (f"the channels differ ({', '.join(map(str, counts))}): end the gate with as many channels as "
                       "the tensor it scales, e.g. `let c = in.channels` at the top of the block and `conv(c, 1)`")
            else:
                fix = ("a gate is C x 1 x 1 against C x H x W: pool it with `avgpool(global)`; a flat gate of C "
                       "features needs the image flattened too, or compute the gate without `flatten`")
            raise OpError("`mul` needs shapes that broadcast (each size equal, or 1 in all but one), got "
                          + ", ".join(fmt_shape(s) for s in ins), help=fix)
        return like(ins[0], out)

    def other_ops(self, a, ins, out):
        return numel(out) * (len(ins) - 1)

    def saved_for_backward(self, a, ins, out, grad=None):
        # a product keeps each factor that another factor's gradient needs (with three or more factors
        # the intermediate products too: counted as new tensors of the output's size)
        if len(ins) == 1:
            return []  # torch.clone
        needs = grad or (True,) * len(ins)
        kept = [Saved.input(j) for j in range(len(ins)) if any(needs[k] for k in range(len(ins)) if k != j)]
        return kept + [Saved("partial product", "new", out) for _ in range(len(ins) - 2)]

    def torch_call(self, a, args, ins):
        if len(args) == 1:
            return pycall("torch.clone", args[0])
        return " * ".join(args)

    def torch_nodes(self, a, n_inputs):
        return max(1, n_inputs - 1)
