"""Static lower bounds of the work a piece of spec will do: what `Budget.afford` weighs before a loop, a
repetition or a block call runs.

Each bound is a pair (steps, layers). Steps count what the elaborator charges as it runs (a step per
statement and item run, per loop pass, per list element made); layers count graph nodes. A bound must
never exceed what running the code would charge, or a valid spec would be refused: so anything not
known yet (a count read from a shape, a branch not taken, a loop over a list a `let` in the loop body
changes) counts as zero, and names assigned inside a loop body are forgotten before weighing it.
"""

from __future__ import annotations

from . import ast
from .evaluate import expr_cost, static_length, static_value, target_names

Cost = tuple[int, int]  # (steps, layers)
NONE: Cost = (0, 0)


def _add(a: Cost, b: Cost) -> Cost:
    return a[0] + b[0], a[1] + b[1]


def _times(n: int, c: Cost) -> Cost:
    return n * c[0], n * c[1]


def assigned_names(stmts) -> set[str]:
    """Every value name a body binds (`let`, `for` targets), through `if`, `for` and groups, not blocks."""
    names: set[str] = set()
    for s in stmts:
        match s:
            case ast.Let(name=target) | ast.For(var=target):
                names.update(target_names(target))
        for inner in _bodies(s):
            names |= assigned_names(inner)
    return names


def _bodies(s) -> tuple:
    match s:
        case ast.If(then=then, orelse=orelse):
            return then, orelse
        case ast.For(body=body):
            return (body,)
        case ast.Labeled(item=item) | ast.Bind(item=item) | ast.Repeat(item=item):
            return _bodies(item)
        case ast.Group(body=body) | ast.Branches(body=body):
            return (body,)
        case ast.Residual(body=body, shortcut=shortcut):
            return (body, shortcut or ())
    return ()


class Workload:
    """Weighs statements against the blocks of one program (block bounds are remembered by name)."""

    def __init__(self, blocks: dict[str, ast.Definition]):
        self.blocks = blocks
        self._block_costs: dict[str, Cost] = {}
        self._weighing: set[str] = set()

    def block(self, name: str) -> Cost:
        """Running a block's body, its parameters unknown."""
        known = self._block_costs.get(name)
        if known is not None:
            return known
        if name in self._weighing or name not in self.blocks:
            return NONE  # recursion is an error of its own; reported when it runs
        self._weighing.add(name)
        try:
            cost = self.body(self.blocks[name].body, None)
        finally:
            self._weighing.discard(name)
        self._block_costs[name] = cost
        return cost

    def loop(self, var, body, values: dict | None) -> Cost:
        """One pass of a `for` body: a step for the pass, then the body, with the loop's names unknown."""
        inner = None if values is None else {
            k: v for k, v in values.items() if k not in set(target_names(var)) | assigned_names(body)}
        return _add((1, 0), self.body(body, inner))

    def body(self, stmts, values: dict | None) -> Cost:
        env = None if values is None else dict(values)
        total = NONE
        for s in stmts:
            total = _add(total, self.stmt(s, env))
            if env is not None:
                for name in assigned_names((s,)):
                    env.pop(name, None)
        return total

    def stmt(self, s, values: dict | None) -> Cost:
        """A statement: a step, and what it runs."""
        match s:
            case ast.Let(value=value):
                return 1 + expr_cost(value, values), 0
            case ast.If(condition=cond, then=then, orelse=orelse):
                a, b = self.body(then, values), self.body(orelse, values)
                return 1 + expr_cost(cond, values) + min(a[0], b[0]), min(a[1], b[1])
            case ast.For(var=var, iterable=iterable, body=body):
                n = static_length(iterable, values)
                passes = _times(n, self.loop(var, body, values)) if n else NONE
                return _add((1 + expr_cost(iterable, values), 0), passes)
            case ast.Labeled(item=item) | ast.Bind(item=item):
                return _add((1, 0), self.item(item, values))
            case ast.Call() | ast.Group() | ast.Repeat() | ast.Branches() | ast.Residual():
                return _add((1, 0), self.item(s, values))
            case ast.Split(names=names):
                return 1, len(names)
        return 1, 0

    def item(self, item, values: dict | None) -> Cost:
        """An item: a step, and its layers."""
        match item:
            case ast.Call(name=name):
                if name in self.blocks:
                    return _add((1, 0), self.block(name))
                return 1, 1
            case ast.Group(body=body):
                return _add((1, 0), self.body(body, values))
            case ast.Repeat(item=inner, count=count):
                n = static_value(count, values)
                n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 0
                return _add((1, 0), _times(n, self.item(inner, values)))
            case ast.Branches(body=body):
                return _add((1, 1), self.body(body, values))
            case ast.Residual(body=body):
                return _add((1, 0), self.body(body, values))  # the add itself only when the skip is taken
        return 1, 0
