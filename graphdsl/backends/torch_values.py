"""Symbolic values for the spec-structured PyTorch code (graphdsl.backends.torch_layout).

A spec expression that reads a block's parameters (`planes * 4`) becomes Python code over the
generated constructor's arguments. `Sym` is such a value: its Python expression, as an `ast` tree over
the names of the enclosing `__init__`, and its value for one concrete instance (what the IR computed),
which lets the translator check its work and pick sample values for the operators' lowering.

`SymInt` and `SymFloat` are ints and floats that print as their code: the operator registry lowers
them like any number (`nn.Conv2d(in_channels, planes, ...)`), with no change to the registry.

>>> planes = Sym.name("planes", 64)
>>> out = binary("*", planes, 4)
>>> code(out), out.value
('planes * 4', 256)
>>> code(binary("*", 16, 4))
'64'
"""

from __future__ import annotations

import ast as pyast
import copy
import math

from ..ops.base import py


class Unsupported(Exception):
    """The spec uses something the structured layout does not translate; the generator falls back to
    one class per distinct structure (graphdsl.backends.torch.Generator)."""


class Sym:
    """A value that depends on a constructor argument: its code (an ast.expr) and one instance's value."""

    __slots__ = ("tree", "value")

    def __init__(self, tree: pyast.expr, value):
        self.tree = tree
        self.value = value

    @classmethod
    def name(cls, name: str, value) -> Sym:
        return cls(pyast.Name(name, pyast.Load()), value)

    def __repr__(self) -> str:
        return f"Sym({code(self)!r}, {self.value!r})"


def value_of(v):
    return v.value if isinstance(v, Sym) else v


def tree_of(v) -> pyast.expr:
    """The Python expression of a value: a Sym's code, or the literal of a constant."""
    if isinstance(v, Sym):
        return v.tree
    if isinstance(v, pyast.expr):
        return v
    if isinstance(v, bool) or v is None or isinstance(v, (int, float, str)):
        return pyast.parse(py(v), mode="eval").body
    if isinstance(v, tuple):
        return pyast.Tuple([tree_of(x) for x in v], pyast.Load())
    raise Unsupported(f"no Python literal for {v!r}")


def code(v) -> str:
    return pyast.unparse(tree_of(v))


_BINARY = {"+": pyast.Add, "-": pyast.Sub, "*": pyast.Mult, "/": pyast.Div, "//": pyast.FloorDiv, "%": pyast.Mod}
_COMPARE = {"==": pyast.Eq, "!=": pyast.NotEq, "<": pyast.Lt, "<=": pyast.LtE, ">": pyast.Gt, ">=": pyast.GtE}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def compute(op: str, a, b):
    """The spec's arithmetic on plain values (graphdsl.evaluate): `/` of integers that divide exactly
    stays an integer there, which Python's `/` does not; such a `/` is not translated."""
    if op in _COMPARE:
        return {"==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b, "<=": lambda: a <= b,
                ">": lambda: a > b, ">=": lambda: a >= b}[op]()
    if op == "/":
        if _is_int(a) and _is_int(b):
            raise Unsupported("`/` of integers")
        return a / b
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "//": lambda: a // b,
            "%": lambda: a % b}[op]()


def binary(op: str, a, b):
    """`a op b`: a constant where both sides are, else a Sym."""
    if op in ("and", "or"):
        va, vb = value_of(a), value_of(b)
        result = (va and vb) if op == "and" else (va or vb)
        if not isinstance(a, Sym) and not isinstance(b, Sym):
            return result
        node = pyast.BoolOp(pyast.And() if op == "and" else pyast.Or(), [tree_of(a), tree_of(b)])
        return Sym(node, result)
    try:
        result = compute(op, value_of(a), value_of(b))
    except (TypeError, ZeroDivisionError, KeyError) as e:
        raise Unsupported(f"`{op}` on {value_of(a)!r} and {value_of(b)!r}") from e
    if not isinstance(a, Sym) and not isinstance(b, Sym):
        return result
    if op in _COMPARE:
        node = pyast.Compare(tree_of(a), [_COMPARE[op]()], [tree_of(b)])
    else:
        node = pyast.BinOp(tree_of(a), _BINARY[op](), tree_of(b))
    return Sym(node, result)


