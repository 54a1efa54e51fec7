"""Fully connected layers."""

from __future__ import annotations

from .base import Arg, Op, OpError, boolean, fmt_shape, positive_int, pycall


class Linear(Op):
    name = "linear"
    known_as = ("Linear", "fc", "dense", "Dense", "InnerProduct", "fully_connected")
    overwritable = True
    family = "linear"
    ranks = (1,)
    doc = "fully connected layer, as torch.nn.Linear: `linear(out, bias=true)`; needs a flat input"
    args = (Arg("out", positive_int, doc="output features"), Arg("bias", boolean, True))

    def output_shape(self, a, ins):
        return (a["out"],)

    def param_count(self, a, ins, out):
        return ins[0][0] * a["out"] + (a["out"] if a["bias"] else 0)

    def macs(self, a, ins, out):
        return ins[0][0] * a["out"]

    def other_ops(self, a, ins, out):
        return a["out"] if a["bias"] else 0

    def torch_module(self, a, ins):
        return pycall("nn.Linear", ins[0][0], a["out"], **({} if a["bias"] else {"bias": False}))

    def label(self, a):
        return f"linear {a['out']}"


def rank_error(op: Op, shape) -> OpError:
    """The message for an input of the wrong rank, with the usual fix."""
    if op.ranks == (1,):
        return OpError(f"`{op.name}` needs a flat input, got {fmt_shape(shape)}",
                       help=f"add `flatten` before `{op.name}` (or pool first: `avgpool(global) flatten`)")
    return OpError(f"`{op.name}` needs a CxHxW input, got the flat {fmt_shape(shape)}",
                   help=f"`{op.name}` works on images; move it before `flatten`")
