"""Where tensors meet in a class's `forward` (graphdsl.backends.torch_layout): merges of named
tensors, residual adds and their optional shortcuts, branches, and `if`s around layers."""

from __future__ import annotations

import copy

from .. import ast
from ..ops import REGISTRY, OpError
from ..ops.base import is_channels_last
from .torch_layout_common import (
    Ctx,
    ctx_claim,
    negated,
)
from .torch_lowering import Tensor, Unknown
from .torch_values import (
    Sym,
    Unsupported,
    binary,
    choose,
    code,
    evaluate_tree,
    sample,
    substitute,
    unsample,
    value_of,
)


class MergesMixin:
    """Merges, residuals, branches and conditional layers."""

    # ---- merges, residuals and branches ----------------------------------------------------------

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
            tensors.append(self.named_tensor(a.value.name, ctx))
        rel = (*ctx.path, self.next_position(ctx))
        if any(len(x.dims) != len(t.dims) for x in tensors):
            raise Unsupported("a merge of other ranks")
        ins = [(sample(x.ch, 3), *(d if isinstance(d, int) else d.real for d in x.dims)) for x in tensors]
        if op.name == "concat":  # the IR checked the spatial sizes; an instance's sample may not meet
            ins = [(i[0], *ins[0][1:]) for i in ins]
        if target == t.var and ctx.main and ctx.input is None and not self.kept(ctx, ctx.main):
            target = ctx.main  # the tensors meet in the class's own variable (`x = torch.cat([x1, x2], 1)`)
        try:
            shape = op.output_shape({}, ins)
            text = op.torch_call({}, [x.var for x in tensors], ins)
        except (OpError, TypeError, ValueError) as e:
            raise Unsupported("a merge") from e
        if text is None:
            raise Unsupported(f"`{op.name}` of named tensors")
        self.decide(s.span, "function")
        self.check_inplace(s.span, False)
        if op.name == "concat":  # the channels add up (`e1 + e3`)
            ch = tensors[0].ch
            for x in tensors[1:]:
                ch = binary("+", ch, x.ch)
            if sum(int.__index__(i[0]) for i in ins) != shape[0]:
                raise Unsupported("concat sizes")
        else:
            ch = unsample(shape[0], value_of(tensors[0].ch))
        if not isinstance(ch, Sym) and not isinstance(ch, int):
            raise Unsupported("merge sizes")
        widest = max(tensors, key=lambda x: sum(not (isinstance(d, int) and d == 1) for d in x.dims))
        self.assign(ctx, target)
        fwd.append((indent, f"{target} = {text}", self.shapes_of(ctx, rel, s.span)))
        return Tensor(target, ch, widest.dims, op.overwritable)

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
        fresh_if = main.fresh_if if isinstance(main.fresh_if, Sym) and add.accumulates else None
        if fresh_if is None:
            self.check_inplace(s.span, inplace)
        else:  # a new tensor in some instances only (Fused-MBConv ending in SiLU at ratio 1, in BN else)
            self.check_inplace_where(s.span, rel, fresh_if, ctx)
        self.decide(s.span, "function")

        def statement(in_place: bool) -> str:
            text = add.torch_call({"inplace": in_place}, [main.var, other], [(3, 8, 8), (3, 8, 8)])
            if text is None:
                raise Unsupported("add without a call form")
            if text.startswith(f"{main.var}.add_(") and text.count(".add_(") == 1:
                return f"{main.var} += {text[len(main.var) + 6:-1]}"
            return f"{main.var} = {text}"

        self.assign(ctx, main.var)
        if when is not None:  # `residual if`: the skip only where the condition holds
            fwd.append((indent, f"if {self.flag(when, 'use_residual', ctx)}:", None))
            indent += 1
        shapes = self.shapes_of(ctx, rel, s.span)
        if fresh_if is None:
            fwd.append((indent, statement(inplace), shapes))
        else:  # in place where the body's output is a tensor of its own, as the IR decides
            fwd.append((indent, f"if {self.flag(fresh_if, 'add_in_place', ctx)}:", None))
            fwd.append((indent + 1, statement(True), shapes))
            fwd.append((indent, "else:", None))
            fwd.append((indent + 1, statement(False), shapes))
        return Tensor(main.var, main.ch, main.dims, REGISTRY["add"].overwritable and when is None)

    def check_inplace_where(self, span, rel: tuple, condition: Sym, ctx: Ctx) -> None:
        """The IR's `inplace` for the layer in each instance of the class is `condition` there: evaluated
        at the instance's block arguments and input channels (the class's lets substituted)."""
        klass = ctx.klass
        tree = substitute(condition.tree, ctx.lets)
        g = self.g
        checked = 0
        for base in ctx.instances:
            node = ".".join((*base, *rel))
            if node not in g or g.nodes[node]["span"] != span:
                continue
            env = dict(g.graph["scopes"].get(tuple(base), {}).get("args") or {})
            if klass.in_param:
                env[klass.in_param] = self.instance_input_channels(tuple(base))
            try:
                expected = bool(evaluate_tree(tree, env))
            except Unsupported as e:
                raise Unsupported("an `inplace` that depends on what the instance does not say") from e
            if bool(self.gen.attrs(node).get("inplace", False)) != expected:
                raise Unsupported(f"`inplace` of {node} differs from the IR's")
            checked += 1
        if checked != len(self.by_span.get(span, ())):
            raise Unsupported("an `inplace` outside the class's instances")

    def instance_input_channels(self, path: tuple) -> int:
        """The channels of the tensor an instance (a block's scope) reads."""
        members = self.scope_members.get(path, [])
        inside = set(members)
        g = self.g
        for n in members:
            for p in g.predecessors(n):
                if p not in inside:
                    shape = g.nodes[p]["shape"]
                    return shape[-1] if is_channels_last(shape) else shape[0]
        raise Unsupported("an instance without an input")

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
                init.append((indent, f"if {negated(c)}:", None))
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
                fwd.append((indent, f"if {negated(test)}:", None))
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
