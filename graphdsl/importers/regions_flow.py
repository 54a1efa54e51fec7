"""The graph under regions.py: a flat LayerGraph's producers, consumers and dominators (Flow), the
block instances found in it (Region), and a module's direct contents in order (`items`)."""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

from .ir import INPUT, ImportFailure, LayerGraph


@dataclass(eq=False)
class Region:
    """A block instance: the layers of one module. `merge` is None for an instance found as a chain
    (a kind's body without its skip)."""

    entry: str  # the tensor flowing in (a layer name or INPUT)
    exit: str  # the layer whose output leaves
    members: set  # every layer inside, nested regions' included
    merge: str | None = None
    trailing: list = field(default_factory=list)  # activations after the merge
    shortcut: set = field(default_factory=set)  # layers on a residual add's shorter way
    children: list = field(default_factory=list)
    parent: Region | None = None
    key: tuple = ()
    kind: str = ""
    path: str = ""

    @property
    def residual(self) -> bool:
        return self.key[:1] == ("residual",)


class Flow:
    """Producers, consumers, topological positions and immediate dominators of a layer graph."""

    def __init__(self, graph: LayerGraph):
        self.graph = graph
        self.layers = {layer.name: layer for layer in graph.layers}
        self.order = {INPUT: -1}
        self.consumers: dict[str, list[str]] = {INPUT: []}
        self.idom: dict[str, str | None] = {INPUT: None}
        for k, layer in enumerate(graph.layers):
            self.order[layer.name] = k
            self.consumers[layer.name] = []
        for layer in graph.layers:
            for i in dict.fromkeys(layer.inputs):
                if i not in self.order or self.order[i] >= self.order[layer.name]:
                    raise ImportFailure(f"layer `{layer.name}` takes `{i}`, which is not computed before it",
                                        where=layer.where)
                self.consumers[i].append(layer.name)
            ins = list(dict.fromkeys(layer.inputs)) or [INPUT]
            d = ins[0]
            for p in ins[1:]:
                d = self.common_dominator(d, p)
            self.idom[layer.name] = d
        self.outputs = set(graph.outputs or (graph.output,))
        # front ends name layers uniquely; where a graph does not, the lookups below walk all its layers
        self.unique = len(self.layers) == len(graph.layers)
        self._sorted_paths: list[str] | None = None

    def common_dominator(self, a: str, b: str) -> str:
        while a != b:
            while self.order[a] > self.order[b]:
                a = self.idom[a]
            while self.order[b] > self.order[a]:
                b = self.idom[b]
        return a

    def named_starting(self, text: str) -> int:
        """How many layers' paths (`""` for a layer without one) start with `text`: a look-up in the
        sorted paths, where those paths stand together."""
        if self._sorted_paths is None:
            self._sorted_paths = sorted(layer.path or "" for layer in self.graph.layers)
        paths = self._sorted_paths
        lo = hi = bisect_left(paths, text)
        top = len(paths)
        while hi < top:
            mid = (hi + top) // 2
            if paths[mid].startswith(text):
                hi = mid + 1
            else:
                top = mid
        return hi - lo

    def named_under(self, prefix: str, separators: str) -> int:
        """How many layers' paths are `prefix`, or `prefix` and then one of `separators`."""
        self.named_starting(prefix)  # sorts the paths once
        equal = bisect_right(self._sorted_paths, prefix) - bisect_left(self._sorted_paths, prefix)
        return equal + sum(self.named_starting(prefix + c) for c in set(separators))

    def shape(self, name: str):
        return self.graph.input_shape if name == INPUT else self.layers[name].shape

    def between(self, fork: str, merge: str) -> set:
        """The layers on paths from `fork` (excluded) to `merge` (included)."""
        lo, hi = self.order[fork], self.order[merge]
        ahead, todo = set(), [fork]
        while todo:
            for c in self.consumers[todo.pop()]:
                if c not in ahead and self.order[c] <= hi:
                    ahead.add(c)
                    todo.append(c)
        behind, todo = {merge}, [merge]
        while todo:
            for i in self.layers[todo.pop()].inputs:
                if i not in behind and self.order[i] > lo:
                    behind.add(i)
                    todo.append(i)
        return ahead & behind

    def closed(self, members: set, entry: str, exit: str) -> bool:
        """Nothing but `entry` flows into `members`, nothing but `exit` leaves them."""
        for name in members:
            if any(i not in members and i != entry for i in self.layers[name].inputs):
                return False
            if name != exit and (name in self.outputs or any(c not in members for c in self.consumers[name])):
                return False
        return True


def items(flow: Flow, members: set, children: list) -> list:
    """The direct contents of a module, in order: layer names and child regions (topologically sorted,
    each region as one item). Costs the size of `members`, not of the graph: it runs once per region."""
    inside = {}
    for child in children:
        for name in child.members:
            inside[name] = child
    if flow.unique:
        names = sorted((n for n in members if n in flow.layers), key=flow.order.__getitem__)
    else:
        names = [layer.name for layer in flow.graph.layers if layer.name in members]
    seen, out = set(), []
    for name in names:
        item = inside.get(name, name)
        if isinstance(item, Region):
            if id(item) in seen:
                continue
            seen.add(id(item))
        out.append(item)
    return _topological(flow, out)


def _topological(flow: Flow, its: list) -> list:
    """`its` reordered so that every item comes after the items it takes tensors from (stable: of the
    items ready, the first in `its` goes next)."""
    owner = {}
    for k, it in enumerate(its):
        for name in (it.members if isinstance(it, Region) else [it]):
            owner[name] = k
    waiting = [0] * len(its)  # per item, how many of the items it takes from are not out yet
    takers: list[list[int]] = [[] for _ in its]
    for k, it in enumerate(its):
        names = it.members if isinstance(it, Region) else [it]
        needs = {owner[i] for n in names for i in flow.layers[n].inputs if i in owner} - {k}
        waiting[k] = len(needs)
        for j in needs:
            takers[j].append(k)
    ready = [k for k in range(len(its)) if not waiting[k]]
    heapq.heapify(ready)
    out = []
    while ready:
        k = heapq.heappop(ready)
        out.append(its[k])
        for j in takers[k]:
            waiting[j] -= 1
            if not waiting[j]:
                heapq.heappush(ready, j)
    if len(out) < len(its):
        raise ImportFailure("the network's modules depend on each other in a cycle")
    return out


def entry_of(flow: Flow, it) -> str | None:
    if isinstance(it, Region):
        return it.entry
    ins = set(flow.layers[it].inputs)
    return next(iter(ins)) if len(ins) == 1 else None


def exit_of(it) -> str:
    return it.exit if isinstance(it, Region) else it


def within(it, names: set) -> bool:
    return (it.members <= names) if isinstance(it, Region) else it in names
