"""A module hierarchy for flat layer graphs: the blocks and stages a person would have written.

ONNX files without hierarchy metadata, Caffe prototxt and Darknet `.cfg` give a flat LayerGraph: no
`scopes`, one name per layer (`res2a_branch2a`, `conv_12`). `infer_scopes` invents the modules around
its layers so that lifting (lift.py) writes blocks with parameters, `* n` and stage groups:

1. **Regions**: for each merge (`add`, `concat`, `mul` of several tensors) the layers between its fork
   (the merge's immediate dominator) and the merge, when nothing enters or leaves in between, plus the
   activations right after the merge (ResNet's relu after the add). Regions nest (an SE gate inside an
   inverted residual). Concat regions of one structure that all follow the same chain of layers take
   it in (SqueezeNet's squeeze conv before the expand branches). DenseNet's concat of a growing list
   is first rewritten as one concat per layer (lift.running_concats).
2. **Kinds**: regions of one structure (operators and wiring, constants aside) are one kind, a class;
   for a residual add the structure is its body, so blocks with and without a projection shortcut are
   one kind (lift writes `shortcut if ...`). A chain of layers with the structure of a kind's body is
   an instance without the skip (MobileNetV2's first block of a stage: `residual if ...`). Only kinds
   that occur at least twice become blocks.
3. **Stages**: runs of consecutive blocks of one kind become a numbered container (lift writes
   `stage: [block(...) * n]`); a block that changes the spatial size, or the channels after blocks
   that kept them, starts a new run.
4. **Names**: each layer's path becomes `{module path}.{local name}`; local names come from the
   original names (the prefix its block's layers share stripped: `layer1_0_conv1` -> `conv1`; else
   the parts that vary between the blocks of a kind dropped: `res2a_branch2a` -> `res_branch2a`; else
   `conv1`, `bn1`, ... in order) and agree between the blocks of a kind. `weights` keys follow.

A graph where nothing repeats comes back unchanged: lifting writes it flat. The result is checked by
lifting, printing and checking it; where that fails every region becomes a block (its names in a scope
of their own), and where that fails too the graph comes back unchanged with a warning.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field

from ..syntax import NAME_RESERVED
from .ir import INPUT, ImportFailure, Layer, LayerGraph, Scope

MERGES = ("add", "concat", "mul")
# how far up the dominators a merge's region may start when its immediate dominator lets a tensor in
# from outside (a bound: each step is a walk over the graph)
MAX_FORK_STEPS = 16
# single-tensor activations that belong to the block whose merge they follow
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish",
               "hardsigmoid", "prelu")
# words that name no kind of block (`layer1_0`, `features_3`): the kind is named after its shape
GENERIC_WORDS = {"layer", "layers", "block", "blocks", "stage", "stages", "feature", "features", "module",
                 "modules", "model", "net", "network", "conv", "res", "node", "op", "seq", "sequential", "body",
                 "main", "backbone", "trunk", "unit", "cell", "branch", "part", "x", "output", "out"}
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_SEPARATORS = "_./-:"


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

    def common_dominator(self, a: str, b: str) -> str:
        while a != b:
            while self.order[a] > self.order[b]:
                a = self.idom[a]
            while self.order[b] > self.order[a]:
                b = self.idom[b]
        return a

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


# ---- regions -----------------------------------------------------------------------------------------------


def find_regions(flow: Flow) -> list[Region]:
    regions = []
    for layer in flow.graph.layers:
        if layer.op not in MERGES or len(set(layer.inputs)) < 2:
            continue
        fork, steps = flow.idom[layer.name], 0
        while fork is not None and steps < MAX_FORK_STEPS:
            members = flow.between(fork, layer.name)
            if flow.closed(members, fork, layer.name):
                break
            fork, steps = flow.idom[fork], steps + 1
        if fork is None or steps == MAX_FORK_STEPS:
            continue
        trailing, end = [], layer.name
        while end not in flow.outputs and len(flow.consumers[end]) == 1:
            nxt = flow.layers[flow.consumers[end][0]]
            if nxt.op not in ACTIVATIONS or len(set(nxt.inputs)) != 1:
                break
            trailing.append(nxt.name)
            end = nxt.name
        region = Region(fork, end, members | set(trailing), layer.name, trailing)
        if layer.op == "add" and len(set(layer.inputs)) == 2:
            ways = [flow.between(fork, i) if i != fork else set() for i in layer.inputs]
            if not ways[0] & ways[1]:
                region.shortcut = min(ways, key=len) if len(ways[0]) != len(ways[1]) else ways[1]
        regions.append(region)
    return nest(regions)


def lead_ins(flow: Flow, regions: list[Region]) -> None:
    """Top-level concat regions of one structure that all follow the same chain of layers (SqueezeNet's
    squeeze conv and relu before the expand branches) take that chain in: it is part of the block."""
    inside = set().union(*(r.members for r in regions)) if regions else set()
    for r in sorted(regions, key=lambda r: len(r.members)):
        r.key = region_key(flow, r)
    groups: dict[tuple, list[Region]] = {}
    for r in regions:
        if r.parent is None and r.merge is not None and flow.layers[r.merge].op == "concat":
            groups.setdefault(r.key, []).append(r)
    for rs in groups.values():
        if len(rs) < 2:
            continue
        chains = []
        for r in rs:
            chain, cur = [], r.entry
            while cur != INPUT and cur not in inside and len(set(flow.layers[cur].inputs)) == 1 and \
                    (not chain or flow.consumers[cur] == [chain[-1]]) and cur not in flow.outputs:
                chain.append(cur)
                cur = flow.layers[cur].inputs[0]
            chains.append(chain)
        n = min(len(c) for c in chains)
        while n and len({tuple(_strict_token(flow, x) for x in c[:n]) for c in chains}) > 1:
            n -= 1
        for r, chain in zip(rs, chains):
            if n:
                r.members |= set(chain[:n])
                r.entry = flow.layers[chain[n - 1]].inputs[0]


def nest(regions: list[Region]) -> list[Region]:
    """Regions as a forest by inclusion; a region that overlaps another without one holding the other
    is dropped (the larger one is kept)."""
    kept: list[Region] = []
    for r in sorted(regions, key=lambda r: -len(r.members)):
        if any(not (r.members <= k.members or not (r.members & k.members)) for k in kept):
            continue
        kept.append(r)
    for r in kept:
        r.children, r.parent = [], None
    for r in sorted(kept, key=lambda r: len(r.members)):
        holders = [k for k in kept if k is not r and r.members <= k.members and len(k.members) > len(r.members)]
        if holders:
            r.parent = min(holders, key=lambda k: len(k.members))
            r.parent.children.append(r)
    return kept


def items(flow: Flow, members: set, children: list) -> list:
    """The direct contents of a module, in order: layer names and child regions (topologically sorted,
    each region as one item)."""
    inside = {}
    for child in children:
        for name in child.members:
            inside[name] = child
    seen, out = set(), []
    for layer in flow.graph.layers:
        if layer.name not in members:
            continue
        item = inside.get(layer.name, layer.name)
        if isinstance(item, Region):
            if id(item) in seen:
                continue
            seen.add(id(item))
        out.append(item)
    return _topological(flow, out)


def _topological(flow: Flow, its: list) -> list:
    """`its` reordered so that every item comes after the items it takes tensors from (stable)."""
    owner = {}
    for k, it in enumerate(its):
        for name in (it.members if isinstance(it, Region) else [it]):
            owner[name] = k
    needs = []
    for k, it in enumerate(its):
        names = it.members if isinstance(it, Region) else [it]
        needs.append({owner[i] for n in names for i in flow.layers[n].inputs if i in owner} - {k})
    done, out = set(), []
    while len(out) < len(its):
        for k, it in enumerate(its):
            if k not in done and needs[k] <= done:
                done.add(k)
                out.append(it)
                break
        else:
            raise ImportFailure("the network's modules depend on each other in a cycle")
    return out


def entry_of(flow: Flow, it) -> str | None:
    if isinstance(it, Region):
        return it.entry
    ins = set(flow.layers[it].inputs)
    return next(iter(ins)) if len(ins) == 1 else None


def exit_of(it) -> str:
    return it.exit if isinstance(it, Region) else it


# ---- structure keys --------------------------------------------------------------------------------------


def _leaf_token(layer: Layer) -> tuple:
    return ("leaf", layer.op, tuple(layer.args))


def _strict_token(flow: Flow, it) -> tuple:
    """What a chain instance must agree on with a kind's body: the operator and its constants, widths
    and strides aside (depthwise kept as a flag)."""
    if isinstance(it, Region):
        return ("region", it.key)
    layer = flow.layers[it]
    args = tuple((k, repr(v)) for k, v in layer.args.items() if k not in ("out", "stride", "groups"))
    return ("leaf", layer.op, args, layer.args.get("groups", 1) != 1)


def _chain_key(flow: Flow, its: list, entry: str) -> tuple:
    """Items with their wiring: inputs as positions among `its`, -1 for `entry`."""
    pos = {}
    for k, it in enumerate(its):
        for name in (it.members if isinstance(it, Region) else [it]):
            pos[name] = k
    out = []
    for it in its:
        if isinstance(it, Region):
            out.append(("region", it.key, pos.get(it.entry, -1) if it.entry != entry else -1))
            continue
        layer = flow.layers[it]
        refs = tuple(-1 if i == entry else pos.get(i, "?") for i in layer.inputs)
        out.append(_leaf_token(layer) + (refs,))
    return tuple(out)


def region_key(flow: Flow, r: Region) -> tuple:
    its = items(flow, r.members, r.children)
    if r.merge is not None and flow.layers[r.merge].op == "add" and len(set(flow.layers[r.merge].inputs)) == 2:
        tail = {r.merge, *r.trailing}
        body = [it for it in its if not _within(it, r.shortcut) and not _within(it, tail)]
        trail = [it for it in its if _within(it, set(r.trailing))]
        return ("residual", _chain_key(flow, body, r.entry), _chain_key(flow, trail, r.merge))
    return ("region", flow.layers[r.merge].op if r.merge else None, _chain_key(flow, its, r.entry))


def shortcut_key(flow: Flow, r: Region) -> tuple | None:
    if not r.shortcut:
        return None
    its = [it for it in items(flow, r.members, r.children) if _within(it, r.shortcut)]
    return _chain_key(flow, its, r.entry)


def _within(it, names: set) -> bool:
    return (it.members <= names) if isinstance(it, Region) else it in names


def body_items(flow: Flow, r: Region) -> list:
    """A residual region's body and trailing activations, in order: what a chain instance repeats."""
    tail = {r.merge}
    return [it for it in items(flow, r.members, r.children) if not _within(it, r.shortcut) and not _within(it, tail)]


