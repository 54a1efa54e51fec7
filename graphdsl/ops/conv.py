"""Convolution."""

from __future__ import annotations

from ..values import Symbol
from .base import (
    Arg,
    Op,
    OpError,
    Saved,
    Window,
    boolean,
    fmt_shape,
    hw,
    numel,
    padding,
    pair,
    positive_int,
    pycall,
    sliding_out,
)


class Conv(Op):
    name = "conv"
    known_as = ("Conv2d", "Conv2D", "conv2d", "convolution", "Convolution")
    overwritable = True
    family = "conv"
    ranks = (3,)
    autocast = "lower"
    doc = "2-D convolution, as torch.nn.Conv2d: `conv(out, kernel, stride=1, pad=0, dilation=1, groups=1, bias=true)`"
    args = (
        Arg("out", positive_int, doc="output channels"),
        Arg("kernel", pair, doc="kernel size, `k` or `(kh, kw)`"),
        Arg("stride", pair, 1),
        Arg("pad", padding, 0, doc="zero padding per side, or `same` (stride 1 only)"),
        Arg("dilation", pair, 1),
        Arg("groups", positive_int, 1),
        Arg("bias", boolean, True),
    )

    def output_shape(self, a, ins):
        c, h, w = ins[0]
        g = a["groups"]
        if c % g:
            raise OpError(f"`groups={g}` must divide the {c} input channels", arg="groups",
                          help=f"choose groups among the divisors of {c}")
        if a["out"] % g:
            raise OpError(f"`groups={g}` must divide the {a['out']} output channels", arg="groups")
        if a["pad"] == Symbol("same"):
            if a["stride"] != (1, 1):
                raise OpError("`pad=same` needs stride 1, as in PyTorch", arg="pad",
                              help="give the padding as a number, e.g. `pad=1` for a 3x3 kernel")
            return (a["out"], h, w)
        dims = []
        axes = zip((h, w), a["kernel"], a["stride"], a["pad"], a["dilation"], ("height", "width"))
        for size, k, s, p, d, axis in axes:
            reach = d * (k - 1) + 1
            if reach > size + 2 * p:
                raise OpError(f"kernel {reach} is larger than the padded input {axis} {size + 2 * p} "
                              f"(input is {fmt_shape(ins[0])})", arg="kernel",
                              help="use a smaller kernel, more padding, or less downsampling before this layer")
            dims.append(sliding_out(size, k, s, p, d))
        return (a["out"], *dims)

    def parameters(self, a, ins, out):
        weight = {"weight": (a["out"], ins[0][0] // a["groups"], *a["kernel"])}
        return {**weight, "bias": (a["out"],)} if a["bias"] else weight

    def macs(self, a, ins, out):
        kh, kw = a["kernel"]
        return numel(out) * (ins[0][0] // a["groups"]) * kh * kw

    def other_ops(self, a, ins, out):
        return numel(out) if a["bias"] else 0

    def saved_for_backward(self, a, ins, out, grad=None):
        return [Saved.input(0)]  # and the weight, a parameter; kept for the weight's gradient even without grad_input

    def window(self, a, ins):
        reach = tuple(d * (k - 1) + 1 for k, d in zip(a["kernel"], a["dilation"]))
        return Window(reach, a["stride"])

    def torch_module(self, a, ins):
        kw: dict = {"kernel_size": hw(a["kernel"])}
        if a["stride"] != (1, 1):
            kw["stride"] = hw(a["stride"])
        if a["pad"] == Symbol("same"):
            kw["padding"] = "same"
        elif a["pad"] != (0, 0):
            kw["padding"] = hw(a["pad"])
        if a["dilation"] != (1, 1):
            kw["dilation"] = hw(a["dilation"])
        if a["groups"] != 1:
            kw["groups"] = a["groups"]
        if not a["bias"]:
            kw["bias"] = False
        return pycall("nn.Conv2d", ins[0][0], a["out"], **kw)

    def label(self, a):
        kh, kw = a["kernel"]
        parts = [f"{kh}×{kw}", str(a["out"])]
        if a["stride"] != (1, 1):
            sh, sw = a["stride"]
            parts.append(f"/{sh}" if sh == sw else f"/{sh}×{sw}")
        if a["groups"] != 1:
            parts.append(f"g{a['groups']}")
        if a["dilation"] != (1, 1):
            dh, dw = a["dilation"]
            parts.append(f"d{dh}" if dh == dw else f"d{dh}×{dw}")
        return "conv " + ", ".join(parts)
