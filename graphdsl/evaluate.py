"""Expressions: a closed arithmetic over ints, floats, booleans, strings and lists. Nothing else runs."""

from __future__ import annotations

import math
from collections.abc import Callable

from . import ast
from .budget import MAX_ITEMS, Budget, ValueTooLarge, current, spending
from .diagnostics import did_you_mean, error
from .values import show, type_name

MAX_SEQUENCE = MAX_ITEMS


class Poisoned(Exception):
    """The value depends on a shape or a name that an earlier error left unknown: skip silently."""


POISON = object()  # the value of a name whose definition failed (already reported)
NO_INPUT = object()  # what `in_shape()` returns where no tensor flows yet (network parameters, `input`)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _range(span, *args):
    if not 1 <= len(args) <= 3 or not all(_is_int(a) for a in args):
        raise error("`range` takes one to three integers", span, help="e.g. `range(4)` or `range(1, 4)`")
    if len(args) == 3 and args[2] == 0:
        raise error("`range`'s step cannot be zero", span)
    r = range(*args)
    try:
        n = len(r)
    except OverflowError:  # more values than a machine word counts
        n = MAX_INT
    if n > MAX_SEQUENCE:
        raise error(f"`range` of {n:,} values is too long (at most {MAX_SEQUENCE:,})", span)
    current().charge(n, span, f"`range` of {n:,} values")
    return tuple(r)


def _minmax(fn):
    def call(span, *args):
        items = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
        if not items or not all(_is_num(a) for a in items):
            raise error(f"`{fn.__name__}` takes numbers", span)
        return fn(items)

    return call


def _len(span, *args):
    if len(args) != 1 or not isinstance(args[0], (tuple, str)):
        raise error("`len` takes one list", span)
    return len(args[0])


def _enumerate(span, *args):
    if len(args) not in (1, 2) or not isinstance(args[0], tuple) or (len(args) == 2 and not _is_int(args[1])):
        raise error("`enumerate` takes a list (and a first index)", span, help="e.g. `for i, c in enumerate(widths)`")
    start = args[1] if len(args) == 2 else 0
    return tuple((start + i, v) for i, v in enumerate(args[0]))


def _zip(span, *args):
    if not args or not all(isinstance(a, tuple) for a in args):
        raise error("`zip` takes lists", span, help="e.g. `zip([1, 2], [3, 4])`")
    return tuple(zip(*args))


def _sum(span, *args):
    items = args[0] if len(args) == 1 and isinstance(args[0], tuple) else None
    if items is None or not all(_is_num(a) for a in items):
        raise error("`sum` takes one list of numbers", span, help="e.g. `sum(depths[:i])`")
    return sum(items)


def _number_fn(name: str, fn, count: int = 1):
    def call(span, *args):
        if len(args) != count or not all(_is_num(a) for a in args):
            raise error(f"`{name}` takes {'a number' if count == 1 else f'{count} numbers'}", span)
        try:
            return fn(*args)
        except (OverflowError, ValueError):
            raise error(f"`{name}` of {show(args[0])} has no integer value", span) from None

    return call


def _round(span, *args):
    if not 1 <= len(args) <= 2 or not all(_is_num(a) for a in args[:1]) or (
            len(args) == 2 and not (_is_int(args[1]) and -30 <= args[1] <= 30)):
        raise error("`round` takes a number (and a count of decimals from -30 to 30)", span)
    try:
        return round(*args)
    except (OverflowError, ValueError):
        raise error(f"`round` of {show(args[0])} has no integer value", span) from None


