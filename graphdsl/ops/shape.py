"""Ops that move, drop or pad values without learning anything."""

from __future__ import annotations

from .base import Arg, Op, OpError, Window, fmt_shape, numel, positive_int, probability, py, pycall


class Flatten(Op):
    name = "flatten"
    known_as = ("Flatten",)
    aliases_input = True
    family = "reshape"
    doc = "flatten CxHxW to C*H*W features, as torch.flatten(x, 1)"

    def torch_module(self, a, ins):
        return "nn.Flatten()"

    def torch_call(self, a, args, ins):
        return pycall("torch.flatten", args[0], 1)

    def output_shape(self, a, ins):
        return (numel(ins[0]),)

    def window(self, a, ins):
        if len(ins[0]) == 3:
            return Window((ins[0][1], ins[0][2]), (ins[0][1], ins[0][2]))
        return None


class Identity(Op):
    name = "identity"
    known_as = ("Identity",)
    aliases_input = True
    family = "reshape"
    doc = "passes its input through, as torch.nn.Identity"

    def torch_module(self, a, ins):
        return "nn.Identity()"  # no functional form: `y = x` would not be a step of its own


class Dropout(Op):
    name = "dropout"
    known_as = ("Dropout", "Dropout2d")
    aliases_input = True  # in eval mode
    family = "regularize"
    doc = "zeroes elements with probability p while training, as torch.nn.Dropout"
    args = (Arg("p", probability, 0.5), )

    def label(self, a):
        return f"dropout {a['p']:g}"

    def torch_module(self, a, ins):
        return pycall("nn.Dropout", p=a["p"])

    def torch_call(self, a, args, ins):
        return f"F.dropout({args[0]}, p={py(a['p'])}, training=self.training)"


class Subsample(Op):
    name = "subsample"
    aliases_input = True
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

    def torch_call(self, a, args, ins):
        s = int(a["stride"])
        return f"{args[0]}[:, :, ::{s}, ::{s}]"

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

    def torch_call(self, a, args, ins):
        extra = a["out"] - ins[0][0]
        return pycall("F.pad", args[0], (0, 0, 0, 0, extra // 2, extra - extra // 2))
