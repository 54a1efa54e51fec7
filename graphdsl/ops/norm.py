"""Normalisation: batch norm and local response norm."""

from __future__ import annotations

from .base import Arg, Op, boolean, number, positive_int, positive_number, probability


class BatchNorm(Op):
    name = "bn"
    family = "norm"
    doc = "batch normalisation over channels, as torch.nn.BatchNorm2d (BatchNorm1d on flat input)"
    args = (
        Arg("eps", positive_number, 1e-5),
        Arg("momentum", probability, 0.1),
        Arg("affine", boolean, True),
    )

    def param_count(self, a, ins, out):
        return 2 * out[0] if a["affine"] else 0

    def buffer_count(self, a, ins, out):
        return 2 * out[0] + 1  # running mean, running var, num_batches_tracked

    def label(self, a):
        return "bn" if a["affine"] else "bn, no affine"  # eps and momentum do not change what it computes

    def other_ops(self, a, ins, out):
        n = 1
        for d in out:
            n *= d
        return n


class LocalResponseNorm(Op):
    name = "lrn"
    family = "norm"
    ranks = (3,)
    doc = "local response normalisation across channels, as torch.nn.LocalResponseNorm (AlexNet, GoogLeNet v1)"
    args = (
        Arg("size", positive_int, doc="number of neighbouring channels"),
        Arg("alpha", number, 1e-4),
        Arg("beta", number, 0.75),
        Arg("k", number, 1.0),
    )

    def other_ops(self, a, ins, out):
        return out[0] * out[1] * out[2] * a["size"]

    def label(self, a):
        return f"lrn {a['size']}"