def _is_chain(flow: Flow, its: list, entry: str) -> bool:
    prev = entry
    for it in its:
        if entry_of(flow, it) != prev:
            return False
        prev = exit_of(it)
    return True


# ---- kinds -------------------------------------------------------------------------------------------------


def assign_keys(flow: Flow, regions: list[Region], lonely: bool = False) -> list[Region]:
    """Keys bottom-up; regions whose key occurs once are dissolved (their contents go to their parent),
    until every remaining region repeats (unless `lonely`: then all stay)."""
    while True:
        for r in sorted(regions, key=lambda r: len(r.members)):
            r.key = region_key(flow, r)
        counts = Counter(r.key for r in regions)
        if lonely:
            return regions
        single = [r for r in regions if counts[r.key] < 2]
        if not single:
            return regions
        for r in single:
            for c in r.children:
                c.parent = r.parent
            if r.parent is not None:
                r.parent.children = [c for c in r.parent.children if c is not r] + r.children
        regions = [r for r in regions if counts[r.key] >= 2]


def chain_instances(flow: Flow, regions: list[Region]) -> list[Region]:
    """Runs of top-level items with the structure of a residual kind's body (with its trailing
    activations): instances of that kind without the skip."""
    patterns: dict[tuple, tuple] = {}
    for r in regions:
        if r.parent is None and r.residual:
            body = body_items(flow, r)
            if len(body) >= 3 and _is_chain(flow, body, r.entry) and \
                    sum(1 for it in body if isinstance(it, str) and flow.layers[it].holds_weights or
                        isinstance(it, str) and flow.layers[it].op in ("conv", "linear")) >= 2:
                patterns.setdefault(tuple(_strict_token(flow, it) for it in body), r.key)
    if not patterns:
        return regions
    top = items(flow, set(flow.layers), [r for r in regions if r.parent is None])
    found = []
    k = 0
    while k < len(top):
        best = None
        for pattern, key in patterns.items():
            window = top[k:k + len(pattern)]
            if len(window) == len(pattern) and _is_chain(flow, window, entry_of(flow, window[0]) or "?") and \
                    tuple(_strict_token(flow, it) for it in window) == pattern and \
                    (best is None or len(pattern) > len(best[0])):
                best = (window, key)
        if best is None:
            k += 1
            continue
        window, key = best
        members = set()
        for it in window:
            members |= it.members if isinstance(it, Region) else {it}
        r = Region(entry_of(flow, window[0]), exit_of(window[-1]), members, key=key)
        r.children = [it for it in window if isinstance(it, Region)]
        for c in r.children:
            c.parent = r
        found.append(r)
        k += len(window)
    return regions + found


