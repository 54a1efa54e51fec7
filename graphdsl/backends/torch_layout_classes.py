"""Class assembly for the structured PyTorch layout (graphdsl.backends.torch_layout): a block's class
(an nn.Module, or an nn.Sequential where its body is a chain), the call of a block and its output
size, the class of labelled branches, a labelled group, and what the network's `forward` returns."""

from __future__ import annotations

import ast as pyast

from .. import ast
from ..values import Symbol
from .torch_layout_common import (
    Ctx,
    Klass,
    bound_names,
    camel_or,
    computed_label,
    ctx_claim,
    has_computed_labels,
    labelled_layer,
    merges_input,
    names_read,
    tree_value,
)
from .torch_lowering import FUNCTION_NAMES, Tensor, Unknown
from .torch_values import (
    Sym,
    Unsupported,
    code,
    evaluate_tree,
    substitute,
    tree_of,
    value_of,
)


class ClassesMixin:
    """Blocks as classes, and their calls."""

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
        klass.body = block.body
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
            if has_computed_labels(block.body):  # named children: `self.add_module(f"block{s}-{i}", ...)`
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
            if merges_input(block.body):  # `mul(in, gate)`: the first layer must not overwrite the input
                dst = ctx_claim(ctx.fwd_names, "out")
                ctx.input = inner
            ctx.tensors["in"], ctx.named["in"] = (inner.var, 0), inner  # `from in`
            ctx.main = inner.var
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
                                              or computed_label(s) for s in stmts)

    def chain_only(self, stmts, named: bool | None = None) -> bool:
        """Whether statements are a chain of layers; a plain label (`norm5: bn`) only among computed ones,
        where the chain is built by `add_module` anyway (DenseNet's `features`)."""
        if named is None:
            named = has_computed_labels(stmts)
        for s in stmts:
            match s:
                case ast.Doc() | ast.Let() | ast.Assert():
                    pass
                case ast.If(then=then, orelse=orelse):
                    if not (self.chain_only(then, named) and self.chain_only(orelse, named)):
                        return False
                case ast.For(body=body):
                    if not self.chain_only(body, named):
                        return False
                case ast.Call(inline=False) | ast.Group():
                    pass
                case ast.Labeled() if computed_label(s):  # `"block{s}-{i}": ...`: add_module, as torchvision
                    pass
                case ast.Labeled() if named and labelled_layer(s):
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
            read |= names_read(text)
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
        if has_computed_labels(body):  # named children: built in an nn.Sequential, `add_module` for those
            init += [(indent, f"{var} = nn.Sequential()", None), *lines]
            return var, Tensor(t.var, out.ch, out.dims, out.fresh, out.fresh_if)
        init += [(indent, f"{var} = []", None), *lines]
        return f"nn.Sequential(*{var})", Tensor(t.var, out.ch, out.dims, out.fresh, out.fresh_if)

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
