"""Lifting: a LayerGraph into the spec a person would write.

1. The layers are put into the tree of modules that enclose them (`layer1` > `layer1.0` > conv1).
2. Each module's layers and sub-modules are written as statements (structure.py): a chain; a two-way
   `add` as `residual { body }` (with `shortcut { path }` when both ways compute something); a `concat`
   of sub-modules as `concat { ... }`, other merges by tensor names. A plain nn.Sequential becomes a
   group `[ ... ]` (numbered like it), every other module a call of a block.
3. The modules of one class whose statements agree up to constants (and up to the parts present in
   some of them only: a `downsample` shortcut, the skip of an inverted residual) become one block. A
   constant that differs between them becomes a parameter (or an expression of one: `p * 4`,
   `p // 2`; or of the channels flowing in, `let c = in.channels` and `c * 4`), with the most common
   value as its default; a part present in some only becomes
   `shortcut if COND` / `residual if COND`, COND found among comparisons of the parameters and
   `in.channels` (a boolean parameter where none fits).
4. Identical consecutive block calls of a numbered container become `block(...) * n`.

The result is a graphdsl.ast.Module, printed by graphdsl/printer.py.
"""

from __future__ import annotations

import itertools
import re
import textwrap
from collections import Counter
from dataclasses import dataclass, field

from .. import ast
from ..diagnostics import Span
from ..ops import REGISTRY
from ..ops.base import REQUIRED
from ..syntax import NAME_RESERVED
from .ir import INPUT, ImportFailure, Layer, LayerGraph, unique_name
from .structure import (
    Instance,
    Lifter,
    TBind,
    TBranches,
    TCall,
    TFrom,
    TGroup,
    TLeaf,
    TLoop,
    TMerge,
    TOutput,
    TResidual,
    TSplit,
    module_tree,
)

S = Span("<import>", 1, 1, 1, 1)
MISSING = object()
IN_CHANNELS = "c"  # `let c = in.channels` in a block whose widths follow its input's (no parameter is named so)


# ---- flattening a module's statements into a structure key and constants ---------------------------------


def _norm(v):
    if isinstance(v, (tuple, list)):
        v = tuple(_norm(x) for x in v)
        return v[0] if len(v) == 2 and v[0] == v[1] else v
    return v


class Flat:
    """One traversal of a module's statements: the key (its structure without residual wrappers and
    shortcuts), constants by position, residuals by the positions they span, and shortcut keys."""

    def __init__(self, values: bool):
        self.with_values = values
        self.key: list = []
        self.values: dict = {}
        self.residuals: dict = {}
        self.k = 0

    def walk(self, items, sc=None):
        for it in items:
            self.one(it, sc)

    def one(self, it, sc):
        if isinstance(it, TResidual):
            start = self.k
            self.walk(it.body, sc)
            rid = (sc, start, self.k)
            if it.shortcut is not None:
                inner = Flat(self.with_values)
                inner.walk(it.shortcut, sc=rid)
                self.residuals[rid] = tuple(inner.key) + tuple(sorted(map(str, inner.residuals)))
                self.values.update(inner.values)
            else:
                self.residuals[rid] = None
            return
        if isinstance(it, TBind):
            self.key.append(("bind", it.name))
            self.one(it.item, sc)
            return
        if isinstance(it, (TFrom, TMerge, TOutput)):
            self.key.append((type(it).__name__, getattr(it, "op", None), str(getattr(it, "ref", None)),
                             tuple(getattr(it, "refs", ()))))
            return
        if isinstance(it, TSplit):
            self.key.append(("split", tuple(it.names), it.op, tuple(it.args)))
            return
        pos = (sc, self.k)
        self.k += 1
        if isinstance(it, TLoop):
            self.key.append(("loop", it.label, it.prefix, it.start))
            if self.with_values:
                self.values[pos + ("count",)] = it.count
            self.one(it.body, sc)
            self.key.append(("end",))
            return
        if isinstance(it, TLeaf):
            self.key.append(("leaf", it.label, it.layer.op, tuple(it.layer.args)))
            if self.with_values:
                for name, v in it.layer.args.items():
                    self.values[pos + (name,)] = _norm(v)
        elif isinstance(it, TCall):
            self.key.append(("call", it.label, id(it.inst.group)))
            if self.with_values:
                for name, v in it.inst.args.items():
                    self.values[pos + (name,)] = v
        elif isinstance(it, TGroup):
            self.key.append(("group", it.label))
            self.walk(it.items, sc)
            self.key.append(("end",))
        elif isinstance(it, TBranches):
            self.key.append(("branches", it.op, len(it.branches)))
            self.walk(it.branches, sc)
            self.key.append(("end",))


