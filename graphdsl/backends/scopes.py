"""The scope tree of an IR graph, cut at a depth and with runs of identical blocks folded.

This is the view that the diagram (`graphdsl render`) and the summary (`graphdsl summary --depth N`)
share. It reads the IR only: node scopes, shapes, figures and `g.graph["scopes"]`.

- A *unit* is one thing to draw or to list: a primitive node, a scope folded into one unit (below the
  depth cut), or a run of consecutive identical scopes (`bottleneck ×35`).
- A *cluster* is a scope drawn open, holding units and clusters.

>>> import graphdsl
>>> net = graphdsl.load(text='''
... block b(c) { conv(c, 3, pad=1) relu }
... network n { input 3x8x8  stem: conv(8, 1)  body: b(8) * 3 }
... ''')
>>> [(u.kind, u.id) for u in units(net.graph, fold_runs=True)]
[('node', 'stem'), ('run', 'body.0..body.2')]
>>> [(u.kind, u.id, u.label) for u in units(net.graph, depth=1)]
[('node', 'stem', ''), ('scope', 'body', 'b ×3')]
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import networkx as nx

from ..passes import inputs_of
from ..values import show


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic GC while a back end builds its many small objects (rows, AST nodes, DOT lines):
    otherwise each collection rescans everything built so far and the time grows faster than the graph."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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


def describe(scope: Scope, g: nx.DiGraph, sigs: Signatures | None = None) -> str:
    """What a scope is, in a few words: its block, what its children have in common, or both:
    `bottleneck`, `bottleneck ×36`, `resnet_stage (bottleneck ×36)`. With `sigs` (for a scope folded into one
    box, whose children are not drawn), a count of identical children only: `bottleneck, bottleneck ×35`."""
    inner = contents(scope, g, sigs)
    if scope.kind == "block":
        block = scope.info.get("block", "")
        return f"{block} ({inner})" if inner and inner.split(" ×")[0] != block else block
    return inner


def contents(scope: Scope, g: nx.DiGraph, sigs: Signatures | None = None) -> str:
    """`bottleneck ×36` where a scope's children are all calls of one block (or, for a labelled repeat, one
    op); empty otherwise. With `sigs`, the label of a folded scope, whose children are not drawn: `×N` counts
    identical children only, `bottleneck, bottleneck ×35` where the first differs (it strides, or takes
    other input channels), so that a box never says ×N of calls whose shapes or parameters differ."""
    kinds = []
    for child in scope.children:
        if isinstance(child, Scope):
            kinds.append(child.info.get("block") if child.kind == "block" else None)
        else:  # `conv ×3` for a labelled repeat only: a group of different convs is no repeat
            kinds.append(g.nodes[child]["op"] if scope.kind == "repeat" else None)
    if not kinds or kinds[0] is None or any(k != kinds[0] for k in kinds):
        return ""
    name = kinds[0]
    if len(kinds) == 1:
        return name
    if sigs is None:
        return f"{name} ×{len(kinds)}"
    runs: list[int] = []  # lengths of the runs of identical children
    previous = None
    for child in scope.children:
        sig = sigs.of(child)
        if runs and sig == previous:
            runs[-1] += 1
        else:
            runs.append(1)
        previous = sig
    if len(runs) == 1:
        return f"{name} ×{len(kinds)}"
    if len(runs) <= 3:
        return ", ".join(name if k == 1 else f"{name} ×{k}" for k in runs)
    return f"{name} ×{len(kinds)}, {len(runs)} different"


class Shown:
    """values.show, once per list object: a big argument shared by thousands of block calls (a settings
    table passed to each) is written once, not once a call."""

    def __init__(self):
        self.cache: dict[int, tuple[tuple, str]] = {}  # id -> (the value, kept alive so its id stays its own; text)

    def __call__(self, value) -> str:
        if not isinstance(value, tuple):
            return show(value)
        found = self.cache.get(id(value))
        if found is None:
            found = self.cache[id(value)] = (value, show(value))
        return found[1]


def call_text(scope: Scope, limit: int = 60, shown=show) -> str:
    """`bottleneck(planes=256, stride=2)`: a block call with its arguments, shortened past `limit`. `shown`
    writes a value (a Shown, where many calls are written)."""
    if scope.kind != "block":
        return ""
    args = ", ".join(f"{k}={shown(v)}" for k, v in scope.info.get("args", {}).items())
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


def _scalar(value) -> bytes:
    text = f"{type(value).__name__}:{value!r}".encode("utf-8", "surrogatepass")
    return len(text).to_bytes(8, "little") + text


def value_key(value, memo: dict[int, bytes]):
    """A key of a value, equal for equal values (types included: `1`, `1.0`, `true` differ). A list is keyed
    by a digest of its items' keys, computed once per list object (memo, by id: the values must stay
    alive while it is used): a list built by sharing (`[a, a, a]` of `[b, b, b]`...) costs its distinct
    parts, not its length, and nothing recurses, however deep the nesting."""
    if not isinstance(value, tuple):
        return _scalar(value)
    stack: list[tuple[tuple, bool]] = [(value, False)]
    while stack:
        v, ready = stack.pop()
        if id(v) in memo:
            continue
        if not ready:
            stack.append((v, True))
            stack.extend((c, False) for c in v if isinstance(c, tuple) and id(c) not in memo)
            continue
        h = hashlib.blake2b(digest_size=16)
        h.update(len(v).to_bytes(8, "little"))
        for c in v:
            h.update(b"L" + memo[id(c)] if isinstance(c, tuple) else b"S" + _scalar(c))
        memo[id(v)] = h.digest()
    return memo[id(value)]


def args_key(args: dict, memo: dict[int, bytes]) -> tuple:
    """Arguments (of a block call or an op) as a key, their real numbers blanked: blocks that differ only in
    a rate (the stochastic-depth probability that grows along ConvNeXt and EfficientNet) have the same
    layers, shapes and costs."""
    return tuple((k, "<number>" if isinstance(v, float) else value_key(v, memo)) for k, v in args.items())


def signature(g: nx.DiGraph, scope: Scope, memo: dict[int, bytes] | None = None) -> tuple:
    """Equal for scopes that hold the same layers, named, shaped, costed and wired the same way, on inputs
    of the same shapes. Linear in the scope's members."""
    memo = {} if memo is None else memo
    prefix = len(scope.path)
    ext, _ = boundary(g, scope.members)
    at = {p: i for i, p in enumerate(ext)}
    local = {n: ".".join(g.nodes[n]["scope"][prefix:]) for n in scope.members}
    rows = []
    for n in scope.members:
        d = g.nodes[n]
        wires = tuple(local[p] if p in local else ("ext", at.get(p, -1)) for p in inputs_of(g, n))
        rows.append((local[n], d["op"], args_key(d["attrs"], memo), d["shape"], d.get("params"), wires))
    info = (scope.kind, scope.info.get("block"), args_key(scope.info.get("args") or {}, memo))
    # the shapes coming in: calls with the same arguments on other inputs differ in parameters (16->32, 32->32)
    return info, tuple(g.nodes[p]["shape"] for p in ext), tuple(rows)