def _make_divisible(span, *args):
    """torchvision's `_make_divisible(v, divisor, min_value)` (MobileNet, EfficientNet) and MNASNet's
    `_round_to_multiple_of`: the multiple of `divisor` nearest to `v`, at least `min_value` (the divisor
    by default), and never more than 10 % below `v`."""
    if not 2 <= len(args) <= 3 or not all(_is_num(a) for a in args) or not (_is_int(args[1]) and args[1] > 0):
        raise error("`make_divisible` takes a number, a positive integer divisor and a minimum", span,
                    help="e.g. `make_divisible(32 * width, 8)`")
    v, divisor = args[0], args[1]
    low = args[2] if len(args) == 3 else divisor
    if not _is_int(low):
        raise error(f"`make_divisible`'s minimum must be an integer, got {show(low)}", span)
    try:
        new = max(low, int(v + divisor / 2) // divisor * divisor)
    except (OverflowError, ValueError):
        raise error(f"`make_divisible` of {show(v)} has no integer value", span) from None
    return new + divisor if new < 0.9 * v else new


def _str(span, *args):
    if len(args) != 1 or not isinstance(args[0], (int, str)) or isinstance(args[0], bool):
        raise error("`str` takes an integer or a string", span)
    return str(args[0])


BUILTINS: dict[str, Callable] = {
    "range": _range, "min": _minmax(min), "max": _minmax(max), "len": _len, "sum": _sum,
    "enumerate": _enumerate, "zip": _zip, "abs": _number_fn("abs", abs), "int": _number_fn("int", int),
    "float": _number_fn("float", float), "round": _round, "ceil": _number_fn("ceil", math.ceil),
    "floor": _number_fn("floor", math.floor), "make_divisible": _make_divisible, "str": _str,
}


# The parameters of builtins that take keywords, in order (`enumerate(xs, start=1)`).
KEYWORD_PARAMS = {"enumerate": ("list", "start"), "make_divisible": ("v", "divisor", "min_value"),
            "round": ("number", "ndigits")}


_MISSING = object()  # a parameter that no argument gives


def _keywords(name: str, given: list, kwargs, values: dict, in_shape) -> list:
    """Positional arguments with the keyword ones put in their places."""
    params = KEYWORD_PARAMS.get(name)
    if params is None:
        raise error(f"`{name}` takes no keyword arguments", kwargs[0][2])
    slots: list = list(given) + [_MISSING] * (len(params) - len(given))
    for key, expr, span in kwargs:
        if key not in params:
            raise error(f"`{name}` has no argument `{key}`", span, help=did_you_mean(key, params, "arguments"))
        i = params.index(key)
        if i < len(given) or slots[i] is not _MISSING:
            raise error(f"argument `{key}` given twice", span)
        slots[i] = evaluate(expr, values, in_shape)
    while slots and slots[-1] is _MISSING:
        slots.pop()
    if _MISSING in slots:
        missing = params[slots.index(_MISSING)]
        raise error(f"`{name}` needs its argument `{missing}` too", kwargs[0][2])
    return slots


def bind(target, value, values: dict, span) -> None:
    """Bind a `for`/`let` target (a name, or a tuple of targets) to `value` in `values`."""
    if isinstance(target, str):
        values[target] = value
        return
    if value is POISON:
        for t in target:
            bind(t, POISON, values, span)
        return
    if not isinstance(value, tuple):
        raise error(f"cannot unpack the {type_name(value)} {show(value)} into {len(target)} names", span,
                    help=f"unpack a list of {len(target)} values, e.g. `for t, c in [(1, 16), (6, 24)]`")
    if len(value) != len(target):
        raise error(f"cannot unpack {show(value)} ({len(value)} values) into {len(target)} names", span,
                    help=f"give {len(value)} names, or index the list: `row[0]`")
    for t, v in zip(target, value):
        bind(t, v, values, span)


def evaluate(expr: ast.Expr, values: dict, in_shape: Callable[[], tuple | None]):
    """The value of `expr`; `values` holds parameters and lets, `in_shape()` the incoming shape."""
    match expr:
        case ast.Const(value=v):
            return v
        case ast.Var(name=name, span=span):
            if values.get(name) is POISON:
                raise Poisoned()
            if name in values:
                return values[name]
            raise error(f"unknown name `{name}`", span, help=did_you_mean(name, values, "names"))
        case ast.InAttr(attr=attr, span=span):
            return _in_attr(attr, span, in_shape())
        case ast.InTensor(span=span):
            raise error("`in` is a tensor, not a value", span,
                        help="read its shape with `in.channels`, or use it where tensors go: "
                             "`from in`, `concat(in, x)`")
        case ast.Index(target=target, index=index, span=span):
            seq, i = evaluate(target, values, in_shape), evaluate(index, values, in_shape)
            return _index(seq, i, index.span, target.span)
        case ast.Slice(target=target, start=start, stop=stop, span=span):
            seq = evaluate(target, values, in_shape)
            bounds = [None if b is None else evaluate(b, values, in_shape) for b in (start, stop)]
            if not isinstance(seq, (tuple, str)):
                raise error(f"only lists can be sliced, not the {type_name(seq)} {show(seq)}", target.span,
                            help="slice a list, e.g. `depths[:i]`")
            for b, e in zip(bounds, (start, stop)):
                if b is not None and not _is_int(b):
                    raise error(f"a slice bound must be an integer, got the {type_name(b)} {show(b)}", e.span)
            part = seq[bounds[0]:bounds[1]]
            current().charge(len(part), span, "this slice")
            return part
        case ast.Comprehension(element=element, target=target, iterable=iterable, condition=cond, span=span):
            seq = evaluate(iterable, values, in_shape)
            if not isinstance(seq, tuple):
                raise error(f"a list comprehension needs a list, got the {type_name(seq)} {show(seq)}", iterable.span)
            budget = current()
            inner = {k: v for k, v in values.items() if k not in target_names(target)}
            # a filtered element is never made: with an `if`, only the condition is sure to run
            each = 1 + (expr_cost(element, inner) if cond is None else expr_cost(cond, inner))
            budget.afford(len(seq) * each, span, f"this list comprehension makes {len(seq):,} elements")
            out = []
            inner = dict(values)
            for v in seq:
                budget.charge(1, span, "this list comprehension")
                bind(target, v, inner, iterable.span)
                if cond is None or _bool(evaluate(cond, inner, in_shape), cond.span, "`if`"):
                    out.append(evaluate(element, inner, in_shape))
            return bounded("this list comprehension", tuple(out), span)
        case ast.Seq(items=items, span=span):
            current().charge(len(items), span, f"a list of {len(items):,} elements")
            return bounded("this list", tuple(evaluate(i, values, in_shape) for i in items), span)
        case ast.Neg(operand=operand, span=span):
            v = evaluate(operand, values, in_shape)
            if not _is_num(v):
                raise error(f"cannot negate a {type_name(v)} ({show(v)})", span)
            return -v
        case ast.Not(operand=operand, span=span):
            return not _bool(evaluate(operand, values, in_shape), operand.span, "`not`")
        case ast.Func(name=name, args=args, span=span, kwargs=kwargs):
            if name not in BUILTINS:
                raise error(f"unknown function `{name}`", span,
                            help=did_you_mean(name, BUILTINS, "functions"))
            given = [evaluate(a, values, in_shape) for a in args]
            if kwargs:
                given = _keywords(name, given, kwargs, values, in_shape)
            for g in given:  # a step per element read: `sum`, `zip`, `max` of long lists in a loop add up
                if isinstance(g, tuple) and len(g) > 16:
                    current().charge(len(g), span, f"`{name}` of a list of {len(g):,} elements")
            return bounded(f"`{name}`", BUILTINS[name](span, *given), span)
        case ast.BinOp(op="and" | "or" as op, left=left, right=right):
            lv = _bool(evaluate(left, values, in_shape), left.span, f"`{op}`")
            if lv == (op == "or"):
                return lv
            return _bool(evaluate(right, values, in_shape), right.span, f"`{op}`")
        case ast.BinOp(op=op, left=left, right=right, span=span):
            return _binary(op, evaluate(left, values, in_shape), evaluate(right, values, in_shape), span)
    raise AssertionError(f"unknown expression {expr!r}")


def _index(seq, i, span, target_span):
    if not isinstance(seq, (tuple, str)):
        raise error(f"only lists can be indexed, not the {type_name(seq)} {show(seq)}", target_span,
                    help="index a list such as a settings table, `cfg[0]`; a number stands as it is")
    if not _is_int(i):
        raise error(f"a list index must be an integer, got the {type_name(i)} {show(i)}", span)
    if not -len(seq) <= i < len(seq):
        valid = f"0 to {len(seq) - 1} (or -1 to -{len(seq)} from the end)" if seq else "none: the list is empty"
        raise error(f"index {i} is out of range for a list of {len(seq)}", span, help=f"valid indices: {valid}")
    return seq[i]


def _in_attr(attr: str, span, shape):
    if shape is NO_INPUT:
        raise error(f"`in.{attr}` has no tensor to read here", span,
                    help="`in` is the tensor flowing into a layer; network parameters and `input` come before any")
    if shape is None:
        raise Poisoned()
    if attr == "rank":
        return len(shape)
    if attr == "features" and len(shape) == 3:
        raise error(f"`in.features` is the size of a flat input, and this one is {'x'.join(map(str, shape))}", span,
                    help="`in.channels`, `in.height` and `in.width` read a CxHxW input")
    if attr in ("channels", "features"):
        return shape[0]
    if attr in ("height", "width"):
        if len(shape) != 3:
            raise error(f"`in.{attr}` needs a CxHxW input, got the flat {shape[0]}", span,
                        help="`in.features` is the size of a flat input")
        return shape[1] if attr == "height" else shape[2]
    if attr == "shape":
        return shape
    raise error(f"unknown shape attribute `in.{attr}`", span,
                help=did_you_mean(attr, ("channels", "height", "width", "features", "rank", "shape"), "attributes"))


def _bool(v, span, where: str) -> bool:
    if isinstance(v, bool):
        return v
    raise error(f"{where} needs a boolean, got the {type_name(v)} {show(v)}", span,
                help="compare explicitly, e.g. `stride != 1`")


MAX_INT = 2**63  # values beyond it describe no network; bounding them keeps arithmetic and printing cheap


def _binary(op: str, a, b, span):
    try:
        result = _operate(op, a, b, span)
    except OverflowError:
        raise error(f"`{op}` overflows: its operands are too large", span) from None
    return bounded(f"`{op}`", result, span)


def bounded(what: str, result, span):
    """`result` of an operator or a function, if it is a value a network can use: numbers below 2^63,
    finite; lists of at most MAX_ITEMS elements counted through nesting, at most MAX_DEPTH deep; strings of
    at most MAX_STRING characters."""
    if (_is_int(result) and abs(result) >= MAX_INT) or (isinstance(result, float) and not math.isfinite(result)):
        raise error(f"{what} gives a number too large for a network (at least 2^63)", span)
    if isinstance(result, (tuple, str)):
        try:
            current().measure(result)
        except ValueTooLarge as e:
            help = ("strings in a spec are short: labels, names and settings" if isinstance(result, str) else
                    "a network's settings are short lists; build long sequences of layers with `for` or `*`")
            raise error(f"{what} makes {e}", span, help=help) from None
    return result


def _operate(op: str, a, b, span):
    if isinstance(a, (tuple, str)) or isinstance(b, (tuple, str)):  # a step per element compared or copied
        current().charge(len(a) if isinstance(a, (tuple, str)) else 1, span, f"`{op}` on a long list")
        current().charge(len(b) if isinstance(b, (tuple, str)) else 1, span, f"`{op}` on a long list")
    if op in ("==", "!="):
        return (a == b) == (op == "==")
    if op in ("<", "<=", ">", ">="):
        if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
            raise error(f"cannot compare the {type_name(a)} {show(a)} with the {type_name(b)} {show(b)}", span)
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
        return a + b
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (_is_num(a) and _is_num(b)):
        raise error(f"`{op}` needs numbers, got the {type_name(a)} {show(a)} and the {type_name(b)} {show(b)}", span)
    if op in ("/", "//", "%") and b == 0:
        raise error("division by zero", span)
    match op:
        case "+":
            return a + b
        case "-":
            return a - b
        case "*":
            return a * b
        case "/":
            # exact integer division stays an integer; a remainder gives a number that integer arguments reject
            return a // b if _is_int(a) and _is_int(b) and a % b == 0 else a / b
        case "//" | "%":
            if not (_is_int(a) and _is_int(b)):
                raise error(f"`{op}` needs integers, got {show(a)} and {show(b)}", span)
            return a // b if op == "//" else a % b
    raise AssertionError(op)


# ---- weighing work before doing it ------------------------------------------------------------------


def _subexpressions(expr) -> tuple:
    match expr:
        case ast.Index(target=t, index=i):
            return (t, i)
        case ast.Slice(target=t, start=a, stop=b):
            return tuple(e for e in (t, a, b) if e is not None)
        case ast.BinOp(left=a, right=b):
            return (a, b)
        case ast.Not(operand=a) | ast.Neg(operand=a):
            return (a,)
        case ast.Seq(items=items):
            return items
        case ast.Func(args=args, kwargs=kwargs):
            return (*args, *(e for _, e, _ in kwargs))
    return ()


def target_names(target) -> tuple[str, ...]:
    """The names a `for`/`let` target binds (`i`, `(t, c)`, nested)."""
    if isinstance(target, str):
        return (target,)
    return tuple(n for t in target for n in target_names(t))


def is_constant(expr) -> bool:
    """Whether `expr` reads no name and no shape: its value is known before anything runs."""
    if isinstance(expr, (ast.Var, ast.InAttr, ast.InTensor)):
        return False
    if isinstance(expr, ast.Comprehension):
        return is_constant(expr.iterable)  # its own target is bound inside; other names make it unknown
    return all(is_constant(e) for e in _subexpressions(expr))


def static_value(expr, values: dict | None):
    """The value of `expr` if it can be known now without error (with `values`, or with no names at all
    where `values` is None); else None."""
    if isinstance(expr, ast.Const):
        return expr.value
    if values is None and not is_constant(expr):
        return None
    try:
        with spending(Budget(steps=4 * MAX_ITEMS)):
            return evaluate(expr, dict(values or {}), lambda: None)
    except Exception:  # noqa: BLE001 - any failure makes the value unknown, and the runtime reports it
        return None


def static_length(expr, values: dict | None) -> int:
    """The length of the list `expr` gives, where it can be known now; else 0, the lower bound."""
    v = static_value(expr, values)
    return len(v) if isinstance(v, tuple) else 0


def expr_cost(expr, values: dict | None) -> int:
    """A lower bound of the steps that evaluating `expr` charges: the elements its list comprehensions
    make, through nesting (`[[0 for j in range(n)] for i in range(n)]` is n * (n + 1) steps)."""
    if isinstance(expr, ast.Comprehension):
        inner = None if values is None else {k: v for k, v in values.items()
                                             if k not in target_names(expr.target)}
        each = 1 + (expr_cost(expr.element, inner) if expr.condition is None else expr_cost(expr.condition, inner))
        return static_length(expr.iterable, values) * each + expr_cost(expr.iterable, values)
    return sum(expr_cost(e, values) for e in _subexpressions(expr))