def negate(a):
    if isinstance(a, Sym):
        return Sym(pyast.UnaryOp(pyast.USub(), a.tree), -a.value)
    return -a


def logical_not(a):
    if isinstance(a, Sym):
        return Sym(pyast.UnaryOp(pyast.Not(), a.tree), not a.value)
    return not a


def choose(condition, then, orelse):
    """`then if condition else orelse`, folded where the two agree or the condition is constant."""
    if not isinstance(condition, Sym):
        return then if condition else orelse
    if code(then) == code(orelse):
        return then
    value = value_of(then) if condition.value else value_of(orelse)
    return Sym(pyast.IfExp(condition.tree, tree_of(then), tree_of(orelse)), value)


# the spec's `make_divisible` (graphdsl.evaluate), written once at the top of a file whose code calls it
MAKE_DIVISIBLE = '''
def make_divisible(v, divisor, min_value=None):
    """The multiple of `divisor` nearest to `v`, at least `min_value` (the divisor by default) and never
    more than 10 % below `v`: torchvision's `_make_divisible`."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v
'''


def _helper(text: str):
    space: dict = {}
    exec(compile(text, "<graphdsl helper>", "exec"), space)  # noqa: S102 - our own fixed text
    return space["make_divisible"]


FUNCTIONS = {"int": int, "float": float, "abs": abs, "min": min, "max": max, "len": len, "sum": sum, "round": round,
             "make_divisible": _helper(MAKE_DIVISIBLE), "ceil": math.ceil, "floor": math.floor}
MATH_FUNCTIONS = frozenset({"ceil", "floor"})  # written `math.ceil(...)`: the generated file imports math


def call(name: str, args: list):
    """A builtin of the spec that means the same in Python."""
    fn = FUNCTIONS.get(name)
    if fn is None:
        raise Unsupported(f"function `{name}`")
    values = [value_of(a) for a in args]
    if name in ("min", "max") and len(values) == 1 and not isinstance(values[0], tuple):
        raise Unsupported(f"`{name}` of one number")
    try:
        result = fn(*values)
    except (TypeError, ValueError) as e:
        raise Unsupported(f"`{name}`") from e
    if not any(isinstance(a, Sym) for a in args):
        return result
    func = pyast.Name(name, pyast.Load())
    if name in MATH_FUNCTIONS:
        func = pyast.Attribute(pyast.Name("math", pyast.Load()), name, pyast.Load())
    return Sym(pyast.Call(func, [tree_of(a) for a in args], []), result)


# ---- numbers that print as code, for the operator registry's lowering ------------------------------------


def _wrap(result, tree):
    if isinstance(result, bool):
        return result
    if isinstance(result, int):
        return SymInt(result, tree)
    if isinstance(result, float):
        return SymFloat(result, tree)
    return result


def _arith(op: str, reflected: bool = False):
    def method(self, other):
        if not isinstance(other, (int, float)) or isinstance(other, bool):
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        result = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
                  "//": lambda x, y: x // y, "%": lambda x, y: x % y, "/": lambda x, y: x / y}[op](
            _plain(a), _plain(b))
        return _wrap(result, pyast.BinOp(_tree(a), _BINARY[op](), _tree(b)))
    return method


def _plain(v):
    return float.__float__(v) if isinstance(v, SymFloat) else int.__index__(v) if isinstance(v, SymInt) else v


def _tree(v) -> pyast.expr:
    return v.tree if isinstance(v, (SymInt, SymFloat)) else tree_of(v)


class _Printed:
    tree: pyast.expr

    def __repr__(self) -> str:
        return "(" + pyast.unparse(self.tree) + ")" if isinstance(self.tree, (pyast.BinOp, pyast.IfExp,
                                                                               pyast.BoolOp)) else pyast.unparse(
            self.tree)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        if spec:
            raise Unsupported("a formatted symbolic number")
        return repr(self)

    def __neg__(self):
        return _wrap(-_plain(self), pyast.UnaryOp(pyast.USub(), self.tree))

    def __int__(self):
        raise Unsupported("int() of a symbolic number")

    def __float__(self):
        raise Unsupported("float() of a symbolic number")

    def __round__(self, n=None):
        raise Unsupported("round() of a symbolic number")