# ---- blocks with parameters ------------------------------------------------------------------------------------


@dataclass
class Param:
    name: str
    values: list  # per member
    default: object = MISSING
    arg: str = ""  # the argument it was first found in
    pos: tuple = ()  # and where


@dataclass
class BlockGroup:
    name: str
    kind: str
    members: list = field(default_factory=list)
    exprs: dict = field(default_factory=dict)  # position -> ast expr
    params: list = field(default_factory=list)
    conditions: dict = field(default_factory=dict)  # ("residual"|"shortcut", rid) -> ast expr | None
    representative: Instance | None = None
    inferred: bool = False


def snake(name: str) -> str:
    name = name.lstrip("_") or name
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    s = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", s).lower()
    s = re.sub(r"[^a-z0-9_]", "_", s)
    return s if re.match(r"[a-z_]", s) else f"m_{s}"


class Blocks:
    def __init__(self, lifter: Lifter, network_name: str):
        self.groups: dict[tuple, BlockGroup] = {}
        self.names: set[str] = set(REGISTRY) | set(NAME_RESERVED) | {network_name}
        for inst in lifter.instances:  # children first
            flat = Flat(values=False)
            flat.walk(inst.items)
            inst.key = (inst.node.kind, tuple(flat.key))
            group = self.groups.get(inst.key)
            if group is None:
                group = self.groups[inst.key] = BlockGroup("", inst.node.kind)
            group.members.append(inst)
            inst.group = group
        for group in sorted(self.groups.values(), key=lambda g: -len(g.members)):  # stable: first seen first
            group.name = self.fresh(snake(group.kind))

    def fresh(self, base: str) -> str:
        return unique_name(base, self.names)

    def infer(self, group: BlockGroup) -> None:
        if group.inferred:
            return
        group.inferred = True
        for inst in group.members:
            for child in _calls(inst.items):
                self.infer(child.group)
        for inst in group.members:
            flat = Flat(values=True)
            flat.walk(inst.items)
            inst.values, inst.residuals = flat.values, flat.residuals
        members = group.members
        group.representative = max(members, key=lambda m: (len(m.residuals), sum(v is not None for v in
                                                                                  m.residuals.values())))
        positions = list(dict.fromkeys(p for m in [group.representative, *members] for p in m.values))
        params: list[Param] = []
        exprs = {}
        for pos in positions:
            vec = [m.values.get(pos, MISSING) for m in members]
            present = [v for v in vec if v is not MISSING]
            uniform = all(v == present[0] and type(v) is type(present[0]) for v in present)
            if uniform and len(present) < len(vec):  # in some modules only: the parameter it agrees with
                related = _relate(vec, params)
                if related is not None:
                    exprs[pos] = related
                    continue
            if uniform:
                exprs[pos] = const(present[0])
                continue
            channels = _of_channels(vec, [m.in_channels for m in members])
            if channels is not None:  # the channels flowing in (a depthwise conv's groups), or a multiple
                exprs[pos] = channels
                continue
            exprs[pos] = _relate(vec, params) or self._new_param(pos, vec, params, group)
        for p in params:
            counts = Counter(repr(v) for v in p.values if v is not MISSING)
            common, n = counts.most_common(1)[0]
            # a default where most modules agree; never for a width (`out`): every call says its own
            if n >= 2 and 2 * n > len(p.values) and p.arg != "out" or MISSING in p.values:
                p.default = next(v for v in p.values if repr(v) == common)
                p.values = [p.default if v is MISSING else v for v in p.values]
        self._name_params(group, params, exprs)
        group.params = [p for p in params if p.default is MISSING] + [p for p in params if p.default is not MISSING]
        group.exprs = exprs
        for inst_i, inst in enumerate(members):
            inst.args = {p.name: p.values[inst_i] for p in group.params}
        self._conditions(group)

    def _new_param(self, pos, vec, params, group) -> ast.Expr:
        name = f"p_{len(params)}"  # named by _name_params once all are known
        params.append(Param(name, vec, arg=pos[-1], pos=pos))
        return ast.Var(name, S)

    def _name_params(self, group: BlockGroup, params: list, exprs: dict) -> None:
        """Each parameter after the argument it sets (`out`, `stride`); where several set the same
        argument, after the layer they set it in too (`branch2_out`, `conv1_out`)."""
        labels = _position_labels(group.representative.items)
        for p in params:  # a parameter that sets a width anywhere is named after it: `out`
            widths = [pos for pos, e in exprs.items() if pos[-1] == "out" and e == ast.Var(p.name, S)]
            if widths and p.arg != "out":
                p.arg, p.pos = "out", widths[0]
        by_arg = Counter(p.arg for p in params)
        taken: set[str] = {IN_CHANNELS}
        rename = {}
        for p in params:
            candidates = [p.arg] if by_arg[p.arg] == 1 else []
            label = labels.get(p.pos[:2])
            if label:
                candidates.append(f"{label}_{p.arg}")
            candidates.append(p.arg)
            name = next((c for c in candidates if c not in taken), None)
            n = 1
            while name is None or name in taken:
                n += 1
                name = f"{p.arg}{n}"
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in NAME_RESERVED:
                name = f"p{len(taken)}"
            taken.add(name)
            rename[p.name] = name
            p.name = name
        for pos, e in exprs.items():
            exprs[pos] = _renamed(e, rename)

    def _conditions(self, group: BlockGroup) -> None:
        members = group.members
        for rid, short in group.representative.residuals.items():
            present = [rid in m.residuals for m in members]
            if not all(present):
                group.conditions[("residual", rid)] = self._condition(group, present, None, "skip")
            if short is not None:
                subset = [i for i, m in enumerate(members) if rid in m.residuals]
                has = [members[i].residuals[rid] is not None for i in subset]
                if not all(has):
                    for i in subset:
                        other = members[i].residuals[rid]
                        if other is not None and other != short:
                            raise ImportFailure(f"the modules `{members[i].node.path}` and "
                                                f"`{group.representative.node.path}` ({group.kind}) have "
                                                "different shortcuts", "not supported yet")
                    group.conditions[("shortcut", rid)] = self._condition(group, has, subset, "shortcut")

    def _condition(self, group: BlockGroup, target: list, subset, name: str) -> ast.Expr:
        members = group.members if subset is None else [group.members[i] for i in subset]
        atoms = []
        channel_exprs = []
        for pos, e in group.exprs.items():
            if pos[-1] == "out" and not isinstance(e, ast.Const) and not _mentions(e, IN_CHANNELS) and \
                    e not in channel_exprs:
                channel_exprs.append(e)
        for pos, e in group.exprs.items():  # then the fixed widths: `shortcut if in.channels != 64`
            if pos[-1] == "out" and isinstance(e, ast.Const) and type(e.value) is int and e not in channel_exprs:
                channel_exprs.append(e)
        for e in channel_exprs:
            vals = [_eval(e, m.args) for m in members]
            chans = [m.in_channels for m in members]
            atoms.append((ast.BinOp("!=", ast.InAttr("channels", S), e, S), [c != v for c, v in zip(chans, vals)]))
            atoms.append((ast.BinOp("==", ast.InAttr("channels", S), e, S), [c == v for c, v in zip(chans, vals)]))
        for p in group.params:
            vals = [m.args[p.name] for m in members]
            for c in dict.fromkeys(repr(v) for v in vals):
                v0 = next(v for v in vals if repr(v) == c)
                if isinstance(v0, bool):
                    atoms.append((ast.Var(p.name, S) if v0 else ast.Not(ast.Var(p.name, S), S),
                                  [v == v0 for v in vals]))
                    continue
                if not isinstance(v0, (int, float)):
                    continue
                atoms.append((ast.BinOp("!=", ast.Var(p.name, S), const(v0), S), [v != v0 for v in vals]))
                atoms.append((ast.BinOp("==", ast.Var(p.name, S), const(v0), S), [v == v0 for v in vals]))
        for expr, got in atoms:
            if got == target:
                return expr
        for (e1, g1), (e2, g2) in itertools.combinations(atoms, 2):
            if [a or b for a, b in zip(g1, g2)] == target:
                return ast.BinOp("or", e1, e2, S)
            if [a and b for a, b in zip(g1, g2)] == target:
                return ast.BinOp("and", e1, e2, S)
        # no comparison fits: a boolean parameter, true where the part is there
        full = [True] * len(group.members)
        if subset is not None:
            for i, t in zip(subset, target):
                full[i] = t
        else:
            full = list(target)
        pname = self.fresh_param(group, f"has_{name}")  # `shortcut` is a word of the language
        default = Counter(full).most_common(1)[0][0]
        group.params.append(Param(pname, full, default))
        for m, v in zip(group.members, full):
            m.args[pname] = v
        return ast.Var(pname, S)

    @staticmethod
    def fresh_param(group, base):
        names = {p.name for p in group.params}
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}{n}"
        return name


