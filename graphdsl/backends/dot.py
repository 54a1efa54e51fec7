"""Diagrams: the IR as a graphviz graph, drawn top to bottom.

Nodes show the operator and its key arguments (`Op.label`), edges the tensor shape, scopes are clusters
(`layer3.5 · bottleneck`), runs of identical blocks fold into one box (`bottleneck ×35`) and `depth`
folds every scope below it. Colours come from the operator family (a fixed table, or a stable hash for
families it does not know). The same IR gives the same DOT source byte for byte. No torch here.
"""

from __future__ import annotations

import hashlib
import html
import os
import shutil
import subprocess
from pathlib import Path

import graphviz
import networkx as nx
from graphviz import ExecutableNotFound

from ..files import write_atomic
from ..ops import REGISTRY
from ..ops.base import fmt_shape
from ..passes import inputs_of
from ..text import escape_controls
from ..units import TIMES, human
from .scopes import Cluster, Shown, Unit, call_text, flatten, gc_paused, output_node, view

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HELP = ("install Graphviz, which provides `dot`: `apt install graphviz` (Debian, Ubuntu), "
                "`dnf install graphviz` (Fedora), `brew install graphviz` (macOS), `conda install graphviz`, "
                "`choco install graphviz` (Windows), or see https://graphviz.org/download/")

FONT = "Helvetica,Arial,sans-serif"
FAMILY_COLOURS = {  # fill colours, by Op.family
    "conv": "#cfe2f3",  # blue
    "linear": "#d9d2e9",  # violet
    "pool": "#d9ead3",  # green
    "norm": "#fff2cc",  # yellow
    "activation": "#fce5cd",  # orange
    "merge": "#f4cccc",  # red
    "reshape": "#eeeeee",  # grey
    "regularize": "#e8e8e8",  # grey
}
PALETTE = ("#d0e0e3", "#ead1dc", "#e6d8c3", "#d5e8d4", "#dae8fc", "#f8cecc", "#e1d5e7", "#fff2cc")
FOLDED = "#dfe6f0"  # a folded scope or run of blocks
TERMINAL = "#ffffff"  # input and outputs
MUTED = "#555555"
# A diff diagram (diff_diagram): network b, what differs from a filled and outlined, the rest pale.
DIFF_COLOURS = {  # status -> (fill, outline)
    "changed": ("#ffd966", "#b45f06"),  # amber
    "added": ("#b6d7a8", "#38761d"),  # green
    "removed": ("#ffffff", "#cc0000"),  # red, dashed: layers of a only, drawn apart
}
UNCHANGED = "#f3f3f3"
MAX_GHOSTS = 12  # removed layers drawn as boxes; the rest are counted

__all__ = ["diagram", "diff_diagram", "write", "run_dot", "svg", "auto_depth", "family_colour", "ExecutableNotFound",
           "DotTimeout", "DotError", "FORMATS", "INSTALL_HELP", "MAX_BOXES", "TIMEOUT", "DIFF_COLOURS"]

TIMEOUT = 60.0  # seconds `dot` may take (GRAPHDSL_DOT_TIMEOUT overrides it): past that, a diagram is too big to read
NARROW_HELP = ("draw fewer levels with `--depth N` (e.g. --depth 1), or list every layer with `graphdsl summary`")


class DotTimeout(OSError):
    """Graphviz's `dot` ran past its time limit (and was stopped): nothing was written. An OSError, so that a
    face that reports failed writes reports this one too."""


class DotError(subprocess.CalledProcessError):
    """`dot` failed: its message, escaped, rather than the command line."""

    def __str__(self) -> str:
        said = (self.stderr or b"").decode("utf-8", "replace").strip().splitlines()[:3]
        return f"graphviz `dot` failed (exit status {self.returncode})" + (
            ": " + escape_controls(" / ".join(said)) if said else "")


def default_timeout() -> float:
    """TIMEOUT, or GRAPHDSL_DOT_TIMEOUT (seconds) where set to a positive number."""
    try:
        value = float(os.environ.get("GRAPHDSL_DOT_TIMEOUT", ""))
    except ValueError:
        return TIMEOUT
    return value if value > 0 else TIMEOUT