for _op, _name in (("+", "add"), ("-", "sub"), ("*", "mul"), ("//", "floordiv"), ("%", "mod"), ("/", "truediv")):
    setattr(_Printed, f"__{_name}__", _arith(_op))
    setattr(_Printed, f"__r{_name}__", _arith(_op, reflected=True))


class SymInt(_Printed, int):
    """An int that prints as its Python expression (`planes`, `(planes * 4)`)."""

    def __new__(cls, value: int, tree: pyast.expr):
        obj = int.__new__(cls, value)
        obj.tree = tree
        return obj

    __hash__ = int.__hash__


class SymFloat(_Printed, float):
    """A float that prints as its Python expression (`dropout`)."""

    def __new__(cls, value: float, tree: pyast.expr):
        obj = float.__new__(cls, value)
        obj.tree = tree
        return obj

    __hash__ = float.__hash__


def sample(v, scale: int, rename=None):
    """The value the registry's lowering sees: a Sym as a SymInt/SymFloat whose number is the instance's
    value times `scale` (two scales tell whether the lowering's text depends on the number), its code
    renamed by `rename` (`planes` -> `self.planes` in forward); constants as they are."""
    if isinstance(v, tuple):
        return tuple(sample(x, scale, rename) for x in v)
    if not isinstance(v, Sym):
        return v
    tree = rename(v.tree) if rename else v.tree
    if isinstance(v.value, bool) or not isinstance(v.value, (int, float)):
        raise Unsupported(f"a symbolic {type(v.value).__name__} as an operator argument")
    # a zero stands for other numbers too (`pad` 0 here, 2 in another instance): sampled as numbers that
    # differ, or a lowering that leaves out a zero argument (`padding=0`) would go unnoticed (at scale 1, the
    # instance's own value: its parameters' shapes)
    if isinstance(v.value, int):
        return SymInt(v.value * scale if v.value or scale == 1 else scale - 2, tree)
    if not math.isfinite(v.value):
        raise Unsupported("a non-finite number")
    return SymFloat(v.value * scale if v.value or scale == 1 else (scale - 2) / 8, tree)


def unsample(v, real):
    """A lowering's result back as a value: SymInt/SymFloat -> Sym (with the value `real`), tuples through."""
    if isinstance(v, (SymInt, SymFloat)):
        return Sym(v.tree, real)
    return v


def normalise(text: str) -> str:
    """Python code with the parentheses it needs and no more."""
    return pyast.unparse(pyast.parse(text, mode="eval"))


def _is_constant(node, value) -> bool:
    return isinstance(node, pyast.Constant) and type(node.value) is int and node.value == value


def _is_bool(node, value: bool) -> bool:
    return isinstance(node, pyast.Constant) and node.value is value


class _Fold(pyast.NodeTransformer):
    """Arithmetic on literals folded (`64 * 4` -> `256`), as the spec's evaluator would."""

    def visit_BinOp(self, node):
        self.generic_visit(node)
        left, right = node.left, node.right
        if isinstance(node.op, pyast.Add) and _is_constant(left, 0):  # `0 + x`: what `sum` starts from
            return right
        if isinstance(node.op, (pyast.Add, pyast.Sub)) and _is_constant(right, 0):
            return left
        if isinstance(node.op, pyast.Mult) and (_is_constant(left, 1) or _is_constant(right, 1)):
            return right if _is_constant(left, 1) else left
        if isinstance(left, pyast.Constant) and isinstance(right, pyast.Constant):
            op = {v: k for k, v in _BINARY.items()}.get(type(node.op))
            if op is not None:
                try:
                    return pyast.Constant(compute(op, node.left.value, node.right.value))
                except (Unsupported, TypeError, ZeroDivisionError):
                    return node
        return node

    def visit_Compare(self, node):  # `2 == 1` (a constant argument of a condition on a parameter)
        self.generic_visit(node)
        if len(node.ops) == 1 and isinstance(node.left, pyast.Constant) and isinstance(
                node.comparators[0], pyast.Constant):
            op = {v: k for k, v in _COMPARE.items()}.get(type(node.ops[0]))
            try:
                return pyast.Constant(compute(op, node.left.value, node.comparators[0].value))
            except (Unsupported, TypeError, KeyError):
                return node
        return node

    def visit_IfExp(self, node):
        self.generic_visit(node)
        if isinstance(node.test, pyast.Constant):
            return node.body if node.test.value else node.orelse
        if pyast.dump(node.body) == pyast.dump(node.orelse):
            return node.body
        if _is_bool(node.body, True) and _is_bool(node.orelse, False) and isinstance(
                node.test, (pyast.Compare, pyast.BoolOp)):  # `True if mid != c else False`: the test
            return node.test
        return node


