"""The scope tree of an IR graph, cut at a depth and with runs of identical blocks folded.

This is the view that the diagram (`graphdsl render`) and the summary (`graphdsl summary --depth N`)
share. It reads the IR only: node scopes, shapes, figures and `g.graph["scopes"]`.

- A *unit* is one thing to draw or to list: a primitive node, a scope folded into one unit (below the
  depth cut), or a run of consecutive identical scopes (`bottleneck ×35`).
- A *cluster* is a scope drawn open, holding units and clusters.

>>> import graphdsl
>>> net = graphdsl.load('''
... block b(c) { conv(c, 3, pad=1) relu }
... network n { input 3x8x8  stem: conv(8, 1)  body: b(8) * 3 }
... ''')
>>> [(u.kind, u.id) for u in units(net.graph, fold_runs=True)]
[('node', 'stem'), ('run', 'body.0..body.2')]
>>> [(u.kind, u.id, u.label) for u in units(net.graph, depth=1)]
[('node', 'stem', ''), ('scope', 'body', 'b ×3')]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import networkx as nx

from ..passes import inputs_of
from ..values import show


@dataclass
class Scope:
    """A scope of the IR (block call, group, labelled repeat or labelled branch set) and what it holds."""

    path: tuple[str, ...]
    info: dict  # g.graph["scopes"][path], or {"kind": "group"} for scopes the elaborator did not record
    children: list = field(default_factory=list)  # Scope or node id, in graph order
    members: list[str] = field(default_factory=list)  # every IR node below, in graph order

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def kind(self) -> str:
        return self.info.get("kind", "group")


@dataclass
class Unit:
    """One box of the diagram, one row of the summary."""

    kind: str  # "node", "scope" (folded below the depth cut) or "run" (identical scopes folded)
    id: str  # the node id, the scope name, or "first..last" for a run
    members: list[str]  # IR nodes, in graph order
    label: str = ""  # what it is, for scopes and runs: `bottleneck`, `bottleneck ×35`
    scopes: list[Scope] = field(default_factory=list)  # the folded scopes (one for "scope")
    whole: Scope | None = None  # for a run: the scope it fills entirely (`layer1` = layer1.0 .. layer1.2)


@dataclass
class Cluster:
    """A scope drawn open."""

    scope: Scope
    items: list  # Unit or Cluster
    label: str = ""


def scope_tree(g: nx.DiGraph) -> Scope:
    """Every non-input node under the scopes its id names, in graph order."""
    known = g.graph.get("scopes", {})
    root = Scope((), {"kind": "network"})
    index: dict[tuple[str, ...], Scope] = {(): root}
    for n, d in g.nodes(data=True):
        if d["op"] == "input":
            continue
        path = tuple(d["scope"])
        parent = root
        root.members.append(n)
        for i in range(1, len(path)):
            sub = path[:i]
            scope = index.get(sub)
            if scope is None:
                scope = index[sub] = Scope(sub, known.get(sub, {"kind": "group"}))
                parent.children.append(scope)
            scope.members.append(n)
            parent = scope
        parent.children.append(n)
    return root


def describe(scope: Scope, g: nx.DiGraph) -> str:
    """What a scope is, in a few words: its block, what its children have in common, or both:
    `bottleneck`, `bottleneck ×36`, `resnet_stage (bottleneck ×36)`."""
    inner = contents(scope, g)
    if scope.kind == "block":
        block = scope.info.get("block", "")
        return f"{block} ({inner})" if inner and inner.split(" ×")[0] != block else block
    return inner


def contents(scope: Scope, g: nx.DiGraph) -> str:
    """`bottleneck ×36` where a scope's children are all calls of one block (or, for a labelled
    repeat, one op); empty otherwise."""
    kinds = []
    for child in scope.children:
        if isinstance(child, Scope):
            kinds.append(child.info.get("block") if child.kind == "block" else None)
        else:  # `conv ×3` for a labelled repeat only: a group of different convs is no repeat
            kinds.append(g.nodes[child]["op"] if scope.kind == "repeat" else None)
    if kinds and kinds[0] is not None and all(k == kinds[0] for k in kinds):
        return f"{kinds[0]} ×{len(kinds)}" if len(kinds) > 1 else kinds[0]
    return ""


def call_text(scope: Scope, limit: int = 60) -> str:
    """`bottleneck(planes=256, stride=2)`: a block call with its arguments, shortened past `limit`."""
    if scope.kind != "block":
        return ""
    args = ", ".join(f"{k}={show(v)}" for k, v in scope.info.get("args", {}).items())
    text = f"{scope.info.get('block', '')}({args})"
    return text if len(text) <= limit else text[: limit - 2] + "…)"


def boundary(g: nx.DiGraph, members: list[str]) -> tuple[list[str], list[str]]:
    """The nodes outside `members` that feed them, and the members whose tensors leave (or are outputs)."""
    inside = set(members)
    outputs = {node for _, node in g.graph.get("outputs", [])}
    ins: dict[str, None] = {}
    for n in members:
        for p in inputs_of(g, n):
            if p not in inside:
                ins[p] = None
    outs = [n for n in members if n in outputs or any(s not in inside for s in g.successors(n))]
    return list(ins), outs


def output_node(g: nx.DiGraph, members: list[str]) -> str:
    """The node whose tensor stands for a group of members: the last that leaves it."""
    outs = boundary(g, members)[1]
    return outs[-1] if outs else members[-1]


def _integral(args: dict) -> dict:
    """Arguments with their real numbers blanked: blocks that differ only in a rate (the stochastic-depth
    probability that grows along ConvNeXt and EfficientNet) have the same layers, shapes and costs."""
    return {k: "<number>" if isinstance(v, float) else v for k, v in args.items()}


def signature(g: nx.DiGraph, scope: Scope) -> tuple:
    """Equal for scopes that hold the same layers, named, shaped and wired the same way, on inputs of
    the same shapes."""
    prefix = len(scope.path)
    ext, _ = boundary(g, scope.members)
    local = {n: ".".join(g.nodes[n]["scope"][prefix:]) for n in scope.members}
    rows = []
    for n in scope.members:
        d = g.nodes[n]
        wires = tuple(local.get(p, ("ext", ext.index(p) if p in ext else -1)) for p in inputs_of(g, n))
        rows.append((local[n], d["op"], repr(_integral(d["attrs"])), d["shape"], wires))
    info = (scope.kind, scope.info.get("block"), repr(_integral(scope.info.get("args") or {})))
    # the shapes coming in: calls with the same arguments on other inputs differ in parameters (16->32, 32->32)
    return info, tuple(g.nodes[p]["shape"] for p in ext), tuple(rows)


def _run_length(g: nx.DiGraph, children: list, i: int, sigs: dict) -> int:
    """How many scopes from children[i] on are identical and chained one into the next."""
    first = children[i]
    if not isinstance(first, Scope):
        return 1
    sig = sigs.setdefault(first.path, signature(g, first))
    j = i + 1
    prev = first
    while j < len(children) and isinstance(children[j], Scope):
        nxt = children[j]
        ins, _ = boundary(g, nxt.members)
        _, outs = boundary(g, prev.members)
        if len(outs) != 1 or ins != outs:
            break
        if sigs.setdefault(nxt.path, signature(g, nxt)) != sig:
            break
        prev = nxt
        j += 1
    return j - i


def view(g: nx.DiGraph, depth: int | None = None, fold_runs: bool = True) -> list:
    """The network as clusters and units: scopes at `depth` fold into one unit each, and (with
    `fold_runs`) a run of two or more identical, chained sibling scopes folds into one unit."""
    sigs: dict = {}

    def walk(scope: Scope) -> list:
        items: list = []
        children = scope.children
        i = 0
        while i < len(children):
            child = children[i]
            if not isinstance(child, Scope):
                items.append(Unit("node", child, [child]))
                i += 1
                continue
            run = _run_length(g, children, i, sigs) if fold_runs else 1
            if run >= 2:
                scopes = children[i: i + run]
                members = [n for s in scopes for n in s.members]
                what = scopes[0].info.get("block") if scopes[0].kind == "block" else "group"
                items.append(Unit("run", f"{scopes[0].name}..{scopes[-1].name}", members,
                                  f"{what or 'group'} ×{run}", scopes))
            elif depth is not None and len(child.path) >= depth:
                items.append(Unit("scope", child.name, list(child.members), describe(child, g), [child]))
            else:
                inner = walk(child)
                if len(inner) == 1 and isinstance(inner[0], Unit) and inner[0].kind == "run":
                    inner[0].whole = child  # a cluster around one folded run says nothing more
                    items.append(inner[0])
                else:
                    items.append(Cluster(child, inner, describe(child, g)))
            i += run
        return items

    return walk(scope_tree(g))


def flatten(items: list) -> Iterator[Unit]:
    for item in items:
        if isinstance(item, Cluster):
            yield from flatten(item.items)
        else:
            yield item


def units(g: nx.DiGraph, depth: int | None = None, fold_runs: bool = False) -> list[Unit]:
    """The units in graph order: one per node, or per scope at `depth`."""
    return list(flatten(view(g, depth, fold_runs)))
