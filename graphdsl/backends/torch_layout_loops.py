"""A `for` among the members of a class (graphdsl.backends.torch_layout): each pass adds one submodule
under a computed label, and `forward` walks them in the order they were added, as torchvision's
_DenseBlock (`for name, layer in self.items()`) and ShuffleNetV2's stages do.

    for i in range(n) {                                  for i in range(n):
        concat {                                             self.add_module(f'denselayer{i + 1}',
            []                                  ->                           DenseLayer(channels, ...))
            "denselayer{i + 1}": dense_layer(...)            channels = channels + growth_rate
        }                                                ...
    }                                                    for layer in self.children():
                                                             x = torch.cat([x, layer(x)], 1)

A pass is `let`s and `assert`s and one step: a layer under a computed label (`x = layer(x)`), or a
merge of the tensor itself (`[]`) and such a layer (`concat { [] "name{i}": ... }`: the features so
far and the new ones). Where the class has other submodules, `forward` reads the loop's own by name
(`self.stage_names`, filled as they are added). The channels are a local `channels` in `__init__`;
after the loop they are the closed form `in + count * step` where each pass adds the same number.
"""

from __future__ import annotations

import ast as pyast
import copy

from .. import ast
from ..ops import REGISTRY, OpError
from .torch_layout_common import Ctx, bind, ctx_claim, flat_names, loop_header
from .torch_lowering import Tensor, Unknown
from .torch_values import Sym, Unsupported, binary, code, evaluate_tree, sample, tree_of, value_of


