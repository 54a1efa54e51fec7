"""Random networks for the property tests (tests/test_properties.py).

A network is drawn as a small *description* (the classes below), rendered to `.cnn` text for
graphdsl, and run by `Reference`, an interpreter written here straight onto torch calls from the
same description. The reference shares nothing with graphdsl (no import of it): in-channels and
in-features come from the runtime tensor, as with lazy modules, so where graphdsl's static shape
rules disagree with torch the two sides disagree.

Two generators share the code:

- `networks()` draws networks that torch runs (the "valid" mode): every parameter is chosen
  against the shape flowing in, computed by `layer_shape` (PyTorch's documented size formulas,
  written out here again; they only steer the drawing, the tests never trust them);
- `edge_networks()` draws networks near the edge of validity: kernels around the padded input
  size, strides that shrink a side to nothing, groups that may not divide, pooling padding around
  kernel // 2, ceil-mode windows that start in the padding, `pad=same` with a stride, merges whose
  branches may disagree, image ops after `flatten`. After the first layer that `layer_shape`
  thinks torch rejects, the network ends.

Language coverage: sequences, `[...]` groups, labels, blocks with parameters (positional, keyword
and default arguments; argument expressions such as `p * 2`), `item * n` repeats, `concat { }`
and `add { }` branches, named tensors with `t = item` and `concat(a, b)`, `residual` with and
without a shortcut (and `shortcut if COND`, true or false), `if`/`else` (the branch not taken holds
junk that must not be elaborated), `in.channels` expressions, `output a, b` and `output a, training: b`,
flat inputs.

Operator coverage beyond the classics: hardswish, hardsigmoid, upsample (scale or size, nearest or
bilinear), channel_shuffle, layer_norm (flat, C x H x W, channels-last), stochastic_depth, scale,
channels slices, `mul` (squeeze-and-excitation gates and `mul { }` branches), and ConvNeXt-style
channels-last groups: `permute([0, 2, 3, 1])`, layer norm, linear, activation, linear, back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import strategies as st

MAX_CHANNELS = 16
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softmax", "hardswish",
               "hardsigmoid")
POINTWISE = tuple(a for a in ACTIVATIONS if a != "softmax")  # what works on channels-last tensors too


# ---- the description -----------------------------------------------------------------------


@dataclass(frozen=True)
class V:
    """A value written as an expression: `text` goes into the spec, `value` to the interpreter."""

    text: str
    value: object


def val(x):
    return x.value if isinstance(x, V) else x


@dataclass
class Layer:
    """One operator. `args` holds only the arguments written; the first `npos` positionally."""

    op: str
    args: dict = field(default_factory=dict)
    label: str | None = None
    npos: int = 0


@dataclass
class Group:
    items: list
    label: str | None = None


@dataclass
class Branches:
    kind: str  # concat | add
    branches: list  # items, each a branch from the same input
    label: str | None = None


@dataclass
class Bind:
    """`name = item`: a side branch; the main flow stays."""

    name: str
    item: object


@dataclass
class Merge:
    """`kind(a, b, ...)` over named tensors."""

    kind: str
    names: list
    label: str | None = None


@dataclass
class Residual:
    body: list
    shortcut: list | None = None
    cond: V | None = None  # `shortcut if COND`; value says whether the shortcut is taken
    junk_shortcut: str | None = None  # a shortcut text that a false condition must keep unelaborated


@dataclass
class BlockDef:
    name: str
    params: list  # (name, default value or None)
    body: list


@dataclass
class Call:
    block: BlockDef
    pos: list  # values, given positionally
    kw: dict  # name -> value
    label: str | None = None


@dataclass
class Repeat:
    item: object
    n: int
    label: str | None = None


@dataclass
class If:
    cond: V  # value: bool
    body: list
    junk: str  # the branch not taken, as text


@dataclass
class Net:
    input: tuple
    items: list
    blocks: list
    outputs: list | None = None  # tensor names for `output a, b`
    training: list = field(default_factory=list)  # those of them returned in training only (`training: b`)

    def render(self) -> str:
        return render(self)


# ---- documented signatures (notes_lang.md), used by the renderer and the interpreter -------------

SIGNATURES = {
    "conv": ("out", "kernel", "stride", "pad", "dilation", "groups", "bias"),
    "maxpool": ("kernel", "stride", "pad", "ceil", "dilation", "adaptive"),
    "avgpool": ("kernel", "stride", "pad", "ceil", "count_include_pad", "adaptive"),
    "bn": ("eps", "momentum", "affine"),
    "lrn": ("size", "alpha", "beta", "k"),
    "relu": ("inplace",),
    "relu6": ("inplace",),
    "silu": ("inplace",),
    "hardswish": ("inplace",),
    "hardsigmoid": ("inplace",),
    "upsample": ("scale", "size", "mode", "align_corners"),
    "layer_norm": ("eps", "affine"),
    "stochastic_depth": ("p", "mode"),
    "scale": ("init",),
    "channel_shuffle": ("groups",),
    "channels": ("start", "stop"),
    "permute": ("dims",),
    "leaky_relu": ("slope", "inplace"),
    "elu": ("alpha", "inplace"),
    "dropout": ("p",),
    "linear": ("out", "bias"),
    "subsample": ("stride",),
    "pad_channels": ("out",),
}
DEFAULTS = {
    "conv": dict(stride=1, pad=0, dilation=1, groups=1, bias=True),
    "maxpool": dict(kernel=None, stride=None, pad=0, ceil=False, dilation=1, adaptive=None),
    "avgpool": dict(kernel=None, stride=None, pad=0, ceil=False, count_include_pad=True, adaptive=None),
    "bn": dict(eps=1e-5, momentum=0.1, affine=True),
    "lrn": dict(alpha=1e-4, beta=0.75, k=1.0),
    "leaky_relu": dict(slope=0.01),
    "elu": dict(alpha=1.0),
    "dropout": dict(p=0.5),
    "linear": dict(bias=True),
    "subsample": dict(stride=2),
    "upsample": dict(scale=None, size=None, mode="nearest", align_corners=None),
    "layer_norm": dict(eps=1e-5, affine=True),
    "stochastic_depth": dict(mode="row"),
    "scale": dict(init=1.0),
}


def full_args(layer: Layer) -> dict:
    a = dict(DEFAULTS.get(layer.op, {}))
    a.update({k: val(v) for k, v in layer.args.items()})
    return a


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ---- rendering -------------------------------------------------------------------------------


def fmt(v) -> str:
    if isinstance(v, V):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "(" + ", ".join(fmt(x) for x in v) + ")"
    if isinstance(v, list):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    if isinstance(v, str):  # symbols: same, global (strings are V('"text"', "text"))
        return v
    return repr(v)


def render(net: Net) -> str:
    out = []
    for b in net.blocks:
        params = ", ".join(n if d is None else f"{n}={fmt(d)}" for n, d in b.params)
        out.append(f"block {b.name}({params}) {{")
        _items(b.body, out, 1)
        out.append("}")
    out.append("network generated {")
    shape = net.input
    out.append("    input " + ("x".join(map(str, shape)) if len(shape) == 3 else f"({shape[0]})"))
    _items(net.items, out, 1)
    if net.outputs:
        main = [n for n in net.outputs if n not in net.training]
        out.append("    output " + ", ".join(main) + (", training: " + ", ".join(net.training) if net.training else ""))
    out.append("}")
    return "\n".join(out) + "\n"


def _items(items, out, depth):
    for it in items:
        out.append("    " * depth + _item(it, depth))


def _labelled(label, text):
    return f"{label}: {text}" if label else text


def _body(items, depth) -> str:
    lines = []
    _items(items, lines, depth + 1)
    return "{\n" + "\n".join(lines) + "\n" + "    " * depth + "}"


def _item(it, depth) -> str:
    ind = "    " * depth
    if isinstance(it, Layer):
        names = SIGNATURES.get(it.op, ())
        written = [k for k in names if k in it.args] + [k for k in it.args if k not in names]
        npos = 0  # positional arguments: a prefix of the signature without gaps
        while npos < min(it.npos, len(written)) and npos < len(names) and written[npos] == names[npos]:
            npos += 1
        parts = [fmt(it.args[k]) for k in written[:npos]] + [f"{k}={fmt(it.args[k])}" for k in written[npos:]]
        text = f"{it.op}({', '.join(parts)})" if parts else it.op
        return _labelled(it.label, text)
    if isinstance(it, Group):
        lines = []
        _items(it.items, lines, depth + 1)
        return _labelled(it.label, "[\n" + "\n".join(lines) + "\n" + ind + "]")
    if isinstance(it, Branches):
        return _labelled(it.label, f"{it.kind} " + _body(it.branches, depth))
    if isinstance(it, Bind):
        return f"{it.name} = {_item(it.item, depth)}"
    if isinstance(it, Merge):
        return _labelled(it.label, f"{it.kind}({', '.join(it.names)})")
    if isinstance(it, Residual):
        text = "residual " + _body(it.body, depth)
        if it.shortcut is not None or it.junk_shortcut is not None:
            text += " shortcut"
            if it.cond is not None:
                text += f" if {it.cond.text}"
            text += " " + (_body(it.shortcut, depth) if it.shortcut is not None else "{ " + it.junk_shortcut + " }")
        return text
    if isinstance(it, Call):
        parts = [fmt(v) for v in it.pos] + [f"{k}={fmt(v)}" for k, v in it.kw.items()]
        return _labelled(it.label, f"{it.block.name}({', '.join(parts)})")
    if isinstance(it, Repeat):
        return _labelled(it.label, f"{_item(it.item, depth)} * {it.n}")
    if isinstance(it, If):
        body = _body(it.body, depth)
        junk = "{ " + it.junk + " }"
        return f"if {it.cond.text} {body if it.cond.value else junk} else {junk if it.cond.value else body}"
    raise TypeError(it)


# ---- PyTorch's size rules, to steer the drawing (never trusted by the tests) -------------------------


def sliding(size, k, s, p, d=1, ceil=False):
    """torch's pooling_output_shape / conv output size; may be < 1 (torch then refuses)."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


