"""Normalisation: batch norm and local response norm."""

from __future__ import annotations

from .base import Arg, Op, boolean, number, numel, positive_int, positive_number, probability, pycall


class BatchNorm(Op):
    name = "bn"
    known_as = ("BatchNorm2d", "BatchNorm1d", "BatchNorm", "batchnorm", "batch_norm", "BatchNormalization")
    overwritable = True
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

    def torch_module(self, a, ins):
        kw = {k: a[k] for k in ("eps", "momentum", "affine") if a[k] != self.default(k)}
        return pycall("nn.BatchNorm2d" if len(ins[0]) == 3 else "nn.BatchNorm1d", ins[0][0], **kw)

    def label(self, a):
        return "bn" if a["affine"] else "bn, no affine"  # eps and momentum do not change what it computes

    def other_ops(self, a, ins, out):
        return numel(out)


class LocalResponseNorm(Op):
    name = "lrn"
    known_as = ("LocalResponseNorm", "LRN", "local_response_norm")
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
        return numel(out) * a["size"]

    def torch_module(self, a, ins):
        return pycall("nn.LocalResponseNorm", a["size"], **self._torch_kw(a))

    def torch_call(self, a, args, ins):
        return pycall("F.local_response_norm", args[0], a["size"], **self._torch_kw(a))

    def _torch_kw(self, a):
        return {k: a[k] for k in ("alpha", "beta", "k") if a[k] != self.default(k)}

    def label(self, a):
        return f"lrn {a['size']}"
