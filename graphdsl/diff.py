"""A semantic diff of two networks: layers matched by module path (the node id, which is also the
state_dict prefix), with what changed in each and the totals.

It reads the IR and the figures the passes wrote (shape, params, buffers, MACs, other ops, activations,
receptive field); it never re-derives a shape or a cost. `b − a` is the direction of every delta.

>>> import graphdsl
>>> a = graphdsl.load(text="network n { input 3x32x32  c: conv(8, 3)  d: conv(8, 3) }")
>>> b = graphdsl.load(text="network n { input 3x32x32  c: conv(8, 3, stride=2)  d: conv(8, 3) }")
>>> d = diff(a, b)
>>> for c in d.changed:
...     print(c.path, c.what(figures=False))
c stride 1→2; shape 8×30×30 → 8×15×15; cum. stride 1→2
d shape 8×28×28 → 8×13×13; rf 5→7; cum. stride 1→2
>>> d.totals["macs"], d.delta("macs")
((645984, 145944), -500040)
>>> diff(a, a).empty
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx
from rich.cells import cell_len

from .ops import REGISTRY
from .ops.base import fmt_shape
from .passes import FIGURES, inputs_of
from .text import escape_controls
from .units import TIMES
from .values import show

__all__ = ["diff", "NetworkDiff", "LayerRef", "LayerChange", "FieldChange", "ScopeStat", "CallChange", "FORMATS",
           "TOTALS"]

FORMATS = ("text", "json", "markdown")
TOTALS = (*FIGURES, "layers")  # the totals compared, in this order
TOTAL_NAMES = {"params": "params", "buffers": "buffers", "macs": "MACs", "other_ops": "other ops",
               "activations": "activations", "layers": "layers"}
SHOW_INPUTS = 4  # an inputs change names the first few inputs of a merge and counts the rest
ARROW = "→"


def _plain(text: str) -> str:
    """Spec-derived text for one line of output: nothing hidden."""
    return escape_controls(str(text))


def _shape(shape) -> str:
    return fmt_shape(shape, TIMES) if shape is not None else "(none)"


def _pair(value) -> str:
    """(7, 7) -> 7, (7, 3) -> 7×3: a receptive field or a stride as the summary writes it."""
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def _value(value) -> str:
    """An argument's value as the spec writes it; a square pair (`stride=(2, 2)`) once, as labels write it."""
    if value is None:
        return "(none)"
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1] and type(value[0]) is int:
        return str(value[0])
    return _plain(show(value, limit=80))


def _arrow(a: str, b: str) -> str:
    """`2→1` for short values, `256×56×56 → 256×28×28` for longer ones."""
    tight = " " not in a + b and len(a) + len(b) <= 12 and TIMES not in a + b
    return f"{a}{ARROW}{b}" if tight else f"{a} {ARROW} {b}"


def _signed(n: int) -> str:
    return f"+{n:,}" if n > 0 else f"{n:,}" if n < 0 else "0"


def _percent(a: int, b: int) -> str:
    if a == b:
        return ""
    if a == 0:
        return "new"
    pct = (b - a) / a * 100
    text = f"{pct:+.1f}%"
    return text if text not in ("+0.0%", "-0.0%") else f"{pct:+.1g}%"


# ---- the pieces of a diff -------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRef:
    """One layer of one side: its figures, as the passes wrote them."""

    path: str
    op: str
    label: str  # `conv 3×3, 64, /2`
    attrs: dict
    shape: tuple
    inputs: tuple[str, ...]
    in_shapes: tuple[tuple, ...]  # the shapes of the inputs, in order
    params: int
    buffers: int
    macs: int
    other_ops: int
    activations: int
    rf: tuple[int, int]
    jump: tuple[int, int]

    @classmethod
    def of(cls, g: nx.DiGraph, n: str) -> LayerRef:
        d = g.nodes[n]
        op = REGISTRY.get(d["op"])
        ins = tuple(inputs_of(g, n))
        return cls(n, d["op"], op.label(d["attrs"]) if op else d["op"], d["attrs"], d["shape"], ins,
                   tuple(tuple(g.nodes[i]["shape"]) for i in ins), *(d.get(k, 0) for k in FIGURES),
                   tuple(d["rf"]), tuple(d["jump"]))

    def to_json(self) -> dict:
        return {"path": self.path, "op": self.op, "label": self.label, "shape": list(self.shape),
                "inputs": list(self.inputs), "in_shapes": [list(x) for x in self.in_shapes], "params": self.params,
                "buffers": self.buffers, "macs": self.macs, "other_ops": self.other_ops,
                "activations": self.activations, "rf": list(self.rf), "jump": list(self.jump)}


