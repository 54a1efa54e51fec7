"""Where things are in a parsed spec: the syntax tree at a position, what a position names (an item, a
label, a tensor name, a block or network, an import), where it is defined, and the document's symbols.
Pure: works on the AST (graphdsl.ast) and the program's block tables."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass

from .. import ast
from ..diagnostics import Span
from ..program import Program
from ..values import show
from .analysis import Analysis

# ---- the syntax tree at a position ------------------------------------------------------------------------


def children(node) -> Iterator:
    """The AST nodes directly inside `node`, in source order."""
    for f in fields(node):
        value = getattr(node, f.name)
        if is_dataclass(value) and hasattr(value, "span"):
            yield value
        elif isinstance(value, tuple):
            for v in value:
                if is_dataclass(v) and hasattr(v, "span"):
                    yield v
                elif isinstance(v, tuple):  # Call kwargs of functions: (name, expr, span)
                    yield from (x for x in v if is_dataclass(x) and hasattr(x, "span"))


def contains(span: Span, line: int, col: int) -> bool:
    """Whether (line, col) lies in `span`, its end included (a cursor right after a name is on it)."""
    return (span.line, span.col) <= (line, col) <= (span.end_line, span.end_col)


def within(inner: Span, outer: Span) -> bool:
    return ((outer.line, outer.col) <= (inner.line, inner.col)
            and (inner.end_line, inner.end_col) <= (outer.end_line, outer.end_col))


def chain_at(module: ast.Module, line: int, col: int) -> list:
    """The AST nodes containing (line, col), outermost first: definition, statements, items, expressions."""
    found: list = []
    level: Iterable = [*module.imports, *module.definitions]
    while True:
        inner = next((n for n in level if contains(n.span, line, col)), None)
        if inner is None:
            return found
        found.append(inner)
        level = list(children(inner))


def tensor_definitions(body: tuple) -> Iterator[tuple[str, Span, object]]:
    """(name, where the name is given, the statement) of every named tensor of a body, nested bodies
    included (`residual`, `if`, `for`, groups and branches name in the scope around them)."""
    for stmt in body:
        match stmt:
            case ast.Labeled(label=str() as label, label_span=where):
                yield label, where, stmt
            case ast.Bind(name=name, name_span=where):
                yield name, where, stmt
            case ast.Split(names=names):
                for name, where in names:
                    yield name, where, stmt
        for sub in _bodies(stmt):
            yield from tensor_definitions(sub)


def _bodies(stmt) -> Iterator[tuple]:
    item = stmt.item if isinstance(stmt, (ast.Labeled, ast.Bind)) else stmt
    if isinstance(item, ast.Repeat):
        item = item.item
    match item:
        case ast.If(then=then, orelse=orelse):
            yield then
            yield orelse
        case ast.For(body=body) | ast.Group(body=body) | ast.Branches(body=body):
            yield body
        case ast.Residual(body=body, shortcut=shortcut):
            yield body
            if shortcut:
                yield shortcut


def find_tensor(definition: ast.Definition, name: str, line: int) -> tuple[Span, object] | None:
    """Where the tensor `name` used on `line` is defined: the last definition before the use, else the
    first (a name used before it is given is an error the diagnostics report)."""
    found = [(where, stmt) for n, where, stmt in tensor_definitions(definition.body) if n == name]
    before = [f for f in found if f[0].line <= line]
    if before:
        return before[-1]
    return found[0] if found else None


@dataclass(frozen=True)
class Target:
    """What a position names: an item of the spec (its IR is looked up), a definition, a tensor or file."""

    kind: str  # "item", "block", "network", "tensor", "import"
    span: Span  # the source region of the thing (its item, its definition's name, the import)
    name: str = ""
    node: object = None  # the AST node: the item, the definition, the defining statement


def target_at(program: Program, module: ast.Module, line: int, col: int) -> Target | None:
    """The thing at (line, col): the innermost item, label, tensor name, block or network name."""
    chain = chain_at(module, line, col)
    if not chain:
        return None
    definition = chain[0] if isinstance(chain[0], ast.Definition) else None
    if definition is not None and definition.base is not None:  # `network resnet152 = resnet(3, 8, 36, 3)`
        base = definition.base
        if not contains(base.name_span, line, col):
            return Target("network", definition.name_span, definition.name, definition)
        local = program.networks.get(base.name)
        found = local if local is not None and local is not definition else program.imported_networks.get(base.name)
        return Target("network", found.name_span, base.name, found) if found else None
    for node in reversed(chain):
        match node:
            case ast.Import(path=path):
                target = os.path.normpath(os.path.join(os.path.dirname(module.file), path))
                return Target("import", node.span, target)
            case ast.Definition(name=name, name_span=where) if contains(where, line, col):
                return Target(node.kind, where, name, node)
            case ast.Labeled(label_span=where, item=item) if contains(where, line, col):
                return _item_target(item)
            case ast.Bind(name_span=where, item=item) if contains(where, line, col):
                return _item_target(item)
            case ast.Split(names=names):
                for name, where in names:
                    if contains(where, line, col):
                        return Target("tensor", where, name, node)
            case ast.From(name=name) | ast.Var(name=name) if definition is not None:
                found = find_tensor(definition, name, line)
                if found is not None or isinstance(node, ast.From):
                    return _tensor(definition, name, found)
                continue  # a value (`let`, a parameter): the call it is an argument of
            case ast.InTensor():
                return Target("tensor", definition.name_span, "in", definition) if definition else None
            case ast.Output(names=names, training=training) if definition is not None:
                for name, where in (*names, *training):
                    if contains(where, line, col):
                        return _tensor(definition, name, find_tensor(definition, name, line))
            case ast.Call(name_span=where) if contains(where, line, col):
                return _item_target(node)
            case ast.Call() | ast.Group() | ast.Residual() | ast.Branches() | ast.Repeat():
                return _item_target(node)
    return None


def _tensor(definition: ast.Definition, name: str, found) -> Target | None:
    if name == "in":
        return Target("tensor", definition.name_span, "in", definition)
    if found is None:
        return None
    where, stmt = found
    return Target("tensor", where, name, stmt)


def _item_target(item) -> Target:
    return Target("item", item.span, getattr(item, "name", ""), item)


def signature(definition: ast.Definition) -> str:
    """`bottleneck(planes, stride = 1)`: a block or network as written."""
    params = ", ".join(p.name if p.default is None else f"{p.name} = {_source(p.default)}" for p in definition.params)
    if definition.base is not None:
        return f"{definition.kind} {definition.name} = {definition.base.name}(…)"
    return f"{definition.kind} {definition.name}({params})"


def _source(expr) -> str:
    if isinstance(expr, ast.Const):
        return show(expr.value)
    if isinstance(expr, ast.Var):
        return expr.name
    if isinstance(expr, ast.Neg):
        return "-" + _source(expr.operand)
    return "…"


# ---- definitions and symbols -------------------------------------------------------------------------------


def definition(analysis: Analysis, line: int, col: int) -> Span | None:
    """Where the thing at (line, col) is defined: a block call's block, an import's file (its first line),
    a tensor name's labelled statement, an alias's base network."""
    module, program = analysis.module, analysis.program
    if module is None:
        return None
    target = target_at(program, module, line, col)
    if target is None:
        return None
    if target.kind == "import":
        return Span(target.name, 1, 1, 1, 1)
    if target.kind in ("tensor", "network", "block"):
        return target.span
    item = target.node
    if isinstance(item, ast.Call) and contains(item.name_span, line, col) and item.name in program.blocks:
        return program.blocks[item.name].name_span
    return None


@dataclass
class Symbol:
    name: str
    kind: str  # "network", "block", "layer", "tensor"
    detail: str
    span: Span  # the whole thing
    name_span: Span
    children: list[Symbol] = field(default_factory=list)


def symbols(module: ast.Module) -> list[Symbol]:
    """Networks and blocks (parameters in the detail), and their named layers, nested as written."""
    out = []
    for d in module.definitions:
        detail = signature(d).split(" ", 1)[1]
        out.append(Symbol(d.name, d.kind, detail, d.span, d.name_span, _layer_symbols(d.body)))
    return out


def _layer_symbols(body: tuple) -> list[Symbol]:
    found = []
    for stmt in body:
        inner = [s for sub in _bodies(stmt) for s in _layer_symbols(sub)]
        match stmt:
            case ast.Labeled(label=label, label_span=where, item=item):
                name = label if isinstance(label, str) else _template(label)
                found.append(Symbol(name, "layer", _item_detail(item), stmt.span, where, inner))
                continue
            case ast.Bind(name=name, name_span=where, item=item):
                found.append(Symbol(name, "tensor", _item_detail(item), stmt.span, where, inner))
                continue
            case ast.Split(names=names, call=call):
                found += [Symbol(n, "tensor", call.name, stmt.span, where) for n, where in names]
        found += inner  # unlabelled residuals, groups, ifs and loops name in the scope around them
    return found


def _template(label: ast.Template) -> str:
    return "".join(p if isinstance(p, str) else "{…}" for p in label.parts)


def _item_detail(item) -> str:
    match item:
        case ast.Call(name=name):
            return name
        case ast.Repeat(item=inner):
            return f"{_item_detail(inner)} * …"
        case ast.Residual():
            return "residual"
        case ast.Branches(op=op):
            return op
        case ast.Group():
            return "[…]"
    return ""