def kind_groups(flow: Flow, regions: list[Region]) -> dict[tuple, list[Region]]:
    """Regions by kind: one structure, and for residual kinds one projection shortcut (instances
    without one join the first kind with the same body)."""
    groups: dict[tuple, list[Region]] = {}
    for r in regions:
        short = shortcut_key(flow, r) if r.merge is not None else None
        groups.setdefault((r.key, short), []).append(r)
    merged: dict[tuple, list[Region]] = {}
    for (key, short), rs in groups.items():
        if short is None and key[0] == "residual":
            home = next((k for k in groups if k[0] == key and k[1] is not None), None)
            if home is not None:
                merged.setdefault(home, []).extend(rs)
                continue
        merged.setdefault((key, short), []).extend(rs)
    return merged


def shape_name(flow: Flow, r: Region) -> str:
    """A kind's class name after its shape, where names give none."""
    its = items(flow, r.members, r.children)
    convs = [flow.layers[it] for it in its if isinstance(it, str) and flow.layers[it].op == "conv"
             and it not in r.shortcut]
    merge = flow.layers[r.merge].op if r.merge else "add"
    if r.residual or r.merge is None:
        def kernel(c):
            k = c.args.get("kernel", 1)
            return k[0] if isinstance(k, tuple) else k

        depthwise = [c for c in convs if c.args.get("groups", 1) != 1 and c.args.get("groups") == c.args.get("out")]
        if depthwise and convs and kernel(convs[-1]) == 1:
            return "InvertedResidual"
        if len(convs) == 3 and [kernel(c) for c in convs][::2] == [1, 1] and kernel(convs[1]) > 1:
            return "Bottleneck"
        if len(convs) == 2 and all(kernel(c) > 1 for c in convs):
            return "BasicBlock"
        return "ResidualBlock"
    if merge == "mul":
        ops = {flow.layers[it].op for it in its if isinstance(it, str)}
        if ops & {"sigmoid", "hardsigmoid"} and "avgpool" in ops:
            return "SqueezeExcitation"
        return "Gate"
    if merge == "concat" and len(set(flow.layers[r.merge].inputs)) >= 3:
        return "Inception"
    first = flow.layers[its[0]] if its and isinstance(its[0], str) else None
    if merge == "concat" and first is not None and first.op == "conv" and first.args.get("kernel") in (1, (1, 1)):
        return "Fire"  # a 1x1 squeeze, then expand branches concatenated (SqueezeNet)
    return "Branches"


