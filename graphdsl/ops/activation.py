"""Pointwise activations and softmax."""

from __future__ import annotations

from .base import Arg, Op, boolean, number, numel


class _Activation(Op):
    family = "activation"
    torch_name: str = ""

    def other_ops(self, a, ins, out):
        return numel(out)

    def label(self, a):
        return super().label({k: v for k, v in a.items() if k != "inplace"})  # inplace is memory, not maths


def _activation(name: str, torch_name: str, *args: Arg) -> type[Op]:
    doc = f"elementwise activation, as torch.nn.{torch_name}"
    return type(_Activation)(torch_name, (_Activation,), {"name": name, "torch_name": torch_name, "args": args,
                                                           "doc": doc})


ReLU = _activation("relu", "ReLU", Arg("inplace", boolean, False))
ReLU6 = _activation("relu6", "ReLU6", Arg("inplace", boolean, False))
LeakyReLU = _activation("leaky_relu", "LeakyReLU", Arg("slope", number, 0.01), Arg("inplace", boolean, False))
ELU = _activation("elu", "ELU", Arg("alpha", number, 1.0), Arg("inplace", boolean, False))
GELU = _activation("gelu", "GELU")
SiLU = _activation("silu", "SiLU", Arg("inplace", boolean, False))
Sigmoid = _activation("sigmoid", "Sigmoid")
Tanh = _activation("tanh", "Tanh")


class Softmax(_Activation):
    name = "softmax"
    torch_name = "Softmax"
    doc = "softmax over the channels (dim 1), as torch.nn.Softmax(dim=1)"

    def other_ops(self, a, ins, out):
        return 3 * numel(out)  # exp, sum, divide
