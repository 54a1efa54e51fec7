"""Normalisation: batch norm, layer norm, local response norm; per-channel scaling, learned or constant."""

from __future__ import annotations

from .base import (
    Arg,
    Op,
    OpError,
    Saved,
    boolean,
    channels,
    is_image,
    number,
    numbers,
    numel,
    positive_int,
    positive_number,
    probability,
    py,
    pycall,
    pylist,
)


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

    def parameters(self, a, ins, out):
        return {"weight": (out[0],), "bias": (out[0],)} if a["affine"] else {}

    def buffers(self, a, ins, out):
        return {"running_mean": (out[0],), "running_var": (out[0],), "num_batches_tracked": ()}

    def buffer_dtypes(self, a):
        return {"num_batches_tracked": "int64"}

    def saved_for_backward(self, a, ins, out, grad=None):
        # the input and the batch's mean and inverse deviation per channel (float32; cuDNN keeps the same)
        stats = [Saved(what, "new", (out[0],), "float32", batched=False) for what in ("mean", "invstd")]
        return [Saved.input(), *stats]

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

    autocast = "widen"  # its `pow` is on autocast's float32 list, and the division promotes

    def saved_for_backward(self, a, ins, out, grad=None):
        # F.local_response_norm: x * x, padded by size - 1 channels for avg_pool3d (which keeps it), then
        # pow keeps its base and its result, and the division keeps x and the divisor (pow's result)
        c, h, w = ins[0]
        return [Saved.input(), Saved("padded squares", "new", (c + a["size"] - 1, h, w)),
                Saved("pow base", "new", out, "upcast"), Saved("divisor", "new", out, "upcast")]

    def torch_module(self, a, ins):
        return pycall("nn.LocalResponseNorm", a["size"], **self._torch_kw(a))

    def torch_call(self, a, args, ins):
        return pycall("F.local_response_norm", args[0], a["size"], **self._torch_kw(a))

    def _torch_kw(self, a):
        return {k: a[k] for k in ("alpha", "beta", "k") if a[k] != self.default(k)}

    def label(self, a):
        return f"lrn {a['size']}"


# torchvision.models.convnext.LayerNorm2d, word for word but the doc string and type hints.
LAYER_NORM_2D = '''
class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an N x C x H x W tensor at every position, as torchvision's
    ConvNeXt `LayerNorm2d`: permute to channels-last, normalise the last axis, permute back."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = x.permute(0, 3, 1, 2)
        return x
'''


class LayerNorm(Op):
    name = "layer_norm"
    known_as = ("LayerNorm", "LayerNorm2d", "layernorm", "LayerNormalization", "ln")
    overwritable = True
    channels_last = True
    family = "norm"
    doc = ("layer normalisation over the channels at every position (torch.nn.LayerNorm(C)): on flat features, "
           "on channels-last H x W x C, and on C x H x W as torchvision's ConvNeXt LayerNorm2d")
    args = (Arg("eps", positive_number, 1e-5), Arg("affine", boolean, True, doc="learned weight and bias per channel"))
    torch_helpers = (LAYER_NORM_2D,)

    def parameters(self, a, ins, out):
        c = channels(out)
        return {"weight": (c,), "bias": (c,)} if a["affine"] else {}

    def other_ops(self, a, ins, out):
        return 2 * numel(out)  # subtract the mean, divide by the deviation (the statistics are cheaper)

    autocast = "fp32"  # on autocast's float32 list

    def saved_for_backward(self, a, ins, out, grad=None):
        # the input, and the mean and inverse deviation of every position normalised
        s = ins[0]
        positions = (s[1], s[2]) if is_image(s) else s[:-1] or (1,)
        return [Saved.input(), *(Saved(what, "new", positions) for what in ("mean", "rstd"))]

    @staticmethod
    def _chw(ins) -> bool:
        return is_image(ins[0])

    def _kw(self, a) -> dict:
        kw = {"eps": a["eps"]} if a["eps"] != self.default("eps") else {}
        return {**kw, **({} if a["affine"] else {"elementwise_affine": False})}

    def torch_module(self, a, ins):
        return pycall("LayerNorm2d" if self._chw(ins) else "nn.LayerNorm", channels(ins[0]), **self._kw(a))

    def torch_module_nodes(self, a, ins):
        return 3 if self._chw(ins) else 1  # LayerNorm2d: permute, layer_norm, permute

    def torch_call(self, a, args, ins):
        if self._chw(ins) or a["affine"]:
            return None
        eps = {"eps": a["eps"]} if a["eps"] != self.default("eps") else {}
        return pycall("F.layer_norm", args[0], (channels(ins[0]),), **eps)

    def label(self, a):
        return "layer_norm" if a["affine"] else "layer_norm, no affine"


