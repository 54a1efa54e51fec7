"""Pointwise activations and softmax.

The pointwise activations work in either layout (`channels_last`); softmax is over dim 1.
"""

from __future__ import annotations

from .base import Arg, Op, OpError, Saved, boolean, number, numel, pycall

# The functional form of each activation, and spec argument names that torch spells differently.
TORCH_FUNCTIONAL = {"relu": "F.relu", "relu6": "F.relu6", "leaky_relu": "F.leaky_relu", "elu": "F.elu",
                    "gelu": "F.gelu", "silu": "F.silu", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh",
                    "softmax": "F.softmax", "hardswish": "F.hardswish", "hardsigmoid": "F.hardsigmoid"}
TORCH_KEYWORDS = {"slope": "negative_slope"}


class _Activation(Op):
    family = "activation"
    channels_last = True  # pointwise: the layout does not matter
    torch_name: str = ""
    # What autograd keeps (torch's derivatives.yaml, checked against saved_tensors_hooks): "input" or
    # "output" out of place; in place, "output" (the shared storage) or "copy" (autograd clones the input
    # before overwriting it: relu6_, silu_, hardswish_, hardsigmoid_).
    saves: str = "input"
    saves_inplace: str = "copy"

    def other_ops(self, a, ins, out):
        return numel(out)

    def output_shape(self, a, ins):
        # torch computes the gradient of an in-place leaky_relu/elu from its output, which a negative slope
        # makes ambiguous: `backward()` refuses it. Say so now rather than at the first training step.
        for arg in ("slope", "alpha"):
            if a.get("inplace") and a.get(arg, 0) < 0:
                raise OpError(f"`{self.name}` with a negative `{arg}` cannot run in place: PyTorch's backward "
                              "refuses it", arg="inplace",
                              help=f"drop `inplace=true` (or make `{arg}` non-negative)")
        return ins[0]

    def label(self, a):
        return super().label({k: v for k, v in a.items() if k != "inplace"})  # inplace is memory, not maths

    def saved_for_backward(self, a, ins, out, grad=None):
        if a.get("inplace"):
            return [Saved.output()] if self.saves_inplace == "output" else [Saved("input copy", "new", ins[0])]
        return [Saved.output()] if self.saves == "output" else [Saved.input()]

    def _torch_kw(self, a) -> dict:
        return {TORCH_KEYWORDS.get(k, k): v for k, v in a.items() if v != self.default(k)}

    def torch_module(self, a, ins):
        return pycall(f"nn.{self.torch_name}", **self._torch_kw(a))

    def torch_call(self, a, args, ins):
        func = TORCH_FUNCTIONAL.get(self.name)
        return None if func is None else pycall(func, args[0], **self._torch_kw(a))


def _activation(name: str, torch_name: str, *args: Arg, known_as: tuple[str, ...] = (), saves: str = "input",
                saves_inplace: str = "copy") -> type[Op]:
    doc = f"elementwise activation, as torch.nn.{torch_name}"
    return type(_Activation)(torch_name, (_Activation,), {"name": name, "torch_name": torch_name, "args": args,
                                                           "doc": doc, "known_as": (torch_name, *known_as),
                                                           "saves": saves, "saves_inplace": saves_inplace})


ReLU = _activation("relu", "ReLU", Arg("inplace", boolean, False), saves="output", saves_inplace="output")
ReLU6 = _activation("relu6", "ReLU6", Arg("inplace", boolean, False))
LeakyReLU = _activation("leaky_relu", "LeakyReLU", Arg("slope", number, 0.01), Arg("inplace", boolean, False),
                        saves_inplace="output")
ELU = _activation("elu", "ELU", Arg("alpha", number, 1.0), Arg("inplace", boolean, False), saves_inplace="output")
GELU = _activation("gelu", "GELU")
SiLU = _activation("silu", "SiLU", Arg("inplace", boolean, False))
Sigmoid = _activation("sigmoid", "Sigmoid", saves="output")
Tanh = _activation("tanh", "Tanh", saves="output")
# MobileNetV3's: x * relu6(x + 3) / 6 and relu6(x + 3) / 6
Hardswish = _activation("hardswish", "Hardswish", Arg("inplace", boolean, False),
                        known_as=("hard_swish", "h_swish", "hswish", "HardSwish"))
Hardsigmoid = _activation("hardsigmoid", "Hardsigmoid", Arg("inplace", boolean, False),
                          known_as=("hard_sigmoid", "h_sigmoid", "hsigmoid", "HardSigmoid"))


class Softmax(_Activation):
    name = "softmax"
    channels_last = False  # over dim 1: on N x H x W x C that would be H
    torch_name = "Softmax"
    saves = "output"
    autocast = "fp32"  # on autocast's float32 list
    known_as = ("Softmax",)
    doc = "softmax over the channels (dim 1), as torch.nn.Softmax(dim=1)"

    def _torch_kw(self, a) -> dict:
        return {"dim": 1}

    def other_ops(self, a, ins, out):
        return 3 * numel(out)  # exp, sum, divide