@dataclass(frozen=True)
class FieldChange:
    """One thing that differs in a layer: `field` is `op`, `attrs.<name>`, `inputs`, `in_shapes`, `shape`,
    one of the figures (`params`, `buffers`, `macs`, `other_ops`, `activations`), `rf` or `jump`."""

    field: str
    a: object
    b: object

    def text(self) -> str:
        """`stride 2→1`, `shape 256×56×56 → 256×28×28`, `op relu → add`, `rf 35→43`."""
        f = self.field
        if f.startswith("attrs."):
            return f"{_plain(f[6:])} {_arrow(_value(self.a), _value(self.b))}"
        if f == "shape":
            return f"shape {_shape(self.a)} {ARROW} {_shape(self.b)}"
        if f == "op":
            return f"op {_plain(self.a)} {ARROW} {_plain(self.b)}"
        if f == "inputs":
            return f"inputs {_inputs(self.a)} {ARROW} {_inputs(self.b)}"
        if f == "in_shapes":
            return f"in {_shapes(self.a)} {ARROW} {_shapes(self.b)}"
        if f in ("rf", "jump"):
            return f"{'rf' if f == 'rf' else 'cum. stride'} {_arrow(_pair(self.a), _pair(self.b))}"
        return f"{TOTAL_NAMES.get(f, f)} {self.a:,} {ARROW} {self.b:,}"

    def to_json(self) -> dict:
        def plain(v):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, (int, float, str, bool)) or v is None:
                return v
            return str(v)  # a symbol (`same`, `global`)

        return {"field": self.field, "a": plain(self.a), "b": plain(self.b)}


def _inputs(names) -> str:
    names = list(names)
    shown = ", ".join(_plain(n) for n in names[:SHOW_INPUTS])
    more = f", … {len(names) - SHOW_INPUTS:,} more" if len(names) > SHOW_INPUTS else ""
    return f"({shown}{more})" if len(names) != 1 else shown


def _shapes(shapes) -> str:
    shapes = list(shapes)
    shown = ", ".join(_shape(x) for x in shapes[:SHOW_INPUTS])
    more = f", … {len(shapes) - SHOW_INPUTS:,} more" if len(shapes) > SHOW_INPUTS else ""
    return f"({shown}{more})" if len(shapes) != 1 else shown


_RF_FIELDS = ("rf", "jump")


@dataclass(frozen=True)
class LayerChange:
    """A layer in both networks that differs: `changes` in the order op (or else each argument), inputs,
    input shapes, shape, MACs, params, buffers, other ops, activations, receptive field, cumulative stride."""

    path: str
    a: LayerRef
    b: LayerRef
    changes: tuple[FieldChange, ...]

    @property
    def rf_only(self) -> bool:
        """Only the receptive field (or its stride) differs: a consequence of a change upstream."""
        return all(c.field in _RF_FIELDS for c in self.changes)

    def what(self, figures: bool = True) -> str:
        """The changes in a few words; without `figures`, the figures shown in columns of their own
        (params, MACs) are left out."""
        fields = {c.field for c in self.changes}
        skip = {"other_ops", "activations"}  # they follow from the op and the shapes
        if not figures:
            skip |= {"params", "macs"}
        if "shape" in fields:  # the output's shape says it: the inputs' would repeat it
            skip.add("in_shapes")
        parts = []
        for c in self.changes:
            if c.field == "op":  # `maxpool 2×2, /2 → conv 3×3, 256`: the whole layer, as labels write it
                parts.append(f"{_plain(self.a.label)} {ARROW} {_plain(self.b.label)}")
            elif c.field not in skip:
                parts.append(c.text())
        return "; ".join(parts)

    def delta(self, key: str) -> int:
        return getattr(self.b, key) - getattr(self.a, key)

    def to_json(self) -> dict:
        return {"path": self.path, "a": self.a.to_json(), "b": self.b.to_json(),
                "changes": [c.to_json() for c in self.changes]}


