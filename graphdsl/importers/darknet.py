"""The Darknet front end: a `.cfg` network definition into a LayerGraph, a `.weights` file into the
compiled spec's state_dict.

A `.cfg` is a list of sections, `[net]` first, then one section per layer, each a list of `key=value`
lines (`#` and `;` start comments). Darknet numbers the layers after `[net]` from 0; `[route]` and
`[shortcut]` refer to earlier layers by those numbers, absolute or relative (`-4`). Each layer's
output is what its last operation computes: a `[convolutional]` is conv (+ bn) + activation.

Layers holding weights keep Darknet's number in their module name (`conv13`, `bn13`, `fc20`), so a
spec line can be matched with its section. `[yolo]` and `[region]` heads become the network's outputs:
the tensor feeding each head. Their decoding (sigmoids, anchors, grid offsets) is Darknet's
post-processing and not part of the spec; the graph's warnings say so.

Darknet's max pooling pads `padding` (default size - 1) cells in all, `padding // 2` on the top and
left and the rest on the bottom and right: out = (w + padding - size) // stride + 1. Symmetric
padding is PyTorch's `pad`; one more cell at the bottom/right is `ceil=true` for strides of 2 or
more. With stride 1 (yolov3-tiny's size=2 stride=1 pool, which keeps 13x13) that extra cell is
written as `upsample(scale=2)` then a maxpool of size 2k - 1, stride 2, `ceil=true`: each window of
the doubled map covers exactly the k cells of Darknet's window, so the values are the same.

The `.weights` layout (Darknet's `load_weights`): int32 major, minor, revision; `seen` as int64 when
major * 10 + minor >= 2 and both are below 1000, else int32; then float32s, layer by layer: a
convolutional's biases, then with batch_normalize its scales, rolling means and variances, then its
weights (filters x channels/groups x size x size); a connected's biases, weights (outputs x inputs;
stored transposed when major or minor is above 1000), then with batch_normalize scales, means and
variances. The file's length must match the cfg exactly. Darknet normalises by sqrt(variance) + 1e-6
where PyTorch takes sqrt(variance + eps): the running variances are adjusted for that (see
`_darknet_variances`), so that the compiled spec computes Darknet's own outputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..diagnostics import Span
from ..ops.base import sliding_out
from ..values import Symbol
from .ir import INPUT, ImportFailure, Layer, LayerGraph
from .prototxt import STRAY_BYTE, QuotedFailure, decode, stray_byte_failure

MAX_CFG_BYTES = 1 << 20  # yolov4.cfg is 12 KB
MAX_SECTIONS = 4096  # yolov4 has 162 layers
MAX_CHANNELS = 1 << 16  # filters, channels, connected outputs
MAX_SIDE = 1 << 14  # input width and height
MAX_WINDOW = 64  # kernel sizes, strides, paddings, upsampling factors
MAX_REFERENCES = 64  # layers of one [route] or [shortcut]
MAX_WEIGHTS_BYTES = 4 << 30  # yolov4.weights is 246 MB

ALIASES = {"conv": "convolutional", "network": "net", "max": "maxpool", "avg": "avgpool", "conn": "connected",
           "soft": "softmax"}
LAYER_SECTIONS = ("convolutional", "maxpool", "avgpool", "shortcut", "route", "upsample", "connected", "dropout",
                  "softmax", "cost", "yolo", "region")
# activation -> (graphdsl operator, its arguments); `linear` is none
ACTIVATIONS = {"linear": None, "leaky": ("leaky_relu", {"slope": 0.1}), "relu": ("relu", {}),
               "logistic": ("sigmoid", {}), "swish": ("silu", {}), "relu6": ("relu6", {}), "tanh": ("tanh", {}),
               "elu": ("elu", {"alpha": 1.0})}
# keys that only steer training or Darknet's own bookkeeping: read by nobody here
TRAINING_KEYS = {"stopbackward", "learning_rate", "smooth", "train_only_bn", "onlyforward", "truth", "clip",
                 "burnin_update"}
# keys each layer section reads; any other key is refused (it would change what the layer computes)
KEYS = {
    "convolutional": ("filters", "size", "stride", "pad", "padding", "groups", "batch_normalize", "activation"),
    "maxpool": ("size", "stride", "padding"),
    "avgpool": (),
    "shortcut": ("from", "activation"),
    "route": ("layers", "groups", "group_id"),
    "upsample": ("stride",),
    "connected": ("output", "activation", "batch_normalize"),
    "dropout": ("probability",),
    "softmax": ("groups", "temperature"),
}
HEADS = ("yolo", "region")
# what Darknet makes of a section without keys: its defaults, each announced ("filters: Using default
# '1'") but no error. A network is never written so: the file is likely cut short, and the import says so
DEFAULTS = {"convolutional": "filters=1, size=1, stride=1, activation=logistic", "maxpool": "size=1, stride=1",
            "connected": "output=1, activation=logistic", "upsample": "stride=2", "dropout": "probability=.5",
            "yolo": "classes=20, num=1", "region": "classes=20, num=1, coords=4"}


# ---- reading the file: sections of keys, each with its place ------------------------------------------


@dataclass
class Entry:
    key: str
    value: str
    line: int
    key_col: int
    value_col: int
    end_col: int


@dataclass
class Section:
    kind: str  # canonical: `convolutional` for `[conv]`
    written: str  # as the file writes it
    line: int
    col: int
    end_col: int
    entries: dict = field(default_factory=dict)  # key -> Entry
    index: int = -1  # Darknet's layer number; -1 for [net]


class Cfg:
    """A parsed `.cfg`: its sections, and located failures."""

    def __init__(self, path: Path):
        self.file = str(path)
        self.path = path
        self.sections: list[Section] = []
        self.text: str | None = None  # once read: what a diagnostic quotes

    def fail(self, message: str, help: str | None, line: int, col: int = 1, end_col: int | None = None):
        span = Span(self.file, line, col, line, end_col if end_col is not None else col + 1)
        return QuotedFailure(message, help, span, self.text)

    def at_key(self, entry: Entry, message: str, help: str | None = None):
        return self.fail(message, help, entry.line, entry.key_col, entry.value_col - 1)

    def at_value(self, entry: Entry, message: str, help: str | None = None, start: int = 0, end: int | None = None):
        col = entry.value_col + start
        end_col = entry.end_col if end is None else entry.value_col + end
        return self.fail(message, help, entry.line, col, max(end_col, col + 1))

    def at_section(self, section: Section, message: str, help: str | None = None):
        return self.fail(message, help, section.line, section.col, section.end_col)

    def read(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError as e:
            raise ImportFailure(f"cannot read `{self.file}`: {e.strerror or e}", "check the path") from None
        if size > MAX_CFG_BYTES:
            raise ImportFailure(f"`{self.file}` has {size:,} bytes, more than the {MAX_CFG_BYTES:,} a Darknet "
                                ".cfg may have here", "is this a .cfg? (yolov4.cfg has 12 KB)")
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise ImportFailure(f"cannot read `{self.file}`: {e.strerror or e}", "check the path") from None
        # Darknet reads bytes: those that are not UTF-8 (a comment in GBK or Latin-1) are kept one
        # character each, so that columns stay, and refused outside comments
        text = self.text = decode(data).replace("\r\n", "\n")
        current: Section | None = None
        for number, raw in enumerate(text.split("\n"), 1):
            body = re.split(r"[#;]", raw, maxsplit=1)[0].rstrip()
            stripped = body.strip()
            if not stripped:
                continue
            start = len(body) - len(body.lstrip()) + 1
            stray = STRAY_BYTE.search(body)
            if stray is not None:
                raise self.fail(*stray_byte_failure(stray.group(), "Darknet"), number, stray.start() + 1)
            if stripped.startswith("["):
                if not stripped.endswith("]"):
                    raise self.fail(f"section header `{stripped}` is not closed", "write it as `[convolutional]`",
                                    number, start, start + len(stripped))
                written = stripped[1:-1].strip()
                kind = ALIASES.get(written.lower(), written.lower())
                if len(self.sections) >= MAX_SECTIONS + 1:
                    raise self.fail(f"more than {MAX_SECTIONS} layers", "a Darknet network here has at most "
                                    f"{MAX_SECTIONS} layers", number, start, start + len(stripped))
                current = Section(kind, written, number, start, start + len(stripped))
                self.sections.append(current)
                continue
            if "=" not in stripped:
                raise self.fail(f"expected `key=value`, got `{stripped}`", "each line of a section is `key=value` "
                                "(the file may be cut short)", number, start, start + len(stripped))
            key_text, _, value_text = body.partition("=")
            key = key_text.strip()
            value = value_text.strip()
            value_col = len(key_text) + 2 + len(value_text) - len(value_text.lstrip())
            entry = Entry(key.lower(), value, number, start, value_col, value_col + len(value))
            if current is None:
                raise self.at_key(entry, f"`{key}=` comes before any section", "start the file with `[net]`")
            if not key:
                raise self.fail("a line with no key before `=`", "write `key=value`", number, start, start + 1)
            if not value:
                raise self.at_key(entry, f"`{key}=` has no value", f"write `{key}=VALUE` (the file may be cut short)")
            if entry.key in current.entries:
                first = current.entries[entry.key].line
                raise self.at_key(entry, f"`{key}` is given twice in [{current.written}] (first on line {first})",
                                  "keep one")
            current.entries[entry.key] = entry
        if not self.sections:
            raise self.fail("the file has no sections", "a Darknet .cfg starts with `[net]`", 1)
        if self.sections[0].kind != "net":
            raise self.at_section(self.sections[0], f"the first section is [{self.sections[0].written}], not [net]",
                                  "a Darknet .cfg starts with `[net]` (width, height, channels)")
        for i, section in enumerate(self.sections[1:]):
            section.index = i


class Options:
    """A section's values, read with bounds; keys nobody reads are refused at the end."""

    def __init__(self, cfg: Cfg, section: Section):
        self.cfg, self.section, self.used = cfg, section, set()

    def entry(self, key: str) -> Entry | None:
        self.used.add(key)
        return self.section.entries.get(key)

    def int(self, key: str, default: int, low: int = 0, high: int = MAX_CHANNELS) -> int:
        e = self.entry(key)
        if e is None:
            return default
        if not re.fullmatch(r"[+-]?\d{1,12}", e.value):
            raise self.cfg.at_value(e, f"`{key}` must be an integer, got `{e.value}`", f"write e.g. `{key}={default}`")
        v = int(e.value)
        if not low <= v <= high:
            raise self.cfg.at_value(e, f"`{key}={v}` is out of range", f"`{key}` goes from {low} to {high} here")
        return v

    def float(self, key: str, default: float) -> float:
        e = self.entry(key)
        if e is None:
            return default
        v = float(e.value) if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?", e.value) else math.nan
        if not math.isfinite(v):
            raise self.cfg.at_value(e, f"`{key}` must be a number, got `{e.value}`", f"write e.g. `{key}={default}`")
        return v

    def text(self, key: str, default: str) -> tuple[str, Entry | None]:
        e = self.entry(key)
        return (default, None) if e is None else (e.value.lower(), e)

    def ints(self, key: str) -> list[tuple[int, int, int]]:
        """A comma-separated list of integers, each with its offsets in the value (for a caret)."""
        e = self.entry(key)
        if e is None:
            raise self.cfg.at_section(self.section, f"[{self.section.written}] needs `{key}=`",
                                      f"e.g. `{key}=-1,-4`")
        out = []
        offset = 0
        items = e.value.split(",")
        if len(items) > MAX_REFERENCES:
            raise self.cfg.at_value(e, f"`{key}` lists {len(items)} layers", f"at most {MAX_REFERENCES} here")
        for item in items:
            text = item.strip()
            start = offset + len(item) - len(item.lstrip())
            if not re.fullmatch(r"[+-]?\d{1,9}", text):
                raise self.cfg.at_value(e, f"`{key}` must list integers, got `{text or e.value}`",
                                        f"write e.g. `{key}=-1,-4`", start, start + max(len(text), 1))
            out.append((int(text), start, start + len(text)))
            offset += len(item) + 1
        return out

    def fail_at(self, key: str, message: str, help: str | None = None) -> ImportFailure:
        """A failure at `key`'s value, or at the section's header when the value is Darknet's default."""
        e = self.section.entries.get(key)
        if e is None:
            return self.cfg.at_section(self.section, message, help)
        return self.cfg.at_value(e, message, help)

    def done(self, allowed: tuple[str, ...]) -> None:
        for key, e in self.section.entries.items():
            if key in self.used or key in TRAINING_KEYS:
                continue
            shown = ", ".join(f"`{k}`" for k in allowed) or "none"
            raise self.cfg.at_key(e, f"`{key}` of [{self.section.written}] is not supported",
                                  f"[{self.section.written}] reads {shown} here; `{key}` would change what the "
                                  "layer computes")


