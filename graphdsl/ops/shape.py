"""Ops that move, drop or pad values without learning anything."""

from __future__ import annotations

from .base import Arg, Op, OpError, Window, fmt_shape, numel, positive_int, probability


class Flatten(Op):
    name = "flatten"
    family = "reshape"
    doc = "flatten CxHxW to C*H*W features, as torch.flatten(x, 1)"

    def output_shape(self, a, ins):
        return (numel(ins[0]),)

    def window(self, a, ins):
        if len(ins[0]) == 3:
            return Window((ins[0][1], ins[0][2]), (ins[0][1], ins[0][2]))
        return None


class Identity(Op):
    name = "identity"
    family = "reshape"
    doc = "passes its input through, as torch.nn.Identity"


class Dropout(Op):
    name = "dropout"
    family = "regularize"
    doc = "zeroes elements with probability p while training, as torch.nn.Dropout"
    args = (Arg("p", probability, 0.5), )

    def label(self, a):
        return f"dropout {a['p']:g}"


class Subsample(Op):
    name = "subsample"
    family = "reshape"
    ranks = (3,)
    doc = "keeps every s-th row and column, `x[:, :, ::s, ::s]` (the ResNet option-A shortcut)"
    args = (Arg("stride", positive_int, 2),)

    def output_shape(self, a, ins):
        c, h, w = ins[0]
        s = a["stride"]
        return (c, -(-h // s), -(-w // s))

    def label(self, a):
        return f"subsample /{a['stride']}"

    def window(self, a, ins):
        return Window((1, 1), (a["stride"], a["stride"]))


class PadChannels(Op):
    name = "pad_channels"
    family = "reshape"
    ranks = (3,)
    doc = ("zero-pads the channels up to `out`, half before and half after as the common CIFAR ResNet code does "
           "(the ResNet option-A shortcut)")
    args = (Arg("out", positive_int, doc="channels after padding"),)

    def output_shape(self, a, ins):
        c, h, w = ins[0]
        if a["out"] < c:
            raise OpError(f"`pad_channels({a['out']})` cannot shrink the {c} channels of {fmt_shape(ins[0])}",
                          arg="out", help=f"give at least {c} channels")
        return (a["out"], h, w)

    def label(self, a):
        return f"pad_channels {a['out']}"
