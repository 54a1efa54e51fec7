"""The syntax tree of a .cnn file. Every node carries the span it came from."""

from __future__ import annotations

from dataclasses import dataclass

from .diagnostics import Span

# ---- expressions -------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: object  # int | float | bool | str | Symbol
    span: Span


@dataclass(frozen=True)
class Var:
    name: str
    span: Span


@dataclass(frozen=True)
class InAttr:
    """`in.channels`, `in.height`, `in.width`, `in.rank`: the shape flowing into a statement."""

    attr: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr
    span: Span


@dataclass(frozen=True)
class Not:
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Seq:
    """A tuple `(3, 5)` or a list `[64, 64, "M"]` (lists and tuples are the same value)."""

    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Func:
    name: str
    args: tuple[Expr, ...]
    span: Span


Expr = Const | Var | InAttr | BinOp | Not | Neg | Seq | Func

# ---- items: things that turn a tensor into a tensor ------------------------------


@dataclass(frozen=True)
class Arg:
    name: str | None  # None for positional
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    """An operator or block applied to the current tensor: `conv(64, 3, stride=2)`, `relu`."""

    name: str
    args: tuple[Arg, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Branches:
    """`concat { a  b  c }`: each statement of the body is a branch from the same input."""

    op: str
    body: tuple[Stmt, ...]
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Group:
    """`[a, b, c]`: a sequence, numbered by position like nn.Sequential."""

    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Residual:
    """`residual { body } shortcut if cond { body }`: add(body(x), shortcut(x) or x)."""

    body: tuple[Stmt, ...]
    shortcut: tuple[Stmt, ...] | None
    condition: Expr | None
    span: Span
    shortcut_span: Span | None


@dataclass(frozen=True)
class Repeat:
    item: Item
    count: Expr
    span: Span


Item = Call | Branches | Group | Residual | Repeat

# ---- statements ------------------------------------------------------------------


@dataclass(frozen=True)
class Labeled:
    """`name: item` names the module scope and the output tensor."""

    label: str
    item: Item
    span: Span
    label_span: Span


@dataclass(frozen=True)
class Bind:
    """`name = item`: a side branch from the current tensor; the main flow stays put."""

    name: str
    item: Item
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class If:
    condition: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class For:
    var: str
    iterable: Expr
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Input:
    dims: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Output:
    names: tuple[tuple[str, Span], ...]
    span: Span


@dataclass(frozen=True)
class From:
    name: str
    span: Span


@dataclass(frozen=True)
class Assert:
    """`assert cond, "message"`: a block states what it accepts."""

    condition: Expr
    message: str | None
    span: Span


@dataclass(frozen=True)
class Doc:
    text: str
    span: Span


Stmt = Item | Labeled | Bind | Let | If | For | Input | Output | From | Assert | Doc

# ---- definitions -------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class Definition:
    """A `network` or a `block`: a named, parameterised body."""

    kind: str  # "network" | "block"
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    doc: str | None
    span: Span
    name_span: Span
    base: Call | None = None  # `network resnet20 = cifar_resnet(n=3)`: another network, re-parameterised


@dataclass(frozen=True)
class Import:
    path: str
    span: Span


@dataclass(frozen=True)
class Module:
    file: str
    doc: str | None
    imports: tuple[Import, ...]
    definitions: tuple[Definition, ...]