class Signatures:
    """The signatures of a graph's scopes (and, for labels, of its nodes), each computed once."""

    def __init__(self, g: nx.DiGraph):
        self.g = g
        self.memo: dict[int, bytes] = {}
        self.found: dict = {}

    def of(self, item) -> tuple:
        """The signature of a Scope, or of a node: its op, arguments, input shapes and parameters."""
        key = item.path if isinstance(item, Scope) else item
        sig = self.found.get(key)
        if sig is None:
            if isinstance(item, Scope):
                sig = signature(self.g, item, self.memo)
            else:
                d = self.g.nodes[item]
                sig = (d["op"], args_key(d["attrs"], self.memo), tuple(self.g.nodes[p]["shape"] for p in
                                                                       inputs_of(self.g, item)), d.get("params"))
            self.found[key] = sig
        return sig


def _run_length(g: nx.DiGraph, children: list, i: int, sigs: Signatures) -> int:
    """How many scopes from children[i] on are identical and chained one into the next."""
    first = children[i]
    if not isinstance(first, Scope):
        return 1
    sig = sigs.of(first)
    j = i + 1
    prev = first
    while j < len(children) and isinstance(children[j], Scope):
        nxt = children[j]
        ins, _ = boundary(g, nxt.members)
        _, outs = boundary(g, prev.members)
        if len(outs) != 1 or ins != outs:
            break
        if sigs.of(nxt) != sig:
            break
        prev = nxt
        j += 1
    return j - i


def view(g: nx.DiGraph, depth: int | None = None, fold_runs: bool = True) -> list:
    """The network as clusters and units: scopes at `depth` fold into one unit each, and (with
    `fold_runs`) a run of two or more identical, chained sibling scopes folds into one unit."""
    sigs = Signatures(g)

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
                items.append(Unit("scope", child.name, list(child.members), describe(child, g, sigs), [child]))
            else:
                inner = walk(child)
                if len(inner) == 1 and isinstance(inner[0], Unit) and inner[0].kind == "run":
                    inner[0].whole = child  # a cluster around one folded run says nothing more
                    items.append(inner[0])
                else:
                    items.append(Cluster(child, inner, describe(child, g)))  # its children drawn: ×N says enough
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