def run_dot(source: str, format: str, timeout: float | None = None) -> bytes:
    """The DOT `source` drawn by graphviz's `dot` as `format` (svg, png, pdf), under a time limit.

    Raises ExecutableNotFound where `dot` is missing, DotTimeout (an OSError) where it runs past `timeout`
    seconds (default: default_timeout()), DotError (a CalledProcessError) where it fails.
    """
    exe = shutil.which("dot")
    if exe is None:
        raise ExecutableNotFound(["dot"])
    limit = default_timeout() if timeout is None else timeout
    cmd = [exe, f"-T{format}"]
    try:
        done = subprocess.run(cmd, input=source.encode("utf-8"), capture_output=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        boxes = source.count("tooltip=")
        raise DotTimeout(f"graphviz `dot` did not finish within {limit:g} s ({boxes:,} boxes) and was stopped; "
                         f"{NARROW_HELP} (GRAPHDSL_DOT_TIMEOUT=SECONDS sets the limit)") from None
    if done.returncode != 0:
        raise DotError(done.returncode, cmd, done.stdout, done.stderr)
    return done.stdout


def family_colour(family: str) -> str:
    """The fill colour of an operator family: from the table, else a stable hash (never Python's hash())."""
    if family in FAMILY_COLOURS:
        return FAMILY_COLOURS[family]
    return PALETTE[int(hashlib.sha256(family.encode()).hexdigest(), 16) % len(PALETTE)]


def _html(title: str, sub: str = "", sub2: str = "", sub3: str = "") -> str:
    """An HTML-like label: the operator in bold, names and notes smaller below (hidden characters escaped)."""
    text = f"<b>{html.escape(escape_controls(title))}</b>"
    for line in (sub, sub2, sub3):
        if line:
            text += f'<br/><font point-size="9" color="{MUTED}">{html.escape(escape_controls(line))}</font>'
    return f"<{text}>"


def _text(text: str) -> str:
    """A plain DOT string (tooltip, cluster label): hidden characters escaped, backslashes and `<...>`
    literal."""
    return graphviz.escape(escape_controls(text))


def _local(name: str, op: str) -> str:
    """The last part of a node id, unless it is only a position (`layer1.0.2`) or the op's name."""
    last = name.rsplit(".", 1)[-1]
    return "" if last.isdigit() or last == op else last


def _figures(g: nx.DiGraph, members: list[str]) -> str:
    params = sum(g.nodes[n].get("params", 0) for n in members)
    macs = sum(g.nodes[n].get("macs", 0) for n in members)
    return f"{human(params)} params · {human(macs)} MACs"


MAX_BOXES = 300  # beyond this a diagram is a scroll, not a picture: `render` folds deeper levels
MAX_ITEMS = MAX_BOXES  # a longer list of boxes in one scope (a 20,000-way concat, a chain of 100,000 at the top)
# is drawn as its first and last items around one box that stands for the rest


@gc_paused()
def auto_depth(g: nx.DiGraph, limit: int = MAX_BOXES) -> int | None:
    """None when the default diagram (every level, runs folded) has at most `limit` boxes; else the
    deepest level whose diagram stays within it (at least 1), to which `graphdsl render` folds. Where even
    depth 1 has more (thousands of layers side by side at the top), `diagram` draws the first and last of
    them around one box for the rest, and says so in the diagram's title."""
    if sum(1 for _ in flatten(view(g, depth=None, fold_runs=True))) <= limit:
        return None
    deepest = max((len(d["scope"]) for _, d in g.nodes(data=True)), default=1)
    for depth in range(deepest - 1, 1, -1):
        if sum(1 for _ in flatten(view(g, depth=depth, fold_runs=True))) <= limit:
            return depth
    return 1


def _members(item) -> list[str]:
    return item.scope.members if isinstance(item, Cluster) else item.members


def _what(g: nx.DiGraph, items: list) -> str:
    """`conv ×19,700` where the items are all one op or block, else `19,700 items`."""
    kinds = set()
    for item in items:
        if isinstance(item, Cluster):
            kinds.add(item.scope.info.get("block") if item.scope.kind == "block" else None)
        elif item.kind == "node":
            kinds.add(g.nodes[item.id]["op"])
        else:
            kinds.add(item.scopes[0].info.get("block") if item.scopes[0].kind == "block" else None)
        if len(kinds) > 1:
            break
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    return f"{kind} ×{len(items):,}" if kind else f"{len(items):,} items"


def cap(g: nx.DiGraph, items: list, limit: int = MAX_ITEMS) -> tuple[list, int]:
    """`items` with every list of more than `limit` (at any level) cut to its first and last items around
    one unit of kind "more" that holds the rest; and how many items were left out in all."""
    left_out = 0

    def cut(entries: list) -> list:
        nonlocal left_out
        for item in entries:
            if isinstance(item, Cluster):
                item.items = cut(item.items)
        if len(entries) <= limit:
            return entries
        head, tail = (limit - 1) * 2 // 3, (limit - 1) - (limit - 1) * 2 // 3
        middle = entries[head: len(entries) - tail]
        left_out += len(middle)
        first, last = middle[0], middle[-1]
        name = lambda item: item.scope.name if isinstance(item, Cluster) else item.id  # noqa: E731
        more = Unit("more", f"{name(first)} … {name(last)}", [n for item in middle for n in _members(item)],
                    _what(g, middle))
        return [*entries[:head], more, *entries[len(entries) - tail:]]

    return cut(items), left_out


def _status(highlight: dict[str, str], members: list[str]) -> str | None:
    """A box's diff status: "added" where every layer in it is, "changed" where some layer is added or
    changed, None where none is."""
    found = {highlight[n] for n in members if n in highlight}
    if not found:
        return None
    return "added" if found == {"added"} and len(members) == sum(1 for n in members if n in highlight) else "changed"


def _tally(highlight: dict[str, str], members: list[str]) -> str:
    """`3 changed, 1 added`: what a folded box holds that differs."""
    changed = sum(1 for n in members if highlight.get(n) == "changed")
    added = sum(1 for n in members if highlight.get(n) == "added")
    return ", ".join(f"{k:,} {what}" for k, what in ((changed, "changed"), (added, "added")) if k)


@gc_paused()
def diagram(g: nx.DiGraph, depth: int | None = None, expand: bool = False, max_items: int = MAX_ITEMS,
            highlight: dict[str, str] | None = None, removed: list[tuple[str, str]] = (),
            title: tuple[str, str] | None = None) -> graphviz.Digraph:
    """The diagram of an IR graph (with the figures of graphdsl.passes on its nodes). A scope of more
    than `max_items` boxes side by side or in a row shows its first and last ones around a box for the
    rest, and the title says how many were left out and how to see them.

    `highlight` ({node id: "added" | "changed"}) draws a diff: those nodes filled and outlined in
    DIFF_COLOURS, every other node pale; a folded box or a cluster holding such nodes takes their colour
    (a folded box also counts them). `removed` ((path, label) of layers that are gone) are drawn apart as
    dashed boxes, the first MAX_GHOSTS of them. `title` replaces the title's two lines."""
    items, left_out = cap(g, view(g, depth=depth, fold_runs=not expand), max_items)
    shown = Shown()
    name = g.graph.get("name", "network")
    dg = graphviz.Digraph(name=escape_controls(name))
    params = sum(d.get("params", 0) for _, d in g.nodes(data=True))
    macs = sum(d.get("macs", 0) for _, d in g.nodes(data=True))
    note = (f"{left_out:,} boxes not drawn (a list of more than {max_items:,}): {NARROW_HELP}" if left_out else "")
    head, sub = title if title is not None else (name, f"{params:,} parameters · {macs:,} MACs")
    dg.attr(rankdir="TB", ordering="out", fontname=FONT, fontsize="14", labelloc="t", labeljust="c", nodesep="0.25",
            ranksep="0.3", newrank="true", label=_html(head, sub, note))

    def paint(members: list[str], fill: str) -> dict:
        """The fill and outline of a box: its own, or its diff status's where `highlight` is given."""
        if highlight is None:
            return {"fillcolor": fill}
        status = _status(highlight, members)
        if status is None:
            return {"fillcolor": UNCHANGED, "color": "#999999"}
        colour, line = DIFF_COLOURS[status]
        return {"fillcolor": colour, "color": line, "penwidth": "2"}

    def tally(members: list[str]) -> str:
        return _tally(highlight, members) if highlight else ""
    dg.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="11", margin="0.12,0.04",
            height="0.3", penwidth="0.8")
    dg.attr("edge", fontname=FONT, fontsize="9", fontcolor=MUTED, color="#666666", arrowsize="0.6", penwidth="0.9")

    owner: dict[str, str] = {"input": "input"} if "input" in g else {}  # IR node -> diagram node id
    for u in flatten(items):
        owner.update((n, u.id) for n in u.members)
    # Edges between diagram nodes, in the order of their targets: (from, to) -> the IR node whose tensor flows.
    edges: dict[tuple[str, str], str] = {}
    for v in g.nodes:
        if v not in owner or v == "input":
            continue
        for u in inputs_of(g, v):
            a, b = owner.get(u), owner[v]
            if a is not None and a != b:
                edges.setdefault((a, b), u)

    # Where a tensor feeds several boxes it splits at a point, drawn in the innermost cluster holding all of
    # them: one shape label instead of several, and dot keeps the fan-out in input order (branch1 first,
    # the residual body before its shortcut), which it does only for edges inside one cluster.
    home: dict[str, tuple[str, ...]] = {"input": ()}  # diagram node -> path of the cluster drawn around it
    clusters: set[tuple[str, ...]] = {()}

    def locate(entries: list, at: tuple[str, ...]) -> None:
        for item in entries:
            if isinstance(item, Cluster):
                clusters.add(item.scope.path)
                locate(item.items, item.scope.path)
            else:
                home[item.id] = at

    locate(items, ())
    fans: dict[tuple[str, str], list[str]] = {}  # (from, tensor) -> targets
    for (a, b), tensor in edges.items():
        fans.setdefault((a, tensor), []).append(b)
    points: dict[tuple[str, ...], list[str]] = {}  # cluster path -> split points drawn in it
    routed: list[tuple[str, str, dict]] = []
    for (a, tensor), targets in fans.items():
        label = {"label": " " + fmt_shape(g.nodes[tensor]["shape"], TIMES)}
        if len(targets) == 1:
            routed.append((a, targets[0], label))
            continue
        paths = [home[t] for t in targets]
        common = paths[0]
        for p in paths[1:]:
            k = 0
            while k < min(len(common), len(p)) and common[k] == p[k]:
                k += 1
            common = common[:k]
        while common not in clusters:
            common = common[:-1]
        point = f"{tensor} (split)"
        points.setdefault(common, []).append(point)
        routed.append((a, point, {**label, "arrowhead": "none"}))
        routed += [(point, t, {}) for t in targets]

    if "input" in g:
        dg.node("input", _html("input"), shape="oval", fillcolor=TERMINAL,
                tooltip=_text(f"input {fmt_shape(g.nodes['input']['shape'], TIMES)}"))

    split_from = {b for a, b, _ in routed if a.endswith(" (split)")}
    outs: dict[str, list[str]] = {}
    fan_in: dict[str, int] = {}
    for a, b, _ in routed:
        outs.setdefault(a, []).append(b)
        fan_in[b] = fan_in.get(b, 0) + 1

    def lone_branch(item) -> bool:
        """One box between a split and a merge."""
        return (isinstance(item, Unit) and item.id in split_from and len(outs.get(item.id, [])) == 1
                and fan_in.get(outs[item.id][0], 0) > 1)

    def draw(target: graphviz.Digraph, entries: list, at: tuple[str, ...]) -> None:
        for point in points.get(at, []):
            target.node(point, "", shape="point", width="0.06", height="0.06", color="#666666",
                        fillcolor="#666666", style="filled")
        beside_clusters = any(isinstance(item, Cluster) for item in entries)
        for item in entries:
            if beside_clusters and lone_branch(item):
                # dot 2.x puts a one-rank box after the clusters beside it, whatever the edge order: in an
                # invisible cluster two ranks tall it keeps its place (branch1 left of the branch2 cluster).
                sub = graphviz.Digraph(name=f"cluster_{item.id} (branch)")
                sub.attr(label="", style="invis")
                _unit(sub, item)
                sub.node(f"{item.id} (pad)", "", style="invis", shape="point", width="0", height="0")
                sub.edge(item.id, f"{item.id} (pad)", style="invis")
                target.subgraph(sub)
                continue
            if isinstance(item, Cluster):
                scope = item.scope
                sub = graphviz.Digraph(name=f"cluster_{scope.name}")
                title = scope.name + (f" · {item.label}" if item.label else "")
                outline = {"color": "#aaaaaa", "penwidth": "0.8"}
                status = _status(highlight, scope.members) if highlight else None
                if status is not None:
                    outline = {"color": DIFF_COLOURS[status][1], "penwidth": "1.5"}
                sub.attr(label=_text(title), fontname=FONT, fontsize="10", fontcolor="#333333", labeljust="l",
                         style="rounded", **outline, tooltip=_text(call_text(scope, limit=200, shown=shown) or title))
                draw(sub, item.items, scope.path)
                target.subgraph(sub)
            else:
                _unit(target, item)

    def _unit(target: graphviz.Digraph, u: Unit) -> None:
        if u.kind == "node":
            d = g.nodes[u.id]
            op = REGISTRY[d["op"]]
            tip = _text(f"{u.id}: {op.label(d['attrs'])} → {fmt_shape(d['shape'], TIMES)}")
            colours = paint(u.members, family_colour(op.family))
            if highlight and u.id in highlight:
                tip = _text(f"{highlight[u.id]}: ") + tip
            if d["op"] == "add":
                target.node(u.id, "+", shape="circle", fontsize="14", width="0.3", height="0.3", margin="0",
                            fixedsize="true", tooltip=tip, **colours)
            else:
                target.node(u.id, _html(op.label(d["attrs"]), _local(u.id, d["op"])), tooltip=tip, **colours)
            return
        out = g.nodes[output_node(g, u.members)]["shape"]
        tip = _text(f"{u.id}: {_figures(g, u.members)} → {fmt_shape(out, TIMES)}")
        if u.kind == "more":
            target.node(u.id, _html(f"… {u.label}", f"{len(u.members):,} layers not drawn", _figures(g, u.members),
                                    tally(u.members)),
                        style="filled,dashed", margin="0.2,0.1", tooltip=_text(f"{u.id}: not drawn; {NARROW_HELP}"),
                        **paint(u.members, FOLDED))
        elif u.kind == "run":
            where = f"{u.scopes[0].name} … {u.scopes[-1].name}"
            if u.whole is not None:
                where = f"{u.whole.name} ({where})"
            target.node(u.id, _html(u.label, where, _figures(g, u.members), tally(u.members)), shape="box3d",
                        style="filled", margin="0.2,0.1", tooltip=tip, **paint(u.members, FOLDED))
        else:
            scope = u.scopes[0]
            args = ", ".join(f"{k}={shown(v)}" for k, v in scope.info.get("args", {}).items())
            where = f"{u.id}: {args}" if args and len(args) <= 60 else u.id
            target.node(u.id, _html(u.label or "group", where, _figures(g, u.members), tally(u.members)),
                        peripheries="2", tooltip=tip, **paint(u.members, FOLDED))

    draw(dg, items, ())
    for a, b, attrs in routed:
        dg.edge(a, b, **attrs)

    outputs = [(oname, n) for oname, n in g.graph.get("outputs", []) if n in owner]
    if outputs:
        with dg.subgraph(name="outputs") as sink:
            sink.attr(rank="sink")
            for oname, n in outputs:
                sink.node(f"output {oname}", _html(oname), shape="oval", fillcolor=TERMINAL,
                          tooltip=_text(f"output {oname}: {fmt_shape(g.nodes[n]['shape'], TIMES)}"))
        for oname, n in outputs:
            dg.edge(owner[n], f"output {oname}", label=" " + fmt_shape(g.nodes[n]["shape"], TIMES))
    if removed:
        fill, line = DIFF_COLOURS["removed"]
        with dg.subgraph(name="cluster_ (removed)") as gone:
            gone.attr(label=_text(f"removed: {len(removed):,} layers of a only"), fontname=FONT, fontsize="10",
                      fontcolor=line, labeljust="l", style="rounded,dashed", color=line, penwidth="1.2")
            gone.attr(rank="same")
            ghosts = []
            for path, label in removed[:MAX_GHOSTS]:
                ghosts.append(f"{path} (removed)")
                gone.node(ghosts[-1], _html(label, path), style="rounded,filled,dashed", fillcolor=fill,
                          color=line, fontcolor=line, penwidth="1.5", tooltip=_text(f"removed: {path}: {label}"))
            if len(removed) > MAX_GHOSTS:
                ghosts.append(" (more removed)")
                gone.node(ghosts[-1], _html(f"… {len(removed) - MAX_GHOSTS:,} more"), style="rounded,dashed",
                          color=line, fontcolor=line)
            for u, v in zip(ghosts, ghosts[1:]):  # in a's order, left to right
                gone.edge(u, v, style="invis")
    # the last word: whatever a name of the IR holds, no hidden character reaches the DOT text raw
    dg.body[:] = [escape_controls(line, keep="\n\t") for line in dg.body]
    return dg