def compare(a: LayerRef, b: LayerRef) -> tuple[FieldChange, ...]:
    """What differs between the same path's layers in two networks."""
    out: list[FieldChange] = []
    if a.op != b.op:  # another operator: its arguments are not comparable one by one
        out.append(FieldChange("op", a.op, b.op))
    else:
        keys = list(a.attrs) + [k for k in b.attrs if k not in a.attrs]
        for k in keys:
            va, vb = a.attrs.get(k), b.attrs.get(k)
            if not _same(va, vb):
                out.append(FieldChange(f"attrs.{k}", va, vb))
    if a.inputs != b.inputs:
        out.append(FieldChange("inputs", a.inputs, b.inputs))
    if [fmt_shape(s) for s in a.in_shapes] != [fmt_shape(s) for s in b.in_shapes]:
        out.append(FieldChange("in_shapes", a.in_shapes, b.in_shapes))
    if fmt_shape(a.shape) != fmt_shape(b.shape):  # the layout (channels-last) counts too
        out.append(FieldChange("shape", tuple(a.shape), tuple(b.shape)))
    for k in ("macs", "params", "buffers", "other_ops", "activations", "rf", "jump"):
        if getattr(a, k) != getattr(b, k):
            out.append(FieldChange(k, getattr(a, k), getattr(b, k)))
    return tuple(out)


def _same(x, y) -> bool:
    """Equal values of the same types (`1` and `1.0`, `1` and `true` differ)."""
    if isinstance(x, tuple) and isinstance(y, tuple):
        return len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y))
    return type(x) is type(y) and x == y


@dataclass(frozen=True)
class ScopeStat:
    """The differences under one top-level scope (`layer2`), or one top-level layer (`fc`)."""

    name: str
    added: int = 0
    removed: int = 0
    changed: int = 0
    rf_only: int = 0
    unchanged: int = 0
    params: tuple[int, int] = (0, 0)  # (a, b) sums over the scope's layers
    macs: tuple[int, int] = (0, 0)

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.rf_only)

    def counts(self) -> str:
        parts = [(self.changed, "changed"), (self.added, "added"), (self.removed, "removed"),
                 (self.rf_only, "receptive field only")]
        return ", ".join(f"{n:,} {what}" for n, what in parts if n) or "no differences"

    def to_json(self) -> dict:
        return {"name": self.name, "added": self.added, "removed": self.removed, "changed": self.changed,
                "rf_only": self.rf_only, "unchanged": self.unchanged, "params": list(self.params),
                "macs": list(self.macs)}


@dataclass(frozen=True)
class CallChange:
    """A block call (scope) whose block or arguments differ: `features: vgg_features(depth=16)` in a,
    `vgg_features(depth=19)` in b. Only the outermost such call is listed: what it holds differs as a
    consequence."""

    path: str
    block_a: str
    block_b: str
    args_a: dict
    args_b: dict

    def text(self) -> str:
        """`vgg_features: depth 16→19`, `resnet_v1_stage → resnet_stage`: the block, and the arguments that
        differ."""
        head = (_plain(self.block_b) if self.block_a == self.block_b
                else f"{_plain(self.block_a)} {ARROW} {_plain(self.block_b)}")
        keys = [*self.args_a, *(k for k in self.args_b if k not in self.args_a)]
        args = [f"{_plain(k)} {_arrow(_value(self.args_a.get(k)), _value(self.args_b.get(k)))}" for k in keys
                if not (k in self.args_a and k in self.args_b and _same(self.args_a[k], self.args_b[k]))]
        return head + (": " + ", ".join(args) if args else "")

    def to_json(self) -> dict:
        def call(block, args):
            return {"block": block, "args": {k: FieldChange("", v, None).to_json()["a"] for k, v in args.items()}}

        return {"path": self.path, "a": call(self.block_a, self.args_a), "b": call(self.block_b, self.args_b)}


