"""The static summary: one row per layer (or per block at a depth) with shapes and figures, and totals.

It reads the IR only, never runs the network and never imports torch. Memory figures assume float32,
4 bytes a value, at batch 1. The MACs column can be shown under another counting convention
(`Summary(g, convention="flops")`, see graphdsl.flops); the JSON carries every convention's total.

>>> import graphdsl
>>> s = graphdsl.load(text="network n { input 3x32x32  c: conv(8, 3)  relu }").summary()
>>> [(r.name, r.label, r.shape, r.params, r.macs, r.rf) for r in s.rows]
[('c', 'conv 3×3, 8', (8, 30, 30), 224, 194400, (3, 3)), ('1', 'relu', (8, 30, 30), 0, 0, (3, 3))]
>>> s.totals["params"], s.totals["activations"]
(224, 14400)
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass

import networkx as nx
from rich.cells import cell_len

from .. import flops
from ..ops import REGISTRY
from ..ops.base import fmt_shape
from ..passes import FIGURES, inputs_of
from ..text import escape_controls, is_hidden
from ..units import TIMES, figure, human_bytes
from .scopes import Shown, call_text, gc_paused, output_node, units

BYTES = 4  # float32
FORMATS = ("table", "json", "csv", "markdown")
SHOW_FROM = 8  # the `From` cell of a merge of thousands names the first few and counts the rest
_NOT_ASCII = re.compile(r"[^\x00-\x7e]")


def json_text(data, indent: int | None = 2) -> str:
    """JSON text safe to print: as json.dumps(ensure_ascii=False), but every control, format (bidi,
    zero-width) or separator character, which json.dumps leaves raw above U+007F, written as a `\\uXXXX`
    escape. The value read back is the same; only a terminal sees the difference."""
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    if text.isascii() and "\x7f" not in text:
        return text

    def escape(m: re.Match) -> str:
        ch = m.group()
        if not is_hidden(ch):
            return ch
        units = ch.encode("utf-16-be", "surrogatepass")
        return "".join(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}" for i in range(0, len(units), 2))

    return _NOT_ASCII.sub(escape, text)


def _plain(text: str) -> str:
    """A cell, a caption: one line, nothing hidden (a spec's strings can hold ESC, bidi overrides...)."""
    return escape_controls(text)


@dataclass(frozen=True)
class Row:
    """One layer, or one block folded at the depth asked."""

    name: str
    op: str  # the registry key, or the block name / "group" for a folded scope
    label: str  # `conv 11×11, 96, /4`, `bottleneck(planes=64, stride=1)`
    shape: tuple[int, ...]
    params: int
    buffers: int
    macs: int
    other_ops: int
    activations: int  # values of this row's outputs (every layer inside a folded scope)
    rf: tuple[int, int]
    jump: tuple[int, int]
    inputs: tuple[str, ...]  # the rows that feed this one ("input" for the network input)
    cost: int | None = None  # the row's figure under the summary's convention, where that is not plain MACs

    @property
    def activation_bytes(self) -> int:
        return self.activations * BYTES

    def to_json(self) -> dict:
        """Plain data, the fields in order (written out: dataclasses.asdict deep-copies, 100,000 rows slowly)."""
        return {"name": self.name, "op": self.op, "label": self.label, "shape": list(self.shape),
                "params": self.params, "buffers": self.buffers, "macs": self.macs, "other_ops": self.other_ops,
                "activations": self.activations, "rf": list(self.rf), "jump": list(self.jump),
                "inputs": list(self.inputs), "activation_bytes": self.activation_bytes,
                **({} if self.cost is None else {"cost": self.cost})}


def rows(g: nx.DiGraph, depth: int | None = None, costs: dict[str, int] | None = None) -> list[Row]:
    """The rows of the summary, in graph order. Needs the figures of graphdsl.passes on the nodes; `costs`
    (node id -> figure, a convention's `flops.costs(...).per_node`) fills each row's `cost`."""
    found = units(g, depth)
    owner = {n: u.id for u in found for n in u.members}
    shown = Shown()
    out = []
    for u in found:
        members = set(u.members)
        feeds: dict[str, None] = {}
        for n in u.members:
            for p in inputs_of(g, n):
                if p not in members:
                    feeds[owner.get(p, p)] = None
        if u.kind == "node":
            d = g.nodes[u.id]
            op, label = d["op"], REGISTRY[d["op"]].label(d["attrs"])
        else:
            scope = u.scopes[0]
            op = scope.info.get("block", "group") if scope.kind == "block" else "group"
            label = call_text(scope, shown=shown) or u.label or "group"
        last = g.nodes[output_node(g, u.members)]
        sums = {k: sum(g.nodes[n][k] for n in u.members) for k in FIGURES}
        shape = last["shape"] if isinstance(last["shape"], tuple) else tuple(last["shape"])  # ChannelsLast stays
        cost = None if costs is None else sum(costs.get(n, 0) for n in u.members)
        out.append(Row(u.id, op, label, shape, **sums, rf=tuple(last["rf"]),
                       jump=tuple(last["jump"]), inputs=tuple(feeds), cost=cost))
    return out


def totals(g: nx.DiGraph) -> dict:
    """The network's totals: raw integers, bytes for memory."""
    t = {k: sum(d.get(k, 0) for _, d in g.nodes(data=True)) for k in FIGURES}
    t.update(layers=sum(1 for _, d in g.nodes(data=True) if d["op"] != "input"),
             param_bytes=t["params"] * BYTES, buffer_bytes=t["buffers"] * BYTES,
             activation_bytes=t["activations"] * BYTES)
    return t


def dims(pair) -> str:
    """(7, 7) -> 7; (7, 3) -> 7×3."""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}×{pair[1]}"


