"""Ops that move, drop, slice, shuffle or pad values without learning anything."""

from __future__ import annotations

from .base import (
    Arg,
    ChannelsLast,
    Op,
    OpError,
    Saved,
    Window,
    choice,
    divisors,
    fmt_shape,
    int_list,
    is_channels_last,
    nonneg_int,
    numel,
    positive_int,
    probability,
    py,
    pycall,
)


class Flatten(Op):
    name = "flatten"
    known_as = ("Flatten",)
    aliases_input = True
    passes_gradient = True
    family = "reshape"
    doc = "flatten CxHxW to C*H*W features, as torch.flatten(x, 1)"

    def torch_module(self, a, ins):
        return "nn.Flatten()"

    def torch_call(self, a, args, ins):
        return pycall("torch.flatten", args[0], 1)

    def output_shape(self, a, ins):
        return (numel(ins[0]),)

    def window(self, a, ins):
        if len(ins[0]) == 3:
            return Window((ins[0][1], ins[0][2]), (ins[0][1], ins[0][2]))
        return None


class Identity(Op):
    name = "identity"
    known_as = ("Identity",)
    aliases_input = True
    passes_gradient = True
    channels_last = True
    family = "reshape"
    doc = "passes its input through, as torch.nn.Identity"

    def torch_module(self, a, ins):
        return "nn.Identity()"  # no functional form: `y = x` would not be a step of its own


class Dropout(Op):
    name = "dropout"
    known_as = ("Dropout", "Dropout2d")
    aliases_input = True  # in eval mode
    channels_last = True
    family = "regularize"
    doc = "zeroes elements with probability p while training, as torch.nn.Dropout"
    args = (Arg("p", probability, 0.5), )

    def label(self, a):
        return f"dropout {a['p']:g}"

    def shares_storage(self, a, training):
        return None if training and a["p"] > 0 else 0  # `F.dropout` returns its input itself when p = 0

    def saved_for_backward(self, a, ins, out, grad=None):
        if a["p"] == 0:
            return []
        if a["p"] == 1:  # `x * zeros(())`
            return [Saved("zero", "new", (), batched=False)]
        # CUDA's fused native_dropout keeps a bool mask; the CPU path multiplies by a float noise tensor
        return [Saved("mask", "new", out, "mask")]

    def torch_module(self, a, ins):
        return pycall("nn.Dropout", p=a["p"])

    def torch_call(self, a, args, ins):
        return f"F.dropout({args[0]}, p={py(a['p'])}, training=self.training)"


