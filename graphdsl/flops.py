"""FLOPs and MACs under every convention: the figure each counting tool would give, from the IR alone.

Counters disagree about ResNet-50 (4.09 G, 4.11 G, 4.12 G, 4.14 G, 8.18 G) because they count different
things, not because any of them is wrong: conv + linear multiply-accumulates only (torchvision's `_ops`,
the papers), those plus batch norm, activations and pooling at each tool's own rates (ptflops, thop,
fvcore / mmengine), or FLOPs at two per multiply-accumulate (torch's FlopCounterMode). Each convention
here is one rule per operator, applied to the per-node figures of `graphdsl.passes.costs` (`macs`,
`other_ops`) and the node's attributes and shapes; `explain` tabulates them per kind of layer so that a
number from another tool can be reconciled line by line. Nothing here imports torch.

The tool conventions reproduce what the tool reports for the equivalent torchvision model (activations
as `nn.ReLU` modules, residual additions as `out += identity`), at batch 1, as read in each tool's source
and checked against the tools themselves (ptflops 0.7.5, thop 0.1.1, fvcore 0.1.5, torchinfo 1.8 on 35
torchvision models: equal to the value, but where torchvision computes a layer with a functional call the
tool cannot see, see docs/summary.md and tests/test_flops.py):

- `ptflops` (sovrasov/flops-counter.pytorch, `ptflops/pytorch_ops.py` `MODULES_MAPPING`: the module hooks
  of its "pytorch" backend, which made its README table; mmcv 1.x's `get_model_complexity_info` is a copy):
  conv and linear MACs plus their bias, batch norm 2 a value (1 without affine), ReLU/ReLU6/LeakyReLU/
  ELU/GELU 1 a value, every pooling (adaptive too) 1 per *input* value, upsampling 1 per output value,
  `nn.LayerNorm` 1 a value (its hook doubles for `.affine`, which LayerNorm spells `elementwise_affine`).
  Hooks match exact module types, so torchvision's `LayerNorm2d` (a subclass) counts nothing. SiLU,
  sigmoid, hardswish, softmax, additions and products count nothing. (ptflops 0.7.5 also patches
  `F.relu` and the pooling functions by default, so the modules that call them count twice: pass
  `backend_specific_config={"count_functional": False}` for the README's figures.)
- `ptflops-aten` (`ptflops/aten_ops.py` `ATEN_OPS_MAPPING`, `backend="aten"`): convolutions and matrix
  products, with their bias; nothing else.
- `thop` (Lyken17/pytorch-OpCounter 0.1.1, the `thop` release on PyPI: `thop/profile.py` `register_hooks`,
  exact module types; `thop/vision/basic_hooks.py` and `calc_func.py`): conv and linear MACs without bias,
  batch norm and `nn.LayerNorm` 4 a value (2 without affine), ReLU, ReLU6, LeakyReLU and max pooling
  zero, average pooling 1 per output value, adaptive average pooling `(H / oh) * (W / ow) + 1` per output
  value, softmax `3 * C - 1` per position, upsampling 1 (bilinear 11) per output value; everything
  unregistered (SiLU, GELU, sigmoid, hardswish, `LayerNorm2d`, additions) nothing.
- `thop-readme`: the older thop rules its README table was made with (ResNet-50: 4.14; ultralytics-thop's
  README shows the same table): conv bias counted, linear `(2 * in - 1)` per output value (a multiply
  and an add each, less one), average pooling `k * k + 1` per output value, adaptive `(H // oh) * (W //
  ow) + 1`, layer norm nothing.
- `fvcore` and `fvcore-train` (facebookresearch/fvcore, `fvcore/nn/flop_count.py` `_DEFAULT_SUPPORTED_OPS`
  and `fvcore/nn/jit_handles.py`; mmengine's `mmengine/analysis/complexity_analysis.py` is the same table,
  "modified from" it): one "flop" per multiply-accumulate of convolution and linear (bias ignored), batch
  norm 2 a value in eval mode (1 without affine) and 5 in training mode (4), layer norm 5 (4), adaptive
  average pooling 1 per input value, upsampling 1 (bilinear 4) per output value; every other aten op
  (ReLU, max and plain average pooling, add, mul) is skipped. fvcore counts the mode the model is in:
  mmengine's documented ResNet-50 figure, 4.145 G, is a model left in training mode.
- `torchinfo` (TylerYep/torchinfo, `torchinfo/layer_info.py` `calculate_macs`, summed over leaf modules in
  `model_statistics.py`): a leaf module's `weight` and `bias` elements times the output's spatial size for
  convolutions, times the batch (1) otherwise: conv MACs plus bias, linear `in * out + out` whatever the
  leading dimensions (a linear on channels-last H x W x C counts once, not H * W times), batch norm and
  layer norm 2 per channel; nothing else.

>>> import graphdsl
>>> g = graphdsl.load(text="network n { input 3x8x8  conv(4, 3, pad=1)  bn  relu }").graph
>>> totals(g)["macs"], totals(g)["flops"], totals(g)["ptflops"]
(6912, 13824, 7936)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import networkx as nx

from .ops.base import channels, is_image, numel
from .passes import inputs_of
from .text import escape_controls
from .units import TIMES

FORMATS = ("text", "json", "markdown")


@dataclass(frozen=True)
class Node:
    """What a rule reads of one IR node: op, resolved attributes, input and output shapes, and the
    figures of `graphdsl.passes.costs`."""

    id: str
    op: str
    attrs: dict
    ins: list
    out: tuple
    macs: int
    other_ops: int

    @property
    def values(self) -> int:
        """Values of the output."""
        return numel(self.out)

    @property
    def in_values(self) -> int:
        return numel(self.ins[0]) if self.ins else 0

    def has(self, arg: str) -> bool:
        return bool(self.attrs.get(arg))


Rule = Callable[[Node], int]


@dataclass(frozen=True)
class Convention:
    name: str
    column: str  # the summary's column header under this convention
    counts: str  # what it counts, one line
    source: str  # who reports it this way
    rule: Rule = field(repr=False)

    def __call__(self, node: Node) -> int:
        return self.rule(node)


# ---- shapes the rules need -----------------------------------------------------------------------------


def _adaptive(n: Node) -> bool:
    """Global or adaptive pooling (torch's AdaptiveAvgPool2d / AdaptiveMaxPool2d)."""
    return n.attrs.get("adaptive") is not None or not isinstance(n.attrs.get("kernel"), tuple)


def _bias(n: Node) -> int:
    """One add per output value where the conv or linear layer has a bias."""
    return n.values if n.has("bias") else 0


def _affine(n: Node, yes: int, no: int) -> int:
    return n.values * (yes if n.has("affine") else no)


def _from_table(table: dict[str, Rule]) -> Rule:
    """A tool's rule: its table by op name; an op the table does not name counts its MACs (a plugin conv-like
    op is what a tool's conv hook would see) and nothing else."""
    def rule(n: Node) -> int:
        found = table.get(n.op)
        return n.macs if found is None else found(n)
    return rule


def _zero(n: Node) -> int:
    return 0


def _values(n: Node) -> int:
    return n.values


def _in_values(n: Node) -> int:
    return n.in_values


def _zeros(*ops: str) -> dict[str, Rule]:
    return dict.fromkeys(ops, _zero)


# Ops no tool counts anything for (views, copies, concatenation, regularisers at inference, functional math).
_NOTHING = _zeros("add", "mul", "concat", "flatten", "identity", "dropout", "stochastic_depth", "permute",
                  "channels", "subsample", "pad_channels", "channel_shuffle", "channel_affine", "scale", "lrn",
                  "relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish",
                  "hardsigmoid", "softmax", "maxpool", "avgpool", "upsample", "bn", "layer_norm")


# ptflops/pytorch_ops.py (MODULES_MAPPING): conv_flops_counter_hook, linear_flops_counter_hook,
# bn_flops_counter_hook, relu_flops_counter_hook, pool_flops_counter_hook, upsample_flops_counter_hook.
PTFLOPS: dict[str, Rule] = {
    **_NOTHING,
    "conv": lambda n: n.macs + _bias(n),
    "linear": lambda n: n.macs + _bias(n),
    "bn": lambda n: _affine(n, 2, 1),
    # bn_flops_counter_hook doubles for `module.affine`, which nn.LayerNorm spells `elementwise_affine`: 1 a
    # value; and hooks match exact types: torchvision's LayerNorm2d (a subclass, on C x H x W) has none
    "layer_norm": lambda n: 0 if is_image(n.ins[0]) else n.values,
    **dict.fromkeys(("relu", "relu6", "leaky_relu", "elu", "gelu"), _values),
    "maxpool": _in_values,
    "avgpool": _in_values,
    "upsample": _values,
}

# ptflops/aten_ops.py (ATEN_OPS_MAPPING): conv_flop (bias=...), addmm_flop, mm/matmul/bmm; nothing else.
PTFLOPS_ATEN: dict[str, Rule] = {**_NOTHING, "conv": lambda n: n.macs + _bias(n), "linear": lambda n: n.macs + _bias(n)}


def _thop_adaptive(n: Node) -> int:
    """count_adap_avgpool: (H / oh) * (W / ow) adds (a float ratio in thop 0.1.1) and one divide per output."""
    (_, h, w), (_, oh, ow) = n.ins[0], n.out
    return int((h / oh * (w / ow) + 1) * n.values)


# thop/profile.py register_hooks (exact module types); thop/vision/basic_hooks.py (count_convNd, count_linear,
# count_normalization, count_avgpool, count_adap_avgpool, count_softmax, count_upsample, zero_ops) and
# thop/vision/calc_func.py: thop 0.1.1 (the `thop` release on PyPI, 2022).
THOP: dict[str, Rule] = {
    **_NOTHING,
    "conv": lambda n: n.macs,  # calculate_conv2d_flops: no bias
    "linear": lambda n: n.macs,  # in_features per output value
    "bn": lambda n: _affine(n, 4, 2),  # calculate_norm: 2 a value, doubled with gamma and beta
    "layer_norm": lambda n: 0 if is_image(n.ins[0]) else _affine(n, 4, 2),  # exact type: LayerNorm2d has no rule
    "avgpool": lambda n: _thop_adaptive(n) if _adaptive(n) else n.values,  # count_avgpool: 1 per output
    "softmax": lambda n: n.values // channels(n.out) * (3 * channels(n.out) - 1),  # exp, add, divide
    "upsample": lambda n: n.values * (11 if n.attrs.get("mode") == "bilinear" else 1),
}


def _thop_readme_avgpool(n: Node) -> int:
    if _adaptive(n):
        (_, h, w), (_, oh, ow) = n.ins[0], n.out
        return ((h // oh) * (w // ow) + 1) * n.values  # the window's adds, one divide
    kh, kw = n.attrs["kernel"]
    return (kh * kw + 1) * n.values


# The rules thop's README table ("Results of Recent Models": ResNet-50 4.14 G) was computed with, older than
# 0.1.1: thop/count_hooks.py count_convNd (bias counted), count_linear (in_features multiplies and
# in_features - 1 adds per output value), count_bn; ReLU, ReLU6 and max pooling already zero_ops.
THOP_README: dict[str, Rule] = {
    **THOP,
    "conv": lambda n: n.macs + _bias(n),
    "linear": lambda n: (2 * channels(n.ins[0]) - 1) * n.values,
    "layer_norm": _zero,
    "avgpool": _thop_readme_avgpool,
}


def _fvcore(train: bool) -> dict[str, Rule]:
    # fvcore/nn/flop_count.py _DEFAULT_SUPPORTED_OPS; fvcore/nn/jit_handles.py: conv_flop_jit, linear_flop_jit,
    # batchnorm_flop_jit, norm_flop_counter, elementwise_flop_counter.
    return {
        **_NOTHING,
        "conv": lambda n: n.macs,
        "linear": lambda n: n.macs,
        "bn": (lambda n: _affine(n, 5, 4)) if train else (lambda n: _affine(n, 2, 1)),
        "layer_norm": lambda n: _affine(n, 5, 4),
        "avgpool": lambda n: n.in_values if _adaptive(n) else 0,  # aten::adaptive_avg_pool2d only
        "upsample": lambda n: n.values * (4 if n.attrs.get("mode") == "bilinear" else 1),
    }


FVCORE, FVCORE_TRAIN = _fvcore(train=False), _fvcore(train=True)


def _torchinfo_norm(n: Node) -> int:
    return 2 * channels(n.out) if n.has("affine") else 0  # weight and bias, times the batch


# torchinfo/layer_info.py calculate_macs: per leaf module, its weight and bias elements times the output's
# batch and spatial size for "Conv" classes, times the batch alone for every other class.
TORCHINFO: dict[str, Rule] = {
    **_NOTHING,
    "conv": lambda n: n.macs + _bias(n),
    "linear": lambda n: channels(n.ins[0]) * n.attrs["out"] + (n.attrs["out"] if n.has("bias") else 0),
    "bn": _torchinfo_norm,
    "layer_norm": _torchinfo_norm,
}


CONVENTIONS: dict[str, Convention] = {c.name: c for c in (
    Convention("macs", "MACs", "conv + linear multiply-accumulates",
               "torchvision `_ops`, the papers (ResNet, VGG, Inception), fvcore before it counted batch norm",
               lambda n: n.macs),
    Convention("macs-all", "MACs+ops", "MACs + 1 per element op elsewhere (bias, norm, activation, pooling, add)",
               "graphdsl: all the work in MAC units, the summary's MACs + Other ops",
               lambda n: n.macs + n.other_ops),
    Convention("flops", "FLOPs", "2 per conv + linear MAC (bias not counted)",
               "torch.utils.flop_counter.FlopCounterMode; tables of \"GFLOPs\" = 2 x GMACs",
               lambda n: 2 * n.macs),
    Convention("flops-all", "FLOPs+ops", "2 per MAC + 1 per element op elsewhere",
               "graphdsl: all the work in FLOPs",
               lambda n: 2 * n.macs + n.other_ops),
    Convention("ptflops", "ptflops MACs", "MACs + bias, BN 2/value, ReLU 1/value, pooling 1/input value",
               "ptflops' pytorch backend (its README table), mmcv 1.x get_model_complexity_info",
               _from_table(PTFLOPS)),
    Convention("ptflops-aten", "ptflops MACs (aten)", "conv + linear MACs + bias",
               "ptflops with backend=\"aten\" (the default of some 0.7.x releases)",
               _from_table(PTFLOPS_ATEN)),
    Convention("thop", "thop MACs", "MACs, BN 4/value, avg pool 1/output (adaptive: window + 1)",
               "thop 0.1.1 profile (the PyPI release)",
               _from_table(THOP)),
    Convention("thop-readme", "thop MACs (README)", "as thop, + conv bias, linear (2·in−1)/output, avg pool k²+1",
               "the table on thop's README page (older thop rules)",
               _from_table(THOP_README)),
    Convention("fvcore", "fvcore flops", "MACs, BN 2/value (eval), layer norm 5/value, adaptive avg pool 1/input",
               "fvcore FlopCountAnalysis, mmengine get_model_complexity_info (model in eval mode)",
               _from_table(FVCORE)),
    Convention("fvcore-train", "fvcore flops (train)", "as fvcore, with BN 5/value (training mode)",
               "fvcore, mmengine on a model in training mode (mmengine's documented ResNet-50 figure)",
               _from_table(FVCORE_TRAIN)),
    Convention("torchinfo", "mult-adds", "conv MACs + bias; linear in·out + out; norm 2/channel",
               "torchinfo summary (\"Total mult-adds\")",
               _from_table(TORCHINFO)),
)}

DEFAULT = "macs"


def convention(name: str) -> Convention:
    """The convention called `name`; ValueError listing them otherwise."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown convention {name!r}; one of {', '.join(CONVENTIONS)}") from None


def nodes(g: nx.DiGraph) -> Iterable[Node]:
    """The layers of `g` (the input left out), in graph order, as rules read them. Needs the figures of
    graphdsl.passes.costs on the nodes."""
    for n, d in g.nodes(data=True):
        if d["op"] == "input":
            continue
        ins = [g.nodes[p]["shape"] for p in inputs_of(g, n)]
        yield Node(n, d["op"], d["attrs"], ins, d["shape"], d.get("macs", 0), d.get("other_ops", 0))


@dataclass(frozen=True)
class Costs:
    """One convention's figure for every layer (by node id, graph order) and their total."""

    convention: str
    per_node: dict[str, int]
    total: int


def costs(g: nx.DiGraph, name: str = DEFAULT) -> Costs:
    """Every layer's figure under the convention `name`, and the total.

    >>> import graphdsl
    >>> g = graphdsl.load(text="network n { input 3x8x8  c: conv(4, 3, pad=1)  relu }").graph
    >>> costs(g, "flops-all").per_node
    {'c': 14080, '1': 256}
    """
    rule = convention(name)
    per = {n.id: rule(n) for n in nodes(g)}
    return Costs(name, per, sum(per.values()))


def totals(g: nx.DiGraph) -> dict[str, int]:
    """Every convention's total, by name (in the order of CONVENTIONS)."""
    sums = dict.fromkeys(CONVENTIONS, 0)
    rules = list(CONVENTIONS.values())
    for n in nodes(g):
        for c in rules:
            sums[c.name] += c(n)
    return sums


# ---- explain: what each convention counts, per kind of layer -------------------------------------------


def kind(n: Node) -> str:
    """The row of `explain` a layer falls in: the op, split where the conventions treat its forms apart
    (bias or none, adaptive pooling or windowed, layer norm on C×H×W or on channels, affine or not)."""
    op = n.op
    if op in ("conv", "linear"):
        return f"{op} + bias" if n.has("bias") else op
    if op in ("avgpool", "maxpool"):
        return f"{op}, adaptive" if _adaptive(n) else op
    if op in ("bn", "layer_norm"):
        text = f"{op} (C{TIMES}H{TIMES}W)" if op == "layer_norm" and is_image(n.ins[0]) else op
        return text if n.has("affine") else f"{text}, no affine"
    if op == "upsample":
        return f"upsample, {n.attrs.get('mode', 'nearest')}"
    return op


@dataclass(frozen=True)
class Line:
    kind: str
    layers: int
    values: int  # output values of those layers, batch 1
    figures: dict[str, int]  # by convention


@dataclass(frozen=True)
class Explanation:
    network: str
    lines: list[Line]
    totals: dict[str, int]
    layers: int

    def to_json(self) -> dict:
        return {"network": self.network, "layers": self.layers,
                "kinds": [{"kind": ln.kind, "layers": ln.layers, "values": ln.values, **ln.figures}
                          for ln in self.lines],
                "totals": self.totals}


def explain(g: nx.DiGraph) -> Explanation:
    """Per kind of layer (in order of first appearance): how many, and what each convention counts for
    them; the difference between two tools' totals is the sum of their differences on these lines."""
    lines: dict[str, list] = {}
    rules = list(CONVENTIONS.values())
    count = 0
    for n in nodes(g):
        count += 1
        k = kind(n)
        entry = lines.setdefault(k, [0, 0, dict.fromkeys(CONVENTIONS, 0)])
        entry[0] += 1
        entry[1] += n.values
        for c in rules:
            entry[2][c.name] += c(n)
    rows = [Line(k, layers, values, figs) for k, (layers, values, figs) in lines.items()]
    sums = {c: sum(r.figures[c] for r in rows) for c in CONVENTIONS}
    return Explanation(g.graph.get("name", ""), rows, sums, count)


# ---- formats ---------------------------------------------------------------------------------------------


def short(n: int) -> str:
    """4089184256 -> 4.089G, 22227968 -> 22.23M, 1000 -> 1000: four significant figures, what a tool prints."""
    for unit, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= 10 * scale or (unit != "K" and abs(n) >= scale):
            return f"{n / scale:.4g}{unit}"
    return str(n)


def _names(conventions: Iterable[str] | None) -> list[str]:
    names = list(CONVENTIONS) if conventions is None else list(conventions)
    for name in names:
        convention(name)
    return names


def _caption(g: nx.DiGraph) -> str:
    shape = TIMES.join(map(str, g.graph["input_shape"])) if "input_shape" in g.graph else "?"
    layers = sum(1 for _, d in g.nodes(data=True) if d["op"] != "input")
    return escape_controls(f"{g.graph.get('name', '')}: input {shape}, {layers:,} layers")


def _grid(headers: list[str], rows: list[list[str]], right: set[int], markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(headers) + " |",
               "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
        return out + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return (" " + "   ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths)))).rstrip()

    return [line(headers), " " + "─" * (sum(widths) + 3 * (len(widths) - 1)), *map(line, rows)]


def to_json(g: nx.DiGraph, conventions: Iterable[str] | None = None, explained: bool = False) -> dict:
    """Plain data: `{"network", "input", "conventions": {name: {"total", "column", "counts", "source"}},
    "explain": {...}}` (the last only where asked), raw integers."""
    names = _names(conventions)
    sums = totals(g)
    data = {
        "network": g.graph.get("name", ""),
        "input": list(g.graph["input_shape"]) if "input_shape" in g.graph else None,
        "conventions": {n: {"total": sums[n], "column": CONVENTIONS[n].column, "counts": CONVENTIONS[n].counts,
                            "source": CONVENTIONS[n].source} for n in names},
    }
    if explained:
        e = explain(g).to_json()
        keep = ("kind", "layers", "values", *names)
        e["kinds"] = [{k: v for k, v in row.items() if k in keep} for row in e["kinds"]]
        e["totals"] = {n: e["totals"][n] for n in names}
        data["explain"] = e
    return data


def report(g: nx.DiGraph, fmt: str = "text", conventions: Iterable[str] | None = None,
           explained: bool = False) -> str:
    """What `graphdsl flops FILE [--convention C ...] [--explain] [--format F]` prints: every (or each
    named) convention's total with what it counts and who reports it; with `explained`, then the table of
    `explain` (per kind of layer, four significant figures) for those conventions. `fmt`: text (or table),
    markdown or json."""
    fmt = "text" if fmt == "table" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    names = _names(conventions)
    if fmt == "json":
        from .backends.summary import json_text

        return json_text(to_json(g, names, explained)) + "\n"
    md = fmt == "markdown"
    sums = totals(g)
    caption = _caption(g)
    out = [f"**{caption}**" if md else caption, ""]
    rows = [[n, f"{sums[n]:,}", short(sums[n]), CONVENTIONS[n].counts] for n in names]
    out += _grid(["Convention", "Total", "≈", "Counts"], rows, {1, 2}, md)
    out += ["", "As reported by:", ""]
    width = max(len(n) for n in names)
    out += [f"- `{n}`: {CONVENTIONS[n].source}" if md else f"  {n.ljust(width)}  {CONVENTIONS[n].source}"
            for n in names]
    if explained:
        out += ["", "Per kind of layer (batch 1); a difference between two totals is the sum of the "
                "differences on these lines:", ""]
        out += _explain_grid(explain(g), names, md)
    return "\n".join(out) + "\n"


def _explain_grid(e: Explanation, names: list[str], markdown: bool) -> list[str]:
    rows = [[ln.kind, f"{ln.layers:,}", *(short(ln.figures[n]) for n in names)] for ln in e.lines]
    rows.append(["total", f"{e.layers:,}", *(short(e.totals[n]) for n in names)])
    return _grid(["Kind", "Layers", *names], rows, set(range(1, len(names) + 2)), markdown)


def explain_text(g: nx.DiGraph, conventions: Iterable[str] | None = None) -> str:
    """The `explain` table alone, as text (what the golden file holds)."""
    return "\n".join(_explain_grid(explain(g), _names(conventions), False)) + "\n"