def diff_diagram(d, depth: int | None = None, expand: bool = False, fit: bool = True) -> graphviz.Digraph:
    """Network b of a graphdsl.diff.NetworkDiff, drawn with what differs from a coloured: changed layers
    amber, added ones green, the rest pale; a folded box or cluster holding a changed layer takes its
    colour; the layers of a only are drawn apart as dashed red boxes. The title names both networks and
    counts the differences. With `fit` (and neither `depth` nor `expand`), folded to auto_depth as
    `graphdsl render` draws a big network."""
    g = d.b_graph
    if g is None:
        raise ValueError("this NetworkDiff holds no graphs (made by graphdsl.diff.diff, it does)")
    if fit and depth is None and not expand:
        depth = auto_depth(g)
    counts = (f"{len(d.changed):,} changed (amber) · {len(d.added):,} added (green) · {len(d.removed):,} removed "
              "(dashed, red)")
    macs = d.delta("macs")
    params = d.delta("params")
    sign = lambda n: f"+{n:,}" if n > 0 else f"{n:,}"  # noqa: E731
    title = (f"{d.a_label} → {d.b_label}",
             f"{counts}; params {sign(params)}, MACs {sign(macs)} (b − a)" if not d.empty else "no differences")
    return diagram(g, depth=depth, expand=expand, highlight=d.highlight(),
                   removed=[(r.path, r.label) for r in d.removed], title=title)