class CL(tuple):
    """A channels-last shape (H, W, C), between `permute([0, 2, 3, 1])` and `permute([0, 3, 1, 2])`."""


def layer_shape(layer: Layer, s):
    """The output shape torch gives, or None where torch raises (or linear on an image, or a
    shrinking pad_channels: the intentional differences)."""
    if s is None:
        return None
    a = full_args(layer)
    op, img = layer.op, len(s) == 3
    if op == "permute":
        if a["dims"] == [0, 2, 3, 1] and img and not isinstance(s, CL):
            return CL((s[1], s[2], s[0]))
        if a["dims"] == [0, 3, 1, 2] and isinstance(s, CL):
            return (s[2], s[0], s[1])
        return None
    if isinstance(s, CL):  # what the channels-last groups hold
        if op == "linear":
            return CL((s[0], s[1], a["out"]))
        return s if op in (*POINTWISE, "layer_norm", "dropout", "identity", "stochastic_depth", "scale") else None
    if op == "upsample":
        if not img:
            return None
        if a["size"] is not None:
            return (s[0], *pair(a["size"]))
        sh, sw = pair(a["scale"]) if isinstance(a["scale"], tuple) else (a["scale"], a["scale"])
        out = (s[0], math.floor(s[1] * sh), math.floor(s[2] * sw))
        return out if min(out) >= 1 else None
    if op == "channel_shuffle":
        return s if img and s[0] % a["groups"] == 0 else None
    if op == "channels":
        return (a["stop"] - a["start"], *s[1:]) if 0 <= a["start"] < a["stop"] <= s[0] else None
    if op == "conv":
        if not img:
            return None
        c, h, w = s
        g, out = a["groups"], a["out"]
        if c % g or out % g:
            return None
        if a["pad"] == "same":
            return (out, h, w) if pair(a["stride"]) == (1, 1) else None
        dims = [sliding(n, k, st_, p, d) for n, k, st_, p, d in
                zip((h, w), pair(a["kernel"]), pair(a["stride"]), pair(a["pad"]), pair(a["dilation"]))]
        return (out, *dims) if min(dims) >= 1 and all(
            n + 2 * p >= d * (k - 1) + 1 for n, k, p, d in
            zip((h, w), pair(a["kernel"]), pair(a["pad"]), pair(a["dilation"]))) else None
    if op in ("maxpool", "avgpool"):
        if not img:
            return None
        c, h, w = s
        if a["adaptive"] is not None:
            return (c, *pair(a["adaptive"]))
        if a["kernel"] == "global":
            return (c, 1, 1)
        k = pair(a["kernel"])
        stride = pair(a["stride"]) if a["stride"] is not None else k
        pad = pair(a["pad"])
        dil = pair(a.get("dilation", 1)) if op == "maxpool" else (1, 1)
        if any(p > kk // 2 for p, kk in zip(pad, k)):
            return None
        dims = [sliding(n, kk, ss, p, d, a["ceil"]) for n, kk, ss, p, d in zip((h, w), k, stride, pad, dil)]
        return (c, *dims) if min(dims) >= 1 else None
    if op == "lrn":
        return s if img else None
    if op == "flatten":
        return (math.prod(s),)
    if op == "linear":
        return (a["out"],) if not img else None
    if op == "subsample":
        if not img:
            return None
        st_ = a["stride"]
        return (s[0], -(-s[1] // st_), -(-s[2] // st_))
    if op == "pad_channels":
        return (a["out"], *s[1:]) if img and a["out"] >= s[0] else None
    return s  # bn, activations, dropout, identity


def walk(items, s, env):
    """The shape after a list of items (None: torch refuses somewhere); fills `env` with names."""
    for it in items:
        s = item_shape(it, s, env)
        if s is None:
            return None
    return s


def item_shape(it, s, env):
    if s is None:
        return None
    if isinstance(it, Layer):
        out = layer_shape(it, s)
    elif isinstance(it, Group):
        out = walk(it.items, s, env)
    elif isinstance(it, Branches):
        outs = [item_shape(b, s, env) for b in it.branches]
        out = merge_shape(it.kind, outs)
    elif isinstance(it, Bind):
        env[it.name] = item_shape(it.item, s, env)
        return s
    elif isinstance(it, Merge):
        out = merge_shape(it.kind, [env.get(n) for n in it.names])
    elif isinstance(it, Residual):
        body = walk(it.body, s, env)
        short = walk(it.shortcut, s, env) if (it.shortcut is not None and (it.cond is None or it.cond.value)) else s
        out = merge_shape("add", [body, short])
    elif isinstance(it, Call):
        out = walk(it.block.body, s, env)
    elif isinstance(it, Repeat):
        out = s
        for _ in range(it.n):
            out = item_shape(it.item, out, env)
    elif isinstance(it, If):
        out = walk(it.body, s, env)
    else:
        raise TypeError(it)
    if getattr(it, "label", None):
        env[it.label] = out
    return out


def merge_shape(kind, shapes):
    if not shapes or any(x is None for x in shapes):
        return None
    first = shapes[0]
    if kind == "add":
        return first if all(x == first for x in shapes) else None
    if kind == "mul":  # broadcasting, same rank: each size equal or 1
        if any(len(x) != len(first) for x in shapes):
            return None
        out = []
        for dims in zip(*shapes):
            sizes = {d for d in dims if d != 1}
            if len(sizes) > 1:
                return None
            out.append(sizes.pop() if sizes else 1)
        return tuple(out)
    if any(len(x) != len(first) or x[1:] != first[1:] for x in shapes):
        return None
    return (sum(x[0] for x in shapes), *first[1:])


def all_layers(net: Net):
    """Every Layer of the description (blocks included; junk text is not parsed)."""

    def visit(items):
        for it in items:
            if isinstance(it, Layer):
                yield it
            elif isinstance(it, Group):
                yield from visit(it.items)
            elif isinstance(it, Branches):
                yield from visit(it.branches)
            elif isinstance(it, (Bind, Repeat)):
                yield from visit([it.item])
            elif isinstance(it, Residual):
                yield from visit(it.body + (it.shortcut or []))
            elif isinstance(it, If):
                yield from visit(it.body)

    yield from visit(net.items)
    for b in net.blocks:
        yield from visit(b.body)


def uses_in(it) -> bool:
    """Whether an item reads `in.*` anywhere (such items are not repeated: `in` changes)."""
    if isinstance(it, V):
        return "in." in it.text
    if isinstance(it, Layer):
        return any(uses_in(v) for v in it.args.values())
    if isinstance(it, (Group, Call)):
        items = it.items if isinstance(it, Group) else it.block.body
        return any(uses_in(x) for x in items)
    if isinstance(it, Branches):
        return any(uses_in(x) for x in it.branches)
    if isinstance(it, Bind):
        return uses_in(it.item)
    if isinstance(it, Residual):
        return (any(uses_in(x) for x in it.body + (it.shortcut or []))
                or (it.cond is not None and uses_in(it.cond)))
    if isinstance(it, Repeat):
        return uses_in(it.item)
    if isinstance(it, If):
        return uses_in(it.cond) or any(uses_in(x) for x in it.body)
    return False


LABELABLE = (Layer, Group, Branches, Call, Repeat, Merge)


# ---- drawing -------------------------------------------------------------------------------------


ANY_RANK = ("layer_norm", "stochastic_depth", "scale", "slice")  # new ops drawn for images and flat features


class Gen:
    """Draws a network item by item against the shape flowing in."""

    def __init__(self, draw, edge: bool):
        self.draw, self.edge = draw, edge
        self.blocks: list[BlockDef] = []
        self.counter = 0
        self.budget = draw(st.integers(2, 8) if edge else st.integers(3, 14))  # primitive layers left

    # small helpers
    def int(self, lo, hi):
        return self.draw(st.integers(lo, max(lo, hi)))

    def bool(self, p=0.5):
        # true on the high draws: hypothesis favours small integers, and shrinks toward 0 (false)
        return self.draw(st.integers(0, 99)) >= 100 - p * 100

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def fresh(self, prefix):
        self.counter += 1
        return f"{prefix}{self.counter}"

    def label(self, p=0.25):
        return self.fresh("l") if self.bool(p) else None

    # -- primitive layers
    def conv(self, s, keep=False, edge=False):
        c, h, w = s
        d = 1 if keep or not self.bool(0.25) else self.int(2, 3 if edge else 2)
        stride = 1 if keep else self.pick([1, 1, 2, 3] + ([4] if edge else []))
        if keep:
            pad = "same" if self.bool(0.3) else None
        else:
            pad = "same" if self.bool(0.25 if edge else 0.12) and (edge or stride == 1) else None
        kernels, pads = [], []
        for n in (h, w):
            if pad == "same":
                kernels.append(self.int(1, 5))
                continue
            if keep:
                k = self.pick([1, 3, 5])
                kernels.append(k)
                pads.append(d * (k - 1) // 2)
                continue
            p = self.int(0, 2)
            kmax = (n + 2 * p - 1) // d + 1  # largest kernel that fits
            k = self.int(max(1, kmax - 1), kmax + 1) if edge else self.int(1, min(5, kmax))
            kernels.append(k)
            pads.append(p)
        if edge and self.bool(0.3):
            g, out = self.int(1, 4), self.int(1, 12)
        else:
            divisors = [g for g in range(1, c + 1) if c % g == 0]
            g = self.pick(divisors) if self.bool(0.3) else 1
            out = g * self.int(1, max(1, MAX_CHANNELS // g))
        args = {"out": V("in.channels", out) if out == c and self.bool(0.3) else out}
        args["kernel"] = kernels[0] if kernels[0] == kernels[1] and self.bool(0.8) else tuple(kernels)
        if stride != 1 or self.bool(0.1):
            args["stride"] = stride
        if pad == "same":
            args["pad"] = "same"
        elif pads != [0, 0] or self.bool(0.1):
            args["pad"] = pads[0] if pads[0] == pads[1] else tuple(pads)
        if d != 1:
            args["dilation"] = d
        if g != 1:
            args["groups"] = g
        if self.bool(0.3):
            args["bias"] = self.bool()
        return Layer("conv", args, npos=self.pick([2, 2, 1, 0]))

    def pool(self, s, keep=False, edge=False):
        c, h, w = s
        op = self.pick(["maxpool", "avgpool"])
        if keep:
            k = self.pick([1, 3, 3, 5])
            if min(h, w) < k:
                k = 1
            args = {"kernel": k, "stride": 1, "pad": k // 2}
            if self.bool(0.3):
                args["ceil"] = True
            return Layer(op, args, npos=self.pick([1, 0]))
        # edge scenarios: a window around the padded size; a ceil-mode window that overhangs the
        # input (torch keeps one output when the stride reaches past it); padding around k // 2
        scenario = self.pick(["fit", "overhang", "pad", "small"]) if edge else "valid"
        stride = self.pick([None, 1, 2, 3] + ([4, 5] if edge else []))
        if scenario == "overhang":
            stride = self.int(2, 5)
        ks, pads = [], []
        for n in (h, w):
            p = self.int(0, 2)
            if scenario == "fit":
                k = self.int(max(1, n + 2 * p - 1), n + 2 * p + 1)
            elif scenario == "overhang":
                k = self.int(n + 2 * p, n + 2 * p + stride - 1)
            elif scenario == "pad":
                k = self.int(1, 5)
                p = k // 2 + self.int(0, 1)
            elif scenario == "small":
                k = self.int(1, 4)
            else:
                k = self.int(1, min(4, n))
                p = self.int(0, k // 2)
            if scenario != "pad":
                p = min(p, k // 2 + (1 if edge and self.bool(0.2) else 0))
            ks.append(k)
            pads.append(p)
        args = {"kernel": ks[0] if ks[0] == ks[1] else tuple(ks)}
        if stride is not None:
            args["stride"] = stride
        if pads != [0, 0]:
            args["pad"] = pads[0] if pads[0] == pads[1] else tuple(pads)
        if scenario == "overhang" or self.bool(0.6 if edge else 0.35):
            args["ceil"] = True
        if op == "maxpool" and self.bool(0.15):
            args["dilation"] = self.int(2, 3 if edge else 2)
        if op == "avgpool" and self.bool(0.2):
            args["count_include_pad"] = False
        layer = Layer(op, args, npos=self.pick([1, 1, 0]))
        if not edge:  # keep the valid draw valid: shrink until torch takes it
            while layer_shape(layer, s) is None:
                layer = Layer(op, {"kernel": 1}, npos=1)
        return layer

    def global_pool(self, s):
        op = self.pick(["avgpool", "maxpool"])
        if self.bool(0.6):
            return Layer(op, {"kernel": "global"}, npos=1)
        size = self.int(1, 4) if self.bool(0.8) else (self.int(1, 4), self.int(1, 4))
        return Layer(op, {"adaptive": size})

    def same_size_pool(self, s):
        """adaptive pooling to the input's own size: keeps H and W."""
        return Layer(self.pick(["avgpool", "maxpool"]), {"adaptive": (s[1], s[2]) if s[1] != s[2] else s[1]})

    def activation(self, names=ACTIVATIONS):
        name = self.pick(names)
        args = {}
        if name == "leaky_relu" and self.bool():
            args["slope"] = 0.2
        if name == "elu" and self.bool():
            args["alpha"] = 0.5
        if name in ("relu", "relu6", "leaky_relu", "elu", "silu", "hardswish", "hardsigmoid") and self.bool(0.3):
            args["inplace"] = True  # the IR computes out of place; the backend may only honour it when safe
        return Layer(name, args, npos=self.pick([1, 0]))

    def bn(self):
        args = {}
        if self.bool(0.3):
            args["eps"] = 0.001
        if self.bool(0.2):
            args["affine"] = False
        if self.bool(0.1):
            args["momentum"] = 0.01
        return Layer("bn", args)

    def layer_norm(self):
        args = {}
        if self.bool(0.3):
            args["eps"] = 1e-6
        if self.bool(0.2):
            args["affine"] = False
        return Layer("layer_norm", args)

    def stochastic_depth(self):
        args = {"p": self.pick([0.0, 0.1, 0.5, 1.0])}
        if self.bool(0.3):
            args["mode"] = V('"batch"', "batch")
        return Layer("stochastic_depth", args, npos=self.pick([1, 0]))

    def scale(self):
        return Layer("scale", {"init": self.pick([0.5, 1e-6, 2.0])} if self.bool(0.7) else {}, npos=self.pick([1, 0]))

    def channel_slice(self, s):
        c = s[0]
        start = self.int(0, c - 1)
        return Layer("channels", {"start": start, "stop": self.int(start + 1, c)}, npos=self.pick([2, 2, 0]))

    def upsample(self, s, keep=False, edge=False):
        c, h, w = s
        if keep or self.bool(0.3):
            args = {"size": (h, w) if h != w or self.bool(0.3) else h} if keep else {
                "size": self.int(1, 2 * h) if self.bool(0.6) else (self.int(1, 2 * h), self.int(1, 2 * w))}
        else:
            scales = [2, 2, 1.5, 0.5, 3] + ([0.1, 0.25, 0.3] if edge else [])
            args = {"scale": self.pick(scales) if self.bool(0.8) else (self.pick(scales), self.pick(scales))}
        if self.bool(0.4):
            args["mode"] = V('"bilinear"', "bilinear")
            if self.bool(0.5):
                args["align_corners"] = self.bool()
        layer = Layer("upsample", args)
        if not edge and layer_shape(layer, s) is None:  # a scale that shrinks a side to nothing
            layer = Layer("upsample", {"scale": 2})
        return layer

    def channel_shuffle(self, s, edge=False):
        c = s[0]
        groups = self.int(1, 4) if edge else self.pick([g for g in range(1, c + 1) if c % g == 0])
        return Layer("channel_shuffle", {"groups": groups}, npos=self.pick([1, 0]))

    def any_rank_layer(self, kind, s):
        """A layer of the kinds that take images and flat features alike (ANY_RANK)."""
        if kind == "slice":
            return self.channel_slice(s)
        return {"layer_norm": self.layer_norm, "stochastic_depth": self.stochastic_depth, "scale": self.scale}[kind]()

    def image_layer(self, s, keep=False):
        edge = self.edge and self.bool(0.5)
        kinds = ["conv", "conv", "conv", "pool", "pool", "bn", "act", "act", "lrn", "dropout", "identity", "subsample",
                 "pad_channels", "global", "upsample", "shuffle", "layer_norm", "stochastic_depth", "scale", "slice"]
        kind = self.pick(kinds + (["conv", "pool", "pool", "flatten"] if edge else []))
        if kind == "upsample":
            return self.upsample(s, keep, edge)
        if kind == "shuffle":
            return self.channel_shuffle(s, edge)
        if kind in ANY_RANK:
            return self.any_rank_layer(kind, s)
        if kind == "flatten":  # edge mode: what follows may be an image op on flat features
            return Layer("flatten")
        if kind == "conv":
            return self.conv(s, keep, edge)
        if kind == "pool":
            return self.pool(s, keep, edge)
        if kind == "bn":
            return self.bn()
        if kind == "act":
            return self.activation()
        if kind == "lrn":
            args = {"size": self.int(1, 5)}
            if self.bool(0.3):
                args["alpha"], args["beta"], args["k"] = 0.001, 0.5, 2.0
            return Layer("lrn", args, npos=1)
        if kind == "dropout":
            return Layer("dropout", {"p": 0.2} if self.bool() else {})
        if kind == "identity":
            return Layer("identity")
        if kind == "subsample":
            stride = 1 if keep else self.int(1, 3)
            return Layer("subsample", {} if stride == 2 and self.bool() else {"stride": stride}, npos=1)
        if kind == "pad_channels":
            c = s[0]
            out = self.int(max(1, c - 2), c + 3) if edge else self.int(c, min(c + 8, max(c, MAX_CHANNELS)))
            return Layer("pad_channels", {"out": V("in.channels * 2", out) if out == 2 * c else out}, npos=1)
        if keep:
            return self.same_size_pool(s)
        return self.global_pool(s)

    def flat_layer(self, s):
        if self.edge and self.bool(0.25):  # an image op after flatten: torch and graphdsl must refuse
            return self.pick([Layer("conv", {"out": 2, "kernel": 1}, npos=2), Layer("maxpool", {"kernel": 1}, npos=1),
                              Layer("lrn", {"size": 2}, npos=1), Layer("subsample"),
                              Layer("pad_channels", {"out": s[0] + 2}, npos=1),
                              Layer("avgpool", {"kernel": "global"}, npos=1)])
        kind = self.pick(["linear", "linear", "bn", "act", "dropout", "identity", "flatten", "layer_norm",
                          "stochastic_depth", "scale", "slice"])
        if kind in ANY_RANK:
            return self.any_rank_layer(kind, s)
        if kind == "linear":
            args = {"out": self.int(1, 16)}
            if self.bool(0.3):
                args["bias"] = False
            return Layer("linear", args, npos=self.pick([1, 0]))
        if kind == "bn":
            return self.bn()
        if kind == "act":
            return self.activation()
        if kind == "dropout":
            return Layer("dropout")
        return Layer(kind)

    def halving(self, s):
        """A layer from CxHxW to C'x ceil(H/2) x ceil(W/2)."""
        c, h, w = s
        options = [Layer("conv", {"out": self.int(1, 12), "kernel": 3, "stride": 2, "pad": 1}, npos=2),
                   Layer("conv", {"out": self.int(1, 12), "kernel": 1, "stride": 2}, npos=2),
                   Layer("maxpool", {"kernel": 3, "stride": 2, "pad": 1}, npos=1),
                   Layer("avgpool", {"kernel": 3, "stride": 2, "pad": 1}, npos=1),
                   Layer("subsample", {}),
                   Layer("subsample", {"stride": 2}, npos=1)]
        if min(h, w) >= 2:
            options.append(Layer("maxpool", {"kernel": 2, "stride": 2, "ceil": True}, npos=1))
        return self.pick(options)

    def fix_channels(self, s, c):
        """A layer from s to c channels at the same size."""
        if s[0] <= c and self.bool(0.4):
            return Layer("pad_channels", {"out": c}, npos=1)
        return Layer("conv", {"out": c, "kernel": 1, "bias": False}, npos=2)

    # -- items
    def seq(self, s, env, depth, keep=False, lo=1, hi=3):
        """A list of items from shape s; returns (items, shape)."""
        items = []
        for _ in range(self.int(lo, hi)):
            if self.budget <= 0 and items:
                break
            it, s = self.item(s, env, depth, keep)
            items.extend(it if isinstance(it, list) else [it])
            if s is None:
                break
        return items, s

    def item(self, s, env, depth, keep=False):
        """One item (or a list of them to splice) and the shape after it."""
        kinds = ["layer"] * 6
        if depth < 3 and self.budget > 1:
            kinds += ["group", "branches", "named", "residual", "call", "call", "repeat", "if", "gate", "channels_last"]
        kind = self.pick(kinds)
        if len(s) == 1 and kind in ("branches", "named", "residual", "gate"):
            kind = self.pick(["layer", kind])  # flat merges: rarer
        if len(s) == 1 and kind == "channels_last":
            kind = "layer"
        make = getattr(self, "_" + kind)
        it = make(s, env, depth, keep)
        out = item_shape(it, s, env) if not isinstance(it, list) else walk(it, s, env)
        return it, out

    def _layer(self, s, env, depth, keep):
        self.budget -= 1
        if len(s) == 3:
            layer = self.image_layer(s, keep)
            if self.edge and self.bool(0.02):  # the intentional difference: linear needs flatten first
                layer = Layer("linear", {"out": 3}, npos=1)
        else:
            layer = self.flat_layer(s)
        layer.label = self.label(0.2)
        return layer

    def _group(self, s, env, depth, keep):
        items, _ = self.seq(s, env, depth + 1, keep)
        return Group(items, self.label(0.4))

    def _branch(self, s, env, depth, halve, channels):
        """One branch (an item) of a merge: shape-keeping layers, then the common downsampling and
        channel fix-ups (each skipped now and then in the edge mode)."""
        items, out = self.seq(s, env, depth + 1, keep=True, lo=1, hi=2)
        if out is not None and len(out) == 3:
            if halve and not (self.edge and self.bool(0.25)):
                items.append(self.halving(out))
                out = layer_shape(items[-1], out)
            if channels is not None and out is not None and out[0] != channels and not (self.edge and self.bool(0.25)):
                items.append(self.fix_channels(out, channels))
        elif out is not None and channels is not None and out[0] != channels:
            items.append(Layer("linear", {"out": channels}, npos=1))
        if self.edge and self.bool(0.05) and len(s) == 3:
            items.append(Layer("flatten"))  # a flat branch next to image branches
        if len(items) == 1 and isinstance(items[0], LABELABLE) and self.bool(0.7):
            it = items[0]
            it.label = it.label or self.label(0.3)
            return it
        return Group(items, self.label(0.3))

    def _merge_plan(self, s):
        kind = self.pick(["concat", "add", "concat", "add", "mul"])
        halve = len(s) == 3 and self.bool(0.3)
        channels = (s[0] if self.bool(0.6) else self.int(1, 12)) if kind in ("add", "mul") else None
        return kind, halve, channels

    def _branches(self, s, env, depth, keep):
        kind, halve, channels = self._merge_plan(s)
        halve = halve and not keep
        branches = [self._branch(s, env, depth, halve, channels) for _ in range(self.int(1, 3))]
        return Branches(kind, branches, self.label(0.3))

    def _named(self, s, env, depth, keep):
        kind, halve, channels = self._merge_plan(s)
        halve = halve and not keep
        items, names = [], []
        for _ in range(self.int(1, 2)):
            name = self.fresh("t")
            branch = self._branch(s, env, depth, halve, channels)
            branch.label = None  # `t = item`: the name is the label
            items.append(Bind(name, branch))
            names.append(name)
        if self.bool(0.5) or len(names) < 2:  # the main flow is one of the inputs (a named merge takes two or more)
            main = self._branch(s, env, depth, halve, channels)
            if main.label:
                main = Group([main])
            main.label = self.fresh("m")
            items.append(main)
            names.insert(self.int(0, len(names)), main.label)
        items.append(Merge(kind, names, self.label(0.3)))
        return items

    def _gate(self, s, env, depth, keep):
        """Squeeze-and-excitation: `m: ...`, `g = [avgpool(global), conv(C, 1), sigmoid]`, `mul(m, g)`."""
        body, out = self.seq(s, env, depth + 1, keep=True, lo=1, hi=2)
        if out is None:
            return body
        main = Group(body, self.fresh("m"))
        if len(out) == 3:
            c = out[0] if not self.bool(0.2) else 1
            if self.edge and self.bool(0.2):
                c = self.int(1, 12)
            squeeze = [Layer("avgpool", {"kernel": "global"}, npos=1), Layer("conv", {"out": c, "kernel": 1}, npos=2)]
        else:
            squeeze = [Layer("linear", {"out": out[0]}, npos=1)]
        gate = Group(squeeze + [self.activation(("sigmoid", "hardsigmoid"))])
        name = self.fresh("g")
        names = [main.label, name] if self.bool() else [name, main.label]
        return [main, Bind(name, gate), Merge("mul", names, self.label(0.3))]

    def _channels_last(self, s, env, depth, keep):
        """ConvNeXt's inverted bottleneck: to H x W x C, layer norm, linear, activation, linear, back."""
        items = [Layer("permute", {"dims": [0, 2, 3, 1]}, npos=1)]
        if self.bool(0.7):
            items.append(self.layer_norm())
        if self.bool(0.8):
            items.append(Layer("linear", {"out": self.int(1, 2 * MAX_CHANNELS)}, npos=1))
        if self.bool(0.7):
            items.append(self.activation(POINTWISE))
        for _ in range(self.int(0, 2)):
            items.append(self.pick([self.scale(), self.stochastic_depth(), Layer("identity"), Layer("dropout")]))
        if self.bool(0.7):
            items.append(Layer("linear", {"out": self.int(1, MAX_CHANNELS)}, npos=1))
        items.append(Layer("permute", {"dims": [0, 3, 1, 2]}, npos=1))
        self.budget -= len(items) // 2
        return Group(items, self.label(0.4))

    def _residual(self, s, env, depth, keep):
        body, out = self.seq(s, env, depth + 1, keep=True, lo=1, hi=3)
        halve = not keep and len(s) == 3 and self.bool(0.3)
        if out is not None and len(out) == 3 and halve:
            body.append(self.halving(out))
            out = layer_shape(body[-1], out)
        r = Residual(body)
        if out == s:
            if self.bool(0.3):  # a shortcut whose condition is false: its junk stays unelaborated
                c = s[0] if len(s) == 3 else None
                r.cond = V(f"in.channels != {c}" if c else "1 == 2", False)
                r.junk_shortcut = "conv(3, 99, stride=0) nonexistent_block(1)"
            return r
        if out is None or len(out) != len(s) or (self.edge and self.bool(0.2)):
            return r  # no shortcut: the add sees two shapes (edge mode) or the body failed
        if len(s) == 1:
            r.shortcut = [Layer("linear", {"out": out[0]}, npos=1)]
        elif out[1:] != (-(-s[1] // 2), -(-s[2] // 2)) and out[1:] != s[1:]:
            r.shortcut = [Layer("avgpool", {"adaptive": out[1:]}), self.fix_channels(s, out[0])]
        else:
            stride = 1 if out[1:] == s[1:] else 2
            if out[0] >= s[0] and self.bool(0.4):  # option A
                r.shortcut = ([Layer("subsample", {"stride": stride}, npos=1)] if stride != 1 else []) + (
                    [Layer("pad_channels", {"out": out[0]}, npos=1)] if out[0] != s[0] else [])
                if not r.shortcut:
                    r.shortcut = [Layer("identity")]
            else:
                conv = Layer("conv", {"out": out[0], "kernel": 1, "bias": False}, npos=2)
                if stride != 1:
                    conv.args["stride"] = stride
                r.shortcut = [Group([conv, self.bn()], self.fresh("ds"))] if self.bool() else [conv, self.bn()]
        if self.bool(0.5):
            r.cond = V(f"in.channels != {out[0]} or {int(out[1:] != s[1:])} == 1" if len(s) == 3 else "true", True)
        return r

    def _call(self, s, env, depth, keep):
        body, _ = self.seq(s, {}, depth + 1, keep)
        block = BlockDef(self.fresh("b"), [], body)
        self.lift(block)
        self.blocks.append(block)
        return Call(block, *self.call_args(block), label=self.label(0.5))

    def lift(self, block):
        """Turn some integer arguments in a block's body into block parameters."""
        slots = []

        def visit(items):
            for it in items:
                if isinstance(it, Layer):
                    for k, v in it.args.items():
                        if isinstance(v, int) and not isinstance(v, bool) and k in (
                                "out", "kernel", "stride", "pad", "size", "groups"):
                            slots.append((it, k, v))
                elif isinstance(it, Group):
                    visit(it.items)
                elif isinstance(it, Branches):
                    visit(it.branches)
                elif isinstance(it, Bind):
                    visit([it.item])
                elif isinstance(it, Residual):
                    visit(it.body + (it.shortcut or []))
                elif isinstance(it, Repeat):
                    visit([it.item])
                elif isinstance(it, If):
                    visit(it.body)

        visit(block.body)
        for it, k, v in slots:
            if not self.bool(0.5):
                continue
            name = self.fresh("p")
            form = self.pick(["plain", "plain", "double", "plus"])
            if form == "double" and v % 2 == 0 and v > 0:
                it.args[k], value = V(f"{name} * 2", v), v // 2
            elif form == "plus":
                it.args[k], value = V(f"({name} + 1) - 1", v), v
            else:
                it.args[k], value = V(name, v), v
            default = self.pick([None, value, value + 1])
            block.params.append((name, default, value))

    def call_args(self, block):
        pos, kw = [], {}
        positional = True
        for name, default, value in block.params:
            if default == value and self.bool(0.6):
                positional = False  # left to its default
                continue
            if positional and self.bool(0.6):
                pos.append(value)
            else:
                positional = False
                kw[name] = value
        block.params = [(n, d) for n, d, _ in block.params]
        return pos, kw

    def _repeat(self, s, env, depth, keep):
        inner, _ = self.item(s, {}, depth + 1, keep)
        if isinstance(inner, list) or not isinstance(inner, (Layer, Group, Call)) or inner.label or uses_in(inner):
            return inner
        n = self.int(2, 3)
        out = s
        for _ in range(n):
            out = item_shape(inner, out, {})
            if out is None or (keep and out[1:] != s[1:]):
                return inner
        return Repeat(inner, n, self.label(0.3))

    def _if(self, s, env, depth, keep):
        body, _ = self.seq(s, {}, depth + 1, keep, lo=1, hi=2)
        taken = self.bool()
        if len(s) == 3 and self.bool(0.6):
            c = s[0]
            cond = V(f"in.channels == {c}" if taken else f"in.channels == {c + 1}", taken)
        else:
            a, b = self.int(0, 4), self.int(0, 4)
            cond = V(f"{a} < {b}", a < b) if self.bool() else V("true" if taken else "not true", taken)
        junk = self.pick(["conv(3, 99, stride=0)", "no_such_block(1)", "linear(4) conv(2, 3)", "residual { relu }"])
        return If(cond, body, junk)


def _network(draw, edge: bool) -> Net:
    gen = Gen(draw, edge)
    flat = gen.bool(0.05)
    if flat:
        s = (gen.int(1, 24),)
    else:
        hi = 12 if edge else 32
        h = gen.int(1, hi) if gen.bool(0.2) else gen.int(4, min(hi, 20))
        w = h if gen.bool(0.7) else gen.int(1, hi)
        s = (gen.int(1, 6), h, w)
    env: dict = {}
    items, out = gen.seq(s, env, 0, lo=1, hi=5)
    net = Net(s, items, gen.blocks)
    if out is not None and gen.bool(0.5):  # a classifier head
        head = []
        if len(out) == 3:
            head.append(Layer(gen.pick(["avgpool", "maxpool"]), {"kernel": "global"}, npos=1) if gen.bool(0.7)
                        else gen.global_pool(out))
            head.append(Layer("flatten"))
        head.append(Layer("linear", {"out": gen.int(1, 10)}, label=gen.pick([None, "fc"]), npos=1))
        items += head
        out = walk(head, out, env)
    if out is not None and gen.bool(0.1):  # a second output from a side branch
        aux = gen.fresh("aux")
        side = [Layer("flatten"), Layer("linear", {"out": 3}, npos=1)]
        if len(out) == 3:
            side.insert(0, Layer("avgpool", {"kernel": "global"}, npos=1))
        items += [Bind(aux, Group(side)), Layer("identity", label="main")]
        net.outputs = ["main", aux]
        if gen.bool(0.6):
            net.training = [aux]  # an auxiliary head: returned in training mode only
    return net


@st.composite
def networks(draw) -> Net:
    """Networks that torch runs (by PyTorch's size rules)."""
    return _network(draw, edge=False)


@st.composite
def edge_networks(draw) -> Net:
    """Networks near the edge of validity: about half of them torch refuses."""
    return _network(draw, edge=True)


# ---- the reference interpreter ----------------------------------------------------------------------


class IntentionalDifference(Exception):
    """A construct graphdsl refuses by design although some torch code would run it."""


def reference_module(net: Net):
    """An nn.Module running `net` with plain torch calls; modules are made on the first forward,
    from the runtime shapes (so nothing here knows a static shape)."""
    import torch
    import torchvision
    from torch import nn
    from torch.nn import functional as F

    act = {"relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid,
           "tanh": nn.Tanh, "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid}

    class ScaleRef(nn.Module):
        """A learned per-channel factor (`scale`), its parameter shaped to broadcast."""

        def __init__(self, shape, init):
            super().__init__()
            self.weight = nn.Parameter(torch.full(shape, float(init)))

        def forward(self, x):
            return self.weight * x

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.made = nn.ModuleList()
            self.cursor = 0

        def module(self, factory):
            """The next module in traversal order: made on the first forward, reused after."""
            if self.cursor == len(self.made):
                m = factory()
                m.train(self.training)
                self.made.append(m)
            m = self.made[self.cursor]
            self.cursor += 1
            return m

        def forward(self, x):
            self.cursor = 0
            self.channels_last = False  # between permute([0, 2, 3, 1]) and permute([0, 3, 1, 2])
            env = {}
            x = self.items(net.items, x, env)
            if net.outputs:
                return tuple(env[n] for n in net.outputs)
            return (x,)

        def items(self, items, x, env):
            for it in items:
                x = self.item(it, x, env)
            return x

        def item(self, it, x, env):
            if isinstance(it, Layer):
                y = self.layer(it, x)
            elif isinstance(it, Group):
                y = self.items(it.items, x, env)
            elif isinstance(it, Branches):
                y = self.merge(it.kind, [self.item(b, x, env) for b in it.branches])
            elif isinstance(it, Bind):
                env[it.name] = self.item(it.item, x, env)
                return x
            elif isinstance(it, Merge):
                y = self.merge(it.kind, [env[n] for n in it.names])
            elif isinstance(it, Residual):
                body = self.items(it.body, x, env)
                taken = it.shortcut is not None and (it.cond is None or it.cond.value)
                y = self.merge("add", [body, self.items(it.shortcut, x, env) if taken else x])
            elif isinstance(it, Call):
                y = self.items(it.block.body, x, env)
            elif isinstance(it, Repeat):
                y = x
                for _ in range(it.n):
                    y = self.item(it.item, y, env)
            elif isinstance(it, If):
                y = self.items(it.body, x, env)
            else:
                raise TypeError(it)
            if getattr(it, "label", None):
                env[it.label] = y
            return y

        def merge(self, kind, xs):
            if kind == "concat":
                return torch.cat(xs, 1)
            if kind == "mul":  # torch's broadcasting, between tensors of one rank
                if len({t.dim() for t in xs}) > 1:
                    raise RuntimeError("mul of tensors of different ranks")
                out = xs[0]
                for t in xs[1:]:
                    out = out * t
                return out
            # elementwise sum of equal shapes: torch.stack refuses unequal ones (no broadcasting,
            # which `a + b` would do; graphdsl's add is documented as a sum of equal shapes)
            return torch.stack(xs).sum(0)

        def layer(self, it: Layer, x):
            a, op = full_args(it), it.op
            if op == "conv":
                pad = a["pad"]
                return self.module(lambda: nn.Conv2d(
                    x.shape[1], a["out"], pair(a["kernel"]), pair(a["stride"]), pad if pad == "same" else pair(pad),
                    pair(a["dilation"]), a["groups"], a["bias"]))(x)
            if op in ("maxpool", "avgpool"):
                mx = op == "maxpool"
                if a["adaptive"] is not None or a["kernel"] == "global":
                    size = pair(a["adaptive"]) if a["adaptive"] is not None else (1, 1)
                    return (F.adaptive_max_pool2d if mx else F.adaptive_avg_pool2d)(x, size)
                k = pair(a["kernel"])
                stride = pair(a["stride"]) if a["stride"] is not None else k
                if mx:
                    return F.max_pool2d(x, k, stride, pair(a["pad"]), pair(a["dilation"]), ceil_mode=a["ceil"])
                return F.avg_pool2d(x, k, stride, pair(a["pad"]), ceil_mode=a["ceil"],
                                    count_include_pad=a["count_include_pad"])
            if op == "bn":
                norm = nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d
                return self.module(lambda: norm(x.shape[1], a["eps"], a["momentum"], a["affine"]))(x)
            if op == "lrn":
                return F.local_response_norm(x, a["size"], a["alpha"], a["beta"], a["k"])
            if op in act:
                return act[op]()(x)
            if op == "leaky_relu":
                return F.leaky_relu(x, a["slope"])
            if op == "elu":
                return F.elu(x, a["alpha"])
            if op == "softmax":
                return torch.softmax(x, 1)
            if op == "dropout":
                return F.dropout(x, a["p"], self.training)
            if op == "identity":
                return x
            if op == "flatten":
                return torch.flatten(x, 1)
            if op == "permute":
                self.channels_last = a["dims"] == [0, 2, 3, 1]
                return x.permute(*a["dims"])
            if op == "linear" and self.channels_last:  # on N x H x W x C: the last axis, at every position
                return self.module(lambda: nn.Linear(x.shape[-1], a["out"], a["bias"]))(x)
            if op == "layer_norm":
                last = self.channels_last or x.dim() == 2
                norm = self.module(lambda: nn.LayerNorm(x.shape[-1] if last else x.shape[1], a["eps"],
                                                        elementwise_affine=a["affine"]))
                return norm(x) if last else norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            if op == "scale":
                c = x.shape[-1] if self.channels_last or x.dim() == 2 else x.shape[1]
                shape = (c,) if self.channels_last or x.dim() == 2 else (c, 1, 1)
                return self.module(lambda: ScaleRef(shape, a["init"]))(x)
            if op == "stochastic_depth":
                return torchvision.ops.stochastic_depth(x, a["p"], a["mode"], self.training)
            if op == "upsample":
                size = pair(a["size"]) if a["size"] is not None else None
                scale = a["scale"] if not isinstance(a["scale"], tuple) else tuple(map(float, a["scale"]))
                return F.interpolate(x, size=size, scale_factor=scale, mode=a["mode"], align_corners=a["align_corners"])
            if op == "channel_shuffle":
                n, c, h, w = x.shape
                g = a["groups"]
                return x.view(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)
            if op == "channels":
                return x[:, a["start"]:a["stop"]]
            if op == "linear":
                if x.dim() != 2:
                    raise IntentionalDifference("linear on an unflattened input: graphdsl asks for `flatten` first "
                                                "(torch would apply it to the last axis)")
                return self.module(lambda: nn.Linear(x.shape[1], a["out"], a["bias"]))(x)
            if op == "subsample":
                return x[:, :, :: a["stride"], :: a["stride"]]
            if op == "pad_channels":
                more = a["out"] - x.shape[1]
                if more < 0:
                    raise IntentionalDifference("pad_channels to fewer channels: F.pad with a negative pad would crop")
                return F.pad(x, (0, 0, 0, 0, more // 2, more - more // 2))
            raise NotImplementedError(op)

    return Reference()
