"""An example graphdsl operator plugin: `mish` and `space_to_depth`.

Installed (`pip install examples/plugins/graphdsl_example_ops`), it is found through its entry point
in the group `graphdsl.ops`; without installing, `--ops` loads it from its folder or this file:

    graphdsl check examples/plugins/mish_net.cnn --ops examples/plugins/graphdsl_example_ops/graphdsl_example_ops

graphdsl registers every `Op` subclass defined here that sets a `name`. Nothing here imports torch:
the PyTorch lowering is source text, run by the generated module. docs/operators.md explains each part.
"""

from __future__ import annotations

from graphdsl.ops.base import Arg, Op, OpError, Window, boolean, fmt_shape, numel, positive_int, pycall


class Mish(Op):
    """x * tanh(softplus(x)) (Misra, 2019): a smooth, non-monotonic activation."""

    name = "mish"
    family = "activation"
    known_as = ("Mish",)
    doc = "x * tanh(softplus(x)), elementwise, as torch.nn.Mish"
    args = (Arg("inplace", boolean, False, doc="overwrite the input where nothing else reads it"),)

    def other_ops(self, a, ins, out):
        return 4 * numel(out)  # exp, log1p, tanh, multiply

    def label(self, a):
        return "mish"  # `inplace` is memory, not maths

    def torch_module(self, a, ins):
        return pycall("nn.Mish", **({"inplace": True} if a["inplace"] else {}))

    def torch_call(self, a, args, ins):
        return pycall("F.mish", args[0], **({"inplace": True} if a["inplace"] else {}))


class SpaceToDepth(Op):
    """Each b x b block of pixels becomes b*b channels: a lossless, parameter-free downsampling."""

    name = "space_to_depth"
    family = "reshape"
    ranks = (3,)  # images only: C x H x W
    known_as = ("PixelUnshuffle", "pixel_unshuffle", "SpaceToDepth")
    doc = "moves each b x b block of pixels into channels, C x H x W -> C*b*b x H/b x W/b, as torch.nn.PixelUnshuffle"
    args = (Arg("block", positive_int, 2, doc="the block size b; H and W must be multiples of it"),)

    def output_shape(self, a, ins):
        c, h, w = ins[0]
        b = a["block"]
        if h % b or w % b:
            raise OpError(f"the input {fmt_shape(ins[0])} does not split into {b}x{b} blocks", arg="block",
                          help=f"height and width must be multiples of {b}; pad or crop first, or pick another block")
        return (c * b * b, h // b, w // b)

    def window(self, a, ins):
        b = a["block"]
        return Window((b, b), (b, b))  # each output pixel sees one b x b block; the grid steps by b

    def label(self, a):
        return f"space_to_depth /{a['block']}"

    def torch_module(self, a, ins):
        return pycall("nn.PixelUnshuffle", a["block"])

    def torch_call(self, a, args, ins):
        return pycall("F.pixel_unshuffle", args[0], a["block"])
