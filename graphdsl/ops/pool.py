"""Max and average pooling: windowed, global and adaptive; upsampling."""

from __future__ import annotations

import math

from ..values import Symbol
from .base import (
    Arg,
    Op,
    OpError,
    Saved,
    Window,
    boolean,
    choice,
    fmt_shape,
    hw,
    nonneg_pair,
    numel,
    optional,
    pair,
    positive_scale,
    pycall,
    sliding_out,
    window,
)

GLOBAL = Symbol("global")


def _adaptive_window(size: int, out: int) -> tuple[int, int]:
    """Largest window and its stride for PyTorch's adaptive pooling bins."""
    kernel = max(-(-((i + 1) * size) // out) - (i * size) // out for i in range(out))
    return kernel, max(1, size // out)


class _Pool(Op):
    overwritable = True
    family = "pool"
    ranks = (3,)
    mode: str

    @staticmethod
    def arguments(extra: Arg) -> tuple[Arg, ...]:
        return (
            Arg("kernel", optional(window), None, doc="window `k`, `(kh, kw)`, or `global`"),
            Arg("stride", optional(pair), None, doc="defaults to the kernel"),
            Arg("pad", nonneg_pair, 0),
            Arg("ceil", boolean, False, doc="round the output size up, as Caffe does"),
            extra,
            Arg("adaptive", optional(pair), None, doc="output size of adaptive pooling, e.g. `adaptive=7`"),
        )

    @property
    def doc(self):
        return (f"{self.mode} pooling, as torch.nn.{self.mode.title()}Pool2d: "
                f"`{self.name}(kernel, stride=kernel, pad=0, ceil=false)`; "
                f"`{self.name}(global)` or `{self.name}(adaptive=7)` for the adaptive forms")

    def output_shape(self, a, ins):
        c, h, w = ins[0]
        if a["adaptive"] is not None or a["kernel"] == GLOBAL:
            if a["adaptive"] is not None and a["kernel"] is not None:
                raise OpError("give either a kernel or `adaptive=`, not both", arg="adaptive")
            for name in ("stride", "pad", "ceil", "dilation", "count_include_pad"):
                if name in a and a[name] != self.default(name):
                    raise OpError(f"`{name}` has no meaning for {'global' if a['adaptive'] is None else 'adaptive'} "
                                  "pooling", arg=name, help=f"leave `{name}` out")
            return (c, *a["adaptive"]) if a["adaptive"] is not None else (c, 1, 1)
        if a["kernel"] is None:
            raise OpError(f"`{self.name}` needs a kernel", help=f"write e.g. `{self.name}(2)`, `{self.name}(global)` "
                          f"or `{self.name}(adaptive=7)`")
        stride = a["stride"] or a["kernel"]
        dilation = a.get("dilation", (1, 1))
        dims = []
        for size, k, s, p, d, axis in zip((h, w), a["kernel"], stride, a["pad"], dilation, ("height", "width")):
            if p > k // 2:
                raise OpError(f"padding {p} is more than half the kernel {k}", arg="pad",
                              help="PyTorch allows pooling padding of at most kernel // 2")
            out = sliding_out(size, k, s, p, d, a["ceil"])
            if out < 1:  # with ceil, a window a little larger than the padded input still gives one output
                raise OpError(f"kernel {d * (k - 1) + 1} is larger than the padded input {axis} {size + 2 * p} "
                              f"(input is {fmt_shape(ins[0])})", arg="kernel",
                              help="use a smaller window, or `global` to pool everything")
            dims.append(out)
        return (c, *dims)

    def other_ops(self, a, ins, out):
        if a["kernel"] is None or a["kernel"] == GLOBAL:
            return ins[0][0] * ins[0][1] * ins[0][2]
        return numel(out) * a["kernel"][0] * a["kernel"][1]

    def window(self, a, ins):
        _, h, w = ins[0]
        if a["adaptive"] is not None:
            (kh, sh), (kw, sw) = _adaptive_window(h, a["adaptive"][0]), _adaptive_window(w, a["adaptive"][1])
            return Window((kh, kw), (sh, sw))
        if a["kernel"] is None or a["kernel"] == GLOBAL:
            return Window((h, w), (h, w))
        dilation = a.get("dilation", (1, 1))
        return Window(tuple(d * (k - 1) + 1 for k, d in zip(a["kernel"], dilation)), a["stride"] or a["kernel"])

    def _torch(self, a) -> tuple[str, tuple, dict]:
        """The torch name (after `nn.` / `F.`), positional and keyword arguments."""
        if a["adaptive"] is not None or a["kernel"] in (None, GLOBAL):
            size = a["adaptive"] if a["adaptive"] is not None else (1, 1)
            return f"Adaptive{self.mode.title()}Pool2d", (size,), {}
        kw: dict = {"kernel_size": hw(a["kernel"])}
        if a["stride"] is not None:
            kw["stride"] = hw(a["stride"])
        if a["pad"] != (0, 0):
            kw["padding"] = hw(a["pad"])
        if a.get("dilation", (1, 1)) != (1, 1):
            kw["dilation"] = hw(a["dilation"])
        if a["ceil"]:
            kw["ceil_mode"] = True
        if not a.get("count_include_pad", True):
            kw["count_include_pad"] = False
        return f"{self.mode.title()}Pool2d", (), kw

    def torch_module(self, a, ins):
        name, args, kw = self._torch(a)
        return pycall(f"nn.{name}", *args, **kw)

    def torch_call(self, a, args, ins):
        name, pos, kw = self._torch(a)
        func = "F." + name.replace("Pool2d", "_pool2d").replace("Adaptive", "adaptive_").lower()
        return pycall(func, args[0], *pos, **kw)

    def label(self, a):
        if a["adaptive"] is not None:
            return f"{self.name} adaptive {'×'.join(map(str, a['adaptive']))}"
        if a["kernel"] == GLOBAL or a["kernel"] is None:
            return f"{self.name} global"
        k, s = a["kernel"], a["stride"] or a["kernel"]
        # the stride always shows: a reader cannot tell `/1` from the default (the kernel) otherwise
        text = f"{self.name} {k[0]}×{k[1]}, /" + (str(s[0]) if s[0] == s[1] else f"{s[0]}×{s[1]}")
        return text + (", ceil" if a["ceil"] else "")


class MaxPool(_Pool):
    name = "maxpool"
    args = _Pool.arguments(Arg("dilation", pair, 1))
    known_as = ("MaxPool2d", "max_pool", "max_pool2d", "MaxPooling2D", "AdaptiveMaxPool2d", "GlobalMaxPooling2D")
    mode = "max"

    def saved_for_backward(self, a, ins, out, grad=None):
        return [Saved.input(), Saved("indices", "new", out, "int64")]  # the argmax of every window, int64


class AvgPool(_Pool):
    name = "avgpool"
    args = _Pool.arguments(Arg("count_include_pad", boolean, True))
    known_as = ("AvgPool2d", "avg_pool", "avg_pool2d", "AveragePooling2D", "AdaptiveAvgPool2d",
                "GlobalAveragePooling2D")
    mode = "avg"

    def saved_for_backward(self, a, ins, out, grad=None):
        # adaptive pooling to 1x1 is `x.mean((-1, -2))` in ATen, which keeps nothing; every other average
        # pooling keeps its input (torch's backward asks for it, if only for its geometry)
        global_mean = a["kernel"] == GLOBAL or a["adaptive"] == (1, 1)
        return [] if global_mean else [Saved.input()]


class Upsample(Op):
    name = "upsample"
    known_as = ("Upsample", "interpolate", "UpSampling2D", "Resize", "resize", "UpsamplingNearest2d",
                "UpsamplingBilinear2d")
    overwritable = True
    family = "pool"
    ranks = (3,)
    doc = ("resizes H and W, as torch.nn.Upsample / F.interpolate: `upsample(scale=2)` (the size is "
           "floor(H * scale)) or `upsample(size=(h, w))`; `mode=\"nearest\"` or `\"bilinear\"`")
    args = (
        Arg("scale", optional(positive_scale), None, doc="factor, or a pair (h, w); the output is floor(H * scale)"),
        Arg("size", optional(pair), None, doc="output size, or a pair (h, w)"),
        Arg("mode", choice("nearest", "bilinear"), "nearest"),
        Arg("align_corners", optional(boolean), None, doc="bilinear only, as in PyTorch"),
    )

    def output_shape(self, a, ins):
        c, h, w = ins[0]
        if (a["scale"] is None) == (a["size"] is None):
            raise OpError("`upsample` needs either `scale` or `size`" if a["scale"] is None else
                          "`upsample` takes `scale` or `size`, not both", arg=None if a["scale"] is None else "size",
                          help="e.g. `upsample(scale=2)` or `upsample(size=(28, 28))`")
        if a["align_corners"] is not None and a["mode"] != "bilinear":
            raise OpError(f"`align_corners` has no meaning for `mode=\"{a['mode']}\"`", arg="align_corners",
                          help="leave it out, or use `mode=\"bilinear\"`")
        if a["size"] is not None:
            return (c, *a["size"])
        sh, sw = a["scale"] if isinstance(a["scale"], tuple) else (a["scale"], a["scale"])
        return (c, math.floor(h * sh), math.floor(w * sw))  # as F.interpolate (and ATen) compute it

    def other_ops(self, a, ins, out):
        return numel(out) * (4 if a["mode"] == "bilinear" else 1)  # bilinear: four taps per output

    def saved_for_backward(self, a, ins, out, grad=None):
        return []  # the sizes only

    def label(self, a):
        mode = "" if a["mode"] == "nearest" else f", {a['mode']}"
        if a["size"] is not None:
            return f"upsample to {a['size'][0]}×{a['size'][1]}{mode}"
        scale = a["scale"] if isinstance(a["scale"], tuple) else (a["scale"],)
        return f"upsample ×{'×'.join(f'{s:g}' for s in scale)}{mode}"

    def _kw(self, a) -> dict:
        kw = {"size": hw(a["size"])} if a["size"] is not None else {"scale_factor": a["scale"]}
        if a["mode"] != "nearest":
            kw["mode"] = a["mode"]
        if a["align_corners"] is not None:
            kw["align_corners"] = a["align_corners"]
        return kw

    def torch_module(self, a, ins):
        return pycall("nn.Upsample", **self._kw(a))

    def torch_call(self, a, args, ins):
        return pycall("F.interpolate", args[0], **self._kw(a))