class LoopsMixin:
    """`for` in a class: submodules added under computed labels, walked in `forward`."""

    # ---- loops of submodules -------------------------------------------------------------------------

    def loop_step(self, body) -> tuple[object, object]:
        """(the step, the merge around it or None) of a loop's body, or Unsupported."""
        steps = [s for s in body if not isinstance(s, (ast.Doc, ast.Let, ast.Assert))]
        if len(steps) != 1:
            raise Unsupported("a loop in a class with other than one step")
        step = steps[0]
        if isinstance(step, ast.Labeled) and isinstance(step.label, ast.Template):
            return step, None
        if isinstance(step, ast.Branches) and step.op in REGISTRY and REGISTRY[step.op].merges:
            parts = [x for x in step.body if not isinstance(x, ast.Doc)]
            if len(parts) == 2 and isinstance(parts[0], ast.Group) and not parts[0].body and isinstance(
                    parts[1], ast.Labeled) and isinstance(parts[1].label, ast.Template):
                return parts[1], step
        raise Unsupported("a loop in a class whose step is not a layer under a computed label")

    def loop_pass(self, body, step, merge, ctx: Ctx, t: Tensor, init: list, indent: int) -> Tensor:
        """One pass's `__init__` lines (`self.add_module(...)`) and the tensor after it."""
        for s in body:
            if s is step or s is merge:
                name, real = self.label_text(step.label, ctx, t)
                base = ctx.position[0]
                if merge is not None:
                    ctx.position[0] += 1  # the identity `[]`
                ctx.position[0] += 1
                ctor, out = self.seq_item(step.item, ctx, t, init, indent, (*ctx.path, real))
                init.append((indent, f"self.add_module({name}, {ctor})", None))
                if merge is None:
                    return Tensor(t.var, out.ch, out.dims, out.fresh)
                ctx.position[0] = base + 3
                op = REGISTRY[merge.op]
                if len(out.dims) != len(t.dims):
                    raise Unsupported("a merge of other ranks")
                ins = [(sample(x.ch, 3), *(d if isinstance(d, int) else d.real for d in x.dims)) for x in (t, out)]
                try:
                    shape = op.output_shape({}, ins)
                except (OpError, TypeError, ValueError) as e:
                    raise Unsupported("a merge") from e
                if op.name != "concat" or sum(int.__index__(i[0]) for i in ins) != shape[0]:
                    raise Unsupported(f"`{op.name}` in a loop")
                self.decide(merge.span, "function")
                self.check_inplace(merge.span, False)
                return Tensor(t.var, binary("+", t.ch, out.ch), t.dims, op.overwritable)
            if not self.constructor_stmt(s, ctx, t, init, indent):
                raise Unsupported(f"{type(s).__name__} in a loop of a class")
        raise AssertionError("the step is in the body")

    def class_loop(self, s: ast.For, ctx: Ctx, t: Tensor, init: list, fwd: list, indent: int, target: str):
        step, merge = self.loop_step(s.body)
        seq = self.loop_iterable(s.iterable, ctx, t)
        values = value_of(seq)
        if not isinstance(values, tuple) or not values:
            raise Unsupported("a loop of a class over an empty or unknown list")
        names = [s.var] if isinstance(s.var, str) else list(flat_names(s.var))
        sub = self.loop_ctx(s.var, ctx)
        bind(s.var, values[0], sub)
        start_position = ctx.position[0]
        probe_ctx = copy.copy(sub)
        probe_ctx.env, probe_ctx.real = dict(sub.env), dict(sub.real)
        probe_lines: list = []
        probe = self.loop_pass(s.body, step, merge, probe_ctx, t, probe_lines, indent + 1)
        per_pass = ctx.position[0] - start_position
        if code(probe.ch) == code(t.ch) and probe.dims == t.dims:
            lines, out = probe_lines, probe
        else:
            chan = "channels"
            if code(t.ch) != chan:
                init.append((indent, f"{chan} = {code(t.ch)}", None))
            begin = Tensor(t.var, Sym.name(chan, value_of(t.ch)),
                           tuple(Unknown(d.real if isinstance(d, Unknown) else d) for d in t.dims), t.fresh)
            ctx.position[0] = start_position
            lines = []
            out = self.loop_pass(s.body, step, merge, sub, begin, lines, indent + 1)
            if code(out.ch) != chan:
                lines.append((indent + 1, f"{chan} = {code(out.ch)}", None))
            out = Tensor(t.var, self.loop_channels(out.ch, chan, seq, names, sub, ctx, t), out.dims, out.fresh)
        ctx.position[0] = start_position + per_pass * len(values)
        sole = all(isinstance(x, (ast.Doc, ast.Let, ast.Assert, ast.Output)) or x is s
                   for x in (ctx.klass.body or ()))
        fwd_lines = []
        if sole:  # the loop's submodules are all the class has
            layer = ctx_claim(ctx.fwd_names | {"self"}, "layer")
            fwd_lines.append((indent, f"for {layer} in self.children():", None))
            call = f"{layer}({t.var})"
        else:
            base = "".join(p for p in step.label.parts if isinstance(p, str)).strip("_-.") or "layer"
            attr = ctx_claim(ctx.init_names | ctx.labels | set(ctx.stored) | set(ctx.env), f"{base}_names")
            ctx.init_names.add(attr)
            ctx.labels.add(attr)  # a plain attribute, claimed as a member
            name = ctx_claim(ctx.init_names | set(ctx.env) | set(names), "name")
            ctx.init_names.add(name)
            added = [k for k, (_, text, _) in enumerate(lines) if text.startswith("self.add_module(")]
            if len(added) != 1:
                raise Unsupported("a loop of a class that adds other than one submodule")
            k = added[0]
            i, text, _ = lines[k]
            label_code, ctor = split_add_module(text)
            lines[k:k + 1] = [(i, f"{name} = {label_code}", None), (i, f"self.add_module({name}, {ctor})", None),
                              (i, f"self.{attr}.append({name})", None)]
            init.append((indent, f"self.{attr} = []", None))
            loop_var = ctx_claim(ctx.fwd_names | {"self"}, "name")
            fwd_lines.append((indent, f"for {loop_var} in self.{attr}:", None))
            call = f"getattr(self, {loop_var})({t.var})"
        init.append((indent, loop_header(s.var, code(seq), lines, ctx), None))
        init += lines
        if merge is None:
            fwd_lines.append((indent + 1, f"{target} = {call}", None))
        else:
            text = REGISTRY[merge.op].torch_call({}, [t.var, call], [(3, 8, 8), (3, 8, 8)])  # torch.cat([x, ...], 1)
            fwd_lines.append((indent + 1, f"{target} = {text}", None))
            if target != t.var:
                raise Unsupported("a growing concat into another variable")
        self.assign(ctx, target)
        fwd += fwd_lines
        return Tensor(target, out.ch, out.dims, out.fresh)

    def loop_channels(self, ch, chan: str, seq, names, sub: Ctx, ctx: Ctx, t: Tensor):
        """The channels after the loop: `in + count * step` where each pass adds the same `step` (DenseNet's
        `in_channels + n * growth_rate`), else the running count `channels` (kept by the instance)."""
        tree = tree_of(ch)
        if isinstance(tree, pyast.BinOp) and isinstance(tree.op, pyast.Add) and isinstance(
                tree.left, pyast.Name) and tree.left.id == chan:
            step = tree.right
            free = {n.id for n in pyast.walk(step) if isinstance(n, pyast.Name)}
            # names bound before the loop and not rebound in it: the same step in every pass
            if chan not in free and not free & set(names) and free <= set(ctx.env) and all(
                    ctx.env[n] is sub.env.get(n) for n in free):
                if isinstance(seq, Sym) and isinstance(seq.tree, pyast.Call) and isinstance(
                        seq.tree.func, pyast.Name) and seq.tree.func.id == "range" and len(seq.tree.args) == 1:
                    count = Sym(seq.tree.args[0], len(value_of(seq)))
                elif isinstance(seq, Sym):
                    count = Sym(pyast.Call(pyast.Name("len", pyast.Load()), [seq.tree], []), len(seq.value))
                else:
                    count = len(seq)
                step_sym = Sym(step, evaluate_tree(step, {k: value_of(v) for k, v in sub.env.items()}))
                return binary("+", t.ch, binary("*", count, step_sym))
        return Sym.name(chan, value_of(ch))


def split_add_module(text: str) -> tuple[str, str]:
    """`self.add_module(NAME, CTOR)` -> (NAME, CTOR) as code."""
    call = pyast.parse(text, mode="eval").body
    return pyast.unparse(call.args[0]), pyast.unparse(call.args[1])
