"""The spec's structure as PyTorch code: one class per block, parameters as constructor arguments.

`translate(gen)` walks the spec's AST (the definitions the elaborator keeps in `g.graph["definition"]`
and `g.graph["blocks"]`) and writes, for each block the network uses, one class named after it whose
`__init__` takes the block's parameters (with the spec's defaults) and the input channels it needs
(`inplanes` where the block has `planes`, else `in_channels`), and for the network a class whose
`__init__` takes the network's parameters as keywords, defaulting to the values compiled. Spec
expressions become Python expressions over those arguments (graphdsl.backends.torch_values), `let`s
become locals, `if`s become Python `if`s: in `__init__`, an optional submodule set to `None` in the
other branch (torchvision's `downsample`), in `forward` `if self.downsample is not None:`. A block
whose body is a plain chain of modules becomes an `nn.Sequential` subclass built from a list
(`layers.append(...)`, `for _ in range(n - 1):`), as torchvision's `_make_layer`.

Each layer is lowered by the operator registry (`Op.torch_module`, `Op.torch_call`) at symbolic
arguments (graphdsl.backends.torch_lowering): the text must come out the same for two samples of every
number, so a lowering that depends on a number it cannot see is found, not guessed. The IR stays the
reference: every IR node must be the product of one translated line, its `inplace` decision must be
the one the IR makes, and the shape comments come from the IR (dimensions that differ between the
instances of a class show as letters, and a comment of letters only is left out).

Also translated: a labelled `concat { ... }` (a class named after the label, taking the input channels
and the values it reads), a merge of the block's input and a labelled layer (`mul(in, scale)`, the
squeeze-and-excitation gate: the input kept in `x`), computed labels in a chain
(`self.add_module(f'block{s}-{i}', ...)`, as torchvision's AnyStage), `inline` blocks in a chain (their
layers appended flat), `for` over `range`/`enumerate`/`zip`, slices, `ceil`/`floor` (`math.ceil`). A
block whose output is a new tensor for some arguments only (`silu` where `act`, else `bn`) gives its
callers that condition (`Klass.fresh_if`).

What is not translated raises Unsupported, and the caller (graphdsl.backends.torch.generate) falls
back to one class per distinct structure for the whole file: named tensors read across statements
(`from`, `split`, a merge of other tensors), `inline` blocks outside a chain, labelled `residual`
scopes, `for` outside a chain, conditions on `in.height`/`in.width`, an unlabelled layer with
parameters inside an `if`, bare parameters, channels-last tensors, `/` of integers (whose meaning
differs from Python's), a branch not taken here whose arguments an op rejects (RegNetX's SE at
`se_ratio` 0), an `inplace` the IR decides differently between instances of one class
(EfficientNetV2's Fused-MBConv). A condition Python cannot see at construction never makes a
specialised copy of a class: the file keeps the per-structure layout instead.
"""

from __future__ import annotations

import ast as pyast
import copy
from dataclasses import dataclass, field