class Subsample(Op):
    name = "subsample"
    aliases_input = True
    family = "reshape"
    ranks = (3,)
    doc = "keeps every s-th row and column, `x[:, :, ::s, ::s]` (the ResNet option-A shortcut)"
    args = (Arg("stride", positive_int, 2),)

    def output_shape(self, a, ins):
        c, h, w = ins[0]
        s = a["stride"]
        return (c, -(-h // s), -(-w // s))

    def label(self, a):
        return f"subsample /{a['stride']}"

    def saved_for_backward(self, a, ins, out, grad=None):
        return []  # a view

    def torch_call(self, a, args, ins):
        s = int(a["stride"])
        return f"{args[0]}[:, :, ::{s}, ::{s}]"

    def window(self, a, ins):
        return Window((1, 1), (a["stride"], a["stride"]))


class PadChannels(Op):
    name = "pad_channels"
    family = "reshape"
    ranks = (3,)
    doc = ("zero-pads the channels up to `out`, half before and half after as the common CIFAR ResNet code does "
           "(the ResNet option-A shortcut)")
    args = (Arg("out", positive_int, doc="channels after padding"),)

    def output_shape(self, a, ins):
        c, h, w = ins[0]
        if a["out"] < c:
            raise OpError(f"`pad_channels({a['out']})` cannot shrink the {c} channels of {fmt_shape(ins[0])}",
                          arg="out", help=f"give at least {c} channels")
        return (a["out"], h, w)

    passes_gradient = True  # the gradient of F.pad is a slice of the output's

    def saved_for_backward(self, a, ins, out, grad=None):
        return []

    def label(self, a):
        return f"pad_channels {a['out']}"

    def torch_call(self, a, args, ins):
        extra = a["out"] - ins[0][0]
        return pycall("F.pad", args[0], (0, 0, 0, 0, extra // 2, extra - extra // 2))


# torchvision.ops.StochasticDepth, written so that torch.fx traces it (torchvision instead marks its
# function as an fx leaf, which a generated file cannot do). Same draws: one Bernoulli(1 - p) per
# sample ("row") or per batch ("batch"), kept ones scaled by 1 / (1 - p); the identity in eval mode.
STOCHASTIC_DEPTH = '''
class StochasticDepth(nn.Module):
    """Drops the residual branch of each sample ("row") or of the whole batch ("batch") with probability p
    while training, scaling what it keeps by 1 / (1 - p), as torchvision.ops.StochasticDepth (arXiv:1603.09382);
    the identity in eval mode."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival_rate = 1.0 - self.p
        if self.mode == "row":  # one draw per sample, (N, 1), against the sample flattened
            noise = torch.empty_like(x.flatten(1)[:, :1]).bernoulli_(survival_rate)
        else:
            noise = torch.empty_like(x.flatten()[:1]).bernoulli_(survival_rate)
        if survival_rate > 0.0:
            noise.div_(survival_rate)
        if self.mode == "row":
            return (x.flatten(1) * noise).view_as(x)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"
'''


class StochasticDepth(Op):
    name = "stochastic_depth"
    known_as = ("StochasticDepth", "drop_path", "DropPath", "droppath")
    aliases_input = True  # in eval mode
    channels_last = True
    family = "regularize"
    doc = ("drops the residual branch of whole samples with probability p while training, as "
           "torchvision.ops.StochasticDepth: `stochastic_depth(p, mode=\"row\")`; `mode=\"batch\"` draws once "
           "per batch")
    args = (Arg("p", probability, doc="probability of dropping"),
            Arg("mode", choice("row", "batch"), "row", doc='"row": per sample; "batch": the whole batch'))
    torch_helpers = (STOCHASTIC_DEPTH,)

    def label(self, a):
        return f"stochastic_depth {a['p']:g}" + ("" if a["mode"] == "row" else ", batch")

    def shares_storage(self, a, training):
        return None if training and a["p"] > 0 else 0

    def saved_for_backward(self, a, ins, out, grad=None):
        if a["p"] == 0:
            return []
        # the product keeps the noise: one draw per sample (N x 1) or one for the batch
        return [Saved("noise", "new", (1,), batched=a["mode"] == "row")]

    def torch_module(self, a, ins):
        return pycall("StochasticDepth", py(a["p"]), py(a["mode"]))  # as torchvision: StochasticDepth(p, "row")

    def torch_module_nodes(self, a, ins):
        """fx nodes of StochasticDepth.forward in training mode (what `node_shapes` traces)."""
        if a["p"] == 0.0:
            return 0
        # flatten, getitem, empty_like, bernoulli_, [div_], then flatten, mul, view_as (row) or mul (batch)
        return 4 + (a["p"] < 1.0) + (3 if a["mode"] == "row" else 1)


# torchvision.ops.Permute, word for word but the doc string.
PERMUTE = '''
class Permute(nn.Module):
    """Permutes the dimensions, as torchvision.ops.Permute: [0, 2, 3, 1] makes N x C x H x W channels-last."""

    def __init__(self, dims) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)
'''


class Permute(Op):
    name = "permute"
    known_as = ("Permute", "transpose", "Transpose")
    aliases_input = True  # a view
    passes_gradient = True
    channels_last = True
    family = "reshape"
    doc = ("permutes the dimensions, batch included, as torchvision.ops.Permute: `permute([0, 2, 3, 1])` turns "
           "C x H x W into channels-last H x W x C, `permute([0, 3, 1, 2])` turns it back")
    args = (Arg("dims", int_list, doc="the new order of (N, C, H, W): [0, 2, 3, 1] or [0, 3, 1, 2]"),)
    ranks = (3,)
    torch_helpers = (PERMUTE,)
    TO_LAST, TO_FIRST = (0, 2, 3, 1), (0, 3, 1, 2)

    def output_shape(self, a, ins):
        s = ins[0]
        if a["dims"] == self.TO_LAST and not is_channels_last(s):
            c, h, w = s
            return ChannelsLast((h, w, c))
        if a["dims"] == self.TO_FIRST and is_channels_last(s):
            h, w, c = s
            return (c, h, w)
        if a["dims"] in (self.TO_LAST, self.TO_FIRST):
            layout = "channels-last H x W x C" if is_channels_last(s) else "channels-first C x H x W"
            want = "[0, 3, 1, 2]" if is_channels_last(s) else "[0, 2, 3, 1]"
            raise OpError(f"`permute({list(a['dims'])})` does not apply to the {layout} {fmt_shape(s)}", arg="dims",
                          help=f"this input turns with `permute({want})`")
        raise OpError(f"`permute` takes [0, 2, 3, 1] (to channels-last) or [0, 3, 1, 2] (back), got {list(a['dims'])}",
                      arg="dims", help="other orders would mix up height, width and channels; graphdsl tracks only "
                                       "these two layouts")

    def label(self, a):
        return "to HWC" if a["dims"] == self.TO_LAST else "to CHW" if a["dims"] == self.TO_FIRST else "permute"

    def torch_module(self, a, ins):
        return f"Permute({list(a['dims'])!r})"  # torchvision's ConvNeXt: Permute([0, 2, 3, 1])

    def torch_call(self, a, args, ins):
        return pycall("torch.permute", args[0], tuple(a["dims"]))


class ChannelShuffle(Op):
    name = "channel_shuffle"
    known_as = ("ChannelShuffle", "shuffle", "channelshuffle")
    family = "reshape"
    ranks = (3,)
    doc = ("interleaves the channels of `groups` groups (ShuffleNet), as torch.nn.ChannelShuffle: "
           "`channel_shuffle(groups)`")
    args = (Arg("groups", positive_int, doc="number of groups; divides the channels"),)

    def output_shape(self, a, ins):
        c = ins[0][0]
        if c % a["groups"]:
            offer = divisors(c, 6)
            raise OpError(f"`channel_shuffle({a['groups']})` needs channels that divide into {a['groups']} groups, "
                          f"got {c}", arg="groups",
                          help=f"{c} channels divide into {', '.join(map(str, offer))} groups" if offer
                          else f"{c} channels cannot be shuffled: make them divisible first")
        return ins[0]

    def other_ops(self, a, ins, out):
        return numel(out)  # a copy

    def saved_for_backward(self, a, ins, out, grad=None):
        return []

    def label(self, a):
        return f"channel_shuffle {a['groups']}"

    def torch_module(self, a, ins):
        return pycall("nn.ChannelShuffle", a["groups"])

    def torch_call(self, a, args, ins):
        return pycall("F.channel_shuffle", args[0], a["groups"])


class Channels(Op):
    name = "channels"
    known_as = ("slice", "narrow")
    aliases_input = True  # a view
    passes_gradient = True
    family = "reshape"
    doc = ("the channels [start, stop) of the input, `x[:, start:stop]`: `channels(start, stop)` "
           "(what `(a, b) = chunk(2)` and `split(...)` make)")
    args = (Arg("start", nonneg_int, doc="first channel"), Arg("stop", positive_int, doc="one past the last channel"))

    def output_shape(self, a, ins):
        c, *rest = ins[0]
        start, stop = a["start"], a["stop"]
        if stop > c:
            raise OpError(f"`channels({start}, {stop})` reaches past the {c} channels of {fmt_shape(ins[0])}",
                          arg="stop", help=f"stop at most at {c}")
        if start >= stop:
            raise OpError(f"`channels({start}, {stop})` is empty: start must be below stop", arg="start",
                          help=f"e.g. `channels({min(start, stop - 1)}, {stop})`")
        return (stop - start, *rest)

    def label(self, a):
        return f"channels {a['start']}:{a['stop']}"

    def torch_call(self, a, args, ins):
        return f"{args[0]}[:, {int(a['start'])}:{int(a['stop'])}]"
