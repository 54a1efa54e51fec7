"""A module's layers as statements: the importer's templates, before blocks are found (lift.py).

The layers of a LayerGraph are put into the tree of modules that enclose them (`layer1` > `layer1.0` >
conv1); each module's data flow becomes a list of statements: a chain; a two-way `add` as a residual
(with a shortcut when both ways compute something); a `concat` of single modules as branches; any other
merge by tensor names (`from`, `concat(a, b)`, `mul(gate, in)`, `name = layer` for an unnamed one);
branches that start from the parts of a `chunk` as `(x1, x2) = chunk(2)` and `from x2`. A network with
several outputs (YOLO's heads, auxiliary classifiers) runs to the last; the others are side branches
(`aux1 = inception_aux(...)`, or statements and `from`), listed in `output a, b, training: c`. A plain
nn.Sequential is a group, numbered like it; every other module an Instance (a block call).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field

from ..syntax import NAME_RESERVED
from .ir import INPUT, ImportFailure, Layer, LayerGraph

CONTAINER_KINDS = ("Sequential", "ModuleList")  # written as groups, not blocks
# merges inside merges written as nested residuals and concats at most; deeper (a generated file), a module
# is written with tensor names: graphdsl reads brackets up to 100 deep (syntax.MAX_NESTING), and each
# level of nesting costs frames of recursion here and in the printer and the elaborator
MAX_MERGE_NESTING = 32


# ---- the tree of modules -------------------------------------------------------------------------------


@dataclass
class ModuleNode:
    path: str
    kind: str
    sequential: bool
    children: list = field(default_factory=list)  # Layer | ModuleNode, in the order they run
    members: set = field(default_factory=set)  # names of all layers inside


def module_tree(graph: LayerGraph) -> ModuleNode:
    root = ModuleNode("", "network", False)
    seen: set[str] = set()
    for layer in graph.layers:
        node = root
        node.members.add(layer.name)
        for scope in layer.scopes:
            last = node.children[-1] if node.children else None
            if isinstance(last, ModuleNode) and last.path == scope.path:
                node = last
            else:
                if scope.path in seen:
                    raise ImportFailure(f"module `{scope.path}` ({scope.kind}) runs more than once, or its "
                                        "layers interleave with others", "the importer writes each module as "
                                        "one block call; shared modules are not supported", where=layer.where)
                seen.add(scope.path)
                child = ModuleNode(scope.path, scope.kind, scope.sequential)
                node.children.append(child)
                node = child
            node.members.add(layer.name)
        node.children.append(layer)
    return root


# ---- statements of one module (templates) ----------------------------------------------------------------


@dataclass
class TLeaf:
    label: str | None
    layer: Layer


@dataclass
class TCall:
    label: str | None
    inst: Instance


@dataclass
class TGroup:
    label: str | None
    items: list


@dataclass
class TResidual:
    body: list
    shortcut: list | None


@dataclass
class TBranches:
    op: str
    branches: list  # of lists


@dataclass
class TFrom:
    ref: str  # a label, or "in"


@dataclass
class TBind:
    name: str
    item: object  # TLeaf | TMerge


@dataclass
class TMerge:
    op: str
    refs: list  # labels, or "in"


@dataclass
class TOutput:
    """The network's outputs when there are several (`output a, b, training: c`): the names of the
    tensors returned always, and of those returned in training mode only."""

    refs: list
    training: list = field(default_factory=list)


@dataclass
class TSplit:
    """`(x1, x2) = chunk(2)` / `split(16, 48)`: named parts of the current tensor's channels, in order
    (the flow stays put)."""

    names: list
    starts: list  # the first channel of each part
    op: str
    args: list


@dataclass
class TLoop:
    """A run of statements equal but for one label numbered `prefix{start}`, `prefix{start + 1}`, ...:
    `for i in range(count) { ... "prefix{i + start}": ... }` (DenseNet's denselayer1 .. denselayerN)."""

    body: object  # the first statement of the run
    label: str  # its numbered label
    prefix: str
    start: int
    count: int


def fingerprint(it, skip: str | None = None):
    """A statement's structure and constants, labels aside where they equal `skip`: equal fingerprints
    compute the same thing."""
    def label(x):
        return None if x == skip else x

    if isinstance(it, TLeaf):
        return ("leaf", label(it.label), it.layer.op, tuple(sorted((k, repr(v)) for k, v in it.layer.args.items())))
    if isinstance(it, TCall):
        return ("call", label(it.label), it.inst.node.kind, tuple(fingerprint(x) for x in it.inst.items))
    if isinstance(it, TGroup):
        return ("group", label(it.label), tuple(fingerprint(x, skip) for x in it.items))
    if isinstance(it, TResidual):
        return ("res", tuple(fingerprint(x, skip) for x in it.body),
                None if it.shortcut is None else tuple(fingerprint(x, skip) for x in it.shortcut))
    if isinstance(it, TBranches):
        return ("br", it.op, tuple(fingerprint(x, skip) for x in it.branches))
    if isinstance(it, TLoop):
        return ("loop", it.label, it.count, fingerprint(it.body))
    return (type(it).__name__, repr(it))


def _labels(it) -> list:
    """The labels a statement gives (not those inside the blocks it calls)."""
    if isinstance(it, (TLeaf, TCall)):
        return [it.label] if it.label else []
    if isinstance(it, TGroup):
        return ([it.label] if it.label else []) + [x for c in it.items for x in _labels(c)]
    if isinstance(it, TResidual):
        return [x for c in it.body + (it.shortcut or []) for x in _labels(c)]
    if isinstance(it, TBranches):
        return [x for c in it.branches for x in _labels(c)]
    return []


_NUMBERED = re.compile(r"(.*?)(\d+)\Z")


def numbered_runs(items: list) -> list:
    """Runs of two or more statements equal but for one numbered label, as loops."""
    out = []
    i = 0
    while i < len(items):
        first = items[i]
        numbered = [(m.group(1), int(m.group(2)), lab) for lab in _labels(first) if (m := _NUMBERED.match(lab))]
        best = None
        for prefix, start, lab in numbered:
            if not prefix or prefix[-1].isdigit():
                continue
            key = fingerprint(first, lab)
            j = i + 1
            while j < len(items) and f"{prefix}{start + j - i}" in _labels(items[j]) and \
                    fingerprint(items[j], f"{prefix}{start + j - i}") == key:
                j += 1
            if j - i >= 2 and (best is None or j > best[0]):
                best = (j, TLoop(first, lab, prefix, start, j - i))
        if best is None:
            out.append(first)
            i += 1
        else:
            out.append(best[1])
            i = best[0]
    return out


def immediate_dominators(preds: list, where: str) -> dict:
    """Item -> its immediate dominator ("in" -> None) in the DAG of a module's items, given each item's
    predecessors (earlier items, or "in"): the nearest item every path from "in" passes. One pass of
    Cooper, Harvey and Kennedy's intersection, as the items come in an order where inputs come first; only
    the immediate one is kept (the set of all an item's dominators takes memory quadratic in a chain's
    length: 8000 layers, 2.8 GB)."""
    idom: dict = {"in": None}

    def rank(p):
        return -1 if p == "in" else p

    for k, ps in enumerate(preds):
        if not ps or any(rank(p) >= k for p in ps):
            raise ImportFailure(f"{where}: its data flow does not start at its input",
                                "the importer writes modules whose every layer is computed from their input")
        nearest = ps[0]
        for p in ps[1:]:
            a, b = nearest, p
            while a != b:  # walk the later of the two up until they meet ("in" dominates all)
                if rank(a) > rank(b):
                    a = idom[a]
                else:
                    b = idom[b]
            nearest = a
        idom[k] = nearest
    return idom


@dataclass
class Instance:
    """One module written as a block call: its statements, the channels flowing in, its block."""

    node: ModuleNode
    items: list
    in_channels: int | None
    group: object = None  # its lift.BlockGroup, once blocks are found
    values: dict = field(default_factory=dict)  # position -> constant
    residuals: dict = field(default_factory=dict)  # residual id -> shortcut key or None
    key: tuple = ()
    args: dict = field(default_factory=dict)  # the block's parameter -> value for this instance


class Lifter:
    def __init__(self, graph: LayerGraph):
        self.graph = graph
        self.consumers: dict[str, list[str]] = {}
        for layer in graph.layers:
            for i in layer.inputs:
                self.consumers.setdefault(i, []).append(layer.name)
        self.path_uses = Counter(layer.path for layer in graph.layers if layer.path is not None)
        self.outputs = tuple(graph.outputs) or (graph.output,)
        self.instances: list[Instance] = []  # post-order: children first
        self._scope_names: dict[str, set] = {}  # module path -> the tensor names bound in it
        # module path -> op -> the number below which `{op}{n}` are all bound (names are only ever added):
        # the next fresh name without counting from 1, which a flat network of 10,000 merges makes quadratic
        self._name_hints: dict[str, dict[str, int]] = {}

    # -- a module's data flow as statements

    def external(self, node: ModuleNode) -> tuple[str, str]:
        """(the tensor flowing into `node`, the layer of `node` whose output leaves it)."""
        ins = []
        outs = []
        for layer in self._layers(node):
            for i in layer.inputs:
                if i not in node.members and i not in ins:
                    ins.append(i)
            users = self.consumers.get(layer.name, [])
            if layer.name in self.outputs or any(u not in node.members for u in users):
                outs.append(layer.name)
        where = f"module `{node.path}` ({node.kind})" if node.path else "the network"
        if len(ins) != 1:
            raise ImportFailure(f"{where} takes {len(ins)} tensors", "graphdsl blocks take one tensor in")
        if node.path == "" and len(self.outputs) > 1:  # the network's several outputs (YOLO's heads)
            return ins[0], outs[-1]
        if len(outs) != 1:
            raise ImportFailure(f"{where} gives {len(outs)} tensors out", "graphdsl blocks give one tensor out")
        return ins[0], outs[0]

    def _layers(self, node: ModuleNode):
        for c in node.children:
            if isinstance(c, Layer):
                yield c
            else:
                yield from self._layers(c)

    def statements(self, node: ModuleNode) -> list:
        """A module's statements: chains, residuals and concats where its data flow is made of them;
        else each layer in order, tensors named where a later layer reads them (YOLO's routes to a
        shortcut's output, to a tensor that two concats read)."""
        done = len(self.instances)
        names = set(self.scope_names(node))
        try:
            return self.structured(node)
        except ImportFailure as failure:
            del self.instances[done:]  # the blocks called in the attempt are met again
            self._scope_names[node.path] = names
            self._name_hints.pop(node.path, None)
            try:
                return self.linear(node)
            except ImportFailure:
                raise failure from None

    def linear(self, node: ModuleNode) -> list:
        """The module's items in order, each from the tensor before it or `from NAME`; a merge by the
        names of its tensors (`concat(a, b)`); names bound where a later item reads a tensor out of
        that order."""
        src, out = self.external(node)
        items = node.children
        owner: dict[str, object] = {src: "in"}
        for k, c in enumerate(items):
            for name in ([c.name] if isinstance(c, Layer) else c.members):
                owner[name] = k
        where = f"module `{node.path}` ({node.kind})" if node.path else "the network"
        inputs: list[list] = []  # per item: the items whose tensors it takes, in order
        for c in items:
            if isinstance(c, Layer):
                inputs.append([owner[i] for i in c.inputs])
                continue
            ins = [owner[i] for layer in self._layers(c) for i in layer.inputs if i not in c.members]
            if len(set(ins)) != 1:
                raise ImportFailure(f"module `{c.path}` ({c.kind}) takes {len(set(ins))} tensors",
                                    "graphdsl blocks take one tensor in")
            inputs.append(ins[:1])
        ends = [owner[o] for o in self.outputs] if node.path == "" and len(self.outputs) > 1 else [owner[out]]
        # the tensors that need a name: read by a merge, by an item that does not follow them, an output
        needed = set(ends) if len(ends) > 1 else set()
        for k, ins in enumerate(inputs):
            if len(ins) > 1:
                needed.update(ins)
            elif ins[0] != (k - 1 if k else "in"):
                needed.add(ins[0])
        needed.discard("in")
        names: dict = {"in": "in"}
        result: list = []
        current = "in"
        for k, c in enumerate(items):
            ins = inputs[k]
            if len(ins) == 1 and ins[0] != current:
                result.append(TFrom(names[ins[0]]))
            if isinstance(c, Layer) and len(ins) > 1:
                if c.op not in ("add", "concat", "mul"):
                    raise ImportFailure(f"{where}: `{c.op}` of several tensors is not supported yet",
                                        "supported merges: add, concat and mul of tensors", where=c.where)
                stmt = TMerge(c.op, [names[i] for i in ins])
            else:
                stmt = self.item(node, k, c, [])
            if k in needed:
                # a merge is bound by the name the original gives it (Darknet's `add2`, Caffe's tops)
                label = self.label(node, c) if isinstance(stmt, TMerge) else getattr(stmt, "label", None)
                if label is not None and isinstance(stmt, TMerge):
                    result += [TBind(label, stmt), TFrom(label)]
                elif label is None and isinstance(stmt, (TLeaf, TMerge)):
                    label = self.fresh_name(node, stmt.layer.op if isinstance(stmt, TLeaf) else stmt.op)
                    result += [TBind(label, stmt), TFrom(label)]
                elif label is None:
                    raise ImportFailure(f"{where}: a tensor that a later layer reads comes from a module with "
                                        "no name", "not supported yet", where=self._where(c))
                else:
                    result.append(stmt)
                names[k] = label
            else:
                result.append(stmt)
            current = k
        if len(ends) > 1:
            training = self.graph.training_outputs
            result.append(TOutput([names[owner[o]] for o in self.outputs if o not in training],
                                  [names[owner[o]] for o in training]))
        elif current != ends[0]:
            result.append(TFrom(names[ends[0]]))
        return numbered_runs(result)

    def structured(self, node: ModuleNode) -> list:
        src, out = self.external(node)
        items = node.children
        owner: dict[str, int] = {}
        for k, c in enumerate(items):
            for name in ([c.name] if isinstance(c, Layer) else c.members):
                owner[name] = k
        preds: list[list] = []
        for c in items:
            layers = [c] if isinstance(c, Layer) else list(self._layers(c))
            ps = []
            for layer in layers:
                for i in layer.inputs:
                    if isinstance(c, ModuleNode) and i in c.members:
                        continue
                    p = "in" if i == src else owner.get(i)
                    if p is None:
                        raise ImportFailure(f"module `{node.path}` ({node.kind}) takes a second tensor from "
                                            "outside", "graphdsl blocks take one tensor in", where=layer.where)
                    if p not in ps:
                        ps.append(p)
            preds.append(ps)
        where = f"module `{node.path}` ({node.kind})" if node.path else "the network"
        idom = immediate_dominators(preds, where)
        emitted: list[int] = []

        # several outputs (the network only): the flow runs to the last; the others are side branches,
        # each written after the last tensor of the main flow every path to it passes, then `from` it
        ends = sorted({owner[o] for o in self.outputs}) if node.path == "" and len(self.outputs) > 1 else []
        main = set()
        todo = [owner[out]]
        while todo:
            k = todo.pop()
            if k != "in" and k not in main:
                main.add(k)
                todo.extend(preds[k])
        sides: dict = {}  # item of the main flow -> the outputs branching off it
        for e in ends:
            if e not in main:
                fork = e  # the nearest item of the main flow that dominates e
                while fork != "in" and fork not in main:
                    fork = idom[fork]
                sides.setdefault(fork, []).append(e)
        named: dict = {}  # item -> the name of its tensor, for those that need one

        def after(k, stmt) -> list:
            """Item k's statement, named if an output or side branches need its tensor, then the side
            branches off it."""
            out_stmts = [stmt] if k != "in" else []
            if k == "in":
                named[k] = "in"
            elif k in ends or k in sides:
                label = getattr(stmt, "label", None)
                if label is None and isinstance(stmt, (TLeaf, TMerge)):  # unnamed: `relu1 = relu`, from it
                    label = self.fresh_name(node, stmt.layer.op if isinstance(stmt, TLeaf) else stmt.op)
                    out_stmts = [TBind(label, stmt), TFrom(label)]
                elif not isinstance(label, str):
                    raise ImportFailure(f"{where}: an output or a branch to one that starts at a tensor with no "
                                        "name (a residual or a merge) is not supported yet",
                                        where=self._where(items[k]))
                named[k] = label
            for e in sides.get(k, []):
                side = chain(k, e)
                if len(side) == 1 and isinstance(side[0], (TLeaf, TCall, TGroup)) and side[0].label:
                    # one module: `aux1 = inception_aux(...)`, a side branch the flow does not follow
                    only = side[0]
                    out_stmts.append(TBind(only.label, dataclasses.replace(only, label=None)))
                else:
                    out_stmts += side + [TFrom(named.get(k, "in"))]
            return out_stmts

        def chain(start, end, depth: int = 0) -> list:
            """The statements from item `start` (exclusive) to item `end`, which `start` dominates: back from
            `end` along immediate dominators, then forwards, without recursion (a chain can be 100,000
            layers long); only the branches of a merge are chains of their own, `depth` merges deep."""
            if depth > MAX_MERGE_NESTING:  # a spec this nested does not check: written with tensor names
                raise ImportFailure(f"{where}: merges nested more than {MAX_MERGE_NESTING} deep")
            steps = []
            k = end
            while k != start:
                steps.append(k)
                k = idom[k]
            out: list = []
            for k in reversed(steps):
                if len(preds[k]) == 1:
                    out += after(k, self.item(node, k, items[k], emitted))
                else:
                    merge(out, k, depth)
            return out

        def merge(head: list, end, depth: int) -> None:
            """Item `end`, a merge of several tensors, appended to `head`, the statements up to its fork."""
            ps = preds[end]
            fork = idom[end]
            branches = [chain(fork, p, depth + 1) for p in ps]
            layer = items[end]
            if isinstance(layer, ModuleNode):
                raise ImportFailure(f"module `{layer.path}` ({layer.kind}) takes {len(ps)} tensors",
                                    "graphdsl blocks take one tensor in; merges must be add, concat or mul")
            if layer.op not in ("add", "concat", "mul"):
                raise ImportFailure(f"{where}: `{layer.op}` of several tensors is not supported yet",
                                    "supported merges: add, concat and mul of tensors", where=layer.where)
            emitted.append(end)
            if layer.op == "add" and len(ps) == 2:
                body, short = branches
                if not body:
                    body, short = short, []
                head += after(end, TResidual(body, short or None))
                return
            if layer.op == "concat" and all(len(b) <= 1 for b in branches):
                head += after(end, TBranches(layer.op, [b[0] if b else TGroup(None, []) for b in branches]))
                return
            if fork in named:
                fork = named[fork]
            elif fork != "in" and head and (isinstance(head[-1], TLeaf) and head[-1].label is None or
                                            isinstance(head[-1], TMerge)):
                # the fork is an unnamed layer (`F.relu(self.conv(x))`) or merge (two Inception modules
                # in a row, without modules around them): name it, continue from it
                op = head[-1].layer.op if isinstance(head[-1], TLeaf) else head[-1].op
                name = self.fresh_name(node, op, branches)
                head[-1:] = [TBind(name, head[-1]), TFrom(name)]
                fork = name
            elif fork != "in" and head and isinstance(head[-1], (TResidual, TBranches)):
                # a residual's or concat's output that a later merge reads: written with tensor names
                raise ImportFailure(f"{where}: a merge of the output of a `{items[fork].op}` written as "
                                    "sugar is not supported yet", where=self._where(items[fork]))
            merged = self.named_merge(node, layer, fork, items, branches, where)
            head += merged[:-1] + after(end, merged[-1])

        result = (after("in", None) if "in" in sides else []) + chain("in", owner[out])
        if ends:
            training = self.graph.training_outputs  # auxiliary heads
            result.append(TOutput([named[owner[o]] for o in self.outputs if o not in training],
                                  [named[owner[o]] for o in training]))
        if sorted(emitted) != list(range(len(items))):
            raise ImportFailure(f"{where}: its data flow is not a chain of residual and concatenated branches",
                                "the importer writes chains, residual adds and concats; other graphs are "
                                "not supported yet")
        return numbered_runs(result)

    def _where(self, c):
        return c.where if isinstance(c, Layer) else next(self._layers(c)).where

    def named_merge(self, node, layer, fork, items, branches, where) -> list:
        """A merge the sugar does not cover, with tensor names: the first branch from the current
        tensor, each other one `from` the fork, then `concat(a, b)` / `add(a, b)` / `mul(a, in)`."""
        def name_of(item):
            label = getattr(item, "label", None)
            if not isinstance(label, str):
                raise ImportFailure(f"{where}: a `{layer.op}` of a tensor that has no name (an unnamed layer "
                                    "or a residual) is not supported yet", where=layer.where)
            return label

        fork_ref = fork if isinstance(fork, str) else name_of(self.label_item(node, items[fork]))
        flow: list = []
        refs = []
        started = False
        taken = self.scope_names(node)  # names bound in this module so far: one per tensor
        taken |= {getattr(it, "label", None) for b in branches for it in b}
        split = self.split(branches, taken)
        if split is not None:  # `(x1, x2) = chunk(2)`: each branch from its part
            flow.append(split)
            branches = [[TFrom(split.names[split.starts.index(b[0].layer.args["start"])])] + b[1:]
                        if b and self.is_part(b[0]) else b for b in branches]
        for b in branches:
            if not b:
                refs.append(fork_ref)
                continue
            if len(b) == 1 and isinstance(b[0], TFrom):  # a part of the split itself
                refs.append(b[0].ref)
                continue
            if len(b) == 1 and isinstance(b[0], TLeaf) and b[0].label is None:
                # one unnamed layer (`F.max_pool2d(x, 3)`): a side branch named `NAME = layer`, taken
                # from the fork before the other branches move the flow
                name = self.fresh_name(node, b[0].layer.op)
                flow.insert(0, TBind(name, b[0]))
                refs.append(name)
                continue
            if started and not isinstance(b[0], TFrom):
                flow.append(TFrom(fork_ref))
            started = True
            if isinstance(b[-1], TBranches) and b[-1].op == "concat":
                # a concat inside a branch (Inception-v3's `torch.cat([b_2a(x), b_2b(x)], 1)`) has no
                # name to be merged by: its branches by tensor names, the concat bound to a name
                inner_fork = name_of(b[-2]) if len(b) >= 2 else fork_ref
                expanded, inner_refs = [], []
                for bi in b[-1].branches:
                    if isinstance(bi, TGroup) and bi.label is None and not bi.items:
                        inner_refs.append(inner_fork)
                        continue
                    if expanded:
                        expanded.append(TFrom(inner_fork))
                    expanded.append(bi)
                    inner_refs.append(name_of(bi))
                name = self.fresh_name(node, "concat")
                b = b[:-1] + expanded + [TBind(name, TMerge("concat", inner_refs))]
                flow.extend(b)
                refs.append(name)
                continue
            if isinstance(b[-1], TLeaf) and b[-1].label is None:  # `F.relu(self.expand(x))`: name it
                name = self.fresh_name(node, b[-1].layer.op)
                b = b[:-1] + [TBind(name, b[-1])]
            flow.extend(b)
            last = b[-1]  # a TFrom: the branch ends at a tensor named for an output
            refs.append(last.name if isinstance(last, TBind) else
                        last.ref if isinstance(last, TFrom) else name_of(last))
        return flow + [TMerge(layer.op, refs)]

    @staticmethod
    def is_part(it) -> bool:
        return isinstance(it, TLeaf) and it.label is None and it.layer.op == "channels"

    def split(self, branches, taken: set):
        """The parts of one tensor's channels that start branches (`x.chunk(2, dim=1)`), when together
        they are all its channels in order: a TSplit naming them x1, x2, ... (or None)."""
        parts = [b[0].layer for b in branches if b and self.is_part(b[0])]
        if len(parts) < 2 or len({p.inputs[0] for p in parts}) != 1:
            return None
        source = parts[0].inputs[0]
        shape = self.graph.input_shape if source == INPUT else self.graph.layer(source).shape
        bounds = sorted((p.args["start"], p.args["stop"]) for p in parts)
        if shape is None or bounds[0][0] != 0 or bounds[-1][1] != shape[0] or \
                any(a[1] != b[0] for a, b in zip(bounds, bounds[1:])):
            return None
        names = []
        for _ in bounds:
            n = len(names) + 1
            while f"x{n}" in taken:
                n += 1
            names.append(f"x{n}")
            taken.add(f"x{n}")
        sizes = [b - a for a, b in bounds]
        equal = len(set(sizes)) == 1
        return TSplit(names, [a for a, _ in bounds], "chunk" if equal else "split",
                      [len(sizes)] if equal else sizes)

    def scope_names(self, node: ModuleNode) -> set:
        """The names bound by `NAME = ...` in a module's statements so far (a set kept per module, so
        that the merges of one module never bind one name twice), with its items' labels."""
        if node.path not in self._scope_names:
            self._scope_names[node.path] = {self.label(node, c) for c in node.children} | set(NAME_RESERVED)
        return self._scope_names[node.path]

    def fresh_name(self, node: ModuleNode, op: str, branches=()) -> str:
        taken = self.scope_names(node)
        taken |= {getattr(it, "label", None) for b in branches for it in b}
        hints = self._name_hints.setdefault(node.path, {})
        n = hints.get(op, 1)
        while f"{op}{n}" in taken:
            n += 1
        hints[op] = n + 1
        taken.add(f"{op}{n}")
        return f"{op}{n}"

    def label_item(self, node, c):
        return TLeaf(self.label(node, c), c) if isinstance(c, Layer) else TGroup(self.label(node, c), [])

    def item(self, node: ModuleNode, k: int, c, emitted: list) -> object:
        emitted.append(k)
        label = self.label(node, c)
        if isinstance(c, Layer):
            return TLeaf(label, c)
        if c.kind in CONTAINER_KINDS:
            return TGroup(label, self.statements(c))
        return TCall(label, self.instance(c))

    def label(self, node: ModuleNode, c) -> str | None:
        path = c.path if isinstance(c, ModuleNode) else c.path
        if path is None:
            return None
        if isinstance(c, Layer) and self.path_uses[path] > 1:
            if c.holds_weights:
                raise ImportFailure(f"module `{path}` holds weights and runs more than once",
                                    "shared weights are not supported", where=c.where)
            return None
        name = path[len(node.path) + 1:] if node.path else path
        if node.sequential or node.kind in CONTAINER_KINDS:
            return None if name.isdigit() else name
        if name.isdigit():
            raise ImportFailure(f"module `{path}` has a number for a name inside `{node.kind}`",
                                "the importer numbers layers only inside nn.Sequential",
                                where=getattr(c, "where", None))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name) or name in NAME_RESERVED:
            raise ImportFailure(f"module name `{name}` of `{path}` is no graphdsl label",
                                "graphdsl labels are names that are no reserved word", where=getattr(c, "where", None))
        return name

    def instance(self, node: ModuleNode) -> Instance:
        src, _ = self.external(node)
        shape = self.graph.input_shape if src == INPUT else self.graph.layer(src).shape
        inst = Instance(node, self.statements(node), shape[0] if shape else None)
        self.instances.append(inst)
        return inst