# ---- the diff --------------------------------------------------------------------------------


@dataclass
class NetworkDiff:
    """Two networks compared. `format("text"|"json"|"markdown")` writes it; `empty` says whether they
    differ at all (the network's name and doc string do not count)."""

    a_label: str
    b_label: str
    arguments: list[tuple[str, object, object]]  # network arguments that differ: (name, a, b), None where absent
    input: tuple[tuple, tuple]
    outputs: list[tuple[str, tuple | None, tuple | None, str | None, str | None]]  # (name, shape a, b, node a, b)
    totals: dict[str, tuple[int, int]]
    added: list[LayerRef]  # in b's order
    removed: list[LayerRef]  # in a's order
    changed: list[LayerChange]  # in b's order, not counting those in rf_only
    rf_only: list[LayerChange]  # layers that differ in receptive field only
    unchanged: int
    scopes: list[ScopeStat]  # every top-level scope or layer, b's order then a's own
    calls: list[CallChange]
    a_graph: nx.DiGraph | None = field(default=None, repr=False, compare=False)
    b_graph: nx.DiGraph | None = field(default=None, repr=False, compare=False)

    @property
    def empty(self) -> bool:
        return not (self.arguments or self.added or self.removed or self.changed or self.rf_only or self.calls
                    or self.input[0] != self.input[1]
                    or any(sa != sb or na != nb for _, sa, sb, na, nb in self.outputs))

    def __bool__(self) -> bool:
        """True where the networks differ (`if diff(a, b): ...`, as `diff` exits 1)."""
        return not self.empty

    def delta(self, key: str) -> int:
        a, b = self.totals[key]
        return b - a

    def highlight(self) -> dict[str, str]:
        """b's nodes that differ from a: {node id: "added" | "changed"} (the diagram's colours)."""
        out = {r.path: "added" for r in self.added}
        out.update((c.path, "changed") for c in self.changed)
        return out

    # ---- plain data ---------------------------------------------------------------------------

    def to_json(self) -> dict:
        def value(v):
            return None if v is None else FieldChange("", v, None).to_json()["a"]

        return {
            "a": self.a_label,
            "b": self.b_label,
            "empty": self.empty,
            "arguments": [{"name": n, "a": value(x), "b": value(y)} for n, x, y in self.arguments],
            "input": {"a": list(self.input[0]), "b": list(self.input[1])},
            "outputs": [{"name": n, "a": None if sa is None else list(sa), "b": None if sb is None else list(sb),
                         "node_a": na, "node_b": nb} for n, sa, sb, na, nb in self.outputs],
            "totals": {k: {"a": a, "b": b, "delta": b - a} for k, (a, b) in self.totals.items()},
            "counts": {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                       "rf_only": len(self.rf_only), "unchanged": self.unchanged},
            "scopes": [s.to_json() for s in self.scopes if s.differs],
            "calls": [c.to_json() for c in self.calls],
            "added": [r.to_json() for r in self.added],
            "removed": [r.to_json() for r in self.removed],
            "changed": [c.to_json() for c in self.changed],
            "rf_only": [c.to_json() for c in self.rf_only],
        }

    def json(self) -> str:
        """to_json() as JSON text, ASCII only (every hidden character escaped)."""
        return json.dumps(self.to_json(), indent=2, ensure_ascii=True) + "\n"

    # ---- for people ---------------------------------------------------------------------------

    def header(self) -> list[str]:
        return [f"a: {_plain(self.a_label)}", f"b: {_plain(self.b_label)}"]

    def count_line(self) -> str:
        parts = [f"{len(self.changed):,} changed", f"{len(self.added):,} added", f"{len(self.removed):,} removed"]
        if self.rf_only:
            parts.append(f"{len(self.rf_only):,} with another receptive field only")
        parts.append(f"{self.unchanged:,} unchanged")
        return "layers: " + ", ".join(parts)

    def io_lines(self) -> list[tuple[str, str]]:
        """(what, text) for the input and each output: `same` or `a → b`."""
        ia, ib = self.input
        lines = [("input", _shape(ia) if ia == ib else f"{_shape(ia)} {ARROW} {_shape(ib)}")]
        for name, sa, sb, na, nb in self.outputs:
            text = _shape(sa) if sa == sb else f"{_shape(sa)} {ARROW} {_shape(sb)}"
            if na != nb:
                text += f" (layer {_plain(na or '(none)')} {ARROW} {_plain(nb or '(none)')})"
            lines.append(("output" if name == "output" else f"output {_plain(name)}", text))
        return lines

    def total_rows(self) -> list[tuple[str, str, str, str, str]]:
        return [(TOTAL_NAMES[k], f"{a:,}", f"{b:,}", _signed(b - a), _percent(a, b))
                for k, (a, b) in self.totals.items()]

    def scope_rows(self) -> list[tuple[str, str, str, str]]:
        return [(_plain(s.name), s.counts(), _signed(s.params[1] - s.params[0]), _signed(s.macs[1] - s.macs[0]))
                for s in self.scopes if s.differs]

    def layer_rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """(mark, layer, op, what, params Δ, MACs Δ): `~` changed, `+` added, `-` removed, in b's order with
        the removed after."""
        rows = []
        for c in self.changed:
            op = _plain(c.b.op) if c.a.op == c.b.op else f"{_plain(c.a.op)} {ARROW} {_plain(c.b.op)}"
            rows.append(("~", _plain(c.path), op, c.what(figures=False), _signed(c.delta("params")),
                         _signed(c.delta("macs"))))
        for r in self.added:
            rows.append(("+", _plain(r.path), _plain(r.op), f"{_plain(r.label)} {ARROW} {_shape(r.shape)}",
                         _signed(r.params), _signed(r.macs)))
        for r in self.removed:
            rows.append(("-", _plain(r.path), _plain(r.op), f"{_plain(r.label)} {ARROW} {_shape(r.shape)}",
                         _signed(-r.params), _signed(-r.macs)))
        return rows

    def rf_line(self) -> str:
        if not self.rf_only:
            return ""
        c = self.rf_only[-1]
        return (f"{len(self.rf_only):,} other layers differ only in receptive field, a consequence of the changes "
                f"above (the last: {_plain(c.path)} {c.what()})")

    def text(self) -> str:
        """Plain text: what was compared, the totals, a `--stat` of top-level scopes, the changed layers."""
        out = self.header()
        if self.empty:
            return "\n".join(out + ["no differences", ""])
        if self.arguments:
            out += ["", "network arguments:"]
            out += [f"  {_plain(n)} {_arrow(_value(x), _value(y))}" for n, x, y in self.arguments]
        out += [""] + _table(self.io_lines(), indent="")
        out += ["", *_table([("", "a", "b", "b − a", ""), *self.total_rows()], right=(1, 2, 3, 4))]
        out += ["", self.count_line()]
        if self.calls:
            out += ["", "block calls changed:"]
            out += _table([(_plain(c.path), c.text()) for c in self.calls])
        scopes = self.scope_rows()
        if scopes:
            out += ["", *_table([("scope", "layers", "params", "MACs"), *scopes], right=(2, 3))]
        rows = self.layer_rows()
        if rows:
            out += ["", *_table([("", "layer", "op", "what changed", "params", "MACs"), *rows], right=(4, 5))]
        if self.rf_only:
            out += ["", self.rf_line()]
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")

        out = [f"**a:** `{self.a_label_md()}`  ", f"**b:** `{self.b_label_md()}`", ""]
        if self.empty:
            return "\n".join(out + ["No differences.", ""])
        if self.arguments:
            out += ["Network arguments: " + ", ".join(f"`{esc(_plain(n))}` {esc(_arrow(_value(x), _value(y)))}"
                                                     for n, x, y in self.arguments), ""]
        out += [f"- {esc(k)}: {esc(v)}" for k, v in self.io_lines()]
        out += ["", "| | a | b | b − a | |", "|---|---:|---:|---:|---:|"]
        out += [f"| {k} | {a} | {b} | {d} | {p} |" for k, a, b, d, p in self.total_rows()]
        out += ["", self.count_line() + "."]
        if self.calls:
            out += ["", "Block calls changed:", ""]
            out += [f"- `{esc(_plain(c.path))}`: {esc(c.text())}" for c in self.calls]
        scopes = self.scope_rows()
        if scopes:
            out += ["", "| scope | layers | params | MACs |", "|---|---|---:|---:|"]
            out += [f"| {esc(n)} | {esc(w)} | {p} | {m} |" for n, w, p, m in scopes]
        rows = self.layer_rows()
        if rows:
            out += ["", "| | layer | op | what changed | params | MACs |", "|---|---|---|---|---:|---:|"]
            out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
        if self.rf_only:
            out += ["", esc(self.rf_line()) + "."]
        return "\n".join(out) + "\n"

    def a_label_md(self) -> str:
        return _plain(self.a_label).replace("`", "'")

    def b_label_md(self) -> str:
        return _plain(self.b_label).replace("`", "'")

    def format(self, fmt: str = "text") -> str:
        if fmt not in FORMATS:
            raise ValueError(f"unknown diff format {fmt!r}; one of {', '.join(FORMATS)}")
        return {"text": self.text, "json": self.json, "markdown": self.markdown}[fmt]()

    def __str__(self) -> str:
        return self.text()

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def diagram(self, depth: int | None = None, expand: bool = False, fit: bool = True):
        """Network b drawn with what differs from a coloured (graphdsl.backends.dot.diff_diagram)."""
        from .backends import dot

        return dot.diff_diagram(self, depth=depth, expand=expand, fit=fit)


