"""Names for the modules regions.py invents: the kinds (`Bottleneck`, or the word their instances'
names share), the instances and stages (`layer1_0`, `res2`), and the local names of their layers, the
same in every instance of a kind (`layer1_0_conv1` -> `conv1`, `res2a_branch2a` -> `res_branch2a`, else
`conv1`, `bn1`, ... in order)."""

from __future__ import annotations

import re
from collections import Counter

from ..syntax import NAME_RESERVED
from .regions_flow import Flow, Region, items, within

# words that name no kind of block (`layer1_0`, `features_3`): the kind is named after its shape
GENERIC_WORDS = {"layer", "layers", "block", "blocks", "stage", "stages", "feature", "features", "module",
                 "modules", "model", "net", "network", "conv", "res", "node", "op", "seq", "sequential", "body",
                 "main", "backbone", "trunk", "unit", "cell", "branch", "part", "x", "output", "out"}
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_SEPARATORS = "_./-:"


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


def valid_label(label: str) -> bool:
    return bool(_LABEL.fullmatch(label)) and label not in NAME_RESERVED and not label.isdigit()


def clean_label(name: str) -> str:
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
        if r.residual and within(it, r.shortcut):
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
    nested = {label for r in rs for label in child_labels(r)}
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
        if not all(valid_label(x) and x not in nested for x in names_by_slot.values()):
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
            local = clean_label(path[len(prefix):]) if prefix and path.startswith(prefix) else ""
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
            by_slot[slot] = clean_label(_constant_parts(paths))
        else:
            by_slot[slot] = clean_label(paths[0].replace(own[paths[0]], "", 1) if own[paths[0]] else paths[0])
    shared = own_prefix(list(by_slot.values())) if len(by_slot) > 1 else ""
    if shared:
        stripped = {s: clean_label(v[len(shared):]) for s, v in by_slot.items()}
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


def instance_label(flow: Flow, r: Region, kind: str, taken: set, n: int) -> str:
    candidates = [clean_label(instance_prefix(flow, r))]
    if r.merge and flow.layers[r.merge].path:
        candidates.append(clean_label(flow.layers[r.merge].path))
    for c in candidates:
        if c and valid_label(c) and c not in taken:
            taken.add(c)
            return c
    base = snake_case(kind)
    k = n
    while f"{base}{k}" in taken:
        k += 1
    taken.add(f"{base}{k}")
    return f"{base}{k}"


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def stage_names(flow: Flow, runs: list, taken: set) -> list[str]:
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
        names.append(clean_label(common))
    out = []
    for k, name in enumerate(names):
        if not valid_label(name) or names.count(name) > 1 or name in taken:
            name = f"stage{k + 1}"
        while name in taken:
            name += "_"
        taken.add(name)
        out.append(name)
    return out


def child_labels(r: Region, flow: Flow | None = None) -> list[str]:
    """The labels of the blocks nested in `r`, after their kind (`squeeze_excitation`, `..._2`), in order
    (with `flow`; any order without)."""
    children = sorted(r.children, key=lambda c: flow.order[c.exit]) if flow else r.children
    used: Counter = Counter()
    out = []
    for c in children:
        used[c.kind] += 1
        out.append(snake_case(c.kind) if used[c.kind] == 1 else f"{snake_case(c.kind)}{used[c.kind]}")
    return out
