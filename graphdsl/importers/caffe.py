"""The Caffe front end: a `deploy.prototxt` (protobuf text format, read by prototxt.py) into a LayerGraph.

Caffe's layers name their inputs and outputs as blobs (`bottom`, `top`). A layer whose top is its bottom
(`relu1` on `conv1`) works in place: it writes a new version of the blob, and a later layer reading
`conv1` reads the ReLU's output. So every blob name maps to the layer that last wrote it, and each
layer's bottoms are resolved when it comes. A BatchNorm followed by its Scale (bias_term) is one
graphdsl `bn`; a Split is no layer (its tops are its bottom). Output sizes follow Caffe's own rules
(pooling rounds up, and clips a last window that would start in the padding) and are checked against
graphdsl's operators, which compute PyTorch's: where they disagree the import fails, at the layer.

Both syntaxes are read: `layer { type: "Convolution" }` and the older `layers { type: CONVOLUTION }`.
Layers of training only (data, loss, accuracy, `include { phase: TRAIN }`) are left out with a warning.
Weights (`.caffemodel`) are not read: the spec's state_dict keys are the layer names, sanitized.
"""

from __future__ import annotations

import keyword
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .. import budget
from ..diagnostics import Span
from ..syntax import NAME_RESERVED
from .ir import INPUT, Layer, LayerGraph, unique_name
from .prototxt import Field, Ident, Message, QuotedFailure, decode, parse

MAX_LAYERS = budget.MAX_LAYERS  # graphdsl's own limit on the nodes of a graph
MAX_CHANNELS = 1 << 20  # channels, features, num_output
MAX_SPATIAL = 1 << 16  # height, width, kernel, stride, pad, dilation
MAX_ELEMENTS = 1 << 36  # elements of one layer's output or weights
MAX_FILE_BYTES = 4_000_000  # ResNet-152's deploy.prototxt is about 250 KB; parsing reads about 1 MB a second

SUPPORTED = ("Input", "Convolution", "Pooling", "LRN", "ReLU", "Sigmoid", "TanH", "InnerProduct", "Dropout", "Concat",
             "Eltwise", "BatchNorm", "Scale", "Softmax", "Flatten", "Split")
DATA_LAYERS = ("Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "AnnotatedData",
               "VideoData")