def _table(rows: list[tuple[str, ...]], right: Iterable[int] = (), indent: str = "  ") -> list[str]:
    """Rows as aligned columns (cells already escaped), three spaces apart, trailing spaces cut."""
    if not rows:
        return []
    right = set(right)
    n = max(len(r) for r in rows)
    rows = [tuple(r) + ("",) * (n - len(r)) for r in rows]
    widths = [max(cell_len(r[i]) for r in rows) for i in range(n)]
    out = []
    for r in rows:
        cells = [" " * (w - cell_len(c)) + c if i in right else c + " " * (w - cell_len(c))
                 for i, (c, w) in enumerate(zip(r, widths)) if w]
        out.append((indent + "   ".join(cells)).rstrip())
    return out


# ---- computing it ------------------------------------------------------------------------------


def _label(net) -> str:
    return net.name


def _top(path: str) -> str:
    return path.split(".", 1)[0]


def _calls(ga: nx.DiGraph, gb: nx.DiGraph) -> list[CallChange]:
    """The outermost block calls present on either side whose block or arguments differ, in b's order."""
    sa, sb = ga.graph.get("scopes", {}), gb.graph.get("scopes", {})

    def call(info) -> tuple[str, dict] | None:
        if not info or info.get("kind") != "block":
            return None
        return info.get("block", ""), dict(info.get("args", {}))

    paths = list(sb) + [p for p in sa if p not in sb]
    out: list[CallChange] = []
    listed: set[tuple[str, ...]] = set()
    for path in sorted(paths, key=len):  # outer scopes first; stable, so b's order within a depth
        if any(path[:i] in listed for i in range(1, len(path))):
            continue
        ca, cb = call(sa.get(path)), call(sb.get(path))
        if ca is None or cb is None:  # a call on one side only holds added or removed layers
            continue
        if ca[0] == cb[0] and ca[1].keys() == cb[1].keys() and all(_same(ca[1][k], cb[1][k]) for k in ca[1]):
            continue
        listed.add(path)
        out.append(CallChange(".".join(path), ca[0], cb[0], ca[1], cb[1]))
    order = {p: i for i, p in enumerate(paths)}
    out.sort(key=lambda c: order[tuple(c.path.split("."))])
    return out