def fold(tree: pyast.AST) -> pyast.AST:
    """Constants folded in a tree (changed in place)."""
    return _Fold().visit(tree)


def substitute(tree: pyast.expr, names: dict) -> pyast.expr:
    """`tree` with each Name in `names` replaced by that value's expression, constants folded."""

    class Replace(pyast.NodeTransformer):
        def visit_Name(self, node):
            if node.id in names:
                return copy.deepcopy(tree_of(names[node.id]))
            return node

    out = Replace().visit(copy.deepcopy(tree))
    return _Fold().visit(out)


def evaluate_tree(tree: pyast.expr, env: dict):
    """The value of a translated expression for concrete `env` (name -> value): the same closed
    arithmetic the translator writes (names, literals, operators, the builtins of FUNCTIONS)."""
    match tree:
        case pyast.Constant(value=v):
            return v
        case pyast.Name(id=name):
            if name not in env:
                raise Unsupported(f"no value for `{name}`")
            return env[name]
        case pyast.Tuple(elts=elts) | pyast.List(elts=elts):
            return tuple(evaluate_tree(e, env) for e in elts)
        case pyast.BinOp(left=left, op=op, right=right):
            name = {v: k for k, v in _BINARY.items()}[type(op)]
            return compute(name, evaluate_tree(left, env), evaluate_tree(right, env))
        case pyast.Compare(left=left, ops=[op], comparators=[right]):
            name = {v: k for k, v in _COMPARE.items()}[type(op)]
            return compute(name, evaluate_tree(left, env), evaluate_tree(right, env))
        case pyast.BoolOp(op=op, values=values):
            result = evaluate_tree(values[0], env)
            for v in values[1:]:
                if isinstance(op, pyast.And) != bool(result):
                    return result
                result = evaluate_tree(v, env)
            return result
        case pyast.UnaryOp(op=pyast.USub(), operand=x):
            return -evaluate_tree(x, env)
        case pyast.UnaryOp(op=pyast.Not(), operand=x):
            return not evaluate_tree(x, env)
        case pyast.IfExp(test=test, body=body, orelse=orelse):
            return evaluate_tree(body if evaluate_tree(test, env) else orelse, env)
        case pyast.Call(func=pyast.Name(id=name), args=args) if name in FUNCTIONS:
            return FUNCTIONS[name](*(evaluate_tree(a, env) for a in args))
        case pyast.Call(func=pyast.Attribute(value=pyast.Name(id="math"), attr=name), args=args) if (
                name in MATH_FUNCTIONS):
            return FUNCTIONS[name](*(evaluate_tree(a, env) for a in args))
        case pyast.Subscript(value=target, slice=pyast.Slice(lower=lower, upper=upper, step=None)):
            bounds = (None if b is None else evaluate_tree(b, env) for b in (lower, upper))
            return evaluate_tree(target, env)[slice(*bounds)]
        case pyast.Subscript(value=target, slice=index):
            return evaluate_tree(target, env)[evaluate_tree(index, env)]
    raise Unsupported(f"cannot evaluate {pyast.unparse(tree)}")
