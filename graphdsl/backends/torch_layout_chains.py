"""Bodies as lists of modules (graphdsl.backends.torch_layout): a chain of unlabelled layers through
`if`, `for`, `let` and `* n` becomes the items of an nn.Sequential, built in a list
(`layers.append(...)`) or by `add_module` for computed labels."""

from __future__ import annotations

import ast as pyast
import copy

from .. import ast
from ..ops import REGISTRY
from ..values import Symbol
from .torch_layout_common import (
    Ctx,
    bind,
    bound_names,
    computed_label,
    ctx_claim,
    has_computed_labels,
    labelled_layer,
    loop_header,
    negated,
    orelse_lines,
)
from .torch_lowering import Tensor, Unknown
from .torch_values import (
    Sym,
    Unsupported,
    choose,
    code,
    tree_of,
    value_of,
)


class ChainsMixin:
    """Chains as nn.Sequential."""

    # ---- bodies as lists of modules (nn.Sequential) ----------------------------------------------

    def seq_body(self, stmts, ctx: Ctx, t: Tensor, init: list, var: str, indent: int, branch: bool = False) -> Tensor:
        """The statements' modules appended to `var`. In a loop that counts its channels (`ctx.track`), the
        count follows each layer that makes it an expression where more follow, and the end of a branch of
        an `if` (`channels = channels + n * growth_rate`, then `Transition(channels, channels // 2)`); a name
        (`out`, `v`) is read as it is."""
        layers = [k for k, s in enumerate(stmts) if not isinstance(s, (ast.Doc, ast.Let, ast.Assert))]
        for k, s in enumerate(stmts):
            t = self.seq_stmt(s, ctx, t, init, var, indent)
            chan = ctx.track
            if chan and not simple(t.ch) and (branch and k == layers[-1] or any(j > k for j in layers)):
                init.append((indent, f"{chan} = {code(t.ch)}", None))
                t = Tensor(t.var, Sym.name(chan, value_of(t.ch)), t.dims, t.fresh, t.fresh_if, t.last)
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
            case ast.Labeled(label=label, item=item) if labelled_layer(s):
                name, real = self.label_text(label, ctx, t) if computed_label(s) else (repr(label), label)
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
                    sub = ctx.nested_copy()
                    lines: list = []
                    out = self.seq_body(branch, sub, t, lines, var, indent + 1, branch=True)
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
                    init.append((indent, f"if {negated(code(c))}:", None))
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
        sub = self.loop_ctx(target, ctx)
        first = values[0]
        bind(target, first, sub)
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
                init.append((indent, loop_header(target, code(seq), probe_lines, ctx), None))
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
            ctx_after.track = chan
            lines = []
            out = self.seq_body(body, ctx_after, start, lines, var, indent + 1)
            if code(out.ch) != chan:
                lines.append((indent + 1, f"{chan} = {code(out.ch)}", None))
            out = Tensor(t.var, Sym.name(chan, value_of(out.ch)), out.dims, out.fresh)
        if not lines:
            return t
        for name, value in ctx_after.env.items():  # lets of the body stay bound after it, as in Python
            if name in ctx.env or name in ctx_after.init_names:
                ctx.env.setdefault(name, value)
        init.append((indent, loop_header(target, code(seq), lines, ctx), None))
        init += lines
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
                    if has_computed_labels(body):
                        init += [(indent, f"{var} = nn.Sequential()", None), *lines]
                        return var, Tensor(t.var, out.ch, out.dims, out.fresh, out.fresh_if)
                    init += [(indent, f"{var} = []", None), *lines]
                    return f"nn.Sequential(*{var})", Tensor(t.var, out.ch, out.dims, out.fresh, out.fresh_if)
        raise Unsupported(f"{type(s).__name__} as a module of a chain")


def simple(v) -> bool:
    """A value read as it is: a constant, a name, or a name indexed by a constant or a name (`dims[0]`)."""
    tree = tree_of(v)
    if isinstance(tree, pyast.Subscript):
        return isinstance(tree.value, pyast.Name) and isinstance(tree.slice, (pyast.Name, pyast.Constant))
    return isinstance(tree, (pyast.Name, pyast.Constant))