def _calls(items):
    for it in items:
        if isinstance(it, TCall):
            yield it.inst
        elif isinstance(it, TGroup):
            yield from _calls(it.items)
        elif isinstance(it, TResidual):
            yield from _calls(it.body)
            yield from _calls(it.shortcut or [])
        elif isinstance(it, TBranches):
            yield from _calls(it.branches)


def _position_labels(items) -> dict:
    """Position -> a name for the layer or call there: its label, else the label of the group around it
    and its place in it (`branch2_1`)."""
    found: dict = {}
    stack: list = []

    class Finder(Flat):
        def one(self, it, sc):
            if isinstance(it, (TLeaf, TCall, TGroup)):
                label = it.label
                if label is None and stack and stack[-1][0]:
                    label = f"{stack[-1][0]}_{stack[-1][1]}"
                if stack:
                    stack[-1][1] += 1
                found[(sc, self.k)] = label if label and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label) else None
            if isinstance(it, TGroup):
                stack.append([it.label, 0])
                super().one(it, sc)
                stack.pop()
                return
            super().one(it, sc)

    Finder(values=False).walk(items)
    return found


def _renamed(e, rename: dict):
    if isinstance(e, ast.Var):
        return ast.Var(rename.get(e.name, e.name), S)
    if isinstance(e, ast.BinOp):
        return ast.BinOp(e.op, _renamed(e.left, rename), _renamed(e.right, rename), S)
    return e


