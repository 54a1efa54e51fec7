"""A body as members of a class (graphdsl.backends.torch_layout): modules in `__init__`, calls in
`forward`; `let`, `assert` and `if`s of values."""

from __future__ import annotations

import ast as pyast
import copy

from .. import ast
from ..ops import REGISTRY
from ..values import Symbol
from .torch_layout_common import (
    Ctx,
    bind,
    ctx_claim,
    flat_names,
    negated,
    orelse_lines,
    target_code,
    tensor_reads,
)
from .torch_lowering import Tensor
from .torch_values import (
    Sym,
    Unsupported,
    binary,
    code,
    substitute,
    tree_of,
    value_of,
)


class MembersMixin:
    """Statements as a class's submodules and forward lines."""

    # ---- bodies as class members -----------------------------------------------------------------

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
        outer_live = ctx.live
        for k, s in enumerate(stmts):
            ctx.live = outer_live | tensor_reads(stmts[k + 1:])
            if dst is None and t is not None and self.kept(ctx, t.var) and isinstance(
                    s, (ast.Labeled, ast.Call, ast.Residual, ast.Branches, ast.If)):
                # the current tensor is read by name later (`from squeeze_activation`): a new variable
                label = s.label if isinstance(s, ast.Labeled) and isinstance(s.label, str) else "out"
                dst = ctx_claim(ctx.fwd_names, label)
            elif dst is None and t is not None and isinstance(s, ast.Labeled) and s.label in ctx.live and (
                    t.var != ctx.main and self.holds_named(ctx, t.var)):
                # a tensor read by name, made from another one read by name (`from branch3x3_1`): its own
                # variable, named after it (`branch3x3_2b = self.branch3x3_2b(branch3x3_1)`)
                dst = ctx_claim(ctx.fwd_names, s.label)
            try:
                t = self.class_stmt(s, ctx, t, init, fwd, indent, dst)
            finally:
                ctx.live = outer_live
            init += [(indent, line, None) for line in ctx.pending]
            ctx.pending.clear()
            if dst is not None and t is not None and t.var == dst:
                dst = None
        return t

    def holds_named(self, ctx: Ctx, var: str) -> bool:
        """Whether `var` holds a tensor that the class reads by name somewhere (`from x2`)."""
        named = tensor_reads(ctx.klass.body)
        return any(ctx.tensors.get(name) == (var, ctx.versions.get(var, 0)) for name in named)

    def kept(self, ctx: Ctx, var: str) -> bool:
        """Whether `var` holds a named tensor that a later statement reads."""
        return any(name in ctx.tensors and ctx.tensors[name] == (var, ctx.versions.get(var, 0))
                   for name in ctx.live)

    def named_tensor(self, name: str, ctx: Ctx) -> Tensor:
        """The tensor `from name` (or a merge) reads: a labelled layer's output or `in`, not overwritten since."""
        if name not in ctx.named or name not in ctx.tensors:
            raise Unsupported(f"the tensor `{name}`")
        var, version = ctx.tensors[name]
        if ctx.versions.get(var, 0) != version:
            raise Unsupported(f"the tensor `{name}` overwritten")
        named = ctx.named[name]
        return Tensor(var, named.ch, named.dims, False)

    def split(self, s: ast.Split, ctx: Ctx, t: Tensor, fwd: list, indent: int) -> Tensor:
        """`(x1, x2) = chunk(2)` as `x1, x2 = x.chunk(2, dim=1)` (torchvision's ShuffleNetV2); the current
        tensor stays."""
        call_ = s.call
        if call_.name != "chunk" or len(call_.args) != 1 or call_.args[0].name is not None or len(t.dims) != 2:
            raise Unsupported(f"`{call_.name}` of channels")
        n = self.expr(call_.args[0].value, ctx, t)
        if isinstance(n, Sym) or type(n) is not int or n != len(s.names):
            raise Unsupported("a chunk count other than the names'")
        ch = binary("//", t.ch, n)
        names = []
        for name, _ in s.names:
            self.check_name(name)
            if name in ctx.fwd_names:
                raise Unsupported(f"the tensor name `{name}` twice")
            names.append(ctx_claim(ctx.fwd_names, name))
        self.decide(call_.span, "function")
        self.split_spans.add(call_.span)
        fwd.append((indent, f"{', '.join(names)} = {t.var}.chunk({n}, dim=1)", None))
        for (name, _), var in zip(s.names, names):
            self.assign(ctx, var)
            ctx.tensors[name] = (var, ctx.versions[var])
            ctx.named[name] = Tensor(var, ch, t.dims, False)
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
            case ast.From(name=name):
                return self.named_tensor(name, ctx)
            case ast.For():
                return self.class_loop(s, ctx, t, init, fwd, indent, target)
            case ast.Split():
                return self.split(s, ctx, t, fwd, indent)
            case ast.Output(names=names, training=training):
                ctx.outputs.append(([n for n, _ in names], [n for n, _ in training], ctx.conditions,
                                    dict(ctx.tensors)))
                return t
            case ast.If(condition=cond, then=then, orelse=orelse):
                return self.class_if(cond, then, orelse, ctx, t, init, fwd, indent, dst)
        raise Unsupported(f"{type(s).__name__} in a class")

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
                low = self.lower(item, ctx, t, rel, parameter=True)
                if op.bare_parameter:  # `self.layer_scale = nn.Parameter(...)`, used as `self.layer_scale * x`
                    return self.parameter(label, item, low, ctx, t, init, fwd, indent, fwd_indent, target, rel)
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
        return Tensor(target, out.ch, out.dims, out.fresh, out.fresh_if)

    def parameter(self, label: str, item: ast.Call, low, ctx: Ctx, t: Tensor, init: list, fwd: list, indent: int,
                  fwd_indent: int, target: str, rel) -> Tensor:
        """A labelled bare parameter: an attribute of the class, read by the op's call in forward."""
        if low.parameter is None or low.call is None:
            raise Unsupported(f"`{low.op.name}` without a parameter form")
        self.decide(item.span, "function")
        ctx.labels.add(label)
        init.append((indent, f"self.{label} = {low.parameter}", None))
        if low.reads:
            raise Unsupported(f"`{low.op.name}` reading values of the class")
        text = low.call.replace("__p__", f"self.{label}").replace("__x__", t.var)
        self.assign(ctx, target)
        fwd.append((fwd_indent, f"{target} = {text}", self.shapes_of(ctx, rel, None)))
        out = low.out
        return Tensor(target, out.ch, out.dims, out.fresh, None, out.last)

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
            init += [(indent, f"if {negated(code(cond))}:", None), *l2]
        return None

    def let(self, name, value, ctx: Ctx, t: Tensor, init: list, indent: int) -> None:
        v = self.expr(value, ctx, t)
        if isinstance(v, Symbol):
            raise Unsupported("a symbol in `let`")
        if not isinstance(name, str):  # `let (a, b) = ...`: Python unpacks the same way
            names = list(flat_names(name))
            for n in names:
                self.check_name(n, local=True)
            init.append((indent, f"{', '.join(target_code(x) for x in name)} = {code(v)}", None))
            bind(name, value_of(v), ctx)
            for n in names:
                ctx.lets.pop(n, None)
                if ctx.nested:
                    ctx.klass.nested_lets.add(n)
            return
        self.check_name(name, local=True)
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
