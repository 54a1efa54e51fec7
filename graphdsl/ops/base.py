"""What an operator is: its arguments, shape rule, costs and receptive-field window.

Every operator is one subclass of `Op`, defined once, in the family module that holds it.
Shapes are tuples without the batch: `(C, H, W)` for images, `(F,)` for flat features.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ..values import Symbol, show

Shape = tuple[int, ...]
REQUIRED = object()


class ArgError(ValueError):
    """A value of the wrong kind; the message says what was expected."""


class OpError(Exception):
    """A shape rule failed. `arg` names the argument to point at, if there is one."""

    def __init__(self, message: str, help: str | None = None, arg: str | None = None):
        super().__init__(message)
        self.message, self.help, self.arg = message, help, arg


@dataclass(frozen=True)
class Arg:
    name: str
    kind: Callable[[object], object]  # validates and normalises a value, raises ArgError
    default: object = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Window:
    """How an op moves over H and W: effective kernel and stride per axis (receptive field)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]


# ---- argument kinds --------------------------------------------------------------


MAX_SIZE = 2**31 - 1  # a size or count beyond what a tensor dimension holds


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v <= MAX_SIZE


def nonneg_int(v):
    if _is_int(v) and v >= 0:
        return v
    raise ArgError("a non-negative integer")


def positive_int(v):
    if _is_int(v) and v > 0:
        return v
    too_large = isinstance(v, int) and v > MAX_SIZE
    raise ArgError(f"a positive integer (at most {MAX_SIZE:,})" if too_large else "a positive integer")