def own_prefix(names: list[str]) -> str:
    """The prefix the names share, up to a separator (`layer1_0_conv1`, `layer1_0_bn1` -> `layer1_0`)."""
    if not names:
        return ""
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    if len(names) == 1 or n == len(first) and n == len(last):
        n = max((first.rfind(s) for s in _SEPARATORS), default=-1) + 1
    prefix = first[:n]
    while prefix and prefix[-1] not in _SEPARATORS:
        prefix = prefix[:-1]
    return prefix.rstrip(_SEPARATORS)


def _words(name: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z]+", name)]


def named_leaves(flow: Flow, r: Region) -> list[str]:
    return [flow.layers[n].path for n in sorted(r.members, key=flow.order.get) if flow.layers[n].path]


def instance_prefix(flow: Flow, r: Region) -> str:
    """The prefix the instance's layer names share, where it names this instance only (`layer1_0`, not
    Darknet's `conv` of `conv_3`, `conv_4` that every layer has)."""
    prefix = own_prefix(named_leaves(flow, r))
    if not prefix:
        return ""
    for layer in flow.graph.layers:
        path = layer.path or ""
        if layer.name not in r.members and path.startswith(prefix) and \
                (len(path) == len(prefix) or path[len(prefix)] in _SEPARATORS):
            return ""
    return prefix


