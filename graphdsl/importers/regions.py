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
   (regions_names.py; the graph's dominators, the Region and a module's items: regions_flow.py.)

A graph where nothing repeats comes back unchanged: lifting writes it flat. The result is checked by
lifting, printing and checking it; where that fails every region becomes a block (its names in a scope
of their own), and where that fails too the graph comes back unchanged with a warning.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from .ir import INPUT, ImportFailure, Layer, LayerGraph, Scope
from .regions_flow import Flow, Region, entry_of, exit_of, items, within
from .regions_names import child_labels, instance_label, kind_name, local_names, stage_names

MERGES = ("add", "concat", "mul")
# how far up the dominators a merge's region may start when its immediate dominator lets a tensor in
# from outside (a bound: each step is a walk over the graph)
MAX_FORK_STEPS = 16
# single-tensor activations that belong to the block whose merge they follow
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish",
               "hardsigmoid", "prelu")


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
    # The kept regions nest or lie apart, largest first; so a region fits where all its layers have the
    # same innermost kept region (the last kept that holds them), and that one holds it all, or none has
    # one. Checked layer by layer, not against every kept region.
    innermost: dict[str, Region] = {}
    for r in sorted(regions, key=lambda r: -len(r.members)):
        around = {id(o): o for o in (innermost.get(name) for name in r.members)}
        if len(around) > 1:
            continue
        (o,) = around.values() if around else (None,)
        if o is not None and not r.members <= o.members:
            continue
        kept.append(r)
        for name in r.members:
            innermost[name] = r
    holding: dict[str, list[Region]] = {}  # layer -> the kept regions that hold it, largest first
    for r in kept:
        r.children, r.parent = [], None
        for name in r.members:
            holding.setdefault(name, []).append(r)
    for r in sorted(kept, key=lambda r: len(r.members)):
        # a larger kept region that holds one of its layers holds it all (they nest)
        some = next(iter(r.members), None)
        holders = [k for k in (holding[some] if some is not None else kept)
                   if k is not r and r.members <= k.members and len(k.members) > len(r.members)]
        if holders:
            r.parent = min(holders, key=lambda k: len(k.members))
            r.parent.children.append(r)
    return kept


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
        body = [it for it in its if not within(it, r.shortcut) and not within(it, tail)]
        trail = [it for it in its if within(it, set(r.trailing))]
        return ("residual", _chain_key(flow, body, r.entry), _chain_key(flow, trail, r.merge))
    return ("region", flow.layers[r.merge].op if r.merge else None, _chain_key(flow, its, r.entry))


def shortcut_key(flow: Flow, r: Region) -> tuple | None:
    if not r.shortcut:
        return None
    its = [it for it in items(flow, r.members, r.children) if within(it, r.shortcut)]
    return _chain_key(flow, its, r.entry)


def body_items(flow: Flow, r: Region) -> list:
    """A residual region's body and trailing activations, in order: what a chain instance repeats."""
    tail = {r.merge}
    return [it for it in items(flow, r.members, r.children) if not within(it, r.shortcut) and not within(it, tail)]


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
        if not flow.closed(members, entry_of(flow, window[0]), exit_of(window[-1])):
            k += 1  # a tensor inside leaves it (YOLO's route from the middle of its head's chain)
            continue
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
    homes: dict[tuple, tuple] = {}  # a body -> the first kind with it and a projection shortcut
    for key, short in groups:
        if short is not None:
            homes.setdefault(key, (key, short))
    merged: dict[tuple, list[Region]] = {}
    for (key, short), rs in groups.items():
        if short is None and key[0] == "residual":
            home = homes.get(key)
            if home is not None:
                merged.setdefault(home, []).extend(rs)
                continue
        merged.setdefault((key, short), []).extend(rs)
    return merged


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
    regions = find_regions(flow)
    if not regions:  # nothing to make blocks of, even in the fallback below: no need to check the original
        return original
    scoped = _scoped(flow, graph, regions, lonely=False)
    problem = _unwritable(scoped if scoped is not None else original)
    if problem is None:
        return scoped if scoped is not None else original
    fallback = _scoped(flow, graph, find_regions(flow), lonely=True)  # regions afresh: _scoped changes them
    if fallback is not None and _unwritable(fallback) is None:
        return fallback
    if scoped is not None:  # a bug here or in lifting: the flat spec instead, and say so
        original.warnings.append(f"the repeated structure could not be written as blocks ({problem}); the "
                                 "spec lists the layers flat")
    return original


def _scoped(flow: Flow, graph: LayerGraph, regions: list[Region], lonely: bool) -> LayerGraph | None:
    """The graph with its regions (find_regions') as modules: the repeated ones (all of them with
    `lonely`); None where there are none."""
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
    run_names = stage_names(flow, [x for x in laid if isinstance(x, list)], top_labels)
    for x in laid:
        if isinstance(x, list):
            n_stage += 1
            name = run_names[n_stage - 1]
            stage = Scope(name, "Sequential", True)
            for k, r in enumerate(x):
                _place(flow, r, f"{name}.{k}", (stage,), renames, scopes)
        elif isinstance(x, Region):
            counts[x.kind] += 1
            label = instance_label(flow, x, x.kind, top_labels, counts[x.kind])
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


def _place(flow: Flow, r: Region, path: str, outer: tuple, renames: dict, scopes: dict) -> None:
    """Give `r` its path and the scopes around its layers; its nested regions get local names."""
    r.path = path
    inner = outer + (Scope(path, r.kind),)
    for name in r.members:
        scopes[name] = inner
    for c, label in zip(sorted(r.children, key=lambda c: flow.order[c.exit]), child_labels(r, flow)):
        _place(flow, c, f"{path}.{label}", inner, renames, scopes)


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
    return dataclasses.replace(graph, layers=layers, warnings=list(graph.warnings), weights=weights)


def _flatten_order(flow: Flow, its: list) -> list[str]:
    out = []
    for it in its:
        if isinstance(it, Region):
            out.extend(_flatten_order(flow, items(flow, it.members, it.children)))
        else:
            out.append(it)
    return out