def _relate(vec, params) -> ast.Expr | None:
    """An expression of an existing parameter that gives `vec` wherever both are known (arithmetic only
    where `vec` varies: `stride // 3` is no reason for a constant 0)."""
    varies = len({repr(v) for v in vec if v is not MISSING}) > 1
    for p in params:
        pairs = [(v, q) for v, q in zip(vec, p.values) if v is not MISSING and q is not MISSING]
        if not pairs:
            continue
        if all(v == q and type(v) is type(q) for v, q in pairs):
            return ast.Var(p.name, S)
        if not varies or not all(type(v) is int and type(q) is int for v, q in pairs):
            continue
        for k in range(2, 17):
            if all(v == q * k for v, q in pairs):
                return ast.BinOp("*", ast.Var(p.name, S), const(k), S)
            if all(v == q // k for v, q in pairs):
                return ast.BinOp("//", ast.Var(p.name, S), const(k), S)
    return None


def _of_channels(vec, channels) -> ast.Expr | None:
    """`c`, `c * k` or `c // k` (c the block's `in.channels`) where that gives the varying `vec`."""
    if MISSING in vec or None in channels or len(set(vec)) < 2 or not all(type(v) is int for v in vec):
        return None
    c = ast.Var(IN_CHANNELS, S)
    if vec == channels:
        return c
    for k in range(2, 17):
        if vec == [x * k for x in channels]:
            return ast.BinOp("*", c, const(k), S)
        if vec == [x // k for x in channels]:
            return ast.BinOp("//", c, const(k), S)
    return None


def _mentions(e, name: str) -> bool:
    if isinstance(e, ast.Var):
        return e.name == name
    return isinstance(e, ast.BinOp) and (_mentions(e.left, name) or _mentions(e.right, name))


def _eval(e, args):
    if isinstance(e, ast.Const):
        return e.value
    if isinstance(e, ast.Var):
        return args[e.name]
    if isinstance(e, ast.BinOp):
        a, b = _eval(e.left, args), _eval(e.right, args)
        return a * b if e.op == "*" else a // b
    raise ValueError(e)


def const(v) -> ast.Expr:
    if isinstance(v, tuple):
        return ast.Seq(tuple(const(x) for x in v), S)
    return ast.Const(v, S)


# ---- the syntax tree ---------------------------------------------------------------------------------------


class Emitter:
    """Statements of a module (a block's representative, or the network) as AST, constants replaced by
    the block's expressions."""

    def __init__(self, group: BlockGroup | None):
        self.group = group
        self.k = 0
        self.numbered: dict = {}  # the numbered label of the loop being written -> its template

    def body(self, items, sc=None) -> list:
        out = []
        for it in items:
            out.extend(self.one(it, sc))
        return _repeat(out)

    def labeled(self, label, item):
        return _labeled(label, item, self.numbered)

    def expr(self, pos, value):
        if self.group is None:
            return const(_norm(value))
        return self.group.exprs[pos]

    def one(self, it, sc) -> list:
        if isinstance(it, TResidual):
            start = self.k
            body = self.body(it.body, sc)
            rid = (sc, start, self.k)
            when = cond = None
            if self.group is not None:
                when = self.group.conditions.get(("residual", rid))
                cond = self.group.conditions.get(("shortcut", rid))
            short = None
            if it.shortcut is not None:
                outer, self.k = self.k, 0
                short = tuple(self.body(it.shortcut, rid))
                self.k = outer
            return [ast.Residual(tuple(body), short, cond, S, S if short is not None else None, when)]
        if isinstance(it, TFrom):
            return [ast.From(it.ref, S)]
        if isinstance(it, TBind):
            (call,) = self.one(it.item, sc)
            return [ast.Bind(it.name, call, S, S)]
        if isinstance(it, TOutput):
            return [ast.Output(tuple((r, S) for r in it.refs), S, tuple((r, S) for r in it.training))]
        if isinstance(it, TSplit):
            call = ast.Call(it.op, tuple(ast.Arg(None, const(a), S) for a in it.args), S, S)
            return [ast.Split(tuple((n, S) for n in it.names), call, S)]
        if isinstance(it, TMerge):
            refs = [ast.InTensor(S) if r == "in" else ast.Var(r, S) for r in it.refs]
            return [ast.Call(it.op, tuple(ast.Arg(None, r, S) for r in refs), S, S)]
        pos = (sc, self.k)
        self.k += 1
        if isinstance(it, TLoop):
            count = self.expr(pos + ("count",), it.count)
            index = ast.Var("i", S) if it.start == 0 else ast.BinOp("+", ast.Var("i", S), const(it.start), S)
            self.numbered[it.label] = ast.Template((it.prefix, index), S)
            body = self.one(it.body, sc)
            del self.numbered[it.label]
            return [ast.For("i", ast.Func("range", (count,), S), tuple(body), S)]
        if isinstance(it, TLeaf):
            op = REGISTRY[it.layer.op]
            given = {name: self.expr(pos + (name,), v) for name, v in it.layer.args.items()}
            return [self.labeled(it.label, ast.Call(op.name, tuple(_op_args(op, given)), S, S))]
        if isinstance(it, TCall):
            group = it.inst.group
            given = {}
            for p in group.params:
                given[p.name] = self.expr(pos + (p.name,), it.inst.args[p.name])
            args = []
            for p in group.params:
                e = given[p.name]
                if p.default is MISSING:
                    args.append(ast.Arg(None, e, S))
                elif not (isinstance(e, ast.Const) and e == const(p.default)):
                    args.append(ast.Arg(p.name, e, S))
            return [self.labeled(it.label, ast.Call(group.name, tuple(args), S, S))]
        if isinstance(it, TGroup):
            return [self.labeled(it.label, ast.Group(tuple(self.body(it.items, sc)), S))]
        if isinstance(it, TBranches):
            branches = []
            for b in it.branches:
                (stmt,) = self.one(b, sc) if not isinstance(b, list) else self.body(b, sc)
                branches.append(stmt)
            return [ast.Branches(it.op, tuple(branches), S, S)]
        raise TypeError(it)


def _labeled(label, item, numbered=None):
    if numbered and label in numbered:
        return ast.Labeled(numbered[label], item, S, S)
    if label is None:
        return item
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label):  # `block1-0`: a computed label says it
        return ast.Labeled(ast.Template((label,), S), item, S, S)
    return ast.Labeled(label, item, S, S)


def _repeat(stmts: list) -> list:
    """Runs of identical unlabelled block calls as `call * n`."""
    out = []
    for stmt in stmts:
        prev = out[-1] if out else None
        if isinstance(stmt, ast.Call) and stmt.name not in REGISTRY:
            if isinstance(prev, ast.Repeat) and prev.item == stmt:
                out[-1] = ast.Repeat(stmt, const(prev.count.value + 1), S)
                continue
            if prev == stmt:
                out[-1] = ast.Repeat(stmt, const(2), S)
                continue
        out.append(stmt)
    return out


def _same(a, b) -> bool:
    try:
        return a == b or (a is not None and b is not None and _norm(a) == _norm(b))
    except TypeError:
        return False


def _op_args(op, given: dict) -> list:
    """An operator's arguments: the required ones (and a pooling kernel) by position, the others by keyword
    where they differ from the default (pooling: a stride equal to the kernel is the default)."""
    out = []
    positional = True
    for a in op.args:
        if a.name not in given:
            positional = False
            continue
        e = given[a.name]
        if isinstance(e, ast.Const) or isinstance(e, ast.Seq) and all(isinstance(x, ast.Const) for x in e.items):
            value = _value(e)
            default = a.default
            if a.name == "stride" and default is None:
                default = _value(given["kernel"]) if isinstance(given.get("kernel"), (ast.Const, ast.Seq)) else None
            if default is not REQUIRED and _same_arg(a, value, default):
                positional = False
                continue
            if value is None:
                positional = False
                continue
        if positional and (a.required or a is op.args[0] and a.name in ("kernel", "p")):
            out.append(ast.Arg(None, e, S))
        else:
            positional = False
            out.append(ast.Arg(a.name, e, S))
    return out


def _value(e):
    return tuple(_value(x) for x in e.items) if isinstance(e, ast.Seq) else e.value


def _same_arg(a, value, default) -> bool:
    if default is None or value is None:
        return value is default
    try:
        return a.kind(value) == a.kind(default) and isinstance(value, bool) == isinstance(default, bool)
    except Exception:  # noqa: BLE001 - an argument kind that refuses the value: compare as they are
        return _same(value, default)


# ---- the whole spec ------------------------------------------------------------------------------------------


def running_concats(graph: LayerGraph) -> LayerGraph:
    """DenseNet's `torch.cat(features, 1)` of a growing list, as one concat per step: a concat of
    [a1 .. ak] where a concat of [a1 .. ak-1] exists becomes concat(that one, ak); a concat of one tensor
    is that tensor. A concat whose inputs all come from outside its module moves out of it (DenseNet
    computes it inside the next layer's module, `_DenseLayer.bn_function`)."""
    import dataclasses

    by_flat: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    producers = {layer.name: layer for layer in graph.layers}
    layers = []
    changed = False
    for layer in graph.layers:
        inputs = tuple(alias.get(i, i) for i in layer.inputs)
        if layer.op != "concat":
            layers.append(layer if inputs == layer.inputs else dataclasses.replace(layer, inputs=inputs))
            continue
        if len(inputs) == 1:
            alias[layer.name] = inputs[0]
            changed = True
            continue
        flat = inputs
        if len(inputs) > 2 and inputs[:-1] in by_flat:
            inputs = (by_flat[inputs[:-1]], inputs[-1])
        by_flat[flat] = layer.name
        scopes = layer.scopes
        while scopes and not any(_inside(producers.get(i), scopes[-1].path) for i in inputs):
            scopes = scopes[:-1]
        if inputs != layer.inputs or scopes != layer.scopes:
            changed = True
            layer = dataclasses.replace(layer, inputs=inputs, scopes=scopes)
        producers[layer.name] = layer
        layers.append(layer)
    if not changed:
        return graph
    return dataclasses.replace(graph, layers=layers, output=alias.get(graph.output, graph.output),
                               outputs=tuple(alias.get(o, o) for o in graph.outputs),
                               training_outputs=tuple(alias.get(o, o) for o in graph.training_outputs))


def copies_through_identity(graph: LayerGraph) -> LayerGraph:
    """A merge that reads one tensor more than once (ONNX's `Add(c, c)`, Caffe's Eltwise with one bottom
    twice) reads each later copy through an `identity` layer of its own, just before it: graphdsl merges
    no tensor with itself (`add(c, c)` does not check), and an identity computes nothing, holds no
    weights and keeps the figures."""
    import dataclasses

    if not any(len(set(layer.inputs)) < len(layer.inputs) for layer in graph.layers):
        return graph
    taken = {layer.name for layer in graph.layers} | {INPUT}
    shapes = {layer.name: layer.shape for layer in graph.layers} | {INPUT: graph.input_shape}
    layers = []
    for layer in graph.layers:
        inputs = []
        for i in layer.inputs:
            if i in inputs:
                copy = Layer(unique_name(f"{layer.name}_copy", taken), "identity", {}, (i,), None,
                             layer.scopes, shapes[i], layer.where)
                layers.append(copy)
                i = copy.name
            inputs.append(i)
        layers.append(layer if tuple(inputs) == layer.inputs else dataclasses.replace(layer, inputs=tuple(inputs)))
    return dataclasses.replace(graph, layers=layers)


def _inside(layer, path: str) -> bool:
    """Whether `layer` is computed inside the module at `path`."""
    if layer is None:
        return False
    return any(s.path == path for s in layer.scopes) or (layer.path or "").startswith(path + ".")


def lift(graph: LayerGraph, name: str | None = None) -> ast.Module:
    """The spec of `graph`: blocks for its repeated modules, a network for the rest."""
    name = name or graph.name
    # set by regions.infer_scopes; not a field of LayerGraph yet (ir.py), hence getattr
    inferred = graph.inferred_scopes
    graph = copies_through_identity(running_concats(graph))
    lifter = Lifter(graph)
    root = module_tree(graph)
    items = lifter.statements(root)
    blocks = Blocks(lifter, name)
    for group in blocks.groups.values():
        blocks.infer(group)
    definitions = []
    for group in blocks.groups.values():
        params = tuple(ast.Param(p.name, None if p.default is MISSING else const(p.default), S) for p in group.params)
        body = Emitter(group).body(group.representative.items)
        if any(_mentions(e, IN_CHANNELS) for e in group.exprs.values()):
            body = [ast.Let(IN_CHANNELS, ast.InAttr("channels", S), S), *body]
        doc = None
        if len(group.members) > 1:
            # modules that regions.py invented for a flat graph are no modules of the original
            whose = "blocks" if inferred else "modules of the original"
            doc = textwrap.fill(f"`{group.kind}`, {len(group.members)} {whose}: " +
                                ", ".join(m.node.path for m in group.members[:3]) +
                                (", ..." if len(group.members) > 3 else ""), 90)
        body = [ast.Doc(doc, S), *body] if doc else body
        definitions.append(ast.Definition("block", group.name, params, tuple(body), doc, S, S))
    dims = tuple(ast.Const(d, S) for d in graph.input_shape)
    body = [ast.Input(dims, S), *Emitter(None).body(items)]
    doc = graph.doc or (textwrap.fill(f"Imported from `{graph.source}` by `graphdsl import`.", 90)
                        if graph.source else None)
    body = [ast.Doc(doc, S), *body] if doc else body
    definitions.append(ast.Definition("network", name, (), tuple(body), doc, S, S))
    return ast.Module("<import>", None, (), tuple(definitions))