def number(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    raise ArgError("a number")


def positive_number(v):
    if number(v) > 0:
        return float(v)
    raise ArgError("a positive number")


def probability(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1:
        return float(v)
    raise ArgError("a probability between 0 and 1")


def boolean(v):
    if isinstance(v, bool):
        return v
    raise ArgError("`true` or `false`")


def _pair(v, ok, what):
    if ok(v):
        return (v, v)
    if isinstance(v, tuple) and len(v) == 2 and all(ok(x) for x in v):
        return v
    raise ArgError(f"{what} or a pair of them")


def pair(v):
    return _pair(v, lambda x: _is_int(x) and x > 0, "a positive integer")


def nonneg_pair(v):
    return _pair(v, lambda x: _is_int(x) and x >= 0, "a non-negative integer")


def padding(v):
    if v == Symbol("same"):
        return v
    try:
        return nonneg_pair(v)
    except ArgError:
        raise ArgError("a non-negative integer, a pair of them, or `same`") from None


def window(v):
    if v == Symbol("global"):
        return v
    try:
        return pair(v)
    except ArgError:
        raise ArgError("a positive integer, a pair of them, or `global`") from None


def positive_scale(v):
    """A positive number or a pair of them (an upsampling factor): normalised to floats."""
    def ok(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 < x < MAX_SIZE

    if ok(v):
        return float(v)
    if isinstance(v, tuple) and len(v) == 2 and all(ok(x) for x in v):
        return tuple(float(x) for x in v)
    raise ArgError("a positive number or a pair of them")


def numbers(v):
    """A non-empty list of numbers (one per channel): normalised to a tuple of floats."""
    if isinstance(v, tuple) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                          and math.isfinite(x) for x in v):
        return tuple(float(x) for x in v)
    raise ArgError("a list of numbers, e.g. `[0.5, 0.5, 0.5]`")


def int_list(v):
    if isinstance(v, tuple) and v and all(_is_int(x) for x in v):
        return v
    raise ArgError("a list of integers, e.g. `[0, 2, 3, 1]`")


def choice(*options: str):
    """One of the given strings, e.g. `mode="row"`."""
    def check(v):
        if isinstance(v, str) and v in options:
            return v
        raise ArgError("one of " + ", ".join(f'"{o}"' for o in options))

    check.__name__ = "choice"
    return check


def optional(kind):
    def check(v):
        return None if v is None else kind(v)

    check.__name__ = kind.__name__
    return check


# ---- the operator ------------------------------------------------------------------


class ChannelsLast(tuple):
    """A channels-last image shape `(H, W, C)`, what `permute([0, 2, 3, 1])` gives (ConvNeXt's blocks).

    A plain tuple `(C, H, W)` is channels first. The type is the layout: it compares equal to a tuple
    of the same sizes, so only ops that declare `channels_last = True` accept it (the elaborator checks).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ChannelsLast({tuple(self)!r})"


def is_channels_last(shape) -> bool:
    return isinstance(shape, ChannelsLast)


def is_image(shape) -> bool:
    """A channels-first image shape `(C, H, W)`."""
    return len(shape) == 3 and not is_channels_last(shape)


def fmt_shape(shape: Shape, sep: str = "x") -> str:
    """(64, 56, 56) -> 64x56x56 (diagrams and summaries use `×`); a channels-last shape says so:
    ChannelsLast((56, 56, 96)) -> 56x56x96 (HWC)."""
    text = sep.join(str(d) for d in shape)
    return f"{text} (HWC)" if is_channels_last(shape) else text


def like(shape: Shape, dims) -> Shape:
    """`dims` as a shape of the same layout as `shape` (ChannelsLast stays ChannelsLast)."""
    return ChannelsLast(dims) if is_channels_last(shape) else tuple(dims)


def channels(shape: Shape) -> int:
    """The channels (or features) of a shape, whatever its layout."""
    return shape[-1] if is_channels_last(shape) else shape[0]


def divisors(n: int, count: int) -> list[int]:
    """The first `count` divisors of `n` from 2 on (up to 64): what a help line offers instead of a
    group or split count that does not divide."""
    return [d for d in range(2, min(n, 64) + 1) if n % d == 0][:count]


def numel(shape: Shape) -> int:
    return math.prod(shape)


# ---- what autograd keeps (graphdsl.memory) ---------------------------------------------------


@dataclass(frozen=True)
class Saved:
    """One tensor that autograd keeps from an op's forward for its backward (`Op.saved_for_backward`).

    `of` says which tensor it is: an input's index (`0` for the first), `"out"` for the op's output,
    or `"new"` for a tensor of the op's own (max-pooling indices, batch-norm statistics, a dropout
    mask), whose per-sample `shape` is given (the whole shape where `batched` is false). Inputs and
    outputs are counted once per storage: an in-place ReLU's output is the storage of its input, a
    view keeps its base alive. `dtype` is "same" (the op's compute dtype), "float32", "int64",
    "bool", "mask" (a dropout mask: bool on CUDA, the compute dtype on the CPU), or "upcast" (float32
    under autocast, else the compute dtype: an intermediate autocast runs in float32).
    Parameters and buffers that autograd also keeps are not listed: they are counted as such.
    """

    what: str
    of: int | str = "new"
    shape: Shape = ()
    dtype: str = "same"
    batched: bool = True

    @staticmethod
    def input(i: int = 0, what: str = "input") -> Saved:
        return Saved(what, i)

    @staticmethod
    def output(what: str = "output") -> Saved:
        return Saved(what, "out")


class Op:
    """One operator. Subclasses set the class attributes and override what applies."""

    name: ClassVar[str]
    family: ClassVar[str]  # conv, pool, norm, activation, linear, merge, reshape, regularize
    args: ClassVar[tuple[Arg, ...]] = ()
    ranks: ClassVar[tuple[int, ...]] = (1, 3)  # input ranks accepted: 3 = CxHxW, 1 = flat
    merges: ClassVar[bool] = False  # takes several inputs: tensor names or branches
    # Its output is its input, or a view of it (identity, flatten): writing into one writes into both.
    aliases_input: ClassVar[bool] = False
    # Accepts channels-last `(H, W, C)` inputs (see ChannelsLast); every other op needs channels first.
    channels_last: ClassVar[bool] = False
    # Autograd keeps nothing of its output and it is no view, so the next op may overwrite it in place.
    overwritable: ClassVar[bool] = False
    # May accumulate into its first input (`out += identity`) where nothing else reads it; the
    # torch backend then passes `inplace=True` to `torch_call`.
    accumulates: ClassVar[bool] = False
    known_as: ClassVar[tuple[str, ...]] = ()  # its names in PyTorch, Keras, Caffe: for "did you mean"
    doc: ClassVar[str] = ""
    # Under torch.autocast: "lower" runs in half precision (conv, linear: autocast's lower-precision list,
    # the inputs are cast), "fp32" runs in float32 (layer_norm, softmax: its float32 list, the inputs are
    # cast), "widen" gives a float32 result without casting its inputs (a float32 parameter or
    # intermediate promotes it), None keeps the widest dtype of its inputs (type promotion).
    autocast: ClassVar[str | None] = None
    # Its backward hands the output's gradient, or views of it, to its inputs and allocates nothing
    # (add, concat, views): what the training-memory schedule assumes of gradient buffers.
    passes_gradient: ClassVar[bool] = False

    def output_shape(self, a: dict, ins: list[Shape]) -> Shape:
        return ins[0]

    def parameters(self, a: dict, ins: list[Shape], out: Shape) -> dict[str, Shape]:
        """The learned tensors of its PyTorch module, by state_dict key suffix: `{"weight": (64, 3, 7, 7)}`.
        A `bare_parameter` op's one tensor has the suffix "": its key is the layer's own path."""
        return {}

    def buffers(self, a: dict, ins: list[Shape], out: Shape) -> dict[str, Shape]:
        """The state its module keeps besides parameters (batch norm's running statistics), likewise."""
        return {}

    def param_count(self, a: dict, ins: list[Shape], out: Shape) -> int:
        return sum(numel(s) for s in self.parameters(a, ins, out).values())

    def buffer_count(self, a: dict, ins: list[Shape], out: Shape) -> int:
        return sum(numel(s) for s in self.buffers(a, ins, out).values())

    def macs(self, a: dict, ins: list[Shape], out: Shape) -> int:
        """Multiply-accumulates of convolutions and linear layers (the reference convention)."""
        return 0

    def other_ops(self, a: dict, ins: list[Shape], out: Shape) -> int:
        """Work outside conv and linear, roughly one per element operation."""
        return 0

    def window(self, a: dict, ins: list[Shape]) -> Window | None:
        """Kernel and stride over H and W, or None where the op is pointwise."""
        return None

    # ---- training memory (graphdsl.memory) ----------------------------------------------------------

    def saved_for_backward(self, a: dict, ins: list[Shape], out: Shape,
                           grad: tuple[bool, ...] | None = None) -> list[Saved]:
        """The tensors autograd keeps for this op's backward in training mode, besides parameters and
        buffers (see `Saved`). `a` holds the attributes as the generated code runs them (`inplace` only
        where the backend honours it); `grad` says which inputs require a gradient (None: all).

        The default, for ops that do not declare theirs (plugins), is the safe guess that the op keeps
        each of its inputs, as most differentiable ops do; an op that merely views its input keeps
        nothing. graphdsl's tests check every built-in rule against what PyTorch saves."""
        if self.aliases_input:
            return []
        return [Saved.input(i) for i in range(len(ins))]

    def shares_storage(self, a: dict, training: bool) -> int | None:
        """The input whose storage the output is (a view, or an in-place op), or None for a new tensor."""
        return 0 if self.aliases_input or a.get("inplace") else None

    def buffer_dtypes(self, a: dict) -> dict[str, str]:
        """Buffers that are not of the parameters' floating dtype, by key suffix: `{"num_batches_tracked": "int64"}`."""
        return {}

    def label(self, a: dict) -> str:
        """A short description of the op and its key arguments, for messages and diagrams."""
        shown = [f"{k}={show(v)}" for k, v in a.items() if v != self.default(k)]
        return f"{self.name}({', '.join(shown)})" if shown else self.name

    def default(self, name: str):
        """The normalised default of an argument, as it stands in the IR's attrs: `stride=1` is (1, 1)."""
        for arg in self.args:
            if arg.name == name:
                return None if arg.required else arg.kind(arg.default)
        return None

    # ---- lowering to PyTorch (graphdsl.backends.torch) ------------------------------------------
    # Both forms are Python source built from the resolved attributes with `pycall`/`py` (repr of
    # ints, floats, bools and tuples), never from spec text.

    torch_imports: ClassVar[tuple[str, ...]] = ()  # extra import lines a custom op's code needs
    # Source texts of small helper classes its forms use (`LayerNorm2d`, `StochasticDepth`): fixed texts
    # of graphdsl's own, never spec text. The generator writes each one used once, at the top of the
    # file, so that the generated code still depends on torch alone. A helper class holds `__init__`,
    # `forward` and `extra_repr` only, and a doc string.
    torch_helpers: ClassVar[tuple[str, ...]] = ()
    # Its one parameter is the state_dict entry at the node's own path, without `.weight` (ConvNeXt's
    # `layer_scale`): the enclosing class holds `self.<name> = <torch_parameter>` and forward computes
    # `torch_call(a, [parameter, *args], ins)`. A scope holding one is a class, never an nn.Sequential.
    bare_parameter: ClassVar[bool] = False

    def torch_module(self, a: dict, ins: list[Shape]) -> str | None:
        """The constructor of the torch.nn module computing this op, e.g.
        `nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)`; None where there is none.
        Ops with parameters or buffers must have one."""
        return None

    def torch_call(self, a: dict, args: list[str], ins: list[Shape]) -> str | None:
        """One expression computing the op from the expressions `args` of its inputs, e.g.
        `torch.flatten(x, 1)`; None where only the module form exists. It may read `self.training`.
        It must trace to `torch_nodes` torch.fx nodes (one call or operator)."""
        return None

    def torch_nodes(self, a: dict, n_inputs: int) -> int:
        """How many torch.fx nodes `torch_call` traces to (`a + b + c` is two)."""
        return 1

    def torch_module_nodes(self, a: dict, ins: list[Shape]) -> int:
        """How many torch.fx nodes a call of the `torch_module` module traces to in training mode:
        one for torch's own modules (fx keeps them whole), what fx records inside a helper class
        (`LayerNorm2d` is permute, layer_norm, permute: three)."""
        return 1

    def torch_parameter(self, a: dict, ins: list[Shape]) -> str | None:
        """For a `bare_parameter` op: the expression creating its parameter, e.g.
        `nn.Parameter(torch.ones(96, 1, 1) * 1e-06)`."""
        return None


# ---- shape arithmetic shared by conv and pooling ----------------------------------------


def sliding_out(size: int, kernel: int, stride: int, pad: int, dilation: int = 1, ceil: bool = False) -> int:
    """PyTorch's output size for a sliding window (Conv2d, MaxPool2d, AvgPool2d)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + pad:  # the last window must start inside the input
        out -= 1
    return out


# ---- Python source for the PyTorch lowering -------------------------------------------------


def py(value) -> str:
    """A resolved attribute as a Python literal: ints, floats, bools, None, strings and tuples only."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f'float("{value}")'
    if isinstance(value, tuple):
        return "(" + ", ".join(py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    raise TypeError(f"no Python literal for {value!r}")


def pylist(values) -> str:
    """A (nested) list of resolved values as a Python list literal: `[[[0.5]], [[0.25]]]`."""
    return "[" + ", ".join(pylist(v) if isinstance(v, list) else py(v) for v in values) + "]"


def hw(pair: tuple[int, int]) -> int | tuple[int, int]:
    """`(3, 3)` -> `3`, as torch accepts either; `(1, 3)` stays a pair."""
    return pair[0] if pair[0] == pair[1] else pair


def pycall(func: str, *args, **kwargs) -> str:
    """`func(args..., key=value...)`: literal values through `py`, expressions (str args) as given.

    Positional `args` that are `str` are expressions of the caller (input variables); every other
    value, and every keyword value, is a literal.
    """
    parts = [a if isinstance(a, str) else py(a) for a in args]
    parts += [f"{k}={py(v)}" for k, v in kwargs.items()]
    return f"{func}({', '.join(parts)})"
