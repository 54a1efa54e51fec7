"""Names for the modules regions.py invents: the kinds (`Bottleneck`, or the word their instances'
names share), the instances and stages (`layer1_0`, `res2` of Caffe's `res2a`, `res2b`, ...), and the
local names of their layers, the same in every instance of a kind: the prefix an instance's layers share
stripped (`layer1_0_conv1` -> `conv1`, `inception_3a/1x1` -> `conv1x1`: a name that would start with a
digit gets its operator in front), else the part that names the instance dropped where it stands
(`res2a_branch2a` -> `res_branch2a`, `bn2a_branch1` -> `bn_branch1`), else `conv1`, `bn1`, ... in order."""

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
    if flow.unique:  # a layer outside has it where more layers have it than inside (one look-up per instance)
        inside = sum(1 for n in r.members if n in flow.layers and _under(flow.layers[n].path or "", prefix))
        return "" if flow.named_under(prefix, _SEPARATORS) > inside else prefix
    for layer in flow.graph.layers:
        if layer.name not in r.members and _under(layer.path or "", prefix):
            return ""
    return prefix


def _under(path: str, prefix: str) -> bool:
    """`path` is `prefix`, or `prefix` and then a separator."""
    return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] in _SEPARATORS)


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
    op_of: dict[tuple, str] = {}
    leaf_slots = []
    for r in rs:
        mine = {}
        for slot, it in slots(flow, r):
            if isinstance(it, str) and flow.layers[it].path:
                mine[slot] = flow.layers[it].path
                per_slot.setdefault(slot, []).append(flow.layers[it].path)
                op_of[slot] = flow.layers[it].op
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
            local = _repaired(local, op_of[slot])
            if by_slot.setdefault(slot, local) != local:
                ok = False
    if ok:
        candidates.append(by_slot)
    # 2. the part that names the instance dropped where it stands (`2a` of `res2a_branch2a` and of
    # `bn2a_branch2a`); in a slot only one instance fills, its identity found in its other layers' names.
    # Where that leaves names that collide, just the runs that differ (`a`)
    first_filling = {}  # slot -> the first instance that fills it
    for k, mine in enumerate(leaf_slots):
        for slot in mine:
            first_filling.setdefault(slot, k)
    for whole in (True, False):
        identities = _identities(flow, rs, whole)
        by_slot = {}
        for slot, paths in per_slot.items():
            if len(paths) > 1:
                spans = _varying_spans(paths, whole)[0]
                local = clean_label(_cut(paths[0], spans)) if spans or len(set(paths)) == 1 else ""
            else:
                local = clean_label(_drop(paths[0], identities[first_filling[slot]][0]))
            by_slot[slot] = _repaired(local, op_of[slot])
        shared = own_prefix(list(by_slot.values())) if len(by_slot) > 1 else ""
        if shared:  # and the part all names share
            candidates.append({s: clean_label(v[len(shared):]) for s, v in by_slot.items()})
        candidates.append(by_slot)
    # 3. operators numbered in order
    counts: Counter = Counter()
    by_slot = {}
    for slot in sorted(per_slot, key=lambda s: (s[0] == "s", s[0] == "m", s[1])):
        op = op_of[slot]
        counts[op] += 1
        by_slot[slot] = f"{op}_{counts[op]}" if op[-1].isdigit() else f"{op}{counts[op]}"
    candidates.append(by_slot)
    chosen = next(c for c in candidates if accept(c))
    return [{path: chosen[slot] for slot, path in mine.items()} for mine in leaf_slots]


def _repaired(local: str, op: str) -> str:
    """A label made of a local name that is none: one that starts with a digit (`1x1` of Caffe's
    `inception_3a/1x1`) gets its operator's name in front, `conv1x1`, the operator's word moved there from
    the end (`1x1_bn` -> `bn1x1`); a word of the language (`output`) gets a `_` after it, as the front ends
    write such names."""
    if local[:1].isdigit():
        words = local.split("_")
        if len(words) > 1 and words[-1] == op:
            local = "_".join(words[:-1])
        local = f"{op}{local}"
    return f"{local}_" if local in NAME_RESERVED else local


_WORD = re.compile(r"[^_./:-]+")


def _varying_spans(paths: list[str], whole: bool = True) -> list[list[tuple[int, int]]]:
    """Per path, the (start, end) spans of what differs between the paths, word by word (words lie
    between separators). `whole`: of a word whose leading letters all the paths share, what follows them
    (`2a` of `res2a` against `res2b`, `4b1` of `res4b1`: a stage's number and a block's letter name an
    instance together), else the whole word (`0` of `layer1_0_conv1`); else just the letter and digit
    runs that differ (`a` of `res2a`). None where the paths have different numbers of words."""
    words = [list(_WORD.finditer(p)) for p in paths]
    out: list[list[tuple[int, int]]] = [[] for _ in paths]
    if len(paths) < 2 or len({len(w) for w in words}) != 1:
        return out
    for k in range(len(words[0])):
        texts = [w[k].group() for w in words]
        if len(set(texts)) == 1:
            continue
        if whole:
            leads = {re.match(r"[A-Za-z]*", t).group() for t in texts}
            lead = len(leads.pop()) if len(leads) == 1 else 0
            cuts = [(0 if len(t) == lead else lead, len(t)) for t in texts]
            if any(a == 0 for a, _ in cuts):
                cuts = [(0, len(t)) for t in texts]
        else:
            cuts = _differing_runs(texts)
        for spans, w, (a, b) in zip(out, words, cuts):
            spans.append((w[k].start() + a, w[k].start() + b))
    return out