def diff(a, b, labels: tuple[str, str] | None = None) -> NetworkDiff:
    """Compare network `a` with network `b` (graphdsl.Network, or anything with a checked `.graph`):
    layers are matched by module path. `labels` name the two sides in the output (default: the
    networks' names)."""
    ga: nx.DiGraph = a.graph
    gb: nx.DiGraph = b.graph
    la, lb = labels if labels is not None else (_label(a), _label(b))
    layers_a = {n: d for n, d in ga.nodes(data=True) if d["op"] != "input"}
    layers_b = {n: d for n, d in gb.nodes(data=True) if d["op"] != "input"}

    added: list[LayerRef] = []
    changed: list[LayerChange] = []
    rf_only: list[LayerChange] = []
    unchanged = 0
    stats: dict[str, dict] = {}

    def stat(path: str) -> dict:
        return stats.setdefault(_top(path), {"added": 0, "removed": 0, "changed": 0, "rf_only": 0, "unchanged": 0,
                                             "pa": 0, "pb": 0, "ma": 0, "mb": 0})

    for n, d in layers_b.items():
        s = stat(n)
        s["pb"] += d.get("params", 0)
        s["mb"] += d.get("macs", 0)
        if n not in layers_a:
            added.append(LayerRef.of(gb, n))
            s["added"] += 1
            continue
        ra, rb = LayerRef.of(ga, n), LayerRef.of(gb, n)
        changes = compare(ra, rb)
        if not changes:
            unchanged += 1
            s["unchanged"] += 1
            continue
        c = LayerChange(n, ra, rb, changes)
        if c.rf_only:
            rf_only.append(c)
            s["rf_only"] += 1
        else:
            changed.append(c)
            s["changed"] += 1
    removed: list[LayerRef] = []
    for n, d in layers_a.items():
        s = stat(n)
        s["pa"] += d.get("params", 0)
        s["ma"] += d.get("macs", 0)
        if n not in layers_b:
            removed.append(LayerRef.of(ga, n))
            s["removed"] += 1
    scopes = [ScopeStat(name, s["added"], s["removed"], s["changed"], s["rf_only"], s["unchanged"],
                        (s["pa"], s["pb"]), (s["ma"], s["mb"])) for name, s in stats.items()]

    def total(g: nx.DiGraph, key: str) -> int:
        if key == "layers":
            return sum(1 for _, d in g.nodes(data=True) if d["op"] != "input")
        return sum(d.get(key, 0) for _, d in g.nodes(data=True))

    totals = {k: (total(ga, k), total(gb, k)) for k in TOTALS}
    pa, pb = ga.graph.get("params", {}), gb.graph.get("params", {})
    arguments = [(k, pa.get(k), pb.get(k)) for k in [*pa, *(k for k in pb if k not in pa)]
                 if not (k in pa and k in pb and _same(pa[k], pb[k]))]
    oa, ob = dict(ga.graph.get("outputs", [])), dict(gb.graph.get("outputs", []))
    outputs = []
    for name in [*ob, *(k for k in oa if k not in ob)]:
        na, nb = oa.get(name), ob.get(name)
        outputs.append((name, tuple(ga.nodes[na]["shape"]) if na else None,
                        tuple(gb.nodes[nb]["shape"]) if nb else None, na, nb))
    return NetworkDiff(la, lb, arguments, (tuple(ga.graph["input_shape"]), tuple(gb.graph["input_shape"])), outputs,
                       totals, added, removed, changed, rf_only, unchanged, scopes, _calls(ga, gb), ga, gb)
