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
class InTensor:
    """`in` on its own: the tensor that flowed into the enclosing block (or the network's input).
    Only tensor positions take it: `from in`, `concat(in, x)`, `mul(in, gate)`."""

    span: Span


@dataclass(frozen=True)
class Index:
    """`cfg[i]`: one element of a list (negative indices count from the end)."""

    target: Expr
    index: Expr
    span: Span


@dataclass(frozen=True)
class Slice:
    """`cfg[1:]`, `depths[:i]`: a part of a list."""

    target: Expr
    start: Expr | None
    stop: Expr | None
    span: Span


@dataclass(frozen=True)
class Comprehension:
    """`[c * 2 for c in widths if c > 8]`."""

    element: Expr
    target: Target
    iterable: Expr
    condition: Expr | None
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
    kwargs: tuple[tuple[str, Expr, Span], ...] = ()  # `enumerate(xs, start=1)`


Expr = Const | Var | InAttr | InTensor | Index | Slice | Comprehension | BinOp | Not | Neg | Seq | Func

# What `for` and `let` bind: a name, or names unpacked from a list (`t, c, n, s`; `i, (c, n)`).
Target = str | tuple


@dataclass(frozen=True)
class Template:
    """A label computed from values: `"denselayer{i + 1}"`, `"block{s}-{j}"`."""

    parts: tuple  # str | Expr, in order
    span: Span

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
    inline: bool = False  # `inline stage(...)`: the block's layers are named in the caller's scope


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
    """`residual { body } shortcut if cond { body }`: add(body(x), shortcut(x) or x).
    `residual if cond { body }`: the add only where `cond` holds; else the body alone."""

    body: tuple[Stmt, ...]
    shortcut: tuple[Stmt, ...] | None
    condition: Expr | None
    span: Span
    shortcut_span: Span | None
    when: Expr | None = None


@dataclass(frozen=True)
class Repeat:
    item: Item
    count: Expr
    span: Span


Item = Call | Branches | Group | Residual | Repeat

# ---- statements ------------------------------------------------------------------


@dataclass(frozen=True)
class Labeled:
    """`name: item` names the module scope and the output tensor; `"name{i}": item` computes the name."""

    label: str | Template
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
class Split:
    """`(a, b) = chunk(2)`: named channel slices of the current tensor; the main flow stays put."""

    names: tuple[tuple[str, Span], ...]
    call: Call
    span: Span


@dataclass(frozen=True)
class Let:
    name: Target
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
    var: Target
    iterable: Expr
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Input:
    dims: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Output:
    """`output fc, p3, training: aux2, aux1`: outputs always returned, then those returned in training only."""

    names: tuple[tuple[str, Span], ...]
    span: Span
    training: tuple[tuple[str, Span], ...] = ()


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


Stmt = Item | Labeled | Bind | Split | Let | If | For | Input | Output | From | Assert | Doc

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