def _differing_runs(texts: list[str]) -> list[tuple[int, int]]:
    """Per text, (start, end) of its letter and digit runs after those all the texts start with and
    before those they all end with."""
    runs = [re.findall(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]+", t) for t in texts]
    shortest = min(len(r) for r in runs)
    head = 0
    while head < shortest and len({r[head] for r in runs}) == 1:
        head += 1
    tail = 0
    while tail < shortest - head and len({r[-1 - tail] for r in runs}) == 1:
        tail += 1
    return [(len("".join(r[:head])), len(t) - len("".join(r[len(r) - tail:]))) for r, t in zip(runs, texts)]


def _cut(path: str, spans: list[tuple[int, int]]) -> str:
    for start, end in reversed(spans):
        path = path[:start] + path[end:]
    return path


def _identities(flow: Flow, rs: list[Region], whole: bool = True) -> list[tuple[tuple, bool]]:
    """Per instance of a kind: the parts of its layers' names that differ between the instances (`2a`
    of `res2a_branch2a`, `bn2a_branch2a`), the most common where they disagree, and whether all its layers
    agree on them (Caffe's `res2a`: they do; Darknet's `conv5`, `conv6`: a counter, no name)."""
    per_slot: dict[tuple, list] = {}
    for k, r in enumerate(rs):
        for slot, it in slots(flow, r):
            if isinstance(it, str) and flow.layers[it].path:
                per_slot.setdefault(slot, []).append((k, flow.layers[it].path))
    seen: list[Counter] = [Counter() for _ in rs]
    for entries in per_slot.values():
        if len(entries) < 2:
            continue
        paths = [path for _, path in entries]
        for (k, path), spans in zip(entries, _varying_spans(paths, whole)):
            if spans:
                seen[k][tuple(path[a:b] for a, b in spans)] += 1
    return [(c.most_common(1)[0][0], len(c) == 1) if c else ((), False) for c in seen]


def _found(path: str, part: str, start: int = 0) -> int:
    """Where `part` stands in `path` as a whole run (not inside a longer number or word), from `start`;
    -1 where it does not."""
    for m in re.finditer(re.escape(part), path[start:]):
        a, b = start + m.start(), start + m.end()
        before = path[a - 1] if a else ""
        after = path[b] if b < len(path) else ""
        if not (before.isdigit() and part[0].isdigit() or before.isalpha() and part[0].isalpha()) and \
                not (after.isdigit() and part[-1].isdigit() or after.isalpha() and part[-1].isalpha()):
            return a
    return -1


def _drop(path: str, identity: tuple) -> str:
    """`path` without the parts of `identity`, each where it first stands (`res2a_branch1` -> `res_branch1`)."""
    at = 0
    for part in identity:
        a = _found(path, part, at)
        if a < 0:
            return path
        path, at = path[:a] + path[a + len(part):], a
    return path


def identity_name(flow: Flow, r: Region, identity: tuple) -> str:
    """The instance's name through its identity, from its first layer that holds it (`res2a` of
    `res2a_branch1`): Caffe names an instance's sum so, but gives the sum no weights to keep a path."""
    for path in named_leaves(flow, r):
        at, end = 0, -1
        for part in identity:
            a = _found(path, part, at)
            if a < 0:
                break
            at = end = a + len(part)
        else:
            return path[:end] if identity else ""
    return ""


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
        if not all(labels):  # the names its instances' layers share but for what names each instance
            labels = [identity_name(flow, r, ids) if agree else ""
                      for r, (ids, agree) in zip(run, _identities(flow, run))]
        common = labels[0] if all(labels) else ""
        for label in labels[1:]:
            n = 0
            while n < min(len(common), len(label)) and common[n] == label[n]:
                n += 1
            common = common[:n]
        inside = set().union(*(r.members for r in run))
        if flow.unique:  # a layer outside has it where more layers have it than inside
            mine = sum(1 for n in inside if n in flow.layers and (flow.layers[n].path or "").startswith(common))
            outside = flow.named_starting(common) > mine
        else:
            outside = any(layer.name not in inside and (layer.path or "").startswith(common)
                          for layer in flow.graph.layers)
        if outside:
            common = ""
        names.append(clean_label(common))
    out = []
    uses = Counter(names)
    for k, name in enumerate(names):
        if not valid_label(name) or uses[name] > 1 or name in taken:
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