from .. import ast
from ..ops import REGISTRY, ArgError, OpError
from ..ops.base import is_channels_last
from ..values import Symbol
from .scopes import output_node
from .torch_lowering import FUNCTION_NAMES, Lowered, Tensor, Unknown
from .torch_values import (
    Sym,
    Unsupported,
    binary,
    call,
    choose,
    code,
    evaluate_tree,
    logical_not,
    negate,
    sample,
    substitute,
    tree_of,
    unsample,
    value_of,
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


def translate(gen) -> tuple[str, dict]:
    """(the classes' text, fx node counts) for `gen`'s network, or Unsupported."""
    return Layout(gen).run()


class Layout:
    def __init__(self, gen):
        self.gen = gen
        self.g = gen.g
        g = self.g
        if "definition" not in g.graph or "blocks" not in g.graph:
            raise Unsupported("the IR keeps no definitions")
        self.definition: ast.Definition = g.graph["definition"]
        self.blocks: dict = g.graph["blocks"]
        self.classes: dict[str, Klass] = {}
        self.order: list[Klass] = []
        self.by_span: dict = {}
        for n, d in g.nodes(data=True):
            if d["op"] != "input":
                self.by_span.setdefault(d["span"], []).append(n)
        self.decided: dict = {}  # span -> "module" | "function"
        self.list_names: dict = {}  # (class, span of an unlabelled group) -> the list its modules are built in
        self.untaken = 0  # inside a branch of an `if` the sample does not take (its numbers may be degenerate)
        self.scope_members: dict = {}
        for n, d in g.nodes(data=True):
            for k in range(1, len(d["scope"])):
                self.scope_members.setdefault(tuple(d["scope"][:k]), []).append(n)
        self.instances: dict[str, list] = {}
        for path, info in g.graph.get("scopes", {}).items():
            if info.get("kind") == "block":
                self.instances.setdefault(info["block"], []).append(path)

    # ---- the whole file ----------------------------------------------------------------------------

    def run(self) -> tuple[list, dict]:
        net = self.definition
        g = self.g
        if g.graph.get("training_outputs") is None:
            raise Unsupported("no training outputs recorded")
        params = g.graph.get("params") or {}
        names = [p.name for p in net.params]
        if list(params) != names:
            raise Unsupported("the network's parameters")
        for name in names:
            self.check_name(name)
        root_name = self.gen.globals.claim(camel_or(g.graph["name"], "Network"), fallback="Network")
        klass = Klass(root_name, None, "module", None)
        klass.signature = ["*"] + [f"{p}={code(tree_value(params[p]))}" for p in names] if names else []
        klass.params = names
        env = {p: Sym.name(p, params[p]) for p in names}
        ctx = self.new_ctx(klass, env, dict(params), [()])
        ctx.init_names.update(names)
        inputs = [i for i, s in enumerate(net.body) if isinstance(s, ast.Input)]
        if len(inputs) != 1 or not all(isinstance(s, (ast.Doc, ast.Let, ast.Assert, ast.If))
                                       for s in net.body[:inputs[0]]):
            raise Unsupported("`input` after a layer")
        self.note_references(net.body, ctx)
        init: list = []
        fwd: list = []
        for s in net.body[:inputs[0]]:
            self.class_stmt(s, ctx, None, init, fwd, 2, None)
        dims = [self.expr(d, ctx) for d in net.body[inputs[0]].dims]
        if any(not isinstance(value_of(d), int) for d in dims) or len(dims) not in (1, 3):
            raise Unsupported("an input shape")
        # a size given by a parameter is one the layers must not depend on (they are checked as any unknown)
        t = Tensor(ctx_claim(ctx.fwd_names, "x"), dims[0],
                   tuple(Unknown(d.value) if isinstance(d, Sym) else d for d in dims[1:]), False)
        t = self.class_body(net.body[inputs[0] + 1:], ctx, t, init, fwd, 2)
        fwd += self.returns(ctx, t)
        klass.init, klass.forward = self.with_stores(ctx, init), fwd
        klass.doc = self.gen.root_doc()
        self.order.append(klass)
        self.check_coverage()
        return self.order, self.fx_counts()

    def fx_counts(self) -> dict:
        gen = self.gen
        counts = {}
        for n, d in self.g.nodes(data=True):
            if d["op"] == "input":
                continue
            how = self.decided.get(d["span"])
            op = REGISTRY[d["op"]]
            if how == "module":
                counts[n] = op.torch_module_nodes(gen.attrs(n), gen.in_shapes(n))
            else:
                counts[n] = op.torch_nodes(gen.attrs(n), len(gen.inputs(n)))
        return counts

    def check_coverage(self) -> None:
        """Every IR node comes from a translated line (else the translation missed something)."""
        for span, nodes in self.by_span.items():
            if span not in self.decided:
                raise Unsupported(f"IR node {nodes[0]} has no translated line")

    # ---- helpers -------------------------------------------------------------------------------

    def new_ctx(self, klass: Klass, env: dict, real: dict, instances: list) -> Ctx:
        return Ctx(klass, env, real, set(LOCALS), {"x"} - {"x"}, {}, set(), (), instances, [0])

    def check_name(self, name: str) -> None:
        from .torch import MODULE_ATTRS, RESERVED_GLOBALS, Namespace

        if not Namespace(reserved=RESERVED_GLOBALS | LOCALS | FUNCTION_NAMES).usable(name) or name in MODULE_ATTRS:
            raise Unsupported(f"the name `{name}`")

    def next_position(self, ctx: Ctx) -> str:
        ctx.position[0] += 1
        return str(ctx.position[0] - 1)

    def shapes_of(self, ctx: Ctx, rel: tuple, span) -> tuple | None:
        """The output shapes of the item at `rel` over the class's instances (None where none is known)."""
        found = []
        g = self.g
        for base in ctx.instances:
            path = (*base, *rel)
            node = ".".join(path)
            if node in g and g.nodes[node]["op"] != "input":
                if span is not None and g.nodes[node]["span"] != span:
                    continue
                found.append((g.nodes[node]["shape"],))
            elif path in self.scope_members:
                found.append((g.nodes[output_node(g, self.scope_members[path])]["shape"],))
        if not found:
            return None
        from .torch import _merge_shapes

        return _merge_shapes(found)

    def real_dims(self, ctx: Ctx, rel: tuple) -> tuple | None:
        shapes = self.shapes_of(ctx, rel, None)
        if shapes and all(isinstance(d, int) for d in shapes[0]):
            return shapes[0]
        return None

    # ---- expressions -----------------------------------------------------------------------------

    def expr(self, e, ctx: Ctx, t: Tensor | None = None):
        match e:
            case ast.Const(value=v):
                if isinstance(v, Symbol):
                    return v
                return tuple(v) if isinstance(v, list) else v
            case ast.Var(name=name):
                if name not in ctx.env:
                    raise Unsupported(f"the name `{name}`")
                return ctx.env[name]
            case ast.InAttr(attr=attr):
                if t is None:
                    raise Unsupported("`in` without a tensor")
                if attr in ("channels", "features") and (attr == "channels") == (len(t.dims) == 2):
                    return t.ch
                if attr == "rank":
                    return 1 + len(t.dims)
                raise Unsupported(f"`in.{attr}`")
            case ast.BinOp(op=op, left=left, right=right):
                return binary(op, self.expr(left, ctx, t), self.expr(right, ctx, t))
            case ast.Not(operand=x):
                return logical_not(self.expr(x, ctx, t))
            case ast.Neg(operand=x):
                return negate(self.expr(x, ctx, t))
            case ast.Seq(items=items):
                values = tuple(self.expr(i, ctx, t) for i in items)
                if any(isinstance(v, Sym) for v in values):
                    return Sym(pyast.Tuple([tree_of(v) for v in values], pyast.Load()),
                               tuple(value_of(v) for v in values))
                return values
            case ast.Index(target=target, index=index):
                a, i = self.expr(target, ctx, t), self.expr(index, ctx, t)
                try:
                    value = value_of(a)[value_of(i)]
                except (TypeError, IndexError, KeyError) as err:
                    raise Unsupported("an index") from err
                if not isinstance(a, Sym) and not isinstance(i, Sym):
                    return value
                return Sym(pyast.Subscript(tree_of(a), tree_of(i), pyast.Load()), value)
            case ast.Slice(target=target, start=start, stop=stop):  # `depths[:i]`: Python's slice
                a = self.expr(target, ctx, t)
                bounds = [None if b is None else self.expr(b, ctx, t) for b in (start, stop)]
                if not isinstance(value_of(a), tuple) or any(
                        b is not None and type(value_of(b)) is not int for b in bounds):
                    raise Unsupported("a slice")
                value = value_of(a)[slice(*(None if b is None else value_of(b) for b in bounds))]
                if not isinstance(a, Sym) and not any(isinstance(b, Sym) for b in bounds):
                    return value
                index = pyast.Slice(*(None if b is None else tree_of(b) for b in bounds))
                return Sym(pyast.Subscript(tree_of(a), index, pyast.Load()), value)
            case ast.Func(name=name, args=args, kwargs=()):
                return call(name, [self.expr(a, ctx, t) for a in args])
            case ast.Comprehension():
                return self.comprehension(e, ctx, t)
        raise Unsupported(f"the expression {type(e).__name__}")

    def comprehension(self, e: ast.Comprehension, ctx: Ctx, t):
        """`[c * 2 for c in widths if c > 8]` as `tuple(c * 2 for c in widths if c > 8)` (spec lists are tuples)."""
        seq = self.expr(e.iterable, ctx, t)
        values = value_of(seq)
        if not isinstance(values, tuple) or not values:
            raise Unsupported("a comprehension over an empty or unknown list")
        names = list(_flat(e.target)) if not isinstance(e.target, str) else [e.target]
        for n in names:
            if n != "_":
                self.check_name(n)
        sub = copy.copy(ctx)
        sub.env, sub.real, sub.init_names = dict(ctx.env), dict(ctx.real), set(ctx.init_names)
        _bind(e.target, values[0], sub)
        element = self.expr(e.element, sub, t)
        condition = self.expr(e.condition, sub, t) if e.condition is not None else None
        real = []
        for v in values:  # the value for this instance, by the same code
            env = {k: value_of(x) for k, x in ctx.env.items()}
            scope = copy.copy(sub)
            scope.env, scope.real, scope.init_names = {}, {}, set()
            _bind(e.target, v, scope)
            env.update(scope.real)
            if condition is not None and not evaluate_tree(tree_of(condition), env):
                continue
            real.append(evaluate_tree(tree_of(element), env))
        target = e.target if isinstance(e.target, str) else ", ".join(_target_text(x) for x in e.target)
        text = f"tuple({code(element)} for {target} in {code(seq)}"
        text += f" if {code(condition)})" if condition is not None else ")"
        return Sym(pyast.parse(text, mode="eval").body, tuple(real))

    def condition(self, e, ctx: Ctx, t: Tensor | None):
        v = self.expr(e, ctx, t)
        if not isinstance(value_of(v), bool):
            raise Unsupported("a condition that is not a boolean")
        return v

    def forward_code(self, v, ctx: Ctx) -> str:
        """A value's code in `forward`: the names of __init__ read as stored attributes (`self.stride`)."""
        return pyast.unparse(self.to_self(tree_of(v), ctx))

    def to_self(self, tree: pyast.expr, ctx: Ctx) -> pyast.expr:
        layout = self

        class Rename(pyast.NodeTransformer):
            def visit_Name(self, node):
                if node.id in FUNCTION_NAMES or node.id == "self":
                    return node
                layout.store(ctx, node.id)
                return pyast.Attribute(pyast.Name("self", pyast.Load()), node.id, pyast.Load())

        return Rename().visit(copy.deepcopy(tree))

    def flag(self, cond, base: str, ctx: Ctx) -> str:
        """A condition forward tests, computed once in __init__ (`self.use_residual = stride == 1 and ...`,
        as torchvision's `use_res_connect`); a plain parameter is stored as it is (`self.aux_logits`)."""
        if isinstance(cond.tree, pyast.Name) or ctx.nested:
            return self.forward_code(cond, ctx)
        name = ctx_claim(ctx.init_names | ctx.labels | set(ctx.stored) | set(ctx.env), base)
        ctx.init_names.add(name)
        ctx.hoisted.append((name, code(cond)))
        self.store(ctx, name)
        return f"self.{name}"

    def store(self, ctx: Ctx, name: str) -> None:
        """`forward` reads `self.name`: __init__ stores it at its end, where every local it reads is bound."""
        if name in ctx.labels:
            raise Unsupported(f"`{name}` names both a value and a submodule")
        hoisted = dict(ctx.hoisted).get(name)
        reads = {n.id for n in pyast.walk(pyast.parse(hoisted, mode="eval"))
                 if isinstance(n, pyast.Name)} if hoisted else {name}
        if reads & ctx.klass.nested_lets:
            raise Unsupported(f"forward reads `{name}`, bound inside an `if` or a `for`")
        ctx.stored[name] = True

    # ---- classes of blocks -----------------------------------------------------------------------

    def block_class(self, block: ast.Definition, real_args: dict, t: Tensor, call_span) -> Klass:
        klass = self.classes.get(block.name)
        if klass is not None:
            if not klass.done:
                raise Unsupported("a block that calls itself")
            if klass.in_rank != len(t.dims) + 1:
                raise Unsupported(f"block `{block.name}` called on inputs of two ranks")
            return klass
        if not any(isinstance(s, (ast.Labeled, ast.Call, ast.Group, ast.Repeat, ast.Residual, ast.Branches,
                                  ast.If, ast.For)) for s in block.body):
            raise Unsupported("a block without layers")
        for p in block.params:
            self.check_name(p.name)
        sequential = self.is_sequential(block.body)
        name = self.gen.globals.claim(camel_or(block.name, "Block"), fallback="Block")
        instances = self.instances.get(block.name, [])
        doc = self.g.graph["scopes"][instances[0]].get("doc") if instances else block.doc  # the IR's, where it has one
        klass = Klass(name, block.name, "sequential" if sequential else "module", doc)
        self.classes[block.name] = klass
        klass.in_rank = len(t.dims) + 1
        rank3 = len(t.dims) == 2
        in_param = ("inplanes" if "planes" in real_args else "in_channels") if rank3 else "in_features"
        if in_param in real_args:
            in_param = "in_" + in_param
        self.check_name(in_param)
        klass.in_param = in_param
        env = {p: Sym.name(p, real_args[p]) for p in real_args}
        ctx = self.new_ctx(klass, env, dict(real_args), self.instances.get(block.name, []))
        ctx.init_names.update(real_args)
        ctx.init_names.add(in_param)
        # the input's spatial sizes are the instance's: unknown to the class
        inner = Tensor(ctx_claim(ctx.fwd_names, "x"), Sym.name(in_param, value_of(t.ch)),
                       tuple(Unknown(d if isinstance(d, int) else d.real) for d in t.dims), False)
        init: list = []
        fwd: list = []
        if sequential:
            spec_names = bound_names(block.body) | set(real_args)
            if _has_computed_labels(block.body):  # named children: `self.add_module(f"block{s}-{i}", ...)`
                out = self.seq_body(block.body, ctx, inner, init, "self", 2)
                init = [(2, "super().__init__()", None), *init]
            else:
                var = next(n for n in ("layers", "modules", "layer_list", "sequence") if n not in spec_names)
                ctx.init_names.add(var)
                out = self.seq_body(block.body, ctx, inner, init, var, 2)
                init = [(2, f"{var} = []", None), *init, (2, f"super().__init__(*{var})", None)]
        else:
            self.note_references(block.body, ctx)
            dst = None
            if _merges_input(block.body):  # `mul(in, gate)`: the first layer must not overwrite the input
                dst = ctx_claim(ctx.fwd_names, "out")
                ctx.input = inner
            out = self.class_body(block.body, ctx, inner, init, fwd, 2, dst)
            fwd.append((2, f"return {out.var}", None))
            init = self.with_stores(ctx, init)
        defaults = []
        for p in block.params:
            if p.default is None:
                defaults.append(p.name)
                continue
            value = self.expr(p.default, self.new_ctx(klass, {}, {}, []))
            if isinstance(value, Sym):
                raise Unsupported("a default that reads another parameter")
            defaults.append(f"{p.name}={code(tree_value(value))}")
        uses_input = any(in_param in line for _, line, _ in init) or any(in_param in line for _, line, _ in fwd)
        klass.in_param = in_param if uses_input else None
        klass.signature = ([in_param] if uses_input else []) + defaults
        klass.params = [p.name for p in block.params]
        if not isinstance(out.ch, Sym) and not isinstance(out.ch, (int, float)):
            raise Unsupported("the block's output size")
        klass.out_ch = substitute(tree_of(out.ch), ctx.lets)
        free = {n.id for n in pyast.walk(klass.out_ch) if isinstance(n, pyast.Name)} - FUNCTION_NAMES
        if not free <= {*real_args, in_param}:
            # the output size is computed in __init__ (a loop's running count): the instance keeps it, as
            # `out_channels`, for the layers after it
            if "out_channels" in ctx.labels or "out_channels" in ctx.stored or free & klass.nested_lets - {
                    "channels"}:
                raise Unsupported("the block's output size")
            init.append((2, f"self.out_channels = {code(out.ch)}", None))
            klass.out_ch = None
        klass.out_dims = out.dims
        klass.out_fresh = out.fresh
        if isinstance(out.fresh_if, Sym):
            tree = substitute(out.fresh_if.tree, ctx.lets)
            if {n.id for n in pyast.walk(tree) if isinstance(n, pyast.Name)} - FUNCTION_NAMES <= {
                    *real_args, in_param}:
                klass.fresh_if = tree
        klass.init, klass.forward = init, fwd
        klass.done = True
        self.order.append(klass)
        return klass

    def is_sequential(self, stmts) -> bool:
        """A body of unlabelled layers in a chain (through `if`, `for`, `let`): an nn.Sequential."""
        return self.chain_only(stmts) and any(isinstance(s, (ast.Call, ast.Group, ast.Repeat, ast.If, ast.For))
                                              or _computed_label(s) for s in stmts)

    def chain_only(self, stmts) -> bool:
        for s in stmts:
            match s:
                case ast.Doc() | ast.Let() | ast.Assert():
                    pass
                case ast.If(then=then, orelse=orelse):
                    if not (self.chain_only(then) and self.chain_only(orelse)):
                        return False
                case ast.For(body=body):
                    if not self.chain_only(body):
                        return False
                case ast.Call(inline=False) | ast.Group():
                    pass
                case ast.Labeled() if _computed_label(s):  # `"block{s}-{i}": ...`: add_module, as torchvision
                    pass
                case ast.Call(inline=True) if s.name in self.blocks:  # its layers, flat in the chain
                    body = self.blocks[s.name].body
                    if bound_names(body) or not self.chain_only(body):
                        return False
                case ast.Repeat(item=item):
                    if not isinstance(item, (ast.Call, ast.Group)) or getattr(item, "inline", False):
                        return False
                case _:
                    return False
        return True

    def with_stores(self, ctx: Ctx, init: list) -> list:
        """__init__'s lines, with the values forward reads stored as attributes (before any submodule)."""
        stores = []
        hoisted = dict(ctx.hoisted)
        for name in ctx.stored:
            if name in hoisted:
                stores.append((2, f"self.{name} = {hoisted[name]}", None))
                continue
            if name not in ctx.init_names or name in ctx.labels:
                raise Unsupported(f"forward reads `{name}`")
            stores.append((2, f"self.{name} = {name}", None))
        if not stores:
            return [(2, "super().__init__()", None), *init]
        # after the locals they read: at the end of __init__'s top level
        return [(2, "super().__init__()", None), *init, *stores]

    # ---- bodies as class members ------------------------------------------------------------------

    def note_references(self, stmts, ctx: Ctx) -> None:
        """Which named tensors only training-only outputs read (computed in training only)."""
        main: set = set()
        aux: set = set()
        other: set = set()

        def walk(items):
            for s in items:
                match s:
                    case ast.Output(names=names, training=training):
                        main.update(n for n, _ in names)
                        aux.update(n for n, _ in training)
                    case ast.From(name=name):
                        other.add(name)
                    case ast.If(then=then, orelse=orelse):
                        walk(then)
                        walk(orelse)
                    case ast.For(body=body):
                        walk(body)
                    case ast.Call(args=args):
                        other.update(a.value.name for a in args if isinstance(a.value, ast.Var))
        walk(stmts)
        ctx.training_only = aux - main - other

    def class_body(self, stmts, ctx: Ctx, t: Tensor, init: list, fwd: list, indent: int, dst: str | None = None):
        """Statements as members of a class: modules in __init__, calls in forward. The first line that
        computes writes `dst` (the input stays readable), the others write the current tensor's variable."""
        for s in stmts:
            t = self.class_stmt(s, ctx, t, init, fwd, indent, dst)
            init += [(indent, line, None) for line in ctx.pending]
            ctx.pending.clear()
            if dst is not None and t is not None and t.var == dst:
                dst = None
        return t

    def assign(self, ctx: Ctx, var: str) -> None:
        ctx.versions[var] = ctx.versions.get(var, 0) + 1

    def constructor_stmt(self, s, ctx: Ctx, t: Tensor, init: list, indent: int) -> bool:
        """Statements that only touch `__init__` (a doc string, `let`, `assert`), the same in a class body
        and in a chain: written, and True; anything else False."""
        match s:
            case ast.Doc():
                return True
            case ast.Let(name=name, value=value):
                self.let(name, value, ctx, t, init, indent)
                return True
            case ast.Assert(condition=cond, message=message):
                self.assertion(cond, message, ctx, t, init, indent)
                return True
        return False

    def class_stmt(self, s, ctx: Ctx, t: Tensor, init: list, fwd: list, indent: int, dst: str | None) -> Tensor:
        if t is None and not isinstance(s, (ast.Doc, ast.Let, ast.Assert, ast.If)):
            raise Unsupported("a layer before `input`")
        target = dst or (t.var if t is not None else None)
        if self.constructor_stmt(s, ctx, t, init, indent):
            return t
        match s:
            case ast.Labeled(label=label, item=item):
                if not isinstance(label, str):
                    raise Unsupported("a computed label")
                ctx.position[0] += 1
                out = self.member(label, item, ctx, t, init, fwd, indent, target)
                ctx.tensors[label] = (out.var, ctx.versions.get(out.var, 0))
                ctx.named[label] = out
                return out
            case ast.Call(inline=False) if s.name in REGISTRY and not REGISTRY[s.name].merges:
                rel = (*ctx.path, self.next_position(ctx))
                return self.functional(s, ctx, t, fwd, indent, target, rel)
            case ast.Call(inline=False) if s.name in REGISTRY:
                return self.merge(s, ctx, t, fwd, indent, target)
            case ast.Residual():
                return self.residual(s, ctx, t, init, fwd, indent, target)
            case ast.Branches():
                return self.branches(s, ctx, t, init, fwd, indent, target)
            case ast.Bind(name=name, item=item):
                self.check_name(name)
                if name in ctx.fwd_names:
                    raise Unsupported(f"the tensor name `{name}` twice")
                ctx.position[0] += 1
                gated = name in ctx.training_only
                sub_fwd: list = []
                keep = Tensor(t.var, t.ch, t.dims, False)
                var = ctx_claim(ctx.fwd_names, name)
                out = self.member(name, item, ctx, keep, init, sub_fwd, indent, var, indent + gated)
                if gated:
                    fwd.append((indent, "if self.training:", None))
                fwd += sub_fwd
                ctx.tensors[name] = (out.var, ctx.versions.get(out.var, 0))
                return keep
            case ast.Output(names=names, training=training):
                ctx.outputs.append(([n for n, _ in names], [n for n, _ in training], ctx.conditions,
                                    dict(ctx.tensors)))
                return t
            case ast.If(condition=cond, then=then, orelse=orelse):
                return self.class_if(cond, then, orelse, ctx, t, init, fwd, indent, dst)
        raise Unsupported(f"{type(s).__name__} in a class")

    def merge(self, s: ast.Call, ctx: Ctx, t: Tensor, fwd: list, indent: int, target: str) -> Tensor:
        """`mul(in, scale_activation)`: a merge of named tensors (the block's input, labelled layers)."""
        op = REGISTRY[s.name]
        if len(s.args) < 2 or any(a.name is not None or not isinstance(a.value, (ast.Var, ast.InTensor))
                                  for a in s.args):
            raise Unsupported("a merge of other than tensor names")
        tensors = []
        for a in s.args:
            if isinstance(a.value, ast.InTensor):
                if ctx.input is None or ctx.versions.get(ctx.input.var, 0) != 0:
                    raise Unsupported("`in` read after it is overwritten")
                tensors.append(ctx.input)
                continue
            name = a.value.name
            if name not in ctx.named or ctx.nested:
                raise Unsupported(f"the tensor `{name}`")
            var, version = ctx.tensors[name]
            if ctx.versions.get(var, 0) != version:
                raise Unsupported(f"the tensor `{name}` overwritten")
            tensors.append(ctx.named[name])
        rel = (*ctx.path, self.next_position(ctx))
        if any(len(x.dims) != len(t.dims) for x in tensors):
            raise Unsupported("a merge of other ranks")
        ins = [(sample(x.ch, 3), *(d if isinstance(d, int) else d.real for d in x.dims)) for x in tensors]
        try:
            shape = op.output_shape({}, ins)
            text = op.torch_call({}, [x.var for x in tensors], ins)
        except (OpError, TypeError, ValueError) as e:
            raise Unsupported("a merge") from e
        if text is None or op.name == "concat":
            raise Unsupported(f"`{op.name}` of named tensors")
        self.decide(s.span, "function")
        self.check_inplace(s.span, False)
        ch = unsample(shape[0], value_of(tensors[0].ch))
        if not isinstance(ch, Sym) and not isinstance(ch, int):
            raise Unsupported("merge sizes")
        widest = max(tensors, key=lambda x: sum(not (isinstance(d, int) and d == 1) for d in x.dims))
        self.assign(ctx, target)
        fwd.append((indent, f"{target} = {text}", self.shapes_of(ctx, rel, s.span)))
        return Tensor(target, ch, widest.dims, op.overwritable)

    def member(self, label: str, item, ctx: Ctx, t: Tensor, init: list, fwd: list, indent: int, target: str,
               fwd_indent: int | None = None):
        """`label: item` as submodule `self.label`, called in forward."""
        fwd_indent = indent if fwd_indent is None else fwd_indent
        self.check_name(label)
        if label in ctx.labels or label in ctx.stored:
            raise Unsupported(f"`{label}` twice")
        rel = (*ctx.path, label)
        match item:
            case ast.Call(inline=False) if item.name in REGISTRY:
                op = REGISTRY[item.name]
                if op.merges:
                    raise Unsupported("a merge of named tensors")
                low = self.lower(item, ctx, t, rel)
                if low.module is None:
                    if low.has_state or low.call is None:
                        raise Unsupported(f"`{op.name}` without a module form")
                    return self.functional(item, ctx, t, fwd, fwd_indent, target, rel, low)
                self.decide(item.span, "module")
                ctor, out = low.module, low.out
            case ast.Call(inline=False) if item.name in self.blocks:
                ctor, out = self.block_call(item, ctx, t, rel, label)
            case ast.Group(body=body):
                ctor, out = self.group(body, ctx, t, rel, init, indent, label)
            case ast.Repeat():
                ctor, out = self.group((item,), ctx, t, rel, init, indent, label)
            case ast.Branches():
                ctor, out = self.branches_class(label, item, ctx, t, rel)
            case _:
                raise Unsupported(f"a labelled {type(item).__name__}")
        ctx.labels.add(label)
        if isinstance(ctor, list):  # the items of an nn.Sequential: on one line where they fit
            one = f"self.{label} = nn.Sequential({', '.join(ctor)})"
            if 4 * indent + len(one) <= 100:
                init.append((indent, one, None))
            else:
                init.append((indent, f"self.{label} = nn.Sequential(", None))
                init += [(indent + 1, f"{part},", None) for part in ctor]
                init.append((indent, ")", None))
        else:
            init.append((indent, f"self.{label} = {ctor}", None))
        self.assign(ctx, target)
        fwd.append((fwd_indent, f"{target} = self.{label}({t.var})", self.shapes_of(ctx, rel, None)))
        return Tensor(target, out.ch, out.dims, out.fresh)

    def functional(self, call_: ast.Call, ctx: Ctx, t: Tensor, fwd: list, indent: int, target: str, rel,
                   low=None) -> Tensor:
        low = low or self.lower(call_, ctx, t, rel)
        if low.has_state or low.call is None:
            return self.positional(call_, low, ctx, t, fwd, indent, target, rel)
        self.decide(call_.span, "function")
        text = self.hoist(low.call_text(t.var), ctx, fwd, indent)
        self.assign(ctx, target)
        fwd.append((indent, f"{target} = {text}", self.shapes_of(ctx, rel, call_.span)))
        return Tensor(target, low.out.ch, low.out.dims, low.out.fresh)

    def hoist(self, text: str, ctx: Ctx, fwd: list, indent: int) -> str:
        """A functional call's text, its stored values noted; an argument computed from them alone (the
        channel padding of `pad_channels`) is computed once in __init__ where the line would be long."""
        tree = pyast.parse(text, mode="eval")
        reads = sorted({n.attr for n in pyast.walk(tree) if isinstance(n, pyast.Attribute)
                        and isinstance(n.value, pyast.Name) and n.value.id == "self"} - {"training"})
        if 4 * indent + len(text) + 12 <= 100 or not isinstance(tree.body, pyast.Call):
            for name in reads:
                self.store(ctx, name)
            return text
        call_ = tree.body
        func = pyast.unparse(call_.func).split(".")[-1]
        slots = [(a, func, lambda v, i=i: call_.args.__setitem__(i, v)) for i, a in enumerate(call_.args)]
        slots += [(k.value, k.arg or func, lambda v, k=k: setattr(k, "value", v)) for k in call_.keywords]
        for arg, base, put in slots:
            names = {n.id for n in pyast.walk(arg) if isinstance(n, pyast.Name)}
            if names != {"self"} or isinstance(arg, pyast.Attribute):
                continue
            name = ctx_claim(ctx.init_names | ctx.labels | set(ctx.stored), base)
            ctx.init_names.add(name)

            class Unself(pyast.NodeTransformer):
                def visit_Attribute(self, node):
                    if isinstance(node.value, pyast.Name) and node.value.id == "self":
                        return pyast.Name(node.attr, pyast.Load())
                    return self.generic_visit(node)

            ctx.hoisted.append((name, pyast.unparse(Unself().visit(copy.deepcopy(arg)))))
            self.store(ctx, name)
            put(pyast.Attribute(pyast.Name("self", pyast.Load()), name, pyast.Load()))
        for n in pyast.walk(tree):
            if isinstance(n, pyast.Attribute) and isinstance(n.value, pyast.Name) and n.value.id == "self":
                if n.attr not in ctx.stored and n.attr != "training":  # nn.Module's own
                    self.store(ctx, n.attr)
        return pyast.unparse(tree)

    def positional(self, call_: ast.Call, low, ctx: Ctx, t: Tensor, fwd: list, indent: int, target: str, rel):
        """An unlabelled layer with parameters in a class: a submodule named by its position, as the IR
        numbers it (`self.add_module('2', ...)`), where every instance has it there."""
        name = rel[-1]
        nodes = [".".join((*base, *rel)) for base in ctx.instances]
        if ctx.nested or low.module is None or not nodes or name in ctx.labels or not all(
                n in self.g and self.g.nodes[n]["span"] == call_.span for n in nodes):
            raise Unsupported(f"unlabelled `{low.op.name}` with parameters in a class")
        self.decide(call_.span, "module")
        ctx.labels.add(name)
        ctx.pending.append(f"self.add_module({name!r}, {low.module})")
        self.assign(ctx, target)
        fwd.append((indent, f"{target} = getattr(self, {name!r})({t.var})", self.shapes_of(ctx, rel, call_.span)))
        return Tensor(target, low.out.ch, low.out.dims, low.out.fresh)

    def block_call(self, item: ast.Call, ctx: Ctx, t: Tensor, rel, label: str | None = None) -> tuple[str, Tensor]:
        block = self.blocks[item.name]
        params = [p.name for p in block.params]
        given: dict = {}
        positional = [a for a in item.args if a.name is None]
        if len(positional) > len(params):
            raise Unsupported("too many arguments")
        for p, a in zip(params, positional):
            given[p] = self.expr(a.value, ctx, t)
        for a in item.args:
            if a.name is not None:
                if a.name not in params or a.name in given:
                    raise Unsupported("a wrong argument")
                given[a.name] = self.expr(a.value, ctx, t)
        values: dict = {}
        for p in block.params:
            if p.name in given:
                values[p.name] = given[p.name]
            elif p.default is not None:
                values[p.name] = self.expr(p.default, self.new_ctx(ctx.klass, {}, {}, []))
            else:
                raise Unsupported("a missing argument")
        if any(isinstance(v, Symbol) for v in values.values()):
            raise Unsupported("a symbol as a block argument")
        real = {k: value_of(v) for k, v in values.items()}
        klass = self.block_class(block, real, t, item.span)
        args = [code(t.ch)] if klass.in_param else []
        args += [code(given[p]) for p in params[:len(positional)]]
        args += [f"{a.name}={code(given[a.name])}" for a in item.args if a.name is not None]
        names = {**values}
        if klass.in_param:
            names[klass.in_param] = t.ch
        if klass.out_ch is None:  # the instance's `out_channels`, with the IR's value
            known = self.real_dims(ctx, rel)
            if label is None or known is None or ctx.nested:
                raise Unsupported("the output size of an unlabelled block")
            ch = Sym(pyast.Attribute(pyast.Attribute(pyast.Name("self", pyast.Load()), label, pyast.Load()),
                                     "out_channels", pyast.Load()), known[0])
        else:
            out_tree = substitute(klass.out_ch, names)
            real_out = evaluate_tree(klass.out_ch, {k: value_of(v) for k, v in names.items()})
            ch = real_out if isinstance(out_tree, pyast.Constant) else Sym(out_tree, real_out)
        dims = tuple(d if isinstance(d, int) else Unknown(d.real) for d in klass.out_dims)
        known = self.real_dims(ctx, rel)
        fixed = all(isinstance(d, int) for d in t.dims) and not any(isinstance(v, Sym) for v in given.values())
        if known is not None and len(known) == len(dims) + 1:
            # a call whose input size and arguments are constants gives the sizes the IR computed for it
            dims = tuple(k if fixed else d if isinstance(d, int) else Unknown(k) for d, k in zip(dims, known[1:]))
        fresh = klass.out_fresh
        if klass.fresh_if is not None:  # fresh for some arguments only: this call's
            tree = substitute(klass.fresh_if, names)
            fresh = bool(tree.value) if isinstance(tree, pyast.Constant) else bool(
                evaluate_tree(klass.fresh_if, {k: value_of(v) for k, v in names.items()}))
        return f"{klass.name}({', '.join(args)})", Tensor(t.var, ch, dims, fresh)

    def branches_class(self, label: str, s: ast.Branches, ctx: Ctx, t: Tensor, rel) -> tuple[str, Tensor]:
        """A labelled `concat { ... }` (or another merge): a class named after the label, whose constructor
        takes the input channels and the values of the enclosing class its branches read."""
        name = camel_or(label, "Branches")
        if self.gen.globals.claim(name, fallback="Branches") != name:
            raise Unsupported(f"the class name `{name}` twice")
        instances = [(*base, *rel) for base in ctx.instances]
        doc = self.g.graph.get("scopes", {}).get(instances[0], {}).get("doc") if instances else None
        klass = Klass(name, None, "module", doc)
        outer = {k: v for k, v in ctx.env.items() if isinstance(v, Sym)}
        env = {k: (Sym.name(k, v.value) if k in outer else v) for k, v in ctx.env.items()}
        inner = self.new_ctx(klass, env, {k: value_of(v) for k, v in ctx.env.items()}, instances)
        inner.init_names.update(outer)
        rank3 = len(t.dims) == 2
        in_param = "in_channels" if rank3 else "in_features"
        if in_param in env:
            in_param = "in_" + in_param
        self.check_name(in_param)
        inner.init_names.add(in_param)
        klass.in_rank = len(t.dims) + 1
        x = Tensor(ctx_claim(inner.fwd_names, "x"), Sym.name(in_param, value_of(t.ch)),
                   tuple(Unknown(d if isinstance(d, int) else d.real) for d in t.dims), False)
        self.note_references([s], inner)
        init: list = []
        fwd: list = []
        out = self.class_stmt(s, inner, x, init, fwd, 2, None)
        fwd.append((2, f"return {out.var}", None))
        init = self.with_stores(inner, init)
        read = set()
        for _, text, _ in (*init, *fwd):
            read |= _names_read(text)
        used = [k for k in outer if k in read]
        uses_input = in_param in read
        out_tree = substitute(tree_of(out.ch), inner.lets)
        free = {n.id for n in pyast.walk(out_tree) if isinstance(n, pyast.Name)} - FUNCTION_NAMES
        if not free <= {*used, in_param} or not isinstance(value_of(out.ch), int):
            raise Unsupported("the output size of labelled branches")
        if in_param in free:
            uses_input = True
        klass.signature = ([in_param] if uses_input else []) + used
        klass.params = used
        klass.in_param = in_param if uses_input else None
        klass.init, klass.forward = init, fwd
        klass.out_dims, klass.out_fresh = out.dims, out.fresh
        klass.done = True
        self.order.append(klass)
        names = {k: ctx.env[k] for k in used}
        names[in_param] = t.ch
        real_out = evaluate_tree(out_tree, {k: value_of(v) for k, v in names.items()})
        out_sub = substitute(out_tree, {k: tree_of(v) for k, v in names.items()})
        ch = real_out if isinstance(out_sub, pyast.Constant) else Sym(out_sub, real_out)
        dims = tuple(d if isinstance(d, int) else Unknown(d.real) for d in out.dims)
        known = self.real_dims(ctx, rel)
        if known is not None and len(known) == len(dims) + 1:
            dims = tuple(d if isinstance(d, int) else Unknown(k) for d, k in zip(dims, known[1:]))
        args = ([code(t.ch)] if uses_input else []) + [code(ctx.env[k]) for k in used]
        return f"{name}({', '.join(args)})", Tensor(t.var, ch, dims, out.fresh)

    def group(self, body, ctx: Ctx, t: Tensor, rel, init: list, indent: int, label: str) -> tuple[str, Tensor]:
        """A labelled group: `nn.Sequential(a, b)` for a plain list, else built in a list named after it."""
        if not self.is_sequential(body):
            raise Unsupported("a group that is not a chain")
        sub = Ctx(ctx.klass, dict(ctx.env), dict(ctx.real), ctx.init_names, ctx.fwd_names, ctx.stored, ctx.labels,
                  rel, ctx.instances, [0])
        if all(isinstance(s, ast.Group) or isinstance(s, ast.Call) and not s.inline for s in body):
            parts = []
            cur = t
            for s in body:
                ctor, cur = self.seq_item(s, sub, cur, init, indent)
                parts.append(ctor)
            return parts, Tensor(t.var, cur.ch, cur.dims, cur.fresh)
        var = ctx_claim(ctx.init_names, label)
        lines: list = []
        out = self.seq_body(body, sub, Tensor(t.var, t.ch, t.dims, t.fresh), lines, var, indent)
        ctx.env.update({k: v for k, v in sub.env.items() if k in ctx.env})
        if _has_computed_labels(body):  # named children: built in an nn.Sequential, `add_module` for those
            init += [(indent, f"{var} = nn.Sequential()", None), *lines]
            return var, Tensor(t.var, out.ch, out.dims, out.fresh)
        init += [(indent, f"{var} = []", None), *lines]
        return f"nn.Sequential(*{var})", Tensor(t.var, out.ch, out.dims, out.fresh)

    def residual(self, s: ast.Residual, ctx: Ctx, t: Tensor, init, fwd, indent, target) -> Tensor:
        when = None
        if s.when is not None:
            if s.shortcut is not None:
                raise Unsupported("`residual if` with a shortcut")
            when = self.condition(s.when, ctx, t)
            if not isinstance(when, Sym) and not when:  # no skip here: the body alone
                return self.class_body(s.body, ctx, t, init, fwd, indent, target if target != t.var else None)
            if not isinstance(when, Sym):
                when = None
        start = Tensor(t.var, t.ch, t.dims, False)
        main_var = ctx_claim(ctx.fwd_names, "out") if target == t.var else target
        main = self.class_body(s.body, ctx, start, init, fwd, indent, dst=main_var)
        if main.var != main_var:
            raise Unsupported("an empty residual body")
        other = start.var
        if s.shortcut is not None:
            sc_var = ctx_claim(ctx.fwd_names, "identity")
            if s.condition is None:
                side = self.class_body(s.shortcut, ctx, start, init, fwd, indent, dst=sc_var)
            else:
                cond = self.condition(s.condition, ctx, start)
                side = self.optional(cond, s.shortcut, ctx, start, init, fwd, indent, sc_var)
            if code(side.ch) != code(main.ch):
                raise Unsupported("a shortcut whose size differs")
            other = side.var
        rel = (*ctx.path, self.next_position(ctx))
        add = REGISTRY["add"]
        inplace = main.fresh and add.accumulates
        self.check_inplace(s.span, inplace)
        self.decide(s.span, "function")
        attrs = {"inplace": inplace}
        ins = [(3, 8, 8), (3, 8, 8)]
        text = add.torch_call(attrs, [main.var, other], ins)
        if text is None:
            raise Unsupported("add without a call form")
        statement = f"{main.var} = {text}"
        if text.startswith(f"{main.var}.add_(") and text.count(".add_(") == 1:
            statement = f"{main.var} += {text[len(main.var) + 6:-1]}"
        self.assign(ctx, main.var)
        if when is not None:  # `residual if`: the skip only where the condition holds
            fwd.append((indent, f"if {self.flag(when, 'use_residual', ctx)}:", None))
            indent += 1
        fwd.append((indent, statement, self.shapes_of(ctx, rel, s.span)))
        return Tensor(main.var, main.ch, main.dims, REGISTRY["add"].overwritable and when is None)

    def optional(self, cond, stmts, ctx: Ctx, t: Tensor, init, fwd, indent, var) -> Tensor:
        """A shortcut that exists under a condition: `identity = x`, then `if ...: identity = ...`."""
        if not isinstance(cond, Sym):
            if cond:
                return self.class_body(stmts, ctx, t, init, fwd, indent, dst=var)
            return t
        sub_init: list = []
        sub_fwd: list = []
        labels_before = set(ctx.labels)
        out = self.class_body(stmts, ctx, t, sub_init, sub_fwd, indent + 1, dst=var)
        new = [label for label in sorted(ctx.labels - labels_before)]
        if sub_init:
            init.append((indent, f"if {code(cond)}:", None))
            init += sub_init
        fwd.append((indent, f"{var} = {t.var}", None))
        if new:
            init.append((indent, "else:", None))
            init += [(indent + 1, f"self.{label} = None", None) for label in new]
            fwd.append((indent, f"if self.{new[0]} is not None:", None))
        else:
            fwd.append((indent, f"if {self.flag(cond, 'use_shortcut', ctx)}:", None))
        fwd += sub_fwd
        # the size where the shortcut exists: where it does not, the input's, which the add checks equal
        return Tensor(var, out.ch, out.dims, False)

    def branches(self, s: ast.Branches, ctx: Ctx, t: Tensor, init, fwd, indent, target) -> Tensor:
        op = REGISTRY.get(s.op)
        if op is None or not op.merges:
            raise Unsupported("branches")
        start = Tensor(t.var, t.ch, t.dims, False)
        outs = []
        for k, stmt in enumerate(s.body):
            if isinstance(stmt, ast.Doc):
                continue
            if not isinstance(stmt, (ast.Labeled, ast.Call)):
                raise Unsupported("a branch that is not a layer")
            base = stmt.label if isinstance(stmt, ast.Labeled) and isinstance(stmt.label, str) else f"branch{k + 1}"
            var = ctx_claim(ctx.fwd_names, base)
            outs.append(self.class_stmt(stmt, ctx, start, init, fwd, indent, var))
        rel = (*ctx.path, self.next_position(ctx))
        if any(len(o.dims) != len(t.dims) for o in outs):
            raise Unsupported("branches of other ranks")
        ins = [(sample(o.ch, 3), *(d if isinstance(d, int) else d.real for d in o.dims)) for o in outs]
        try:
            shape = op.output_shape({}, ins)
            text = op.torch_call({}, [o.var for o in outs], ins)
        except (OpError, TypeError, ValueError) as e:
            raise Unsupported("branches") from e
        if text is None:
            raise Unsupported("branches without a call form")
        self.decide(s.span, "function")
        self.check_inplace(s.span, False)
        ch = unsample(shape[0], sum(value_of(o.ch) for o in outs) if op.name == "concat" else value_of(outs[0].ch))
        if not isinstance(ch, Sym) and not isinstance(ch, int):
            raise Unsupported("branch sizes")
        var = target
        self.assign(ctx, var)
        fwd.append((indent, f"{var} = {text}", self.shapes_of(ctx, rel, s.span)))
        dims = outs[0].dims if all(o.dims == outs[0].dims for o in outs) else tuple(
            Unknown(d.real if isinstance(d, Unknown) else d) for d in outs[0].dims)
        return Tensor(var, ch, dims, op.overwritable)

    def class_if(self, cond_expr, then, orelse, ctx: Ctx, t: Tensor, init, fwd, indent, dst) -> Tensor:
        cond = self.condition(cond_expr, ctx, t)
        if not isinstance(cond, Sym):
            return self.class_body(then if cond else orelse, ctx, t, init, fwd, indent, dst)
        if t is None:  # before `input`: values only
            return self.values_if(cond, then, orelse, ctx, init, indent)
        results = []
        for branch, truth in ((then, True), (orelse, False)):
            sub = copy.copy(ctx)
            sub.env = dict(ctx.env)
            sub.real = dict(ctx.real)
            sub.conditions = (*ctx.conditions, (cond, truth))
            sub.nested = True
            labels_before = set(ctx.labels)
            b_init: list = []
            b_fwd: list = []
            untaken = truth != bool(cond.value)
            self.untaken += untaken
            try:
                out = self.class_body(branch, sub, t, b_init, b_fwd, indent + 1, dst)
            finally:
                self.untaken -= untaken
            results.append((sub, out, b_init, b_fwd, sorted(ctx.labels - labels_before)))
        (s1, o1, i1, f1, new1), (s2, o2, i2, f2, new2) = results
        chosen = s1 if cond.value else s2
        for name in set(s1.env) | set(s2.env):
            if name in chosen.env:
                ctx.env[name] = chosen.env[name]
                ctx.real[name] = chosen.real.get(name)
        if i1 or i2 or new2 or new1:
            c = code(cond)
            if i1:
                init.append((indent, f"if {c}:", None))
                init += i1
                if i2 or new1:
                    init.append((indent, "else:", None))
                    init += i2 + [(indent + 1, f"self.{label} = None", None) for label in new1 if label not in new2]
            else:
                init.append((indent, f"if not ({c}):", None))
                init += i2
        # forward: the same variable after either branch
        if o1.var != o2.var:
            if not f2:
                f2 = []
            target = o1.var
            f2 = f2 + [(indent + 1, f"{target} = {o2.var}", None)]
            o2 = Tensor(target, o2.ch, o2.dims, o2.fresh)
        if f1 or f2:
            if new1 and not new2:
                test = f"self.{new1[0]} is not None"
            else:
                test = self.forward_code(cond, ctx)
            if f1:
                gated = f1[0][1] == "if self.training:" and all(line[0] > indent + 1 for line in f1[1:])
                if gated and not f2:
                    fwd.append((indent, f"if {test} and self.training:", None))
                    fwd += [(i - 1, text, shapes) for i, text, shapes in f1[1:]]
                else:
                    fwd.append((indent, f"if {test}:", None))
                    fwd += f1
                    if f2:
                        fwd.append((indent, "else:", None))
                        fwd += f2
            else:
                fwd.append((indent, f"if not ({test}):", None))
                fwd += f2
        ch = choose(cond, o1.ch, o2.ch)
        dims = o1.dims if o1.dims == o2.dims else tuple(
            Unknown(d.real if isinstance(d, Unknown) else d) for d in (o1 if cond.value else o2).dims)
        if len(o1.dims) != len(o2.dims):
            raise Unsupported("branches of an `if` with other ranks")
        if o1.fresh == o2.fresh and o1.fresh_if is None and o2.fresh_if is None:
            return Tensor(o1.var, ch, dims, o1.fresh)
        # fresh in one branch only (`silu` where `act`, else `bn`): by the condition, for the callers; the
        # sample's value in the class (every `inplace` it decides is checked against the IR's)
        fresh_if = choose(cond, o1.fresh_if or o1.fresh, o2.fresh_if or o2.fresh)
        return Tensor(o1.var, ch, dims, (o1 if cond.value else o2).fresh, fresh_if)

    def values_if(self, cond, then, orelse, ctx: Ctx, init: list, indent: int) -> None:
        """An `if` of `let`s and `assert`s (before the network's `input`)."""
        subs = []
        for branch in (then, orelse):
            sub = copy.copy(ctx)
            sub.env, sub.real, sub.nested = dict(ctx.env), dict(ctx.real), True
            lines: list = []
            self.class_body(branch, sub, None, lines, [], indent + 1)
            subs.append((sub, lines))
        chosen = subs[0][0] if cond.value else subs[1][0]
        ctx.env.update(chosen.env)
        ctx.real.update(chosen.real)
        for name in set(subs[0][0].env) ^ set(subs[1][0].env):
            ctx.env.pop(name, None)  # bound in one branch only: not readable after it
        (_, l1), (_, l2) = subs
        if l1:
            init += [(indent, f"if {code(cond)}:", None), *l1]
            if l2:
                init += orelse_lines(l2, indent)
        elif l2:
            init += [(indent, f"if not ({code(cond)}):", None), *l2]
        return None

    def let(self, name, value, ctx: Ctx, t: Tensor, init: list, indent: int) -> None:
        v = self.expr(value, ctx, t)
        if isinstance(v, Symbol):
            raise Unsupported("a symbol in `let`")
        if not isinstance(name, str):  # `let (a, b) = ...`: Python unpacks the same way
            names = list(_flat(name))
            for n in names:
                self.check_name(n)
            init.append((indent, f"{', '.join(_target_text(x) for x in name)} = {code(v)}", None))
            _bind(name, value_of(v), ctx)
            for n in names:
                ctx.lets.pop(n, None)
                if ctx.nested:
                    ctx.klass.nested_lets.add(n)
            return
        self.check_name(name)
        ctx.init_names.add(name)
        init.append((indent, f"{name} = {code(v)}", None))
        if ctx.nested:
            ctx.lets.pop(name, None)
            ctx.klass.nested_lets.add(name)
        else:
            ctx.lets[name] = substitute(tree_of(v), ctx.lets)
        ctx.env[name] = Sym.name(name, value_of(v))
        ctx.real[name] = value_of(v)

    def assertion(self, cond, message, ctx: Ctx, t: Tensor, init: list, indent: int) -> None:
        v = self.condition(cond, ctx, t)
        if not isinstance(v, Sym):
            if not v:
                raise Unsupported("an assertion that fails")
            return
        text = message or "assertion failed"
        init.append((indent, f"if not ({code(v)}):", None))
        init.append((indent + 1, f"raise ValueError({text!r})", None))

    def returns(self, ctx: Ctx, t: Tensor) -> list:
        if not ctx.outputs:
            return [(2, f"return {t.var}", None)]
        if len(ctx.outputs) > 1:
            raise Unsupported("several `output` statements")
        names, training, conditions, tensors = ctx.outputs[0]

        def var(name):
            if name not in tensors:
                raise Unsupported(f"output `{name}`")
            v, version = tensors[name]
            if ctx.versions.get(v, 0) != version:
                raise Unsupported(f"output `{name}` overwritten")
            return v

        main = [var(n) for n in names]
        everything = [var(n) for n in (*names, *training)]
        tests = []
        for cond, truth in conditions:
            test = self.forward_code(cond, ctx)
            tests.append(test if truth else f"not ({test})")
        lines = []
        if training:
            lines.append((2, f"if {' and '.join([*tests, 'self.training'])}:", None))
            lines.append((3, f"return {', '.join(everything)}", None))
        if main != [t.var]:
            if tests:
                lines.append((2, f"if {' and '.join(tests)}:", None))
                lines.append((3, f"return {', '.join(main)}", None))
            else:
                lines.append((2, f"return {', '.join(main)}", None))
                return lines
        lines.append((2, f"return {t.var}", None))
        return lines

    # ---- bodies as lists of modules (nn.Sequential) ----------------------------------------------

    def seq_body(self, stmts, ctx: Ctx, t: Tensor, init: list, var: str, indent: int) -> Tensor:
        for s in stmts:
            t = self.seq_stmt(s, ctx, t, init, var, indent)
        return t

    def seq_stmt(self, s, ctx: Ctx, t: Tensor, init: list, var: str, indent: int) -> Tensor:
        if self.constructor_stmt(s, ctx, t, init, indent):
            return t
        match s:
            case ast.Call(inline=True) if s.name in self.blocks:
                return self.inline_call(s, ctx, t, init, var, indent)
            case ast.Call() | ast.Group():
                ctor, out = self.seq_item(s, ctx, t, init, indent)
                init.append((indent, f"{var}.append({ctor})", None))
                return out
            case ast.Labeled(label=label, item=item) if _computed_label(s):
                name, real = self.label_text(label, ctx, t)
                ctx.position[0] += 1
                ctor, out = self.seq_item(item, ctx, t, init, indent, (*ctx.path, real))
                init.append((indent, f"{var}.add_module({name}, {ctor})", None))
                return out
            case ast.Repeat(item=item, count=count):
                n = self.expr(count, ctx, t)
                if not isinstance(value_of(n), int):
                    raise Unsupported("a repeat count")
                if not isinstance(n, Sym):
                    n_tree = tree_of(n)
                else:
                    n_tree = n.tree
                iterable = Sym(pyast.Call(pyast.Name("range", pyast.Load()), [n_tree], []),
                               tuple(range(max(value_of(n), 1))))
                return self.seq_loop("_", iterable, (item,), ctx, t, init, var, indent, count=value_of(n))
            case ast.For(var=target, iterable=iterable, body=body):
                seq = self.loop_iterable(iterable, ctx, t)
                if not isinstance(value_of(seq), tuple):
                    raise Unsupported("a loop over something other than a list")
                stand_in = None
                if not value_of(seq) and isinstance(iterable, ast.Func) and iterable.name == "range":
                    # empty here (`range(1, depth)` at depth 1), not in every instance: the body is
                    # translated at the range's start, and must leave the tensor as it was
                    stand_in = value_of(self.expr(iterable.args[0], ctx, t)) if len(iterable.args) > 1 else 0
                return self.seq_loop(target, seq, body, ctx, t, init, var, indent, stand_in=stand_in)
            case ast.If(condition=cond, then=then, orelse=orelse):
                c = self.condition(cond, ctx, t)
                if not isinstance(c, Sym):
                    return self.seq_body(then if c else orelse, ctx, t, init, var, indent)
                outs = []
                for branch in (then, orelse):
                    sub = copy.copy(ctx)
                    sub.env, sub.real = dict(ctx.env), dict(ctx.real)
                    sub.nested = True
                    lines: list = []
                    out = self.seq_body(branch, sub, t, lines, var, indent + 1)
                    outs.append((sub, out, lines))
                (s1, o1, l1), (s2, o2, l2) = outs
                chosen = s1 if c.value else s2
                ctx.env.update(chosen.env)
                ctx.real.update(chosen.real)
                if l1:
                    init.append((indent, f"if {code(c)}:", None))
                    init += l1
                    init += orelse_lines(l2, indent)
                elif l2:
                    init.append((indent, f"if not ({code(c)}):", None))
                    init += l2
                if len(o1.dims) != len(o2.dims):
                    raise Unsupported("branches of other ranks")
                dims = o1.dims if o1.dims == o2.dims else tuple(
                    Unknown(d.real if isinstance(d, Unknown) else d) for d in (o1 if c.value else o2).dims)
                if o1.fresh == o2.fresh and o1.fresh_if is None and o2.fresh_if is None:
                    return Tensor(t.var, choose(c, o1.ch, o2.ch), dims, o1.fresh)
                fresh_if = choose(c, o1.fresh_if or o1.fresh, o2.fresh_if or o2.fresh)  # as in `class_if`
                return Tensor(t.var, choose(c, o1.ch, o2.ch), dims, (o1 if c.value else o2).fresh, fresh_if)
        raise Unsupported(f"{type(s).__name__} in a chain")

    def loop_iterable(self, iterable, ctx: Ctx, t: Tensor):
        """What a `for` walks: a list, or `range(...)` (a Python range there, where it is only iterated)."""
        if isinstance(iterable, ast.Func) and iterable.name == "range" and not iterable.kwargs and (
                1 <= len(iterable.args) <= 3):
            args = [self.expr(a, ctx, t) for a in iterable.args]
            if not all(type(value_of(a)) is int for a in args):
                raise Unsupported("`range` of other than integers")
            values = tuple(range(*(value_of(a) for a in args)))
            if not any(isinstance(a, Sym) for a in args):
                return values
            return Sym(pyast.Call(pyast.Name("range", pyast.Load()), [tree_of(a) for a in args], []), values)
        if isinstance(iterable, ast.Func) and iterable.name in ("enumerate", "zip") and not iterable.kwargs:
            # the same pairs as Python's, where they are only iterated
            args = [self.expr(a, ctx, t) for a in iterable.args]
            real = [value_of(a) for a in args]
            if iterable.name == "enumerate":
                if not 1 <= len(args) <= 2 or not isinstance(real[0], tuple) or (
                        len(args) == 2 and type(real[1]) is not int):
                    raise Unsupported("`enumerate` of other than a list")
                values = tuple(((real[1] if len(real) == 2 else 0) + i, v) for i, v in enumerate(real[0]))
            else:
                if not args or not all(isinstance(r, tuple) for r in real):
                    raise Unsupported("`zip` of other than lists")
                values = tuple(zip(*real))
            if not any(isinstance(a, Sym) for a in args):
                return values
            return Sym(pyast.Call(pyast.Name(iterable.name, pyast.Load()), [tree_of(a) for a in args], []), values)
        return self.expr(iterable, ctx, t)

    def seq_loop(self, target, seq, body, ctx: Ctx, t: Tensor, init, var, indent, count=None,
                 stand_in=None) -> Tensor:
        values = value_of(seq)
        if not values and stand_in is None:
            raise Unsupported("a loop over an empty list")
        empty = not values
        values = values or (stand_in,)
        names = [target] if isinstance(target, str) else list(_flat(target))
        for n in names:
            if n != "_":
                self.check_name(n)
        sub = copy.copy(ctx)
        sub.env, sub.real = dict(ctx.env), dict(ctx.real)
        sub.nested = True
        first = values[0]
        _bind(target, first, sub)
        # the channels before each pass: unchanged by the body, or a local `channels` the body updates
        probe_lines: list = []
        probe_ctx = copy.copy(sub)
        probe_ctx.env, probe_ctx.real = dict(sub.env), dict(sub.real)
        probe = self.seq_body(body, probe_ctx, t, probe_lines, var, indent + 1)
        dims_change = probe.dims != t.dims
        if empty:
            if code(probe.ch) != code(t.ch) or len(probe.dims) != len(t.dims):
                raise Unsupported("a loop empty here that changes the tensor elsewhere")
            if probe_lines:
                target_text = target if isinstance(target, str) else ", ".join(_target_text(x) for x in target)
                init.append((indent, f"for {target_text} in {code(seq)}:", None))
                init += probe_lines
            return t
        if code(probe.ch) == code(t.ch) and not dims_change:
            lines, out = probe_lines, probe
            ctx_after = probe_ctx
        else:
            chan = "channels"  # one running count for every loop of the class (lets copy what they read)
            if code(t.ch) != chan:
                init.append((indent, f"{chan} = {code(t.ch)}", None))
            start = Tensor(t.var, Sym.name(chan, value_of(t.ch)),
                           tuple(Unknown(d.real if isinstance(d, Unknown) else d) for d in t.dims), t.fresh)
            ctx_after = copy.copy(sub)
            ctx_after.env, ctx_after.real = dict(sub.env), dict(sub.real)
            lines = []
            out = self.seq_body(body, ctx_after, start, lines, var, indent + 1)
            if code(out.ch) != chan:
                lines.append((indent + 1, f"{chan} = {code(out.ch)}", None))
            out = Tensor(t.var, Sym.name(chan, value_of(out.ch)), out.dims, out.fresh)
        if not lines:
            return t
        target_text = target if isinstance(target, str) else ", ".join(_target_text(x) for x in target)
        init.append((indent, f"for {target_text} in {code(seq)}:", None))
        init += lines
        for name, value in ctx_after.env.items():  # lets of the body stay bound after it, as in Python
            if name in ctx.env or name in ctx_after.init_names:
                ctx.env.setdefault(name, value)
        return out

    def inline_call(self, item: ast.Call, ctx: Ctx, t: Tensor, init: list, var: str, indent: int) -> Tensor:
        """`inline conv_bn(c0, 3)` in a chain: the block's layers appended to the chain itself, its
        parameters read as the caller's expressions (torchvision's flat nn.Sequential of MNASNet)."""
        block = self.blocks[item.name]
        if bound_names(block.body) or not self.chain_only(block.body):
            raise Unsupported("an inline block that is not a chain")
        params = [p.name for p in block.params]
        positional = [a for a in item.args if a.name is None]
        if len(positional) > len(params):
            raise Unsupported("too many arguments")
        given = {p: self.expr(a.value, ctx, t) for p, a in zip(params, positional)}
        for a in item.args:
            if a.name is not None:
                if a.name not in params or a.name in given:
                    raise Unsupported("a wrong argument")
                given[a.name] = self.expr(a.value, ctx, t)
        sub = copy.copy(ctx)  # the same scope and positions: the IR numbers the layers in the chain
        sub.env, sub.real = {}, {}
        for p in block.params:
            if p.name in given:
                value = given[p.name]
            elif p.default is not None:
                value = self.expr(p.default, self.new_ctx(ctx.klass, {}, {}, []))
            else:
                raise Unsupported("a missing argument")
            if isinstance(value, Symbol):
                raise Unsupported("a symbol as a block argument")
            sub.env[p.name] = value
            sub.real[p.name] = value_of(value)
        return self.seq_body(block.body, sub, t, init, var, indent)

    def label_text(self, label: ast.Template, ctx: Ctx, t: Tensor) -> tuple[str, str]:
        """A computed label as Python (`f'block{s}-{i}'`: `str` of integers and strings is the spec's) and
        its value for the sample."""
        text, real = [], []
        for part in label.parts:
            if isinstance(part, str):
                value, piece = part, part
            else:
                v = self.expr(part, ctx, t)
                value = value_of(v)
                if isinstance(value, bool) or not isinstance(value, (int, str)):
                    raise Unsupported("a label built from other than integers and strings")
                value = str(value)
                piece = "{" + code(v) + "}" if isinstance(v, Sym) else value
            if any(c in piece for c in "'\\\n") or isinstance(part, str) and any(c in part for c in "{}"):
                raise Unsupported("the text of a computed label")
            text.append(piece)
            real.append(value)
        body = "".join(text)
        return (f"f'{body}'" if body != "".join(real) else repr(body)), "".join(real)

    def seq_item(self, s, ctx: Ctx, t: Tensor, init: list, indent: int, rel=None) -> tuple[str, Tensor]:
        """One module of a chain: an op's module form, a block's class, or a nested nn.Sequential."""
        rel = rel or (*ctx.path, self.next_position(ctx))
        match s:
            case ast.Call(inline=False) if s.name in REGISTRY:
                low = self.lower(s, ctx, t, rel)
                if low.module is None:
                    raise Unsupported(f"`{s.name}` without a module form in a chain")
                self.decide(s.span, "module")
                return low.module, low.out
            case ast.Call(inline=False) if s.name in self.blocks:
                return self.block_call(s, ctx, t, rel)
            case ast.Group(body=body):
                sub = Ctx(ctx.klass, dict(ctx.env), dict(ctx.real), ctx.init_names, ctx.fwd_names, ctx.stored,
                          ctx.labels, rel, ctx.instances, [0])
                if all(isinstance(x, ast.Group) or isinstance(x, ast.Call) and not x.inline for x in body):
                    parts = []
                    cur = t
                    for x in body:
                        ctor, cur = self.seq_item(x, sub, cur, init, indent)
                        parts.append(ctor)
                    return f"nn.Sequential({', '.join(parts)})", cur
                if self.is_sequential(body):  # built in a list, as a labelled group is (`group`)
                    key = (ctx.klass.name, s.span)  # a loop's body is translated twice: one name for both
                    var = self.list_names.get(key) or ctx_claim(bound_names(body) | set(ctx.env) | ctx.init_names,
                                                                "stage")
                    self.list_names[key] = var
                    ctx.init_names.add(var)
                    sub.nested = ctx.nested
                    lines: list = []
                    out = self.seq_body(body, sub, Tensor(t.var, t.ch, t.dims, t.fresh), lines, var, indent)
                    ctx.env.update({k: v for k, v in sub.env.items() if k in ctx.env})
                    ctx.real.update({k: v for k, v in sub.real.items() if k in ctx.env})
                    if _has_computed_labels(body):
                        init += [(indent, f"{var} = nn.Sequential()", None), *lines]
                        return var, Tensor(t.var, out.ch, out.dims, out.fresh)
                    init += [(indent, f"{var} = []", None), *lines]
                    return f"nn.Sequential(*{var})", Tensor(t.var, out.ch, out.dims, out.fresh)
        raise Unsupported(f"{type(s).__name__} as a module of a chain")

    # ---- one layer -------------------------------------------------------------------------------

    def decide(self, span, how: str) -> None:
        if self.decided.setdefault(span, how) != how:
            raise Unsupported("a layer lowered two ways")

    def check_inplace(self, span, inplace: bool) -> None:
        """The IR's decision (Generator.attrs) for every instance of the layer must be ours."""
        for n in self.by_span.get(span, ()):
            if bool(self.gen.attrs(n).get("inplace", False)) != inplace:
                raise Unsupported(f"`inplace` of {n} differs from the IR's")

    def lower(self, item: ast.Call, ctx: Ctx, t: Tensor, rel) -> Lowered:
        op = REGISTRY[item.name]
        if op.bare_parameter:
            raise Unsupported("a bare parameter")
        if len(t.dims) + 1 not in op.ranks:
            raise Unsupported("a rank the op does not take")
        specs = {a.name: a for a in op.args}
        given: dict = {}
        positional = [a for a in item.args if a.name is None]
        if len(positional) > len(op.args):
            raise Unsupported("too many arguments")
        for spec, a in zip(op.args, positional):
            given[spec.name] = self.expr(a.value, ctx, t)
        for a in item.args:
            if a.name is not None:
                if a.name not in specs or a.name in given:
                    raise Unsupported("a wrong argument")
                given[a.name] = self.expr(a.value, ctx, t)
        attrs: dict = {}
        for spec in op.args:
            if spec.name not in given:
                if spec.required:
                    raise Unsupported("a missing argument")
                attrs[spec.name] = spec.kind(spec.default)
                continue
            v = given[spec.name]
            try:
                converted = spec.kind(value_of(v))
            except ArgError as e:
                # a branch no instance here takes (RegNetX's SE, `se_ratio` 0: 0 channels): a stand-in sample
                # of 1; the text is checked independent of the number as for any other (two scales)
                if not (self.untaken and isinstance(v, Sym) and type(v.value) is int and v.value <= 0):
                    raise Unsupported("an argument the op rejects") from e
                v = Sym(v.tree, 1)
                converted = spec.kind(1)
            if not isinstance(v, Sym):
                attrs[spec.name] = converted
            elif isinstance(converted, tuple) and not isinstance(v.value, tuple) and all(
                    c == v.value for c in converted):
                attrs[spec.name] = tuple(v for _ in converted)
            elif isinstance(v.value, tuple) and isinstance(converted, tuple):
                raise Unsupported("a symbolic list as an argument")
            elif type(converted) is type(v.value) and converted == v.value:
                attrs[spec.name] = v
            elif isinstance(converted, float) and isinstance(v.value, int):
                attrs[spec.name] = Sym(v.tree, float(v.value))
            else:
                raise Unsupported("an argument the op converts")
        if "inplace" in attrs:
            if isinstance(attrs["inplace"], Sym):
                raise Unsupported("a symbolic inplace")
            attrs["inplace"] = bool(attrs["inplace"]) and t.fresh
            self.check_inplace(item.span, attrs["inplace"])
        elif op.accumulates:
            raise Unsupported("an accumulating op in a chain")
        if any(is_channels_last(self.g.nodes[n]["shape"]) for n in self.by_span.get(item.span, ())):
            raise Unsupported("channels-last tensors")
        return Lowered(op, attrs, t)




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


def _computed_label(s) -> bool:
    """`"block{s}-{i}": layer` (a layer, not inline)."""
    return isinstance(s, ast.Labeled) and isinstance(s.label, ast.Template) and (
        isinstance(s.item, ast.Group) or isinstance(s.item, ast.Call) and not s.item.inline)


def _has_computed_labels(stmts) -> bool:
    """Whether a chain names some of its modules by computed labels (through `if`s and `for`s)."""
    for s in stmts:
        match s:
            case ast.Labeled() if _computed_label(s):
                return True
            case ast.If(then=then, orelse=orelse):
                if _has_computed_labels(then) or _has_computed_labels(orelse):
                    return True
            case ast.For(body=body):
                if _has_computed_labels(body):
                    return True
    return False


def _merges_input(stmts) -> bool:
    """Whether a merge among the statements reads the block's input by name (`mul(in, gate)`)."""
    for s in stmts:
        match s:
            case ast.Call(args=args) if s.name in REGISTRY and REGISTRY[s.name].merges:
                if any(isinstance(a.value, ast.InTensor) for a in args):
                    return True
            case ast.If(then=then, orelse=orelse):
                if _merges_input(then) or _merges_input(orelse):
                    return True
    return False


def _names_read(text: str) -> set:
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


def _flat(target):
    for x in target:
        if isinstance(x, str):
            yield x
        else:
            yield from _flat(x)


def _target_text(target) -> str:
    if isinstance(target, str):
        return target
    return "(" + ", ".join(_target_text(x) for x in target) + ")"


def _bind(target, value, ctx: Ctx) -> None:
    if isinstance(target, str):
        if target != "_":
            ctx.env[target] = Sym.name(target, value)
            ctx.real[target] = value
            ctx.init_names.add(target)
        return
    if not isinstance(value, tuple) or len(value) != len(target):
        raise Unsupported("unpacking")
    for t, v in zip(target, value):
        _bind(t, v, ctx)