def format_of(path: str | os.PathLike, format: str | None = None) -> str:
    """The output format: given, or from the file's extension."""
    fmt = (format or Path(path).suffix.lstrip(".")).lower()
    if fmt == "gv":
        fmt = "dot"
    if fmt not in FORMATS:
        raise ValueError(f"cannot write {fmt or 'a file without extension'!r}: use one of "
                         + ", ".join(f".{f}" for f in FORMATS))
    return fmt


def write(graph: graphviz.Digraph, path: str | os.PathLike, format: str | None = None,
          timeout: float | None = None) -> Path:
    """Write the diagram (svg, png, pdf, or the DOT source) atomically: all of it or nothing.

    Raises graphviz.ExecutableNotFound where the `dot` program is missing, DotTimeout (an OSError) where it
    runs past `timeout` seconds (default_timeout(): 60, or GRAPHDSL_DOT_TIMEOUT), DotError where it fails;
    nothing is written then.
    """
    fmt = format_of(path, format)
    data = graph.source.encode("utf-8") if fmt == "dot" else run_dot(graph.source, fmt, timeout)
    write_atomic(path, data)
    return Path(path)


def svg(g: nx.DiGraph, timeout: float | None = None) -> str:
    """The diagram as SVG text, folded to auto_depth as `graphdsl render` draws it, under the time limit
    (for notebooks). Raises what run_dot raises."""
    return run_dot(diagram(g, depth=auto_depth(g)).source, "svg", timeout).decode("utf-8")