def instance_name(flow: Flow, r: Region) -> str:
    """What the original calls the instance: its layers' shared prefix, else its merge's name."""
    return instance_prefix(flow, r) or (flow.layers[r.merge].path or "" if r.merge else "")


def kind_name(flow: Flow, rs: list[Region], taken: set) -> str:
    prefixes = [instance_prefix(flow, r) for r in rs]
    common = None
    for p in prefixes:
        ws = [w for w in _words(p) if w not in GENERIC_WORDS and len(w) > 2]
        common = ws if common is None else [w for w in common if w in ws]
    # the most specific word they share: `features_denseblock1_denselayer3` -> `Denselayer`
    base = common[-1].capitalize() if common else shape_name(flow, next((r for r in rs if r.merge), rs[0]))
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


# ---- names -------------------------------------------------------------------------------------------------


def _valid(label: str) -> bool:
    return bool(_LABEL.fullmatch(label)) and label not in NAME_RESERVED and not label.isdigit()


def _clean(name: str) -> str:
    """Separators a label cannot hold (`/`, `:`, `.`) as `_`."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_-]", "_", name)).strip("_")


def slots(flow: Flow, r: Region) -> list[tuple]:
    """(slot, item) for the direct contents of an instance; a slot is the same place in every instance
    of its kind: body position, the merge, trailing position, shortcut position."""
    its = items(flow, r.members, r.children)
    if r.merge is None:  # a chain instance: its body and trailing activations
        return [(("b", k), it) for k, it in enumerate(its)]
    body, rest = [], []
    for it in its:
        if r.residual and _within(it, r.shortcut):
            rest.append((("s", sum(1 for s, _ in rest if s[0] == "s")), it))
        elif it == r.merge:
            rest.append((("m", 0), it))
        else:  # the body, then the merge's trailing activations: numbered as a chain instance numbers them
            body.append(it)
    out = [(("b", k), it) for k, it in enumerate(body)] + rest
    return out


def local_names(flow: Flow, rs: list[Region]) -> list[dict]:
    """Per instance: old path -> local name, the same name in the same slot of every instance, none the
    name of a nested block."""
    nested = {label for r in rs for label in _child_labels(r)}
    per_slot: dict[tuple, list] = {}
    leaf_slots = []
    for r in rs:
        mine = {}
        for slot, it in slots(flow, r):
            if isinstance(it, str) and flow.layers[it].path:
                mine[slot] = flow.layers[it].path
                per_slot.setdefault(slot, []).append(flow.layers[it].path)
        leaf_slots.append(mine)

    def accept(names_by_slot: dict) -> bool:
        """Labels, and different ones for different layers (a module run twice keeps one name)."""
        if not all(_valid(x) and x not in nested for x in names_by_slot.values()):
            return False
        for mine in leaf_slots:
            given = {path: names_by_slot[slot] for slot, path in mine.items()}
            if len(set(given.values())) != len(given):
                return False
        return True

    candidates = []
    # 1. the prefix an instance's layers share stripped
    by_slot: dict = {}
    ok = True
    for r, mine in zip(rs, leaf_slots):
        prefix = instance_prefix(flow, r)
        word = re.search(r"[A-Za-z]{3,}\Z", prefix)  # `features_2_conv` + `0_0` -> `conv_0_0`
        for slot, path in mine.items():
            local = _clean(path[len(prefix):]) if prefix and path.startswith(prefix) else ""
            if local[:1].isdigit() and word:
                local = f"{word.group(0)}_{local}"
            if by_slot.setdefault(slot, local) != local:
                ok = False
    if ok:
        candidates.append(by_slot)
    # 2. the parts that vary between instances dropped (and the part all names share); in a slot only
    # one instance fills, the part that names that instance in the others (`3a` of `res3a_branch1`)
    identity: dict[str, Counter] = {}
    for paths in per_slot.values():
        if len(paths) > 1:
            for path, runs in zip(paths, _varying_runs(paths)):
                identity.setdefault(path, Counter()).update(runs)
    own = {}
    for mine in leaf_slots:
        counts = sum((identity.get(path, Counter()) for path in mine.values()), Counter())
        for path in mine.values():
            own[path] = counts.most_common(1)[0][0] if counts else ""
    by_slot = {}
    for slot, paths in per_slot.items():
        if len(paths) > 1:
            by_slot[slot] = _clean(_constant_parts(paths))
        else:
            by_slot[slot] = _clean(paths[0].replace(own[paths[0]], "", 1) if own[paths[0]] else paths[0])
    shared = own_prefix(list(by_slot.values())) if len(by_slot) > 1 else ""
    if shared:
        stripped = {s: _clean(v[len(shared):]) for s, v in by_slot.items()}
        candidates.append(stripped)
    candidates.append(by_slot)
    # 3. operators numbered in order
    counts: Counter = Counter()
    by_slot = {}
    for slot in sorted(per_slot, key=lambda s: (s[0] == "s", s[0] == "m", s[1])):
        r = next(r for r, mine in zip(rs, leaf_slots) if slot in mine)
        op = next(flow.layers[it].op for s, it in slots(flow, r) if s == slot)
        counts[op] += 1
        by_slot[slot] = f"{op}_{counts[op]}" if op[-1].isdigit() else f"{op}{counts[op]}"
    candidates.append(by_slot)
    chosen = next(c for c in candidates if accept(c))
    return [{path: chosen[slot] for slot, path in mine.items()} for mine in leaf_slots]


def _constant_parts(paths: list[str]) -> str:
    """The first path without the letter and digit runs that differ between the paths."""
    split = [re.findall(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]+", p) for p in paths]
    if len({len(s) for s in split}) != 1:
        return ""
    return "".join(t for k, t in enumerate(split[0]) if all(s[k] == t for s in split))


def _varying_runs(paths: list[str]) -> list[list[str]]:
    """Per path, the stretches of it that differ between the paths (`3a` of `res3a_branch2a` against
    `res2b_branch2a`)."""
    split = [re.findall(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]+", p) for p in paths]
    if len({len(s) for s in split}) != 1:
        return [[] for _ in paths]
    varying = [k for k in range(len(split[0])) if len({s[k] for s in split}) > 1]
    out = []
    for s in split:
        runs, run, last = [], "", None
        for k in varying:
            if last is not None and k != last + 1:
                runs.append(run)
                run = ""
            run += s[k]
            last = k
        out.append(runs + ([run] if run else []))
    return out


def _instance_label(flow: Flow, r: Region, kind: str, taken: set, n: int) -> str:
    candidates = [_clean(instance_prefix(flow, r))]
    if r.merge and flow.layers[r.merge].path:
        candidates.append(_clean(flow.layers[r.merge].path))
    for c in candidates:
        if c and _valid(c) and c not in taken:
            taken.add(c)
            return c
    base = _snake(kind)
    k = n
    while f"{base}{k}" in taken:
        k += 1
    taken.add(f"{base}{k}")
    return f"{base}{k}"


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


# ---- stages ------------------------------------------------------------------------------------------------


def stages(flow: Flow, top: list, kinds: dict) -> list:
    """Top-level items with runs of consecutive blocks of one kind gathered in lists."""
    out: list = []
    run: list = []

    def close():
        if len(run) >= 2:
            out.append(list(run))
        else:
            out.extend(run)
        run.clear()

    for k, it in enumerate(top):
        if not isinstance(it, Region):
            close()
            out.append(it)
            continue
        after = top[k + 1] if k + 1 < len(top) else None
        if run and (kinds[id(run[-1])] != kinds[id(it)] or it.entry != run[-1].exit or
                    _starts_stage(flow, run, it, after if isinstance(after, Region) and
                                  kinds[id(after)] == kinds[id(it)] and after.entry == it.exit else None)):
            close()
        run.append(it)
    close()
    return out


def _starts_stage(flow: Flow, run: list, r: Region, after: Region | None) -> bool:
    """A block that changes the spatial size starts a stage; so does one that changes the channels
    after a block that kept them (MobileNetV2's 64 -> 96), unless the block after it changes them again
    (GoogLeNet's inception4a .. 4e widen block by block)."""
    a, b = flow.shape(r.entry), flow.shape(r.exit)
    if a is None or b is None or len(a) != len(b):
        return False
    if a[1:] != b[1:]:
        return True

    def keeps(x):
        return flow.shape(x.entry) == flow.shape(x.exit)

    return a[0] != b[0] and keeps(run[-1]) and (after is None or keeps(after))


# ---- the whole graph ---------------------------------------------------------------------------------------


def infer_scopes(graph: LayerGraph) -> LayerGraph:
    """`graph` (whose layers have no scopes) with the modules a person would have written: repeated
    regions as block instances, runs of them as numbered stages, layer paths and weight keys renamed
    into them. Unchanged where nothing repeats, or where the layers already have scopes.

    The result is checked: lifted and printed it must be a spec that checks. Where it is not (or where
    nothing repeats but the flat graph is no spec: names of merges that collide in one scope), every
    merge region becomes a block, repeated or not; where that fails too, the graph comes back unchanged
    with a warning."""
    if not graph.layers or any(layer.scopes for layer in graph.layers):
        return graph
    from .lift import running_concats

    original, graph = graph, running_concats(graph)  # DenseNet's growing concat: one concat per layer
    if graph is not original:
        graph.weights = original.weights
    flow = Flow(graph)
    scoped = _scoped(flow, graph, lonely=False)
    problem = _unwritable(scoped if scoped is not None else original)
    if problem is None:
        return scoped if scoped is not None else original
    fallback = _scoped(flow, graph, lonely=True)
    if fallback is not None and _unwritable(fallback) is None:
        return fallback
    if scoped is not None:  # a bug here or in lifting: the flat spec instead, and say so
        original.warnings.append(f"the repeated structure could not be written as blocks ({problem}); the "
                                 "spec lists the layers flat")
    return original


def _scoped(flow: Flow, graph: LayerGraph, lonely: bool) -> LayerGraph | None:
    """The graph with its regions as modules: the repeated ones (all of them with `lonely`); None where
    there are none."""
    regions = find_regions(flow)
    lead_ins(flow, regions)
    regions = assign_keys(flow, regions, lonely)
    regions = chain_instances(flow, regions)
    groups = kind_groups(flow, regions)
    if not regions or not lonely and not any(len(rs) >= 2 for rs in groups.values()):
        return None
    taken: set = set()
    kinds: dict[int, str] = {}
    for rs in sorted(groups.values(), key=lambda rs: min(flow.order[r.exit] for r in rs)):
        name = kind_name(flow, rs, taken)
        for r in rs:
            kinds[id(r)] = name
            r.kind = name
    renames: dict[str, str] = {}
    scopes: dict[str, tuple] = {}
    top = items(flow, set(flow.layers), [r for r in regions if r.parent is None])
    top_labels = {flow.layers[it].path for it in top if isinstance(it, str) and flow.layers[it].path}
    laid = stages(flow, top, kinds)
    n_stage = 0
    counts: Counter = Counter()
    stage_names = _stage_names(flow, [x for x in laid if isinstance(x, list)], top_labels)
    for x in laid:
        if isinstance(x, list):
            n_stage += 1
            name = stage_names[n_stage - 1]
            stage = Scope(name, "Sequential", True)
            for k, r in enumerate(x):
                _place(flow, r, f"{name}.{k}", (stage,), renames, scopes)
        elif isinstance(x, Region):
            counts[x.kind] += 1
            label = _instance_label(flow, x, x.kind, top_labels, counts[x.kind])
            _place(flow, x, label, (), renames, scopes)
    # local names agree within a kind: computed per kind, over all its instances
    by_kind: dict[str, list] = {}
    for r in regions:
        by_kind.setdefault(r.kind, []).append(r)
    for rs in by_kind.values():
        for r, names in zip(rs, local_names(flow, rs)):
            for old, local in names.items():
                renames[old] = f"{r.path}.{local}"
    scoped = _rebuild(flow, graph, regions, renames, scopes)
    scoped.inferred_scopes = True  # the modules are ours, not the original's (lift's doc strings)
    return scoped


def _unwritable(graph: LayerGraph) -> str | None:
    """Why `graph` lifted is no spec that checks (None when it is one)."""
    from ..api import load
    from ..diagnostics import SpecError
    from ..printer import Unprintable, print_module
    from .lift import lift

    try:
        load(text=print_module(lift(graph)))
    except ImportFailure as e:
        return e.message
    except Unprintable as e:
        return str(e)
    except SpecError as e:
        return e.render().splitlines()[0]
    except Exception as e:  # noqa: BLE001 - a bug of lifting on this hierarchy: the flat spec, and say so
        return f"{type(e).__name__}: {e}"
    return None


def _stage_names(flow: Flow, runs: list, taken: set) -> list[str]:
    """Each run's name: the start its blocks' names share (`res2a`, `res2b` -> `res2`) where no layer
    outside the run has it; else `stage1`, `stage2`, ..."""
    names = []
    for run in runs:
        labels = [instance_name(flow, r) for r in run]
        common = labels[0] if all(labels) else ""
        for label in labels[1:]:
            n = 0
            while n < min(len(common), len(label)) and common[n] == label[n]:
                n += 1
            common = common[:n]
        inside = set().union(*(r.members for r in run))
        if any(layer.name not in inside and (layer.path or "").startswith(common) for layer in flow.graph.layers):
            common = ""
        names.append(_clean(common))
    out = []
    for k, name in enumerate(names):
        if not _valid(name) or names.count(name) > 1 or name in taken:
            name = f"stage{k + 1}"
        while name in taken:
            name += "_"
        taken.add(name)
        out.append(name)
    return out


def _place(flow: Flow, r: Region, path: str, outer: tuple, renames: dict, scopes: dict) -> None:
    """Give `r` its path and the scopes around its layers; its nested regions get local names."""
    r.path = path
    inner = outer + (Scope(path, r.kind),)
    for name in r.members:
        scopes[name] = inner
    for c, label in zip(sorted(r.children, key=lambda c: flow.order[c.exit]), _child_labels(r, flow)):
        _place(flow, c, f"{path}.{label}", inner, renames, scopes)


def _child_labels(r: Region, flow: Flow | None = None) -> list[str]:
    """The labels of the blocks nested in `r`, after their kind (`squeeze_excitation`, `..._2`), in order
    (with `flow`; any order without)."""
    children = sorted(r.children, key=lambda c: flow.order[c.exit]) if flow else r.children
    used: Counter = Counter()
    out = []
    for c in children:
        used[c.kind] += 1
        out.append(_snake(c.kind) if used[c.kind] == 1 else f"{_snake(c.kind)}{used[c.kind]}")
    return out


def _rebuild(flow: Flow, graph: LayerGraph, regions: list[Region], renames: dict, scopes: dict) -> LayerGraph:
    order = _flatten_order(flow, items(flow, set(flow.layers), [r for r in regions if r.parent is None]))
    swapped = {}  # residual adds that take the shortcut (or the block's input) first, as Caffe's Eltwise
    for r in regions:  # lists branch1 first: the body first, which lifting writes as the residual
        if r.residual and r.merge is not None:
            first = flow.layers[r.merge].inputs[0]
            if first in r.shortcut or first == r.entry:
                swapped[r.merge] = tuple(reversed(flow.layers[r.merge].inputs))
    layers = []
    for name in order:
        layer = flow.layers[name]
        path = renames.get(layer.path, layer.path) if layer.path else None
        layers.append(dataclasses.replace(layer, path=path, scopes=scopes.get(name, ()),
                                          inputs=swapped.get(name, layer.inputs)))
    weights = {}
    for key, value in graph.weights.items():
        old, dot, leaf = key.rpartition(".")
        weights[f"{renames.get(old, old)}{dot}{leaf}" if dot else key] = value
    rebuilt = dataclasses.replace(graph, layers=layers, warnings=list(graph.warnings), weights=weights)
    for attr, value in vars(graph).items():  # what a front end adds beyond the fields (training outputs)
        if not hasattr(rebuilt, attr):
            setattr(rebuilt, attr, value)
    return rebuilt


def _flatten_order(flow: Flow, its: list) -> list[str]:
    out = []
    for it in its:
        if isinstance(it, Region):
            out.extend(_flatten_order(flow, items(flow, it.members, it.children)))
        else:
            out.append(it)
    return out