# ---- layers ---------------------------------------------------------------------------------------------


class Builder:
    """The LayerGraph, built section by section: the tensor each Darknet layer outputs, and its shape."""

    def __init__(self, cfg: Cfg, input_shape: tuple[int, ...]):
        self.cfg = cfg
        self.layers: list[Layer] = []
        self.shapes: dict[str, tuple[int, ...]] = {INPUT: tuple(input_shape)}
        self.tensor: list[str | None] = []  # Darknet layer number -> the tensor it outputs (None: a head)
        self.heads: list[tuple[str, Section]] = []
        self.referenced: set[str] = set()  # tensors a [route] or [shortcut] reads: the spec names them
        self.warnings: list[str] = []

    def where(self, section: Section) -> str:
        return f"{self.cfg.file}:{section.line}"

    def add(self, section: Section, name: str, op: str, args: dict, inputs: tuple[str, ...], shape,
            path: str | None = None) -> str:
        self.layers.append(Layer(name, op, args, inputs, path, (), tuple(shape), self.where(section),
                                 path is not None and op in ("conv", "bn", "linear")))
        self.shapes[name] = tuple(shape)
        return name

    def previous(self, section: Section) -> str:
        """The tensor a layer reads by default: the one the layer before it outputs."""
        if section.index == 0:
            return INPUT
        return self.resolve(section, section.index - 1, None)

    def resolve(self, section: Section, target: int, entry: Entry | None, start: int = 0, end: int | None = None):
        sections = self.cfg.sections
        if not 0 <= target < section.index:
            place = "is not a layer before it" if target >= section.index else "is before layer 0"
            raise self.cfg.at_value(entry, f"layer {target} {place} (this is layer {section.index})",
                                    "give an earlier layer: a negative number counts back from this one, "
                                    f"`-1` is layer {section.index - 1}", start, end)
        name = self.tensor[target]
        if name is None:
            head = sections[target + 1]
            message = f"layer {target}, the [{head.written}] head on line {head.line}: Darknet decodes its " \
                      "input there, which the spec does not do"
            if entry is None:
                raise self.cfg.at_section(section, f"[{section.written}] reads the output of {message}",
                                          "start a new branch with [route] from a layer before the head")
            raise self.cfg.at_value(entry, f"a reference to {message}", "refer to the layer feeding the head "
                                    "instead", start, end)
        if entry is not None:  # read by a [route] or [shortcut]
            self.referenced.add(name)
        return name

    def image(self, section: Section, name: str) -> tuple[int, int, int]:
        shape = self.shapes[name]
        if len(shape) != 3:
            raise self.cfg.at_section(section, f"[{section.written}] needs an image (channels x height x width), "
                                      f"but its input is {_shape(shape)} features",
                                      "it cannot follow a [connected] layer")
        return shape

    def activation(self, section: Section, opts: Options, x: str, default: str) -> str:
        name, entry = opts.text("activation", default)
        if name not in ACTIVATIONS:
            supported = ", ".join(ACTIVATIONS)
            message = f"activation `{name}` is not supported"
            help = f"supported: {supported}" + ("; graphdsl has no mish operator" if name == "mish" else "")
            if entry is None:
                raise self.cfg.at_section(section, message, help)
            raise self.cfg.at_value(entry, message, help)
        if ACTIVATIONS[name] is None:
            return x
        op, args = ACTIVATIONS[name]
        return self.add(section, f"{op}{section.index}", op, dict(args), (x,), self.shapes[x])

    # -- one method per section kind

    def convolutional(self, s: Section, opts: Options) -> str:
        i = s.index
        x = self.previous(s)
        c, h, w = self.image(s, x)
        filters = opts.int("filters", 1, 1)
        size = opts.int("size", 1, 1, MAX_WINDOW)
        stride = opts.int("stride", 1, 1, MAX_WINDOW)
        pad = opts.int("pad", 0, 0, 1)
        padding = opts.int("padding", 0, 0, MAX_WINDOW)
        if pad:
            padding = size // 2
        groups = opts.int("groups", 1, 1)
        if c % groups or filters % groups:
            raise opts.fail_at("groups", f"groups={groups} must divide the {c} input channels "
                               f"and the {filters} filters", "choose a common divisor")
        bn = opts.int("batch_normalize", 0, 0, 1)
        for side, axis in ((h, "height"), (w, "width")):
            if side + 2 * padding < size:
                raise opts.fail_at("size", f"size={size} is larger than the padded input {axis} "
                                   f"{side + 2 * padding}", "use a smaller size or more padding")
        out = (filters, (h + 2 * padding - size) // stride + 1, (w + 2 * padding - size) // stride + 1)
        args = {"out": filters, "kernel": size, "stride": stride, "pad": padding, "groups": groups, "bias": not bn}
        y = self.add(s, f"conv{i}", "conv", args, (x,), out, path=f"conv{i}")
        if bn:
            y = self.add(s, f"bn{i}", "bn", {}, (y,), out, path=f"bn{i}")
        result = self.activation(s, opts, y, "logistic")
        opts.done(KEYS["convolutional"])
        return result

    def maxpool(self, s: Section, opts: Options) -> str:
        i = s.index
        x = self.previous(s)
        c, h, w = self.image(s, x)
        stride = opts.int("stride", 1, 1, MAX_WINDOW)
        size = opts.int("size", stride, 1, MAX_WINDOW)
        padding = opts.int("padding", size - 1, 0, MAX_WINDOW)
        opts.done(KEYS["maxpool"])
        left = padding // 2
        outs = []
        for side, axis in ((h, "height"), (w, "width")):
            n = (side + padding - size) // stride + 1
            # every window must hold an input cell: the first starts at -left, the last at (n - 1) * stride - left
            if side + padding < size or left >= size or (n - 1) * stride - left > side - 1:
                raise self.cfg.at_section(s, f"a maxpool of size {size}, stride {stride}, padding {padding} does not "
                                          f"fit the input {axis} {side}", "Darknet pads `padding` cells in all, half "
                                          "before; use a smaller padding")
            outs.append(n)
        shape = (c, *outs)

        def fits(size_, stride_, pad, ceil, sides):
            return pad <= size_ // 2 and all(sliding_out(n, size_, stride_, pad, 1, ceil) == o
                                             for n, o in zip(sides, outs))

        for ceil in (False, True):
            if fits(size, stride, left, ceil, (h, w)):
                args = {"kernel": size, "stride": stride, "pad": left, "ceil": ceil}
                return self.add(s, f"maxpool{i}", "maxpool", args, (x,), shape)
        # stride 1, one more cell of padding after: on the map doubled by nearest upsampling, a window of
        # 2 * size - 1 cells at stride 2 covers the same cells as Darknet's window, the last one cut by ceil
        big = 2 * size - 1
        if stride == 1 and padding % 2 and fits(big, 2, 2 * left, True, (2 * h, 2 * w)):
            up = self.add(s, f"upsample{i}", "upsample", {"scale": 2}, (x,), (c, 2 * h, 2 * w))
            self.warnings.append(f"the maxpool at {self.where(s)} (size {size}, stride 1, padding {padding}: one "
                                 "more row and column after than before) is written as `upsample(scale=2)` and "
                                 f"`maxpool({big}, stride=2{f', pad={2 * left}' if left else ''}, ceil=true)`, "
                                 "which take the same maximum: graphdsl has no asymmetric padding")
            args = {"kernel": big, "stride": 2, "pad": 2 * left, "ceil": True}
            return self.add(s, f"maxpool{i}", "maxpool", args, (up,), shape)
        raise self.cfg.at_section(s, f"a maxpool of size {size}, stride {stride}, padding {padding} on "
                                  f"{h}x{w} has no PyTorch equivalent", "use the default padding (size - 1)")

    def avgpool(self, s: Section, opts: Options) -> str:
        x = self.previous(s)
        c, _, _ = self.image(s, x)
        opts.done(KEYS["avgpool"])
        return self.add(s, f"avgpool{s.index}", "avgpool", {"kernel": Symbol("global")}, (x,), (c, 1, 1))

    def shortcut(self, s: Section, opts: Options) -> str:
        x = self.previous(s)
        entry = opts.entry("from")
        inputs = [x]
        for target, start, end in opts.ints("from"):
            absolute = s.index + target if target < 0 else target
            y = self.resolve(s, absolute, entry, start, end)
            if y in inputs:
                raise self.cfg.at_value(entry, f"the shortcut adds layer {absolute}'s output to itself",
                                        "graphdsl adds distinct tensors; scale the layer instead", start, end)
            if self.shapes[y] != self.shapes[x]:
                raise self.cfg.at_value(entry, f"layer {absolute} gives {_shape(self.shapes[y])}, the layer before "
                                        f"gives {_shape(self.shapes[x])}: a shortcut adds tensors of one shape",
                                        "refer to a layer of the same shape", start, end)
            inputs.append(y)
        y = self.add(s, f"add{s.index}", "add", {}, tuple(inputs), self.shapes[x])
        result = self.activation(s, opts, y, "linear")
        opts.done(KEYS["shortcut"])
        return result

    def route(self, s: Section, opts: Options) -> str:
        entry = opts.entry("layers")
        refs = opts.ints("layers")
        groups = opts.int("groups", 1, 1, MAX_CHANNELS)
        group_id = opts.int("group_id", 0, 0, MAX_CHANNELS)
        if group_id >= groups:
            raise opts.fail_at("group_id", f"group_id={group_id} is not below groups={groups}",
                               f"group_id goes from 0 to {groups - 1}")
        opts.done(KEYS["route"])
        parts = []
        first = None  # the first layer's number, height and width
        for k, (target, start, end) in enumerate(refs):
            absolute = s.index + target if target < 0 else target
            y = self.resolve(s, absolute, entry, start, end)  # listed twice: concatenated with itself, as Darknet
            c, h, w = self.image(s, y)
            if first is not None and (h, w) != first[1:]:
                raise self.cfg.at_value(entry, f"layer {absolute} is {h}x{w}, layer {first[0]} is "
                                        f"{first[1]}x{first[2]}: a route concatenates maps of one size",
                                        "route layers of the same height and width", start, end)
            first = first or (absolute, h, w)
            if groups > 1:
                if c % groups:
                    raise opts.fail_at("groups", f"layer {absolute} has {c} channels, which do "
                                       f"not split into {groups} groups", "choose groups dividing the channels")
                part = c // groups
                name = f"channels{s.index}" + (f"_{k}" if len(refs) > 1 else "")
                y = self.add(s, name, "channels", {"start": group_id * part, "stop": (group_id + 1) * part}, (y,),
                             (part, h, w))
            parts.append(y)
        if len(parts) == 1:
            return parts[0]
        shape = (sum(self.shapes[p][0] for p in parts), *first[1:])
        return self.add(s, f"concat{s.index}", "concat", {}, tuple(parts), shape)

    def upsample(self, s: Section, opts: Options) -> str:
        x = self.previous(s)
        c, h, w = self.image(s, x)
        stride = opts.int("stride", 2, 1, MAX_WINDOW)
        opts.done(KEYS["upsample"])
        if stride * max(h, w) > MAX_SIDE:
            raise opts.fail_at("stride", f"upsampling {h}x{w} by {stride} is too large",
                               f"at most {MAX_SIDE} a side here")
        return self.add(s, f"upsample{s.index}", "upsample", {"scale": stride}, (x,), (c, h * stride, w * stride))

    def connected(self, s: Section, opts: Options) -> str:
        i = s.index
        x = self.previous(s)
        if len(self.shapes[x]) == 3:
            x = self.add(s, f"flatten{i}", "flatten", {}, (x,), (math.prod(self.shapes[x]),))
        out = opts.int("output", 1, 1)
        bn = opts.int("batch_normalize", 0, 0, 1)
        y = self.add(s, f"fc{i}", "linear", {"out": out, "bias": not bn}, (x,), (out,), path=f"fc{i}")
        if bn:
            y = self.add(s, f"bn{i}", "bn", {}, (y,), (out,), path=f"bn{i}")
        result = self.activation(s, opts, y, "logistic")
        opts.done(KEYS["connected"])
        return result

    def dropout(self, s: Section, opts: Options) -> str:
        x = self.previous(s)
        p = opts.float("probability", 0.5)
        if not 0 <= p <= 1:
            raise opts.fail_at("probability", f"probability={p:g} is not between 0 and 1",
                               "e.g. probability=.5")
        opts.done(KEYS["dropout"])
        return self.add(s, f"dropout{s.index}", "dropout", {"p": p}, (x,), self.shapes[x])

    def softmax(self, s: Section, opts: Options) -> str:
        x = self.previous(s)
        if opts.int("groups", 1, 1) != 1:
            raise opts.fail_at("groups", "a softmax over groups is not supported", "groups=1")
        if opts.float("temperature", 1.0) != 1.0:
            raise opts.fail_at("temperature", "a softmax with a temperature is not supported",
                               "temperature=1")
        opts.done(KEYS["softmax"])
        shape = self.shapes[x]
        if len(shape) == 3 and shape[1:] != (1, 1):  # Darknet's softmax runs over all the values
            x = self.add(s, f"flatten{s.index}", "flatten", {}, (x,), (math.prod(shape),))
        return self.add(s, f"softmax{s.index}", "softmax", {}, (x,), self.shapes[x])

    def head(self, s: Section, opts: Options) -> None:
        x = self.previous(s)
        c, h, w = self.image(s, x)
        classes = opts.int("classes", 20, 0)
        num = opts.int("num", 1, 1)
        if s.kind == "yolo":
            mask_entry = opts.entry("mask")
            anchors = len(opts.ints("mask")) if mask_entry is not None else num
            per_anchor, what = classes + 5, f"{anchors} anchors x ({classes} classes + 5)"
        else:
            coords = opts.int("coords", 4, 0)
            anchors, per_anchor = num, classes + coords + 1
            what = f"{num} anchors x ({classes} classes + {coords} coords + 1)"
        if anchors * per_anchor != c:
            needed = anchors * per_anchor
            if x == INPUT:
                raise self.cfg.at_section(s, f"the [{s.written}] head reads the network's input, {c} channels, "
                                          f"but its {what} need {needed}", "a head decodes the output of a "
                                          f"[convolutional] layer: put one with filters={needed} before it")
            producer = next(layer for layer in self.layers if layer.name == x)
            line = producer.where.rpartition(":")[2]
            raise self.cfg.at_section(s, f"the [{s.written}] head takes {c} channels, but its {what} need "
                                      f"{needed}", f"set filters={needed} in the layer feeding it (line {line})")
        self.heads.append((x, s))
        self.warnings.append(f"the [{s.written}] head at {self.where(s)} is the network output `{x}`: its decoding "
                             "(sigmoids, anchors, grid offsets) is Darknet's post-processing and not part of the "
                             "spec")


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def load(path: Path, name: str | None = None, input_shape: tuple[int, ...] | None = None,
         warnings: list | None = None) -> LayerGraph:
    """The LayerGraph of the Darknet `.cfg` at `path` (input shape from [net] unless given). What the
    spec leaves out is in the graph's warnings (and appended to `warnings`). Raises ImportFailure."""
    path = Path(path)
    cfg = Cfg(path)
    cfg.read()
    net = cfg.sections[0]
    opts = Options(cfg, net)
    if input_shape is None:
        dims = [opts.int(k, 0, 0, MAX_CHANNELS if k == "channels" else MAX_SIDE) for k in ("channels", "height",
                                                                                              "width")]
        if not all(dims):
            raise cfg.at_section(net, "[net] does not give the input's width, height and channels",
                                 "add `width=`, `height=` and `channels=` to [net], or give --input CxHxW")
        input_shape = tuple(dims)
    elif len(input_shape) != 3:
        raise ImportFailure(f"a Darknet network takes an image, not an input of shape {_shape(input_shape)}",
                            "give --input as CxHxW, e.g. 3x416x416")
    builder = Builder(cfg, tuple(input_shape))
    if len(cfg.sections) == 1:
        raise cfg.at_section(net, "the network has no layers after [net]", "add layers such as [convolutional]")
    for s in cfg.sections[1:]:
        opts = Options(cfg, s)
        if s.kind == "net":
            raise cfg.at_section(s, "a second [net] section", "a Darknet .cfg has one [net], first")
        if s.kind not in LAYER_SECTIONS:
            raise cfg.at_section(s, f"layer [{s.written}] is not supported",
                                 f"supported: {', '.join(f'[{k}]' for k in LAYER_SECTIONS)}")
        if not s.entries and s.kind in DEFAULTS:
            builder.warnings.append(f"[{s.written}] at {builder.where(s)} has no keys: it is built from Darknet's "
                                    f"defaults ({DEFAULTS[s.kind]}); is the file cut short?")
        if s.kind in HEADS:
            builder.head(s, opts)
            builder.tensor.append(None)
        elif s.kind == "cost":  # the training loss: Darknet's output is the layer before it
            builder.tensor.append(builder.previous(s))
        else:
            builder.tensor.append(getattr(builder, s.kind)(s, opts))
    if not builder.layers:
        raise cfg.at_section(cfg.sections[-1], "the network computes nothing from its input",
                             "add layers such as [convolutional]")
    for layer in builder.layers:  # a tensor read by a later layer is named after its layer: `leaky_relu6`
        if layer.name in builder.referenced and layer.path is None:
            layer.path = layer.name
    outputs = [x for x, _ in builder.heads]
    last = builder.tensor[-1]
    if last is not None and last not in outputs:  # layers after the last head: Darknet's output is the last
        outputs.append(last)
    if any(x == INPUT for x in outputs):
        raise cfg.at_section(cfg.sections[-1], "the network's output is its input", "add layers before the head")
    # a [route] repeating one tensor does not compute: outputs named once each
    outputs = list(dict.fromkeys(outputs))
    graph = LayerGraph(name or _default_name(path), tuple(input_shape), builder.layers, outputs[-1], str(path),
                       outputs=tuple(outputs) if len(outputs) > 1 else ())
    graph.warnings.extend(builder.warnings)
    if warnings is not None:
        warnings.extend(graph.warnings)
    return graph


