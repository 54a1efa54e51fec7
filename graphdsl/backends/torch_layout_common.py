"""What the modules of the structured PyTorch layout share (graphdsl.backends.torch_layout): the
classes being written (`Klass`), where a statement is translated (`Ctx`), and small functions over
the spec's AST and the generated lines."""

from __future__ import annotations

import ast as pyast
import copy
from dataclasses import dataclass, field

from .. import ast
from ..ops import REGISTRY
from ..values import Symbol
from .torch_lowering import Tensor
from .torch_values import (
    Sym,
    Unsupported,
)

LOCALS = frozenset({"channels", "self"})  # names __init__ uses itself


@dataclass
class Klass:
    """A generated class: one per block (or the network)."""

    name: str
    block: str | None
    kind: str  # "module" or "sequential"
    doc: str | None
    signature: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)  # the block's parameters, in order
    in_param: str | None = None
    out_ch: pyast.expr | None = None
    out_dims: tuple = ()
    out_fresh: bool = False
    fresh_if: pyast.expr | None = None  # where the output's freshness depends on the arguments: when it is
    in_rank: int = 3
    nested_lets: set = field(default_factory=set)  # locals bound only inside an `if` or a `for`
    body: tuple = ()  # the statements of the block (or network) the class is written from
    init: list = field(default_factory=list)  # (indent, text, shapes)
    forward: list = field(default_factory=list)
    done: bool = False


@dataclass
class Ctx:
    """Where a statement is translated."""

    klass: Klass
    env: dict  # spec name -> value (Sym over init's names, or a constant)
    real: dict  # spec name -> one instance's value (for the samples and the block arguments)
    init_names: set  # Python names of __init__
    fwd_names: set  # Python names of forward
    stored: dict  # name -> kind: attributes forward reads (`self.stride`), stored by __init__
    labels: set  # submodule names of the class
    path: tuple  # the scope path relative to the class
    instances: list  # the IR scope paths of the class's instances
    position: list  # the next position in the current scope, boxed
    tensors: dict = field(default_factory=dict)  # tensor name -> (var, version)
    versions: dict = field(default_factory=dict)  # var -> assignments so far
    training_only: set = field(default_factory=set)  # tensor names only training-only outputs read
    outputs: list = field(default_factory=list)  # [(names, training, conditions)]
    conditions: tuple = ()  # the forward conditions around the statement
    lets: dict = field(default_factory=dict)  # let name -> its expression over the parameters (top level only)
    nested: bool = False  # inside an `if` or a `for`
    hoisted: list = field(default_factory=list)  # (name, code): values computed in __init__ for forward
    pending: list = field(default_factory=list)  # __init__ lines of forward-only code paths, written next
    named: dict = field(default_factory=dict)  # tensor name -> Tensor (what a merge of named tensors reads)
    input: Tensor | None = None  # the block's input, where a merge reads `in` (kept in its own variable)
    main: str | None = None  # the class's own variable (`x`), where a merge of named tensors writes
    live: frozenset = frozenset()  # tensor names read after the statement (their variables are not overwritten)
    track: str | None = None  # a loop's running channel count, updated after each layer that changes it

    def nested_copy(self) -> Ctx:
        """This context for the body of an `if` or a `for`: names it binds stay inside."""
        sub = copy.copy(self)
        sub.env, sub.real = dict(self.env), dict(self.real)
        sub.nested = True
        return sub


def orelse_lines(lines: list, indent: int) -> list:
    """The `else:` part of an `if` at `indent`: `elif` where it holds one `if` and nothing else."""
    if not lines:
        return []
    head = lines[0][1]
    alone = all(i > indent + 1 or text == "else:" or text.startswith("elif ") for i, text, _ in lines[1:])
    if head.startswith("if ") and lines[0][0] == indent + 1 and alone:
        return [(indent, "el" + head, None), *((i - 1, text, shapes) for i, text, shapes in lines[1:])]
    return [(indent, "else:", None), *lines]


def bound_names(stmts) -> set:
    """The names a body's `let`s and `for`s bind."""
    from ..evaluate import target_names

    found: set = set()
    for s in stmts:
        match s:
            case ast.Let(name=name):
                found.update(target_names(name))
            case ast.For(var=var, body=body):
                found.update(target_names(var))
                found |= bound_names(body)
            case ast.If(then=then, orelse=orelse):
                found |= bound_names(then) | bound_names(orelse)
    return found


def tree_value(v):
    if isinstance(v, Symbol):
        raise Unsupported("a symbol as a default")
    if isinstance(v, list):
        v = tuple(v)
    return v


def camel_or(name: str, fallback: str) -> str:
    from .torch import camel

    return camel(name) or fallback


def ctx_claim(names: set, base: str) -> str:
    name, i = base, 1
    while name in names:
        i += 1
        name = f"{base}_{i}"
    names.add(name)
    return name


def computed_label(s) -> bool:
    """`"block{s}-{i}": layer` (a layer, not inline)."""
    return isinstance(s, ast.Labeled) and isinstance(s.label, ast.Template) and (
        isinstance(s.item, ast.Group) or isinstance(s.item, ast.Call) and not s.item.inline)


