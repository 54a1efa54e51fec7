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
(`self.add_module(f'block{s}-{i}', ...)`, as torchvision's AnyStage; plain labels beside them, as
DenseNet's `features.norm5`), `inline` blocks in a chain (their layers appended flat), `for` over
`range`/`enumerate`/`zip`, slices, `ceil`/`floor` (`math.ceil`). Named tensors read across statements:
`from name` and merges of labelled layers (`torch.cat([expand1x1, x], 1)`, SqueezeNet's Fire), a tensor
read later kept in a variable of its own; `(x1, x2) = chunk(2)` as `x.chunk(2, dim=1)`. A `for` among a
class's members whose passes add one submodule each under a computed label, plain or grown by a concat
(DenseNet's dense block, ShuffleNetV2's stages: torch_layout_loops). Channels-last tensors between
permutes (`Tensor.last`, ConvNeXt), a labelled bare parameter (`self.layer_scale = nn.Parameter(...)`).
A block whose output is a new tensor for some arguments only (`silu` where `act`, else `bn`) gives its
callers that condition (`Klass.fresh_if`), and a residual add on such an output is in place where it is
(`if self.add_in_place: out += x`, checked against the IR in every instance: EfficientNetV2's
Fused-MBConv). A network parameter whose default reads others (`stem = setting[0][4]`) defaults to `None`
and is computed in `__init__`.

What is not translated raises Unsupported, and the caller (graphdsl.backends.torch.generate) falls
back to one class per distinct structure for the whole file: `split`, a merge of other than named
tensors, `inline` blocks outside a chain, labelled `residual` scopes, other `for`s outside a chain,
conditions on `in.height`/`in.width`, an unlabelled layer with parameters inside an `if`, an unlabelled
bare parameter, `/` of integers (whose meaning differs from Python's), a branch not taken here whose
arguments an op rejects (RegNetX's SE at `se_ratio` 0 is sampled at a stand-in), an `inplace` the IR
decides other than by the arguments. Every shipped spec is translated. A condition Python cannot see at
construction never makes a specialised copy of a class: the file keeps the per-structure layout instead.

The translator is one class, `Layout`, in parts a reader holds one at a time: this module (the whole
file, expressions, one layer), torch_layout_classes (a block's class and its calls),
torch_layout_members (a body as a class's submodules and forward lines), torch_layout_merges (named
tensors meeting: merges, residuals, branches, `if`s around layers), torch_layout_loops (`for` among a
class's members), torch_layout_chains (chains as nn.Sequential) and torch_layout_common (what they
share).
"""

from __future__ import annotations

import ast as pyast
import copy

from .. import ast
from ..ops import REGISTRY, ArgError
from ..ops.base import is_channels_last
from ..values import Symbol
from .scopes import output_node
from .torch_layout_chains import ChainsMixin
from .torch_layout_classes import ClassesMixin
from .torch_layout_common import (
    LOCALS,
    Ctx,
    Klass,
    bind,
    camel_or,
    ctx_claim,
    flat_names,
    target_code,
    tree_value,
)
from .torch_layout_loops import LoopsMixin
from .torch_layout_members import MembersMixin
from .torch_layout_merges import MergesMixin
from .torch_lowering import FUNCTION_NAMES, Lowered, Tensor, Unknown
from .torch_values import (
    Sym,
    Unsupported,
    binary,
    call,
    code,
    evaluate_tree,
    fold,
    logical_not,
    negate,
    tree_of,
    value_of,
)

__all__ = ["Unsupported", "translate", "Layout", "Klass", "Ctx"]


def translate(gen) -> tuple[str, dict]:
    """(the classes' text, fx node counts) for `gen`'s network, or Unsupported."""
    return Layout(gen).run()


class Layout(ChainsMixin, LoopsMixin, MergesMixin, MembersMixin, ClassesMixin):
    """The translation of one network: the mixins hold the parts (classes, members, merges, chains)."""

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
        self.split_spans: set = set()  # `(a, b) = chunk(2)`: one `x.chunk(2, dim=1)` and a getitem per part
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

    # ---- the whole file --------------------------------------------------------------------------

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
        klass.body = net.body
        env = {p: Sym.name(p, params[p]) for p in names}
        ctx = self.new_ctx(klass, env, dict(params), [()])
        ctx.init_names.update(names)
        # a default that reads other parameters (`stem = setting[0][4]`), compiled at that value: `stem=None`
        # and the expression in __init__, so that other values of those parameters give the `-D` network
        derived = {}
        for p in net.params:
            if p.default is not None:
                try:
                    value = self.expr(p.default, ctx)
                except Unsupported:
                    continue
                if isinstance(value, Sym) and value.value == params[p.name] and type(value.value) is type(
                        params[p.name]):
                    derived[p.name] = value
        klass.signature = ["*"] + [f"{p}=None" if p in derived else f"{p}={code(tree_value(params[p]))}"
                                   for p in names] if names else []
        klass.params = names
        inputs = [i for i, s in enumerate(net.body) if isinstance(s, ast.Input)]
        if len(inputs) != 1 or not all(isinstance(s, (ast.Doc, ast.Let, ast.Assert, ast.If))
                                       for s in net.body[:inputs[0]]):
            raise Unsupported("`input` after a layer")
        self.note_references(net.body, ctx)
        init: list = []
        fwd: list = []
        for name, value in derived.items():
            init += [(2, f"if {name} is None:", None), (3, f"{name} = {code(value)}", None)]
        for s in net.body[:inputs[0]]:
            self.class_stmt(s, ctx, None, init, fwd, 2, None)
        dims = [self.expr(d, ctx) for d in net.body[inputs[0]].dims]
        if any(not isinstance(value_of(d), int) for d in dims) or len(dims) not in (1, 3):
            raise Unsupported("an input shape")
        # a size given by a parameter is one the layers must not depend on (they are checked as any unknown)
        t = Tensor(ctx_claim(ctx.fwd_names, "x"), dims[0],
                   tuple(Unknown(d.value) if isinstance(d, Sym) else d for d in dims[1:]), False)
        ctx.main = t.var
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
            if d["span"] in self.split_spans:  # the chunk call counts with the first part
                counts[n] = 2 if gen.attrs(n)["start"] == 0 else 1
            elif how == "module":
                counts[n] = op.torch_module_nodes(gen.attrs(n), gen.in_shapes(n))
            else:
                counts[n] = op.torch_nodes(gen.attrs(n), len(gen.inputs(n)))
        return counts

    def check_coverage(self) -> None:
        """Every IR node comes from a translated line (else the translation missed something)."""
        for span, nodes in self.by_span.items():
            if span not in self.decided:
                raise Unsupported(f"IR node {nodes[0]} has no translated line")

    # ---- helpers ---------------------------------------------------------------------------------

    def new_ctx(self, klass: Klass, env: dict, real: dict, instances: list) -> Ctx:
        return Ctx(klass, env, real, set(LOCALS), {"x"} - {"x"}, {}, set(), (), instances, [0])

    def loop_ctx(self, target, ctx: Ctx) -> Ctx:
        """The context of a `for` body binding `target` (a name or nested names; `_` binds nothing)."""
        for name in ([target] if isinstance(target, str) else flat_names(target)):
            if name != "_":
                self.check_name(name)
        return ctx.nested_copy()

    def check_name(self, name: str, local: bool = False) -> None:
        """A spec name usable in the generated code; a `local` of `__init__` may be named like an attribute
        of nn.Module (`half`) until forward reads it (`store`)."""
        from .torch import MODULE_ATTRS, RESERVED_GLOBALS, Namespace

        if not Namespace(reserved=RESERVED_GLOBALS | LOCALS | FUNCTION_NAMES).usable(name) or (
                name in MODULE_ATTRS and not local):
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
        names = list(flat_names(e.target)) if not isinstance(e.target, str) else [e.target]
        for n in names:
            if n != "_":
                self.check_name(n)
        sub = copy.copy(ctx)
        sub.env, sub.real, sub.init_names = dict(ctx.env), dict(ctx.real), set(ctx.init_names)
        bind(e.target, values[0], sub)
        element = self.expr(e.element, sub, t)
        condition = self.expr(e.condition, sub, t) if e.condition is not None else None
        real = []
        for v in values:  # the value for this instance, by the same code
            env = {k: value_of(x) for k, x in ctx.env.items()}
            scope = copy.copy(sub)
            scope.env, scope.real, scope.init_names = {}, {}, set()
            bind(e.target, v, scope)
            env.update(scope.real)
            if condition is not None and not evaluate_tree(tree_of(condition), env):
                continue
            real.append(evaluate_tree(tree_of(element), env))
        free = {n.id for x in (element, condition) if isinstance(x, Sym) for n in pyast.walk(x.tree)
                if isinstance(n, pyast.Name)} - set(names) - FUNCTION_NAMES
        if not isinstance(seq, Sym) and not free:  # over constants only: the list itself
            return tuple(real)
        target = e.target if isinstance(e.target, str) else ", ".join(target_code(x) for x in e.target)
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
        ctx.hoisted.append((name, code(fold(copy.deepcopy(tree_of(cond))))))
        self.store(ctx, name)
        return f"self.{name}"

    def store(self, ctx: Ctx, name: str) -> None:
        """`forward` reads `self.name`: __init__ stores it at its end, where every local it reads is bound."""
        if name in ctx.labels:
            raise Unsupported(f"`{name}` names both a value and a submodule")
        self.check_name(name)  # an attribute now
        hoisted = dict(ctx.hoisted).get(name)
        reads = {n.id for n in pyast.walk(pyast.parse(hoisted, mode="eval"))
                 if isinstance(n, pyast.Name)} if hoisted else {name}
        if reads & ctx.klass.nested_lets:
            raise Unsupported(f"forward reads `{name}`, bound inside an `if` or a `for`")
        ctx.stored[name] = True

    # ---- one layer -------------------------------------------------------------------------------

    def decide(self, span, how: str) -> None:
        if self.decided.setdefault(span, how) != how:
            raise Unsupported("a layer lowered two ways")

    def check_inplace(self, span, inplace: bool) -> None:
        """The IR's decision (Generator.attrs) for every instance of the layer must be ours."""
        for n in self.by_span.get(span, ()):
            if bool(self.gen.attrs(n).get("inplace", False)) != inplace:
                raise Unsupported(f"`inplace` of {n} differs from the IR's")

    def lower(self, item: ast.Call, ctx: Ctx, t: Tensor, rel, parameter: bool = False) -> Lowered:
        """The layer lowered at symbolic arguments; a bare parameter (`scale`) only where the caller makes
        it an attribute of the class (`parameter`)."""
        op = REGISTRY[item.name]
        if op.bare_parameter and not parameter:
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
        low = Lowered(op, attrs, t)
        if any(is_channels_last(self.g.nodes[n]["shape"]) != low.out.last for n in self.by_span.get(item.span, ())):
            raise Unsupported("a layout other than the IR's")
        return low
