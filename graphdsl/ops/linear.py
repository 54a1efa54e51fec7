"""Fully connected layers."""

from __future__ import annotations

from .base import (
    Arg,
    ChannelsLast,
    Op,
    OpError,
    Saved,
    boolean,
    fmt_shape,
    is_channels_last,
    numel,
    positive_int,
    pycall,
)


class Linear(Op):
    name = "linear"
    known_as = ("Linear", "fc", "dense", "Dense", "InnerProduct", "fully_connected")
    overwritable = True
    family = "linear"
    ranks = (1, 3)  # flat, or channels-last H x W x C (per position, on the last axis); not C x H x W
    channels_last = True
    autocast = "lower"
    doc = ("fully connected layer, as torch.nn.Linear: `linear(out, bias=true)`; needs a flat input, or a "
           "channels-last one (H x W x C, after `permute([0, 2, 3, 1])`), which it maps at every position")
    args = (Arg("out", positive_int, doc="output features"), Arg("bias", boolean, True))

    def output_shape(self, a, ins):
        s = ins[0]
        if is_channels_last(s):
            return ChannelsLast((*s[:-1], a["out"]))
        if len(s) != 1:  # C x H x W: PyTorch would map the last axis, W; graphdsl asks what is meant
            raise OpError(f"`linear` needs a flat input, got {fmt_shape(s)}",
                          help="add `flatten` before `linear` (or pool first: `avgpool(global) flatten`); for a "
                               "linear map at every position, `permute([0, 2, 3, 1])` first")
        return (a["out"],)

    def parameters(self, a, ins, out):
        weight = {"weight": (a["out"], ins[0][-1])}
        return {**weight, "bias": (a["out"],)} if a["bias"] else weight

    def macs(self, a, ins, out):
        return numel(ins[0]) * a["out"]

    def other_ops(self, a, ins, out):
        return numel(out) if a["bias"] else 0

    def saved_for_backward(self, a, ins, out, grad=None):
        return [Saved.input(0)]  # addmm keeps its input (a flattened view on channels-last) and the weight

    def torch_module(self, a, ins):
        return pycall("nn.Linear", ins[0][-1], a["out"], **({} if a["bias"] else {"bias": False}))

    def label(self, a):
        return f"linear {a['out']}"


def rank_error(op: Op, shape) -> OpError:
    """The message for an input of the wrong rank, with the usual fix."""
    if op.ranks == (1,):
        return OpError(f"`{op.name}` needs a flat input, got {fmt_shape(shape)}",
                       help=f"add `flatten` before `{op.name}` (or pool first: `avgpool(global) flatten`)")
    return OpError(f"`{op.name}` needs a CxHxW input, got the flat {fmt_shape(shape)}",
                   help=f"`{op.name}` works on images; move it before `flatten`")