def _default_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", path.stem) or "darknet"
    return name if re.match(r"[A-Za-z_]", name) else f"net_{name}"


# ---- .weights ------------------------------------------------------------------------------------------


def weight_plan(graph: LayerGraph) -> list[tuple[str, tuple[int, ...], bool]]:
    """The arrays of a `.weights` file for `graph` in the file's order: (state_dict key, shape, stored
    transposed), the last only for a connected layer's weights (set when the header asks for it)."""
    consumers: dict[str, list[Layer]] = {}
    for layer in graph.layers:
        for i in layer.inputs:
            consumers.setdefault(i, []).append(layer)
    shapes = {layer.name: layer.shape for layer in graph.layers}
    shapes[INPUT] = tuple(graph.input_shape)
    plan = []
    for layer in graph.layers:
        if layer.op not in ("conv", "linear"):
            continue
        out = layer.args["out"]
        bn = next((c for c in consumers.get(layer.name, ()) if c.op == "bn" and c.holds_weights), None)
        stats = [(f"{bn.path}.{key}", (out,), False) for key in ("weight", "running_mean", "running_var")] \
            if bn is not None else []
        bias = (f"{(bn or layer).path}.bias", (out,), False)
        inputs = shapes[layer.inputs[0]]
        if layer.op == "conv":
            k = layer.args["kernel"]
            weight = (f"{layer.path}.weight", (out, inputs[0] // layer.args["groups"], k, k), False)
            plan += [bias, *stats, weight]
        else:
            plan += [bias, (f"{layer.path}.weight", (out, math.prod(inputs)), True), *stats]
    return plan


def read_weights(graph: LayerGraph, weights_path: Path) -> dict:
    """The state_dict (key -> numpy float32 array) that the Darknet `.weights` file at `weights_path`
    gives the spec of `graph` (what `load` made of its .cfg). Raises ImportFailure when the file's
    length does not match the cfg."""
    import numpy as np

    weights_path = Path(weights_path)
    where = str(weights_path)
    plan = weight_plan(graph)
    expected = sum(math.prod(shape) for _, shape, _ in plan)
    try:
        size = weights_path.stat().st_size
    except OSError as e:
        raise ImportFailure(f"cannot read `{where}`: {e.strerror or e}", "check the path") from None
    if size > MAX_WEIGHTS_BYTES:
        raise ImportFailure(f"the file has {size:,} bytes, more than the {MAX_WEIGHTS_BYTES:,} read here",
                            "is this a Darknet .weights file?", where=where)
    try:
        with weights_path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12:
                raise ImportFailure(f"the file has {size} bytes: too short for a Darknet header (at least 16)",
                                    "the file is cut short, or not a .weights file", where=where)
            major, minor, revision = (int(v) for v in np.frombuffer(head, "<i4"))
            wide_seen = major * 10 + minor >= 2 and major < 1000 and minor < 1000
            header = 20 if wide_seen else 16
            body = size - header
            found = body / 4
            if body < 0 or body % 4 or body // 4 != expected:
                shown = f"{body // 4:,}" if body >= 0 and body % 4 == 0 else \
                    (f"{found:,.2f}" if body >= 0 else "none")
                what = "short" if body < expected * 4 else "long"
                raise ImportFailure(f"the cfg `{graph.source}` needs {expected:,} floats after the "
                                    f"{header}-byte header (version {major}.{minor}.{revision}), the file has "
                                    f"{shown}: it is too {what}",
                                    "give the .weights file trained with this .cfg (a truncated download, or "
                                    "partial weights such as darknet53.conv.74, do not fit)", where=where)
            f.seek(header)
            data = np.fromfile(f, dtype="<f4", count=expected)
    except OSError as e:
        raise ImportFailure(f"cannot read `{where}`: {e.strerror or e}", "check the path") from None
    if data.size != expected:  # the file changed while it was read
        raise ImportFailure(f"read {data.size:,} floats, expected {expected:,}", "read the file again", where=where)
    transpose = major > 1000 or minor > 1000
    state: dict = {}
    offset = 0
    for key, shape, transposable in plan:
        n = math.prod(shape)
        chunk = data[offset:offset + n].astype(np.float32, copy=False)
        offset += n
        if transposable and transpose:  # stored inputs x outputs
            state[key] = np.ascontiguousarray(chunk.reshape(shape[1], shape[0]).T)
        else:
            state[key] = chunk.reshape(shape)
    _darknet_variances(graph, state)
    return state


def _darknet_variances(graph: LayerGraph, state: dict) -> None:
    """Darknet normalises by sqrt(variance) + .000001 (normalize_cpu, and its GPU kernel at inference),
    PyTorch by sqrt(variance + eps): each running variance becomes (sqrt(v) + 1e-6)^2 - eps, so that the
    compiled spec computes Darknet's outputs. A variance too small for that (below about eps) stays at 0,
    where the two differ; the graph's warnings say how many."""
    import numpy as np

    clamped = 0
    for layer in graph.layers:
        key = f"{layer.path}.running_var"
        if layer.op != "bn" or key not in state:
            continue
        eps = float(layer.args.get("eps", 1e-5))
        std = np.sqrt(np.maximum(state[key].astype(np.float64), 0)) + 1e-6
        wanted = std * std - eps
        clamped += int((wanted < 0).sum())
        state[key] = np.maximum(wanted, 0).astype(np.float32)
    if clamped:
        graph.warnings.append(f"{clamped} running variance{'s are' if clamped > 1 else ' is'} below the batch "
                              "norm's eps: there the compiled spec divides by sqrt(eps) where Darknet divides by "
                              "sqrt(variance) + 1e-6")