def labelled_layer(s) -> bool:
    """`name: layer` or `"block{s}-{i}": layer` (a layer, not inline)."""
    return isinstance(s, ast.Labeled) and (
        isinstance(s.item, ast.Group) or isinstance(s.item, ast.Call) and not s.item.inline)


def has_computed_labels(stmts) -> bool:
    """Whether a chain names some of its modules by computed labels (through `if`s and `for`s)."""
    for s in stmts:
        match s:
            case ast.Labeled() if computed_label(s):
                return True
            case ast.If(then=then, orelse=orelse):
                if has_computed_labels(then) or has_computed_labels(orelse):
                    return True
            case ast.For(body=body):
                if has_computed_labels(body):
                    return True
    return False


def merges_input(stmts) -> bool:
    """Whether a merge among the statements reads the block's input by name (`mul(in, gate)`)."""
    for s in stmts:
        match s:
            case ast.Call(args=args) if s.name in REGISTRY and REGISTRY[s.name].merges:
                if any(isinstance(a.value, ast.InTensor) for a in args):
                    return True
            case ast.If(then=then, orelse=orelse):
                if merges_input(then) or merges_input(orelse):
                    return True
    return False


def names_read(text: str) -> set:
    """The Python names one generated line reads (`if c > 1:` reads `c`)."""
    text = text.strip()
    for head in ("if ", "elif ", "for ", "while "):
        if text.startswith(head):
            text = text[len(head):]
    text = text.removesuffix(":")
    if text in ("else", ""):
        return set()
    try:
        tree = pyast.parse(text)
    except SyntaxError:
        raise Unsupported(f"the line `{text}`") from None
    return {n.id for n in pyast.walk(tree) if isinstance(n, pyast.Name)}


def flat_names(target):
    for x in target:
        if isinstance(x, str):
            yield x
        else:
            yield from flat_names(x)


def target_code(target) -> str:
    if isinstance(target, str):
        return target
    return "(" + ", ".join(target_code(x) for x in target) + ")"


def bind(target, value, ctx: Ctx) -> None:
    if isinstance(target, str):
        if target != "_":
            ctx.env[target] = Sym.name(target, value)
            ctx.real[target] = value
            ctx.init_names.add(target)
        return
    if not isinstance(value, tuple) or len(value) != len(target):
        raise Unsupported("unpacking")
    for t, v in zip(target, value):
        bind(t, v, ctx)


def tensor_reads(stmts) -> set:
    """The tensor names statements read by name (`from x2`, `concat(x1, branch2)`, `output a`; `in`)."""
    found: set = set()
    for s in stmts:
        match s:
            case ast.From(name=name):
                found.add(name)
            case ast.Output(names=names, training=training):
                found.update(n for n, _ in (*names, *training))
            case ast.Call(args=args):
                for a in args:
                    if isinstance(a.value, ast.Var):
                        found.add(a.value.name)
                    elif isinstance(a.value, ast.InTensor):
                        found.add("in")
            case ast.If(then=then, orelse=orelse):
                found |= tensor_reads(then) | tensor_reads(orelse)
            case ast.For(body=body) | ast.Residual(body=body) | ast.Branches(body=body):
                found |= tensor_reads(body)
                if isinstance(s, ast.Residual) and s.shortcut:
                    found |= tensor_reads(s.shortcut)
            case ast.Labeled(item=item) | ast.Bind(item=item):
                found |= tensor_reads([item])
            case ast.Group(body=body):
                found |= tensor_reads(body)
    return found


_INVERSE = {pyast.Eq: pyast.NotEq, pyast.NotEq: pyast.Eq, pyast.Lt: pyast.GtE, pyast.GtE: pyast.Lt,
            pyast.Gt: pyast.LtE, pyast.LtE: pyast.Gt}


def negated(text: str) -> str:
    """`not (text)` as Python reads best: `stride != 1` for `stride == 1`."""
    tree = pyast.parse(text, mode="eval").body
    if isinstance(tree, pyast.Compare) and len(tree.ops) == 1 and type(tree.ops[0]) in _INVERSE:
        return pyast.unparse(pyast.Compare(tree.left, [_INVERSE[type(tree.ops[0])]()], tree.comparators))
    if isinstance(tree, pyast.UnaryOp) and isinstance(tree.op, pyast.Not):
        return pyast.unparse(tree.operand)
    return f"not ({text})"


def loop_header(target, seq_code: str, lines: list, ctx: Ctx) -> str:
    """`for i, c in ...:` with each name the body's lines do not read written `_` (and unbound after the loop,
    so that nothing reads it there): `for i, _ in enumerate(dims):`."""
    read: set = set()
    for _, text, _ in lines:
        read |= names_read(text)

    def text(x) -> str:
        if isinstance(x, str):
            if x != "_" and x not in read:
                ctx.env.pop(x, None)
                ctx.real.pop(x, None)
                return "_"
            return x
        return "(" + ", ".join(text(y) for y in x) + ")"

    head = text(target) if isinstance(target, str) else ", ".join(text(x) for x in target)
    return f"for {head} in {seq_code}:"