TRAINING_LAYERS = ("Accuracy", "Silence")  # and every type ending in `Loss`
FOLDED = "folded into its Scale: "  # the mark of a BatchNorm's output once its Scale joins it
DATA_REASON = "a data layer (the spec's input stands for it)"
TRAIN_ONLY, NOT_IN_TEST = "it runs in the TRAIN phase only", "it does not run in the TEST phase"  # not in the net
# the V1 syntax (`layers { type: CONVOLUTION }`): its enum names of the types above
V1_TYPES = {"CONVOLUTION": "Convolution", "POOLING": "Pooling", "LRN": "LRN", "RELU": "ReLU", "SIGMOID": "Sigmoid",
            "TANH": "TanH", "INNER_PRODUCT": "InnerProduct", "DROPOUT": "Dropout", "CONCAT": "Concat",
            "ELTWISE": "Eltwise", "SOFTMAX": "Softmax", "FLATTEN": "Flatten", "SPLIT": "Split", "DATA": "Data",
            "IMAGE_DATA": "ImageData", "HDF5_DATA": "HDF5Data", "MEMORY_DATA": "MemoryData",
            "WINDOW_DATA": "WindowData", "DUMMY_DATA": "DummyData", "ACCURACY": "Accuracy", "SILENCE": "Silence",
            "SOFTMAX_LOSS": "SoftmaxWithLoss", "EUCLIDEAN_LOSS": "EuclideanLoss", "HINGE_LOSS": "HingeLoss",
            "INFOGAIN_LOSS": "InfogainLoss", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
            "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "CONTRASTIVE_LOSS": "ContrastiveLoss"}

# Each type's parameter message and the fields of it that are read (or change nothing graphdsl computes:
# fillers, engines, learning rates). Any other field there is refused: it would change what Caffe computes.
PARAMS = {
    "Input": ("input_param", {"shape"}),
    "Convolution": ("convolution_param", {"num_output", "bias_term", "pad", "pad_h", "pad_w", "kernel_size",
                                          "kernel_h", "kernel_w", "stride", "stride_h", "stride_w", "group",
                                          "dilation", "weight_filler", "bias_filler", "engine", "axis",
                                          "force_nd_im2col"}),
    "Pooling": ("pooling_param", {"pool", "pad", "pad_h", "pad_w", "kernel_size", "kernel_h", "kernel_w", "stride",
                                  "stride_h", "stride_w", "engine", "global_pooling", "round_mode"}),
    "LRN": ("lrn_param", {"local_size", "alpha", "beta", "norm_region", "k", "engine"}),
    "ReLU": ("relu_param", {"negative_slope", "engine"}),
    "Sigmoid": ("sigmoid_param", {"engine"}),
    "TanH": ("tanh_param", {"engine"}),
    "InnerProduct": ("inner_product_param", {"num_output", "bias_term", "weight_filler", "bias_filler", "axis",
                                             "transpose"}),
    "Dropout": ("dropout_param", {"dropout_ratio"}),
    "Concat": ("concat_param", {"axis", "concat_dim"}),
    "Eltwise": ("eltwise_param", {"operation", "coeff", "stable_prod_grad"}),
    "BatchNorm": ("batch_norm_param", {"use_global_stats", "moving_average_fraction", "eps"}),
    "Scale": ("scale_param", {"axis", "num_axes", "filler", "bias_term", "bias_filler"}),
    "Softmax": ("softmax_param", {"axis", "engine"}),
    "Flatten": ("flatten_param", {"axis", "end_axis"}),
    "Split": ("", set()),
}
ENUMS = {"pool": ("MAX", "AVE", "STOCHASTIC"), "operation": ("PROD", "SUM", "MAX"),
         "norm_region": ("ACROSS_CHANNELS", "WITHIN_CHANNEL"), "round_mode": ("CEIL", "FLOOR"),
         "phase": ("TRAIN", "TEST")}


def load(path: Path, name: str | None = None, input_shape: tuple[int, ...] | None = None,
         warnings: list | None = None) -> LayerGraph:
    """The LayerGraph of a Caffe network definition. `input_shape` (without the batch) overrides the
    file's input. What the spec leaves out is appended to `warnings` (and to the graph's). Raises
    ImportFailure (a QuotedFailure: its diagnostic quotes the line) for anything it cannot import."""
    from ..text import normalize_newlines

    file = str(path)
    text = normalize_newlines(decode(_read(file)))
    root = parse(text, file)
    graph = _Net(file, text, root, name, input_shape).build()
    if warnings is not None:
        warnings.extend(graph.warnings)
    return graph


def _read(file: str) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES that holds no NUL."""
    try:
        st = os.stat(file)
        if not stat.S_ISREG(st.st_mode):
            raise QuotedFailure(f"cannot read `{file}`: it is not a regular file", "give the prototxt file itself")
        with open(file, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise QuotedFailure(f"cannot read `{file}`: {e.strerror or e}", "check the path") from None
    if len(data) > MAX_FILE_BYTES:
        raise QuotedFailure(f"`{file}` is larger than {MAX_FILE_BYTES:,} bytes", "a network definition is far "
                            "smaller; is this a .caffemodel (weights) or a data file?", Span(file, 1, 1, 1, 1))
    if b"\0" in data:
        raise QuotedFailure(f"`{file}` is a binary file, not a prototxt", "give a Caffe network definition in "
                            "protobuf text format (deploy.prototxt)", Span(file, 1, 1, 1, 1))
    return data


def sanitize(name: str) -> str:
    """A Caffe layer name as a python identifier and graphdsl label: `inception_3a/1x1` -> `inception_3a_1x1`."""
    s = re.sub(r"\W", "_", name, flags=re.ASCII).strip("_") or "layer"
    if s[0].isdigit():
        s = f"l_{s}"
    if keyword.iskeyword(s) or s in NAME_RESERVED or s == "in":
        s += "_"
    return s


def _pair(v: tuple[int, int]):
    return v[0] if v[0] == v[1] else tuple(v)


@dataclass
class _Blob:
    """The current version of a blob: the IR layer that wrote it (or INPUT), its shape, and the Caffe
    layer a skipped blob came from (None for a blob graphdsl computes)."""

    layer: str
    shape: tuple[int, ...] | None
    skipped_by: str | None = None


class _Net:
    def __init__(self, file: str, text: str, root: Message, name: str | None, input_shape):
        self.file, self.text, self.root = file, text, root
        self.name = name
        self.input_override = tuple(input_shape) if input_shape is not None else None
        self.input_shape: tuple[int, ...] | None = None
        self.blobs: dict[str, _Blob] = {}
        self.layers: list[Layer] = []
        self.by_name: dict[str, Layer] = {}
        self.consumers: dict[str, int] = {}
        self.batchnorms: set[str] = set()  # IR layers made from a Caffe BatchNorm (a Scale may join them)
        self.names: set[str] = set()
        self.warnings: list[str] = []
        self.writers: dict[str, str] = {}  # blob -> who wrote it first: "layer `conv1` (line 12)"

    # ---- diagnostics ---------------------------------------------------------------------------------

    def fail(self, message: str, at: Field | Message | None = None, help: str | None = None):
        span = Span(self.file, 1, 1, 1, 1)  # the file as a whole: its first line
        if isinstance(at, Field):
            span = at.span(self.file)
        elif isinstance(at, Message):
            span = Span(self.file, at.line, at.col, at.line, at.col + 1)
        raise QuotedFailure(message, help, span, self.text)

    def where(self, f: Field) -> str:
        return f"{self.file}:{f.line}"

    # ---- typed fields --------------------------------------------------------------------------------

    def one(self, msg: Message, key: str) -> Field | None:
        fields = msg.all(key)
        if len(fields) > 1:
            self.fail(f"`{key}` is given {len(fields)} times", fields[1], f"`{key}` takes one value")
        return fields[0] if fields else None

    def integer(self, msg: Message, key: str, default=None, low=0, high=MAX_SPATIAL, f: Field | None = None):
        f = f or self.one(msg, key)
        if f is None:
            return default
        v = f.value
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(f"`{key}` must be a whole number, got {_shown(v)}", f, f"write e.g. `{key}: {default or 1}`")
        if not low <= v <= high:
            self.fail(f"`{key}: {v}` is out of range", f, f"`{key}` must be between {low} and {high:,}")
        return v

    def integers(self, msg: Message, key: str, low=0, high=MAX_SPATIAL) -> list[int]:
        return [self.integer(msg, key, low=low, high=high, f=f) for f in msg.all(key)]

    def number(self, msg: Message, key: str, default: float, low=-math.inf, high=math.inf) -> float:
        f = self.one(msg, key)
        if f is None:
            return default
        v = f.value
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(f"`{key}` must be a finite number, got {_shown(v)}", f, f"write e.g. `{key}: {default:g}`")
        if not low <= v <= high:
            self.fail(f"`{key}: {v:g}` is out of range", f, f"`{key}` must be between {low:g} and {high:g}")
        return float(v)

    def boolean(self, msg: Message, key: str, default: bool) -> bool:
        f = self.one(msg, key)
        if f is None:
            return default
        if f.value in ("true", "True", "t", 1) and not isinstance(f.value, float):
            return True
        if f.value in ("false", "False", "f", 0) and not isinstance(f.value, float):
            return False
        self.fail(f"`{key}` must be true or false, got {_shown(f.value)}", f, f"write `{key}: true` or `{key}: false`")

    def enum(self, msg: Message, key: str, default: str) -> str:
        f = self.one(msg, key)
        if f is None:
            return default
        names = ENUMS[key]
        if isinstance(f.value, int) and not isinstance(f.value, bool) and 0 <= f.value < len(names):
            return names[f.value]
        if isinstance(f.value, Ident) and f.value in names:
            return str(f.value)
        self.fail(f"`{key}: {_shown(f.value)}` is not one of {', '.join(names)}", f, f"write e.g. `{key}: {default}`")

    def string(self, msg: Message, key: str) -> str | None:
        f = self.one(msg, key)
        if f is None:
            return None
        if not isinstance(f.value, str) or isinstance(f.value, Ident):
            self.fail(f"`{key}` must be a string, got {_shown(f.value)}", f, f'write `{key}: "..."`')
        return f.value

    def message(self, msg: Message, key: str) -> Message | None:
        f = self.one(msg, key)
        if f is not None and not isinstance(f.value, Message):
            self.fail(f"`{key}` must be a message `{key} {{ ... }}`", f, f"write `{key} {{ ... }}`")
        return f.value if f is not None else None

    # ---- the network ---------------------------------------------------------------------------------

    def build(self) -> LayerGraph:
        root = self.root
        layer_fields = root.all("layer") + root.all("layers")
        if len(layer_fields) > MAX_LAYERS:
            self.fail(f"{len(layer_fields):,} layers: more than {MAX_LAYERS:,}", layer_fields[MAX_LAYERS],
                      "raise the limit with GRAPHDSL_MAX_LAYERS if the network is real")
        if root.all("layer") and root.all("layers"):
            self.fail("the file mixes `layer` and the older `layers`", root.all("layers")[0],
                      "write all layers in one syntax (Caffe's upgrade_net_proto_text converts old files)")
        name = self.name or self.string(root, "name") or Path(self.file).stem
        self.name = sanitize(name)
        self.net_inputs()
        for f in sorted(layer_fields, key=lambda f: (f.line, f.col)):
            if not isinstance(f.value, Message):
                self.fail(f"`{f.name}` must be a message `{f.name} {{ ... }}`", f, f"write `{f.name} {{ ... }}`")
            self.layer(f)
        if self.input_shape is None:
            self.fail("the network has no input", None,
                      "declare it (`input: \"data\"` with `input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }`, or an "
                      "`Input` layer), or give its shape with --input")
        if not self.layers:
            self.fail("the network computes nothing from its input", None, "a deploy.prototxt lists its layers")
        outputs = self.outputs()
        graph = LayerGraph(self.name, self.input_shape, self.layers, outputs[-1], source=self.file,
                           outputs=tuple(outputs) if len(outputs) > 1 else ())
        graph.warnings.extend(self.warnings)
        return graph

    def outputs(self) -> list[str]:
        """What the network returns: the final version of each blob that no layer reads."""
        ends = {b.layer for b in self.blobs.values() if b.skipped_by is None and b.layer != INPUT
                and not self.consumers.get(b.layer)}
        return [layer.name for layer in self.layers if layer.name in ends] or [self.layers[-1].name]

    def set_input(self, blob: str, shape: tuple[int, ...], at: Field) -> None:
        if self.input_shape is not None and any(b.layer == INPUT for b in self.blobs.values()):
            self.fail(f"a second input `{blob}`", at, "graphdsl networks have one input")
        if self.input_override is not None:
            shape = self.input_override
        self.check_shape(shape, at)
        self.input_shape = shape
        self.blobs[blob] = _Blob(INPUT, shape)
        self.writers.setdefault(blob, "the network's input")

    def net_inputs(self) -> None:
        """`input: "data"` with `input_dim` x4 or `input_shape { dim ... }` (the net-level form)."""
        root = self.root
        names = root.all("input")
        if not names:
            for key in ("input_dim", "input_shape"):
                if root.all(key):
                    self.fail(f"`{key}` without `input`", root.all(key)[0], 'name the input: `input: "data"`')
            return
        if len(names) > 1:
            self.fail(f"{len(names)} inputs", names[1], "graphdsl networks have one input")
        f = names[0]
        if not isinstance(f.value, str) or isinstance(f.value, Ident):
            self.fail("`input` must be a string", f, 'write `input: "data"`')
        dims = self.integers(root, "input_dim", low=1, high=MAX_CHANNELS)
        shapes = root.all("input_shape")
        if dims and shapes:
            self.fail("both `input_dim` and `input_shape`", shapes[0], "give the shape once")
        if shapes:
            if not isinstance(shapes[0].value, Message) or len(shapes) > 1:
                self.fail("one `input_shape { dim: ... }` is expected", shapes[-1], "give the input's shape once")
            dims = self.integers(shapes[0].value, "dim", low=1, high=MAX_CHANNELS)
        if not dims and self.input_override is None:
            self.fail(f"the input `{f.value}` has no shape", f,
                      "add `input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }` or give it with --input")
        at = shapes[0] if shapes else (root.all("input_dim") or [f])[0]
        self.set_input(f.value, self.batchless(dims, at), at)

    def batchless(self, dims: list[int], at: Field) -> tuple[int, ...]:
        if not dims:
            return ()
        if len(dims) not in (2, 4):
            self.fail(f"an input of {len(dims)} dimensions", at,
                      "give N x C x H x W (or N x C for flat features)")
        return tuple(dims[1:])

    def check_shape(self, shape: tuple[int, ...], at) -> None:
        if len(shape) not in (1, 3):
            self.fail(f"an input of shape {'x'.join(map(str, shape))}", at, "the input is C x H x W (or C)")
        limits = (MAX_CHANNELS,) + (MAX_SPATIAL,) * (len(shape) - 1)
        if any(not 1 <= d <= limit for d, limit in zip(shape, limits)) or math.prod(shape) > MAX_ELEMENTS:
            self.fail(f"the input shape {'x'.join(map(str, shape))} is out of range", at,
                      f"channels up to {MAX_CHANNELS:,}, height and width up to {MAX_SPATIAL:,}")

    # ---- one layer -----------------------------------------------------------------------------------

    def layer(self, f: Field) -> None:
        msg: Message = f.value
        caffe_name = self.string(msg, "name") or f"layer{len(self.layers) + 1}"
        type_field = self.one(msg, "type")
        if type_field is None:
            self.fail(f"layer `{caffe_name}` has no `type`", f, 'add `type: "Convolution"` (or another type)')
        kind = type_field.value
        if isinstance(kind, Ident) or not isinstance(kind, str):
            if f.name == "layers" and isinstance(kind, Ident) and str(kind) in V1_TYPES:
                kind = V1_TYPES[str(kind)]
            elif f.name == "layers":
                self.fail(f"layer `{caffe_name}` has type `{_shown(kind)}`, which is not supported", type_field,
                          f"supported: {', '.join(k for k, v in V1_TYPES.items() if v in SUPPORTED)}")
            else:
                self.fail(f"`type` must be a string, got {_shown(kind)}", type_field, 'write `type: "Convolution"`')
        bottoms = [self.blob_name(b) for b in msg.all("bottom")]
        tops = [self.blob_name(t) for t in msg.all("top")]
        skip = self.skipped(msg, kind)
        if skip:
            in_net = skip not in (TRAIN_ONLY, NOT_IN_TEST)  # Caffe's TEST net holds this layer
            if in_net:
                self.written_once(caffe_name, f, bottoms, tops)
            self.warnings.append(f"layer `{caffe_name}` ({kind}, line {f.line}) is left out: {skip}")
            if skip == DATA_REASON and tops and self.input_shape is None:
                self.data_input(tops[0], caffe_name, f)
                tops = tops[1:]
            read = {b.value for b in bottoms}
            for t in tops:  # an in-place layer left out leaves its blob as it was; one of another phase
                if t.value not in read and (in_net or t.value not in self.blobs):  # never hides the TEST net's
                    self.blobs[t.value] = _Blob("", None, caffe_name)
            return
        if kind not in SUPPORTED:
            shown = kind if len(kind) <= 40 else kind[:40] + "..."
            self.fail(f"layer `{caffe_name}` has type `{shown}`, which is not supported", type_field,
                      f"supported: {', '.join(SUPPORTED)}; training layers (data, loss, accuracy) are left out")
        param_key, known = PARAMS[kind]
        param = self.message(msg, param_key) if param_key else None
        if param is None:
            param = Message([], f.line, f.col)
        else:
            self.known_fields(param, param_key, known)
        if kind == "Input":
            self.written_once(caffe_name, f, bottoms, tops)
            self.input_layer(f, caffe_name, param, tops)
            return
        ins = [self.resolve(b, caffe_name) for b in bottoms]
        self.written_once(caffe_name, f, bottoms, tops)
        if not ins:
            self.fail(f"layer `{caffe_name}` has no `bottom`", f, "name the blob it reads: `bottom: \"conv1\"`")
        if not tops:
            self.fail(f"layer `{caffe_name}` has no `top`", f, "name the blob it writes: `top: \"conv1\"`")
        if kind == "Split":
            if len(ins) != 1:
                self.fail(f"Split `{caffe_name}` has {len(ins)} bottoms", f, "a Split reads one blob")
            for t in tops:
                self.blobs[t.value] = ins[0]
            return
        if len(tops) != 1:
            self.fail(f"layer `{caffe_name}` ({kind}) has {len(tops)} tops", tops[1], "this layer writes one blob")
        many = kind in ("Concat", "Eltwise")
        if not many and len(ins) != 1:
            self.fail(f"layer `{caffe_name}` ({kind}) has {len(ins)} bottoms", msg.all("bottom")[1],
                      "this layer reads one blob")
        if many and len(ins) < 2:
            self.fail(f"{kind} `{caffe_name}` has one bottom", f, f"a {kind} joins two blobs or more")
        made = getattr(self, f"_{kind.lower()}")(f, caffe_name, param, ins)
        self.blobs[tops[0].value] = made

    def written_once(self, caffe_name: str, f: Field, bottoms: list[Field], tops: list[Field]) -> None:
        """Caffe's rule (Net::AppendTop): a top names a new blob, or the bottom in its own position (in
        place); a blob written by two layers otherwise is "produced by multiple sources"."""
        for k, top in enumerate(tops):
            first = self.writers.get(top.value)
            if first is not None and not (k < len(bottoms) and bottoms[k].value == top.value):
                self.fail(f"layer `{caffe_name}` writes `{top.value}`, which {first} writes already", top,
                          "Caffe refuses a blob produced by two layers: a layer writes an earlier blob only in "
                          f'place (`bottom: "{top.value}"` in the same position); give this top a new name')
            self.writers.setdefault(top.value, f"layer `{caffe_name}` (line {f.line})")

    def blob_name(self, f: Field) -> Field:
        if not isinstance(f.value, str) or isinstance(f.value, Ident) or not f.value:
            self.fail(f"`{f.name}` must be a blob name in quotes, got {_shown(f.value)}", f,
                      f'write `{f.name}: "conv1"`')
        return f

    def resolve(self, f: Field, caffe_name: str) -> _Blob:
        blob = self.blobs.get(f.value)
        if blob is None and self.input_shape is None and self.input_override is not None:
            self.set_input(f.value, self.input_override, f)  # the file names no input: --input gives it
            blob = self.blobs[f.value]
        if blob is None:
            known = [k for k, b in self.blobs.items() if b.skipped_by is None]
            near = _near(f.value, known)
            self.fail(f"layer `{caffe_name}` reads `{f.value}`, which no layer before it writes", f,
                      (f"did you mean `{near}`? " if near else "") + "a bottom names the top of an earlier layer "
                      "(or the input)")
        if blob.skipped_by is not None and blob.skipped_by.startswith(FOLDED):
            self.fail(f"layer `{caffe_name}` reads `{f.value}` before the Scale "
                      f"`{blob.skipped_by[len(FOLDED):]}` that follows it, folded into one `bn`", f,
                      "read the Scale's output, or write the BatchNorm and Scale in place (top == bottom)")
        if blob.skipped_by is not None:
            self.fail(f"layer `{caffe_name}` reads `{f.value}`, written by `{blob.skipped_by}`, which is left out", f,
                      "training layers (data, loss, accuracy, phase TRAIN) are not imported; import a deploy.prototxt")
        if blob.layer != INPUT:
            self.consumers[blob.layer] = self.consumers.get(blob.layer, 0) + 1
        return blob

    def skipped(self, msg: Message, kind: str) -> str | None:
        """Why this layer is left out of the spec, or None."""
        for rule in msg.all("include"):
            if isinstance(rule.value, Message) and self.enum(rule.value, "phase", "TEST") == "TRAIN":
                return TRAIN_ONLY
        for rule in msg.all("exclude"):
            if isinstance(rule.value, Message) and self.enum(rule.value, "phase", "") == "TEST":
                return NOT_IN_TEST
        if self.one(msg, "phase") is not None and self.enum(msg, "phase", "TEST") == "TRAIN":
            return TRAIN_ONLY
        if kind in DATA_LAYERS:
            return DATA_REASON
        if kind in TRAINING_LAYERS or kind.endswith("Loss"):
            return "it computes a loss or a metric for training"
        return None

    def data_input(self, top: Field, caffe_name: str, f: Field) -> None:
        if self.input_override is None:
            self.fail(f"the data layer `{caffe_name}` does not say the shape of `{top.value}`", f,
                      "give the input shape with --input (e.g. --input 3x227x227), or import the deploy.prototxt")
        self.set_input(top.value, self.input_override, top)

    def known_fields(self, param: Message, key: str, known: set[str]) -> None:
        for f in param.fields:
            if f.name not in known:
                self.fail(f"`{key}` field `{f.name}` is not supported", f,
                          f"the fields read: {', '.join(sorted(known))}")

    def input_layer(self, f: Field, caffe_name: str, param: Message, tops: list[Field]) -> None:
        if len(tops) != 1:
            self.fail(f"Input `{caffe_name}` has {len(tops)} tops", f, "graphdsl networks have one input")
        shapes = param.all("shape")
        if len(shapes) > 1 or (shapes and not isinstance(shapes[0].value, Message)):
            self.fail("one `shape { dim: ... }` is expected", shapes[-1], "give the input's shape once")
        dims = self.integers(shapes[0].value, "dim", low=1, high=MAX_CHANNELS) if shapes else []
        if not dims and self.input_override is None:
            self.fail(f"the Input layer `{caffe_name}` has no shape", f,
                      "add `input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } }` or give it with --input")
        self.set_input(tops[0].value, self.batchless(dims, f) if dims else (), tops[0])

    # ---- emitting graphdsl layers --------------------------------------------------------------------

    def fresh(self, base: str) -> str:
        return unique_name(base, self.names)

    def emit(self, f: Field, caffe_name: str, op: str, args: dict, ins: list[_Blob], shape: tuple[int, ...],
             weights: bool = False, suffix: str = "") -> _Blob:
        """One graphdsl layer, its shape computed by Caffe's rule checked against graphdsl's operator."""
        if len(self.layers) >= MAX_LAYERS:
            self.fail(f"more than {MAX_LAYERS:,} layers", f, "raise the limit with GRAPHDSL_MAX_LAYERS if the network "
                      "is real")
        self.check_size(shape, f, caffe_name)
        own = _graphdsl_shape(op, args, [b.shape for b in ins])
        if isinstance(own, list):  # graphdsl refuses the arguments: [message, help]
            self.fail(f"layer `{caffe_name}`: {own[0]}", f, own[1] or "graphdsl's operator (PyTorch's) cannot express "
                      "this layer exactly")
        if own != shape:
            self.fail(f"layer `{caffe_name}`: Caffe computes an output of {_fmt(shape)}, graphdsl's `{op}` "
                      f"(as PyTorch) {_fmt(own)}", f,
                      "graphdsl cannot express this layer exactly; change its padding or stride")
        name = self.fresh(sanitize(caffe_name) + suffix)
        layer = Layer(name, op, args, tuple(b.layer for b in ins), name if weights else None, (), shape,
                      self.where(f), weights)
        self.layers.append(layer)
        self.by_name[name] = layer
        return _Blob(name, shape)

    def check_size(self, shape: tuple[int, ...], at: Field, caffe_name: str) -> None:
        if any(d < 1 for d in shape):
            self.fail(f"layer `{caffe_name}` computes an empty output ({_fmt(shape)})", at,
                      "its window is larger than its input: use a smaller kernel or more padding")
        if math.prod(shape) > MAX_ELEMENTS:
            self.fail(f"layer `{caffe_name}` computes {math.prod(shape):,} elements per sample", at,
                      f"at most {MAX_ELEMENTS:,}")

    def image(self, blob: _Blob, f: Field, caffe_name: str, kind: str) -> tuple[int, int, int]:
        if len(blob.shape) != 3:
            self.fail(f"{kind} `{caffe_name}` needs an image (C x H x W), got {_fmt(blob.shape)}", f,
                      "it reads a flat blob (after an InnerProduct or Flatten)")
        return blob.shape

    def window(self, p: Message, key: str, default=None, low=0) -> tuple[int, int]:
        """`key_size` / `key` (repeated: one per axis, or one for both) with `key_h` / `key_w`, as Caffe's
        conv and pooling read them."""
        base = "kernel_size" if key == "kernel" else key
        values = self.integers(p, base, low=low)
        h, w = self.integer(p, f"{key}_h", low=low), self.integer(p, f"{key}_w", low=low)
        if (h is None) != (w is None):
            self.fail(f"`{key}_h` and `{key}_w` go together", p.first(f"{key}_h") or p.first(f"{key}_w"),
                      f"give both, or `{base}`")
        if h is not None:
            if values:
                self.fail(f"both `{base}` and `{key}_h`/`{key}_w`", p.first(base), "give one of them")
            return h, w
        if len(values) > 2:
            self.fail(f"{len(values)} values of `{base}`", p.all(base)[2], "graphdsl networks are 2-D: give one or two")
        if not values:
            return default
        return (values[0], values[-1])

    def _convolution(self, f, caffe_name, p, ins):
        c, h, w = self.image(ins[0], f, caffe_name, "Convolution")
        out = self.integer(p, "num_output", low=1, high=MAX_CHANNELS)
        if out is None:
            self.fail(f"Convolution `{caffe_name}` has no `num_output`", f, "add `convolution_param { num_output: N }`")
        kernel = self.window(p, "kernel", low=1)
        if kernel is None:
            self.fail(f"Convolution `{caffe_name}` has no kernel size", f, "add `kernel_size: K`")
        stride = self.window(p, "stride", (1, 1), low=1)
        pad = self.window(p, "pad", (0, 0))
        dilation = self.window(p, "dilation", (1, 1), low=1)
        groups = self.integer(p, "group", 1, low=1, high=MAX_CHANNELS)
        if self.integer(p, "axis", 1, low=-4, high=4) not in (1, -3):
            self.fail("a convolution over another axis than the channels", p.first("axis"), "leave `axis` out")
        if c % groups or out % groups:
            self.fail(f"Convolution `{caffe_name}`: `group: {groups}` must divide its {c} input channels and its "
                      f"{out} outputs", p.first("group") or f, "choose a group count that divides both")
        if out * (c // groups) * kernel[0] * kernel[1] > MAX_ELEMENTS:
            self.fail(f"Convolution `{caffe_name}` has more than {MAX_ELEMENTS:,} weights", p.first("num_output"),
                      "a smaller num_output or kernel")
        # Caffe: (size + 2 * pad - (dilation * (kernel - 1) + 1)) / stride + 1, rounded down
        size = [(n + 2 * pd - (d * (k - 1) + 1)) // s + 1
                for n, k, s, pd, d in zip((h, w), kernel, stride, pad, dilation)]
        args = {"out": out, "kernel": _pair(kernel), "stride": _pair(stride), "pad": _pair(pad),
                "dilation": _pair(dilation), "groups": groups, "bias": self.boolean(p, "bias_term", True)}
        return self.emit(f, caffe_name, "conv", args, ins, (out, *size), weights=True)

    def _pooling(self, f, caffe_name, p, ins):
        c, h, w = self.image(ins[0], f, caffe_name, "Pooling")
        method = self.enum(p, "pool", "MAX")
        if method == "STOCHASTIC":
            self.fail(f"Pooling `{caffe_name}`: STOCHASTIC pooling is not supported", p.first("pool"),
                      "supported: MAX, AVE")
        op = "maxpool" if method == "MAX" else "avgpool"
        if self.boolean(p, "global_pooling", False):
            for key in ("kernel_size", "kernel_h", "kernel_w"):
                if p.first(key) is not None:
                    self.fail("global pooling with a kernel size", p.first(key), "leave the kernel size out")
            if self.window(p, "pad", (0, 0)) != (0, 0) or self.window(p, "stride", (1, 1), low=1) != (1, 1):
                self.fail("global pooling with padding or a stride", f, "leave `pad` and `stride` out")
            from ..values import Symbol

            return self.emit(f, caffe_name, op, {"kernel": Symbol("global")}, ins, (c, 1, 1))
        kernel = self.window(p, "kernel", low=1)
        if kernel is None:
            self.fail(f"Pooling `{caffe_name}` has no kernel size", f,
                      "add `kernel_size: K` (or `global_pooling: true`)")
        stride = self.window(p, "stride", (1, 1), low=1)
        pad = self.window(p, "pad", (0, 0))
        if any(pd >= k for pd, k in zip(pad, kernel)):
            self.fail(f"Pooling `{caffe_name}`: padding {_pair(pad)} is not less than the kernel {_pair(kernel)}",
                      p.first("pad") or p.first("pad_h") or f, "Caffe requires pad < kernel_size")
        ceil = self.enum(p, "round_mode", "CEIL") == "CEIL"
        size = [_caffe_pooled(n, k, s, pd, ceil) for n, k, s, pd in zip((h, w), kernel, stride, pad)]
        args = {"kernel": _pair(kernel), "stride": _pair(stride), "pad": _pair(pad), "ceil": ceil}
        if op == "avgpool":
            args["count_include_pad"] = True  # Caffe divides by the window clipped to the padded input
        return self.emit(f, caffe_name, op, args, ins, (c, *size))

    def _lrn(self, f, caffe_name, p, ins):
        self.image(ins[0], f, caffe_name, "LRN")
        if self.enum(p, "norm_region", "ACROSS_CHANNELS") != "ACROSS_CHANNELS":
            self.fail(f"LRN `{caffe_name}`: WITHIN_CHANNEL normalisation is not supported", p.first("norm_region"),
                      "supported: ACROSS_CHANNELS (torch.nn.LocalResponseNorm)")
        size = self.integer(p, "local_size", 5, low=1, high=MAX_CHANNELS)
        if size % 2 == 0:
            self.fail(f"LRN `{caffe_name}`: `local_size: {size}` is even", p.first("local_size"),
                      "Caffe's LRN takes an odd size")
        # Caffe and torch.nn.LocalResponseNorm both compute x / (k + alpha / size * sum(x^2))^beta over
        # `size` channels centred on each one: the arguments carry over as they are
        args = {"size": size, "alpha": self.number(p, "alpha", 1.0), "beta": self.number(p, "beta", 0.75),
                "k": self.number(p, "k", 1.0)}
        return self.emit(f, caffe_name, "lrn", args, ins, ins[0].shape)

    def _relu(self, f, caffe_name, p, ins):
        slope = self.number(p, "negative_slope", 0.0)
        if slope:
            return self.emit(f, caffe_name, "leaky_relu", {"slope": slope}, ins, ins[0].shape)
        return self.emit(f, caffe_name, "relu", {}, ins, ins[0].shape)

    def _sigmoid(self, f, caffe_name, p, ins):
        return self.emit(f, caffe_name, "sigmoid", {}, ins, ins[0].shape)

    def _tanh(self, f, caffe_name, p, ins):
        return self.emit(f, caffe_name, "tanh", {}, ins, ins[0].shape)

    def _dropout(self, f, caffe_name, p, ins):
        ratio = self.number(p, "dropout_ratio", 0.5, 0.0, 1.0)
        return self.emit(f, caffe_name, "dropout", {"p": ratio}, ins, ins[0].shape)

    def _innerproduct(self, f, caffe_name, p, ins):
        out = self.integer(p, "num_output", low=1, high=MAX_CHANNELS)
        if out is None:
            self.fail(f"InnerProduct `{caffe_name}` has no `num_output`", f,
                      "add `inner_product_param { num_output: N }`")
        if self.integer(p, "axis", 1, low=-4, high=4) not in (1, -len(ins[0].shape) - 1):
            self.fail("an InnerProduct that keeps more than the batch axis", p.first("axis"), "leave `axis` out")
        features = math.prod(ins[0].shape)
        if out * features > MAX_ELEMENTS:
            self.fail(f"InnerProduct `{caffe_name}` has {out * features:,} weights", p.first("num_output"),
                      f"at most {MAX_ELEMENTS:,}")
        if len(ins[0].shape) != 1:  # Caffe flattens C x H x W implicitly (in this order, as torch.flatten)
            ins = [self.emit(f, caffe_name, "flatten", {}, ins, (features,), suffix="_flatten")]
        args = {"out": out, "bias": self.boolean(p, "bias_term", True)}
        return self.emit(f, caffe_name, "linear", args, ins, (out,), weights=True)

    def _flatten(self, f, caffe_name, p, ins):
        axis, end = self.integer(p, "axis", 1, low=-4, high=4), self.integer(p, "end_axis", -1, low=-4, high=4)
        rank = len(ins[0].shape) + 1
        if axis % rank != 1 or end % rank != rank - 1:
            self.fail("a Flatten of other axes than all but the batch", p.first("axis") or p.first("end_axis"),
                      "leave `axis` and `end_axis` out")
        return self.emit(f, caffe_name, "flatten", {}, ins, (math.prod(ins[0].shape),))

    def _softmax(self, f, caffe_name, p, ins):
        if self.integer(p, "axis", 1, low=-4, high=4) % (len(ins[0].shape) + 1) != 1:
            self.fail("a Softmax over another axis than the channels", p.first("axis"), "leave `axis` out")
        return self.emit(f, caffe_name, "softmax", {}, ins, ins[0].shape)

    def _concat(self, f, caffe_name, p, ins):
        if p.first("axis") is not None and p.first("concat_dim") is not None:
            self.fail("both `axis` and `concat_dim`", p.first("concat_dim"), "give `axis`")
        axis = self.integer(p, "axis", None, low=-4, high=4)
        if axis is None:
            axis = self.integer(p, "concat_dim", 1, low=0, high=4)
        rank = len(ins[0].shape)
        if axis % (rank + 1) != 1:
            self.fail(f"Concat `{caffe_name}` along axis {axis}", p.first("axis") or p.first("concat_dim"),
                      "graphdsl concatenates channels (axis 1)")
        if any(len(b.shape) != rank or b.shape[1:] != ins[0].shape[1:] for b in ins):
            self.fail(f"Concat `{caffe_name}` joins blobs of different sizes: "
                      f"{', '.join(_fmt(b.shape) for b in ins)}", f, "the blobs must differ in channels only")
        shape = (sum(b.shape[0] for b in ins), *ins[0].shape[1:])
        return self.emit(f, caffe_name, "concat", {}, ins, shape)

    def _eltwise(self, f, caffe_name, p, ins):
        operation = self.enum(p, "operation", "SUM")
        coeffs = p.all("coeff")
        if coeffs and (operation != "SUM" or len(coeffs) != len(ins)):
            self.fail(f"Eltwise `{caffe_name}`: {len(coeffs)} coefficients for {len(ins)} bottoms"
                      if operation == "SUM" else "coefficients of an Eltwise PROD or MAX", coeffs[0],
                      "give one coefficient per bottom, for SUM only")
        for c in coeffs:
            if c.value != 1:
                self.fail(f"Eltwise `{caffe_name}`: coefficient {_shown(c.value)} is not supported", c,
                          "graphdsl's `add` sums with coefficients 1")
        if operation == "MAX":
            self.fail(f"Eltwise `{caffe_name}`: MAX is not supported", p.first("operation"),
                      "supported: SUM (add), PROD (mul)")
        if any(b.shape != ins[0].shape for b in ins):
            self.fail(f"Eltwise `{caffe_name}` joins blobs of different shapes: "
                      f"{', '.join(_fmt(b.shape) for b in ins)}", f, "Eltwise needs equal shapes")
        if operation == "SUM":
            # a sum is the same in any order; the input written last first, as a person writes a residual
            # (`out + identity`): Caffe's ResNet lists the shortcut (branch1) first
            order = {layer.name: k for k, layer in enumerate(self.layers)}
            ins = sorted(ins, key=lambda b: -order.get(b.layer, -1))
        return self.emit(f, caffe_name, "add" if operation == "SUM" else "mul", {}, ins, ins[0].shape)

    def _batchnorm(self, f, caffe_name, p, ins):
        args = {"eps": self.number(p, "eps", 1e-5, low=1e-12, high=1.0), "affine": False}
        made = self.emit(f, caffe_name, "bn", args, ins, ins[0].shape, weights=True)
        self.batchnorms.add(made.layer)
        return made

    def _scale(self, f, caffe_name, p, ins):
        if self.integer(p, "axis", 1, low=-4, high=4) != 1 or self.integer(p, "num_axes", 1, low=-1, high=4) != 1:
            self.fail(f"Scale `{caffe_name}` over other axes than the channels", p.first("axis") or p.first("num_axes"),
                      "leave `axis` and `num_axes` out")
        bias = self.boolean(p, "bias_term", False)
        before = ins[0].layer
        joins = before in self.batchnorms and self.consumers.get(before) == 1 and \
            not self.by_name[before].args["affine"]
        if joins and bias:  # BatchNorm + Scale(bias_term) is what graphdsl's `bn` (nn.BatchNorm2d) computes
            self.by_name[before].args["affine"] = True
            for blob, version in self.blobs.items():  # the BatchNorm's own output is gone (not in place)
                if version.layer == before:
                    self.blobs[blob] = _Blob("", None, f"{FOLDED}{caffe_name}")
            return ins[0]
        if bias:
            self.fail(f"Scale `{caffe_name}` with a bias that does not follow a BatchNorm", p.first("bias_term"),
                      "a Scale with `bias_term: true` right after a BatchNorm becomes one `bn`; graphdsl's `scale` "
                      "learns a factor only")
        return self.emit(f, caffe_name, "scale", {}, ins, ins[0].shape, weights=True)


def _caffe_pooled(size: int, kernel: int, stride: int, pad: int, ceil: bool) -> int:
    """Caffe's pooled size: (size + 2 * pad - kernel) / stride + 1 rounded up (CEIL, the default) or down,
    less one where padding makes the last window start in the padding (pooling_layer.cpp)."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _graphdsl_shape(op: str, args: dict, ins: list[tuple[int, ...]]):
    """The output shape graphdsl's operator computes for these arguments, or why it refuses them:
    [message, help]."""
    from ..ops import REGISTRY
    from ..ops.base import ArgError, OpError

    spec = REGISTRY[op]
    a = {}
    try:
        for arg in spec.args:
            if arg.name in args:
                a[arg.name] = arg.kind(args[arg.name])
            elif not arg.required:
                a[arg.name] = arg.kind(arg.default)
    except ArgError as e:
        return [str(e), None]
    if not spec.merges and len(ins[0]) not in spec.ranks:
        return [f"`{op}` does not take an input of {_fmt(ins[0])}", None]
    try:
        return tuple(spec.output_shape(a, ins))
    except OpError as e:
        return [e.message, e.help]


def _fmt(shape) -> str:
    return "x".join(map(str, shape))


def _shown(v) -> str:
    if isinstance(v, Message):
        return "a message"
    if isinstance(v, Ident):
        return f"`{v[:40]}`"
    if isinstance(v, str):
        return repr(v[:40])
    return str(v)


def _near(name: str, known: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, known[-300:], n=1)
    return found[0] if found else None