class Summary:
    """The summary of a network (possibly partial: the nodes elaborated before an error)."""

    def __init__(self, g: nx.DiGraph, depth: int | None = None, partial: bool = False,
                 convention: str = flops.DEFAULT):
        if depth is not None and depth < 1:
            raise ValueError(f"depth counts from 1, got {depth}")
        self.convention = flops.convention(convention)  # ValueError naming the conventions
        self.graph = g
        self.depth = depth
        self.partial = partial  # the graph stops at an error: say so
        self.cost_total: int | None = None  # under a convention other than plain MACs: its total
        per_node = None
        if convention != flops.DEFAULT:
            found = flops.costs(g, convention)
            per_node, self.cost_total = found.per_node, found.total
        with gc_paused():
            self.rows = rows(g, depth, per_node)
        self.totals = totals(g)

    @property
    def converted(self) -> bool:
        """The MACs column shows another convention's figure."""
        return self.cost_total is not None

    @property
    def name(self) -> str:
        return self.graph.graph.get("name", "")

    # ---- plain data ------------------------------------------------------------------------

    def to_json(self) -> dict:
        g = self.graph.graph
        return {
            "network": self.name,
            "input": list(g["input_shape"]) if "input_shape" in g else None,
            "outputs": {name: list(self.graph.nodes[n]["shape"]) for name, n in g.get("outputs", [])},
            "depth": self.depth,
            "partial": self.partial,
            "bytes_per_value": BYTES,
            "convention": self.convention.name,
            "rows": [r.to_json() for r in self.rows],
            "totals": self.totals,
            "costs": flops.totals(self.graph),  # every convention's total (graphdsl.flops.CONVENTIONS)
        }

    @gc_paused()
    def json(self) -> str:
        """`to_json()` as JSON text, hidden characters escaped (see `json_text`)."""
        return json_text(self.to_json())

    @gc_paused()
    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        extra = [self.convention.name] if self.converted else []  # the convention's figure, last
        w.writerow(["name", "op", "label", "shape", *FIGURES, "activation_bytes", "rf_h", "rf_w", "jump_h",
                    "jump_w", "inputs", *extra])
        for r in self.rows:
            w.writerow([_plain(r.name), _plain(r.op), _plain(r.label), "x".join(map(str, r.shape)), r.params,
                        r.buffers, r.macs, r.other_ops, r.activations, r.activation_bytes, *r.rf, *r.jump,
                        _plain(" ".join(r.inputs)), *([r.cost] if self.converted else [])])
        return buf.getvalue()

    # ---- for people ----------------------------------------------------------------------------

    HEADERS = ("Layer", "Operator", "Output", "Params", "MACs", "Act. memory", "RF", "Stride", "From")
    RIGHT = frozenset({"Params", "MACs", "Act. memory", "RF", "Stride"})  # right-justified columns
    LEGEND = ("MACs: conv + linear multiply-accumulates. Act. memory: the row's outputs, float32, batch 1.\n"
              "RF: receptive field. Stride: cumulative stride. "
              "From: the rows that feed this one (blank: the row above).")

    @property
    def headers(self) -> tuple[str, ...]:
        """HEADERS, the MACs column named after the summary's convention (`FLOPs`, `ptflops MACs`)."""
        column = self.convention.column
        return tuple(column if h == "MACs" else h for h in self.HEADERS)

    @property
    def right(self) -> frozenset[str]:
        return self.RIGHT | {self.convention.column}

    @property
    def legend(self) -> str:
        if not self.converted:
            return self.LEGEND
        c = self.convention
        return self.LEGEND.replace("MACs: conv + linear multiply-accumulates.",
                                   f"{c.column}: {c.counts} (convention `{c.name}`).")

    def cells(self) -> list[tuple[str, ...]]:
        """The table's text, hidden characters escaped: `From` is left blank where a row takes just the row
        above, and names the first SHOW_FROM rows of a wider merge and counts the rest."""
        out = []
        previous = "input"
        for r in self.rows:
            if r.inputs == (previous,):
                source = ""
            elif len(r.inputs) > SHOW_FROM:
                source = ", ".join(r.inputs[:SHOW_FROM]) + f", … {len(r.inputs) - SHOW_FROM:,} more"
            else:
                source = ", ".join(r.inputs)
            work = r.macs if r.cost is None else r.cost
            out.append((_plain(r.name), _plain(r.label), fmt_shape(r.shape, TIMES), f"{r.params:,}", f"{work:,}",
                        human_bytes(r.activation_bytes), dims(r.rf), dims(r.jump), _plain(source)))
            previous = r.name
        return out

    def total_lines(self) -> list[tuple[str, str]]:
        t = self.totals
        buffers = f"{t['buffers']:,} in buffers (BN running statistics)" if t["buffers"] else "no buffers"
        extra = f" + {human_bytes(t['buffer_bytes'])} of buffers" if t["buffers"] else ""
        c = self.convention
        converted = [(c.column, f"{figure(self.cost_total)}, {c.counts} (convention `{c.name}`)")
                     ] if self.cost_total is not None else []
        return [
            ("Parameters", f"{figure(t['params'])} trainable; {buffers}"),
            ("Parameter memory", f"{human_bytes(t['param_bytes'])}{extra}, float32"),
            ("MACs", f"{figure(t['macs'])}, conv + linear multiply-accumulates"),
            *converted,
            ("Other ops", f"{figure(t['other_ops'])}, pooling, norm, activations, adds, biases; not in MACs"),
            ("Activation memory", f"{human_bytes(t['activation_bytes'])} ({t['activations']:,} values), every layer's "
                                  "output in one forward pass, batch 1, float32"),
        ]

    def caption(self) -> str:
        g = self.graph.graph
        shape = fmt_shape(g["input_shape"], TIMES) if "input_shape" in g else "?"
        at = f", depth {self.depth}" if self.depth is not None else ""
        cut = " (PARTIAL: the layers before the first error)" if self.partial else ""
        return _plain(f"{self.name}: input {shape}, {self.totals['layers']:,} layers{at}{cut}")

    def renderable(self):
        """The summary as rich renderables (a table of rows and a grid of totals)."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(box=box.SIMPLE_HEAD, title=self.caption(), title_justify="left", pad_edge=False)
        for h in self.headers:
            table.add_column(h, justify="right" if h in self.right else "left", no_wrap=True)
        for cells in self.cells():
            table.add_row(*(Text(c) for c in cells))  # Text: a `[` in a label is no rich markup
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(no_wrap=True)
        for k, v in self.total_lines():
            grid.add_row(Text(k), Text(v))
        return Group(table, Text(self.legend, style="dim"), Text(""), grid)

    @gc_paused()
    def table(self) -> str:
        """Plain text, as wide as the table needs (never wrapped to a terminal): the layout `renderable()`
        prints through rich, written directly, in time linear in the rows (rich takes ~1 ms a row)."""
        headers = self.headers
        right = [h in self.right for h in headers]
        rows = [headers, *self.cells()]
        widths = [max(cell_len(r[i]) for r in rows) for i in range(len(headers))]

        def line(cells) -> str:
            padded = [" " * (w - cell_len(c)) + c if r else c + " " * (w - cell_len(c))
                      for c, w, r in zip(cells, widths, right)]
            return (" " + "   ".join(padded)).rstrip()

        out = [self.caption(), "", line(headers), " " + "─" * (sum(widths) + 3 * (len(widths) - 1))]
        out += [line(cells) for cells in rows[1:]]
        out += ["", *self.legend.split("\n"), ""]
        totals = self.total_lines()
        key = max(cell_len(k) for k, _ in totals)
        out += [(k + " " * (key - cell_len(k)) + "  " + v).rstrip() for k, v in totals]
        return "\n".join(out) + "\n"

    @gc_paused()
    def markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|")

        lines = [f"**{esc(self.caption())}**", "",
                 "| " + " | ".join(self.headers) + " |",
                 "|" + "|".join("---:" if h in self.right else "---" for h in self.headers) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in self.cells()]
        lines += ["", self.legend, "", "| Total | |", "|---|---|"]
        lines += [f"| {k} | {esc(v)} |" for k, v in self.total_lines()]
        return "\n".join(lines) + "\n"

    def format(self, fmt: str = "table") -> str:
        if fmt not in FORMATS:
            raise ValueError(f"unknown summary format {fmt!r}; one of {', '.join(FORMATS)}")
        return {"table": self.table, "json": self.json, "csv": self.csv, "markdown": self.markdown}[fmt]()

    def __str__(self) -> str:
        return self.table()

    def _repr_markdown_(self) -> str:
        return self.markdown()