class Scale(Op):
    name = "scale"
    known_as = ("layer_scale", "LayerScale", "Scale")
    channels_last = True
    family = "norm"
    bare_parameter = True
    doc = ("a learned per-channel multiplier, initialised to `init` (ConvNeXt's layer scale): its parameter is "
           "the state_dict entry at the layer's own path, C x 1 x 1 on C x H x W, C on flat or channels-last")
    args = (Arg("init", number, 1.0, doc="initial value of every channel's factor"),)

    @staticmethod
    def param_shape(ins) -> tuple[int, ...]:
        s = ins[0]
        return (s[0], 1, 1) if is_image(s) else (channels(s),)

    def parameters(self, a, ins, out):
        return {"": self.param_shape(ins)}

    def other_ops(self, a, ins, out):
        return numel(out)

    autocast = "widen"  # the float32 parameter promotes a half-precision input

    def saved_for_backward(self, a, ins, out, grad=None):
        return [Saved.input()]  # for the parameter's gradient (and the parameter, for the input's)

    def torch_parameter(self, a, ins):
        ones = pycall("torch.ones", *self.param_shape(ins))
        return pycall("nn.Parameter", ones if a["init"] == 1.0 else f"{ones} * {py(a['init'])}")

    def torch_call(self, a, args, ins):
        return f"{args[0]} * {args[1]}"  # the parameter first, as torchvision: `self.layer_scale * x`

    def label(self, a):
        return "scale" if a["init"] == 1.0 else f"scale({a['init']:g})"


class ChannelAffine(Op):
    name = "channel_affine"
    known_as = ("transform_input", "Normalize", "normalize", "Rescaling")
    overwritable = True
    channels_last = True
    family = "norm"
    doc = ("constant per-channel `x * scale[c] + shift[c]`, nothing learned (Inception-v3's `transform_input`): "
           "`channel_affine(scale=[...], shift=[...])`, one number per channel")
    args = (Arg("scale", numbers, doc="one factor per channel"), Arg("shift", numbers, doc="one offset per channel"))

    def output_shape(self, a, ins):
        c = channels(ins[0])
        for name in ("scale", "shift"):
            if len(a[name]) != c:
                raise OpError(f"`channel_affine` needs one `{name}` per channel: {len(a[name])} for {c} channels",
                              arg=name, help=f"give {c} numbers")
        return ins[0]

    def other_ops(self, a, ins, out):
        return 2 * numel(out)

    def saved_for_backward(self, a, ins, out, grad=None):
        # `x * x.new_tensor(scale)` keeps the constant (fresh at every call) for x's gradient
        if grad is not None and not grad[0]:
            return []
        return [Saved("scale constant", "new", Scale.param_shape(ins), batched=False)]

    def torch_call(self, a, args, ins):
        def constant(values):
            if is_image(ins[0]):  # C x 1 x 1: broadcast over H and W
                values = [[[v]] for v in values]
            return f"{args[0]}.new_tensor({pylist(values)})"  # x's dtype and device

        return f"{args[0]} * {constant(a['scale'])} + {constant(a['shift'])}"

    def torch_nodes(self, a, n_inputs):
        return 4  # new_tensor, mul, new_tensor, add

    def label(self, a):
        return "channel_affine"
