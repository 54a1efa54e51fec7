"""AST -> IR. Blocks, parameters, conditions and repetition unfold into a networkx.DiGraph of
primitive ops; shapes are inferred on the way, because conditions may ask for `in.channels`.

Naming follows nn.Sequential: a labelled item takes its label, an unlabelled one its position in
the enclosing scope. `residual`, `concat { }`, `if` and `for` are transparent: what they hold is
named in the scope around them, as torchvision's blocks name `conv1`, `bn1`, `downsample`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import networkx as nx

from . import ast
from .budget import MAX_LAYERS, Budget, Exhausted, spending
from .diagnostics import Diagnostic, Failure, Span, did_you_mean, error
from .evaluate import NO_INPUT, POISON, Poisoned, bind, bounded, evaluate
from .ops import REGISTRY, ArgError, Op, OpError, fmt_shape
from .ops.base import MAX_SIZE, divisors, is_channels_last
from .ops.linear import rank_error
from .program import Program
from .syntax import NAME_RESERVED
from .syntax import reserved as _reserved
from .values import Symbol, show, type_name
from .workload import Cost, Workload

MAX_NODES = MAX_LAYERS
MAX_REPEAT = 100_000
MAX_CALL_DEPTH = 64  # blocks calling blocks: torchvision's deepest nest is 4
MAX_ERRORS = 50  # past these, more errors are likelier follow-ons than news: elaboration stops
MAX_ERROR_EVENTS = 1_000  # errors met, repeats included (a loop of 100,000 passes failing each time)
INPUT = "input"
IN = "in"  # the tensor name of a block's input (`from in`, `concat(in, x)`)
MAX_LABEL = 200
LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")  # what a computed label may be: a module name without dots
SPLITTERS = ("chunk", "split")  # `(a, b) = chunk(2)`, `(a, b) = split(16, 48)`


@dataclass
class Scope:
    """A module path and the names given in it. Forked branches share it."""

    path: tuple[str, ...]
    position: int = 0
    labels: dict[str, Span] = field(default_factory=dict)

    def next_position(self) -> str:
        self.position += 1
        return str(self.position - 1)

    def claim(self, label: str, span: Span, computed: bool = False) -> None:
        first = self.labels.get(label)
        if first is not None:
            where = ".".join(self.path) or "the network"
            again = first == span  # the same statement again: a loop, or an inline block used twice
            if computed:  # one message for every value of the template
                fix = ('make it differ on each pass, e.g. with the loop variable: `"layer{i + 1}"`' if again
                       else "number the layers so that each label of a scope comes up once")
                notes = (f"it gives `{label}` on more than one pass",) if again else (
                    f"it gives `{label}`, first given at {first}",)
                raise Failure(Diagnostic(f"this computed label gives a name already used in {where}", span,
                                         notes=notes, help=fix), says_it_repeats=again)
            if again:
                raise Failure(Diagnostic(
                    f"`{label}` is already used in {where}: this name is given each time the statement runs (in "
                    "a loop, or an `inline` block used twice)", span,
                    help="make it differ from one pass to the next, with a computed label such as "
                         '`"layer{i}": ...`, or leave the layer unlabelled (it takes its position)'),
                    says_it_repeats=True)
            raise Failure(Diagnostic(f"`{label}` is already used in {where}", span,
                                     notes=(f"first used at {first}",),
                                     help="give each layer of a scope its own name"))
        self.labels[label] = span
        self.position += 1


@dataclass(frozen=True)
class CallSite:
    block: str
    span: Span


@dataclass
class Ctx:
    """Where elaboration stands: the scope, values, named tensors and the current tensor."""

    scope: Scope
    values: dict
    tensors: dict[str, str]
    stack: tuple[CallSite, ...]
    current: str | None  # node id; None once an error has made it unknown
    root: bool = False  # the network's own body (where `input` and `output` belong)

    def fork(self, current: str | None) -> Ctx:
        return replace(self, current=current, root=False)

    def child(self, path: tuple[str, ...]) -> Ctx:
        return replace(self, scope=Scope(path), root=False)


class Elaborator:
    def __init__(self, program: Program):
        self.program = program
        self.graph = nx.DiGraph()
        self.diagnostics: list[Diagnostic] = []
        self.outputs: list[tuple[str, str]] | None = None
        self.training_outputs: list[str] = []  # outputs returned in training only (auxiliary heads)
        self.output_seen: Span | None = None
        self.input_seen: Span | None = None  # where the network's `input` is, once reached
        self.before_input_reported = False
        self.repeats: dict[tuple, list] = {}  # (message, span) -> [index in diagnostics, times met again]
        self.budget = Budget()
        self.workload = Workload(program.blocks)
        self._constant_args: dict[int, tuple] = {}  # id(call) -> (call, attrs, spans)
        self.error_events = 0

    # ---- entry --------------------------------------------------------------------------

    def network(self, net: ast.Definition, overrides: dict) -> nx.DiGraph:
        """The IR of `net`; the diagnostics gather in `self.diagnostics`. A spent budget stops the whole
        elaboration with its diagnostic, after those found before it."""
        with spending(self.budget):
            try:
                self._network(net, overrides)
            except Exhausted as e:
                self.diagnostics.append(e.diagnostic)
        self.graph.graph.setdefault("training_outputs", [])  # a stopped elaboration leaves a partial graph
        self._note_repeats()
        return self.graph

    def _network(self, net: ast.Definition, overrides: dict) -> nx.DiGraph:
        g = self.graph
        g.graph.update(name=net.name, doc=net.doc, file=net.span.file, scopes={}, span=net.span, outputs=[],
                       overrides=dict(overrides))
        try:
            net, overrides = self._unalias(net, overrides)
        except Failure as f:
            self.diagnostics.append(f.diagnostic)
            return g
        g.graph["doc"] = g.graph["doc"] or net.doc
        # the definitions the IR unfolds, for back ends that follow the spec's structure (the PyTorch
        # code generator writes a class per block): the network (its base, for an alias) and every block
        g.graph["definition"] = net
        g.graph["blocks"] = self.program.blocks
        values = self._bind_network_params(net, overrides)
        ctx = Ctx(Scope(()), values, {}, (), None, root=True)
        if values is not None:
            g.graph["params"] = dict(values)
            if not _has_input(net.body):
                self.before_input_reported = True  # each layer would repeat the error
                self.diagnostics.append(Diagnostic(
                    f"network `{net.name}` has no `input`", net.name_span,
                    help="start the network with its input shape, e.g. `input 3x224x224`"))
            self.body(net.body, ctx)
        outputs = self.outputs if self.outputs is not None else [("output", ctx.current)]
        g.graph["outputs"] = [(name, node) for name, node in outputs if node is not None]
        g.graph["training_outputs"] = [name for name in self.training_outputs if name in dict(g.graph["outputs"])]
        return g

    def _note_repeats(self) -> None:
        for index, again in self.repeats.values():
            if again:
                d = self.diagnostics[index]
                more = f"{again} more time{'s' if again > 1 else ''}"
                where = "here (later passes of a loop, or other uses of a block)"
                self.diagnostics[index] = replace(d, notes=(*d.notes, f"the same error comes up {more} {where}"))

    def _unalias(self, net: ast.Definition, overrides: dict) -> tuple[ast.Definition, dict]:
        """`network resnet20 = cifar_resnet(n=3)`: the base network, with the alias's arguments
        under the caller's overrides."""
        seen = [net]
        while net.base is not None:
            call = net.base
            local = self.program.networks.get(call.name)
            if local is net:  # `network inception_v3 = inception_v3()`: the imported one of that name, if any
                local = self.program.imported_networks.get(call.name, net)
            base = local or self.program.imported_networks.get(call.name)
            if base is None:
                known = [*self.program.networks, *self.program.imported_networks]
                raise error(f"unknown network `{call.name}`", call.name_span,
                            help=did_you_mean(call.name, known, "networks") or "import the file that defines it")
            if any(base is d for d in seen):
                raise error(f"network `{net.name}` is defined in terms of itself", call.name_span)
            seen.append(base)
            params = [p.name for p in base.params]
            given: dict = {}
            for i, a in enumerate(call.args):
                name = a.name if a.name is not None else (params[i] if i < len(params) else None)
                if name not in params:
                    raise error(f"network `{base.name}` has no parameter `{a.name}`" if a.name else
                                f"network `{base.name}` takes {len(params)} parameters", a.span,
                                help=did_you_mean(a.name or "", params, "parameters"))
                if name in given:
                    raise error(f"parameter `{name}` given twice", a.span)
                given[name] = evaluate(a.value, dict(given), lambda: NO_INPUT)
            overrides = {**given, **overrides}
            net = base
        return net, overrides

    def _bind_network_params(self, net: ast.Definition, overrides: dict) -> dict | None:
        known = {p.name for p in net.params}
        ok = True
        for name in overrides:
            if name not in known:
                ok = False
                self.diagnostics.append(Diagnostic(
                    f"network `{net.name}` has no parameter `{name}`", net.name_span,
                    help=did_you_mean(name, known, "parameters") or "this network takes no parameters"))
        values: dict = {}
        for p in net.params:
            if p.name in overrides:
                values[p.name] = overrides[p.name]
                ok = self._check_override(p, overrides[p.name], values) and ok
            elif p.default is not None:
                try:
                    values[p.name] = evaluate(p.default, values, lambda: NO_INPUT)
                except Failure as f:
                    ok = False
                    self.diagnostics.append(f.diagnostic)
            else:
                ok = False
                self.diagnostics.append(Diagnostic(f"network parameter `{p.name}` needs a value", p.span,
                                                   help=f"give it a default, or pass `-D {p.name}=...`"))
        return values if ok else None

    def _check_override(self, p: ast.Param, value, values: dict) -> bool:
        """An override is a value of the language, within its size limits, and keeps the kind of value its
        default has (`-D aux_logits=False` is a string)."""
        problem = _foreign(value)
        if problem is None:
            try:
                bounded(f"the value given to `{p.name}`", value, p.span)
            except Failure as f:
                problem = f.diagnostic.message
        if problem is not None:
            self.diagnostics.append(Diagnostic(f"network parameter `{p.name}`: {problem}", p.span,
                                               help="give a number, a boolean, a string or a short list"))
            return False
        if p.default is None:
            return True
        try:
            default = evaluate(p.default, values, lambda: NO_INPUT)
        except Failure:
            return True  # the default's own error is reported where it is used
        if _same_kind(value, default):
            return True
        kind = type_name(default)
        example = show(not default) if isinstance(default, bool) else show(default)
        self.diagnostics.append(Diagnostic(
            f"`{p.name}` is {_a(kind)} {kind} (default {show(default)}), but it is given the "
            f"{type_name(value)} {show(value)}", p.span,
            help=f"give `{p.name}` {_a(kind)} {kind}, e.g. `-D {p.name}={example}`"))
        return False

    # ---- statements -----------------------------------------------------------------------

    def body(self, stmts, ctx: Ctx) -> None:
        for stmt in stmts:
            self.budget.charge(1, stmt.span, "this statement")
            try:
                self.stmt(stmt, ctx)
            except Failure as f:
                self._report(f.diagnostic, ctx, f.says_it_repeats)
                ctx.current = None
            except Poisoned:
                ctx.current = None

    def _report(self, diag: Diagnostic, ctx: Ctx, says_it_repeats: bool = False) -> None:
        key = (diag.message, diag.span)
        self.error_events += 1
        if self.error_events > MAX_ERROR_EVENTS:  # a loop repeating its errors: what is left only repeats them
            raise Exhausted(Diagnostic(f"stopped after {MAX_ERROR_EVENTS:,} errors (counting repeats)", None,
                                       severity="note", help="fix these first: the rest repeat them"))
        if key in self.repeats:  # one mistake in a block or loop, met again through another use: once
            self.repeats[key][1] += 0 if says_it_repeats else 1
            return
        self.repeats[key] = [len(self.diagnostics), 0]
        notes = [f"in block `{site.block}` used at {site.span}" for site in reversed(ctx.stack)]
        if len(notes) > 8:  # the innermost calls, and the outermost that the network makes
            notes = [*notes[:5], f"… {len(notes) - 7} more block calls", *notes[-2:]]
        self.diagnostics.append(replace(diag, notes=(*diag.notes, *notes)))
        if len(self.diagnostics) >= MAX_ERRORS:
            raise Exhausted(Diagnostic(f"stopped after {MAX_ERRORS} errors", None, severity="note",
                                       help="fix these first: later errors are often follow-ons of earlier ones"))

    def afford(self, cost: Cost, span: Span, what: str) -> None:
        """Refuse, before it runs, work whose lower bound already goes past a limit."""
        steps, layers = cost
        if layers > MAX_NODES - self.graph.number_of_nodes():
            raise Exhausted(Diagnostic(f"{what}, at least {layers:,} layers: the network would grow past "
                                       f"{MAX_NODES:,} layers", span, help="a network this large is likely a "
                                       "mistake; if not, raise the limit with the environment variable "
                                       "GRAPHDSL_MAX_LAYERS"))
        self.budget.afford(steps, span, what)

    def stmt(self, stmt, ctx: Ctx) -> None:
        match stmt:
            case ast.Doc():
                pass
            case ast.Input():
                self.input(stmt, ctx)
            case ast.Output(names=names, span=span, training=training):
                if not ctx.root:
                    raise error("`output` belongs in the network's own body", span,
                                help="blocks return their last tensor; name branches and list them in the network")
                if self.output_seen is not None:
                    raise Failure(Diagnostic("`output` given twice", span,
                                             notes=(f"first given at {self.output_seen}",),
                                             help="list every output in one statement: `output a, b`"))
                self.output_seen = span
                listed = (*names, *training)
                for i, (name, s) in enumerate(listed):
                    if name in (n for n, _ in listed[:i]):
                        raise error(f"`{name}` is listed twice in `output`", s, help="list each output once")
                self.outputs = [(name, self.tensor(name, s, ctx)) for name, s in listed]
                self.training_outputs = [name for name, _ in training]
            case ast.From(name=name, span=span):
                ctx.current = self.tensor(name, span, ctx)
            case ast.Assert(condition=cond, message=message, span=span):
                if not self.condition(cond, ctx):
                    raise error(message or "assertion failed", cond.span)
            case ast.Let(name=name, value=value, span=span):
                self.let(name, value, ctx, span)
            case ast.If(condition=cond, then=then, orelse=orelse):
                self.body(then if self.condition(cond, ctx) else orelse, ctx)
            case ast.For(body=body):
                for _ in self.passes(stmt, ctx):
                    self.body(body, ctx)
            case ast.Labeled(label=label, item=item, label_span=lspan):
                computed = not isinstance(label, str)
                label = self.label(label, lspan, ctx)
                ctx.scope.claim(label, lspan, computed)
                ctx.current = self.named_item(label, item, ctx)
            case ast.Bind(name=name, item=ast.Call(name=splitter) as call) if splitter in SPLITTERS and (
                    splitter not in REGISTRY):
                raise error(f"`{splitter}` gives several tensors: name them all in parentheses", call.span,
                            help=f"e.g. `(a, {name}) = {splitter}(...)`")
            case ast.Bind(name=name, item=item, name_span=nspan):
                try:
                    ctx.scope.claim(name, nspan)
                except Failure:
                    ctx.tensors.setdefault(name, None)  # its uses stay silent: the error is reported once
                    raise
                node = self.named_item(name, item, ctx.fork(ctx.current))
                if node is not None:
                    self.graph.graph.setdefault("bound", {})[node] = (name, nspan)
            case ast.Split():
                self.split(stmt, ctx)
            case _:
                ctx.current = self.item(stmt, ctx, None)

    def passes(self, loop: ast.For, ctx: Ctx):
        """The passes of a `for`: weighed before the first, each charged and its names bound in turn."""
        seq = self.sequence(loop.iterable, ctx)
        if len(seq) > 1:
            cost = self.workload.loop(loop.var, loop.body, ctx.values)
            self.afford((len(seq) * cost[0], len(seq) * cost[1]), loop.span, f"this loop runs {len(seq):,} times")
        for value in seq:
            self.budget.charge(1, loop.span, "this loop")
            bind(loop.var, value, ctx.values, loop.iterable.span)
            yield value

    def named_item(self, name: str, item, ctx: Ctx) -> str | None:
        """An item whose output tensor gets a name; a failed one leaves the name unknown, not undefined,
        so that its uses stay silent."""
        try:
            ctx.tensors[name] = self.item(item, ctx, name)
        except (Failure, Poisoned):
            ctx.tensors[name] = None
            raise
        return ctx.tensors[name]

    def input(self, stmt: ast.Input, ctx: Ctx) -> None:
        if not ctx.root:
            raise error("`input` belongs at the top of a network", stmt.span,
                        help="a block takes the shape flowing into it; read it with `in.channels`")
        if self.input_seen:
            raise Failure(Diagnostic("`input` given twice", stmt.span, notes=(f"first given at {self.input_seen}",),
                                     help="a network has one input; remove this one"))
        if self.before_input_reported:
            raise Poisoned()  # the layers before it are reported already
        dims = []
        try:
            for d in stmt.dims:
                v = self.eval(d, ctx)
                if not (isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SIZE):
                    raise error(f"input sizes must be positive integers up to {MAX_SIZE:,}, got {show(v)}", d.span)
                dims.append(v)
        finally:
            self.input_seen = stmt.span  # failed or not, the layers after it are not "before `input`"
        if len(dims) not in (1, 3):
            first, last = stmt.dims[0].span, stmt.dims[-1].span
            raise error(f"the input is CxHxW (or a flat size), got {_count(len(dims), 'size')}",
                        Span(first.file, first.line, first.col, last.end_line, last.end_col),
                        help="the batch is implicit: write `input 3x224x224`")
        self.graph.add_node(INPUT, op="input", attrs={}, scope=(), span=stmt.span, shape=tuple(dims))
        self.graph.graph["input_shape"] = tuple(dims)
        ctx.current = INPUT
        ctx.tensors[IN] = INPUT

    # ---- items: each returns the node id of its output tensor ------------------------------------

    def require_input(self, span: Span) -> None:
        """A layer (or a split) needs the network's `input` before it; reported once."""
        if self.input_seen:
            return
        if self.before_input_reported:
            raise Poisoned()
        self.before_input_reported = True
        raise error("a layer before `input`", span,
                    help="start the network with its input shape, e.g. `input 3x224x224`")

    def item(self, item, ctx: Ctx, label: str | None) -> str | None:
        self.budget.charge(1, item.span, "this layer")
        self.require_input(item.span)
        match item:
            case ast.Call(inline=True):  # the grammar gives an `inline` call no label
                if item.name not in self.program.blocks:
                    what = "an operator" if item.name in REGISTRY else "unknown"
                    raise error(f"`inline` takes a block call, and `{item.name}` is {what}", item.name_span,
                                help=did_you_mean(item.name, self.program.blocks, "blocks")
                                or "`inline stage(...)` names the block's layers in the caller's scope")
                return self.block(self.program.blocks[item.name], item, ctx, None)
            case ast.Call():
                path = (*ctx.scope.path, label or ctx.scope.next_position())
                if item.name in self.program.blocks:
                    return self.block(self.program.blocks[item.name], item, ctx, path)
                return self.op(item, ctx, path)
            case ast.Group(body=body):
                path = (*ctx.scope.path, label or ctx.scope.next_position())
                sub = ctx.child(path)
                self.graph.graph["scopes"][path] = {"kind": "group"}
                self.body(body, sub)
                return sub.current
            case ast.Repeat(item=inner, count=count):
                n = self.eval(count, ctx)
                is_int = isinstance(n, int) and not isinstance(n, bool)
                if not (is_int and 0 <= n <= MAX_REPEAT):  # 0 leaves it out: `block(c) * (depth - 1)`
                    raise error(f"a repeat count must be an integer from 0 to {MAX_REPEAT:,}, got {show(n)}",
                                count.span)
                if n > 1:
                    cost = self.workload.item(inner, ctx.values)
                    self.afford((n * cost[0], n * cost[1]), item.span, f"this repetition runs {n:,} times")
                target = ctx
                if label is not None:
                    target = ctx.child((*ctx.scope.path, label))
                    self.graph.graph["scopes"][target.scope.path] = {"kind": "repeat", "count": n}
                for _ in range(n):
                    target.current = self.item(inner, target, None)
                return target.current
            case ast.Branches():
                return self.branches(item, ctx, label)
            case ast.Residual():
                return self.residual(item, ctx, label)
        raise AssertionError(f"unknown item {item!r}")

    def block(self, block: ast.Definition, call: ast.Call, ctx: Ctx, path: tuple[str, ...] | None) -> str | None:
        if any(site.block == block.name for site in ctx.stack):
            chain = [site.block for site in ctx.stack]
            chain = chain[chain.index(block.name):] + [block.name]
            through = f": {' -> '.join(f'`{b}`' for b in chain)}" if len(chain) > 2 else ""
            raise error(f"block `{block.name}` calls itself{through}", call.name_span,
                        help="blocks cannot recurse; repeat with `*` or loop with `for`")
        if len(ctx.stack) >= MAX_CALL_DEPTH:
            raise error(f"blocks nested more than {MAX_CALL_DEPTH} calls deep", call.name_span,
                        help="a network's blocks nest a few levels; flatten the chain of calls")
        self.afford(self.workload.block(block.name), call.span, f"block `{block.name}`")
        values = self.block_args(block, call, ctx)
        site = (*ctx.stack, CallSite(block.name, call.span))
        if path is None:  # `inline`: the block's layers join the caller's scope and numbering
            sub = Ctx(ctx.scope, values, {IN: ctx.current}, site, ctx.current)
        else:
            self.graph.graph["scopes"][path] = {"kind": "block", "block": block.name, "doc": block.doc,
                                                "args": dict(values), "span": call.span}
            sub = Ctx(Scope(path), values, {IN: ctx.current}, site, ctx.current)
        self.body(block.body, sub)
        return sub.current

    def block_args(self, block: ast.Definition, call: ast.Call, ctx: Ctx) -> dict:
        params = {p.name: p for p in block.params}
        given: dict = {}
        positional = [a for a in call.args if a.name is None]
        if len(positional) > len(block.params):
            raise error(f"block `{block.name}` takes {_count(len(block.params), 'argument')}, got {len(positional)}",
                        positional[len(block.params)].span, help=_signature(block))
        for p, a in zip(block.params, positional):
            given[p.name] = self.eval(a.value, ctx)
        for a in call.args:
            if a.name is None:
                continue
            if a.name not in params:
                raise error(f"block `{block.name}` has no parameter `{a.name}`", _name_span(a),
                            help=did_you_mean(a.name, params, "parameters") or _signature(block))
            if a.name in given:
                raise error(f"parameter `{a.name}` given twice", _name_span(a))
            given[a.name] = self.eval(a.value, ctx)
        values: dict = {}
        for p in block.params:
            if p.name in given:
                values[p.name] = given[p.name]
            elif p.default is not None:
                values[p.name] = self.eval(p.default, replace(ctx, values=values))
            else:
                raise error(f"block `{block.name}` needs parameter `{p.name}`", call.span, help=_signature(block))
        return values

    def op(self, call: ast.Call, ctx: Ctx, path: tuple[str, ...]) -> str | None:
        op = REGISTRY.get(call.name)
        if op is None and call.name == "inline":  # `a: inline stage(...)`: after a label `inline` is a name
            raise error("an `inline` block call cannot be labelled: its layers are named in this scope", call.span,
                        help="drop the label, or drop `inline` to nest the block's layers under the label")
        if op is None and call.name in SPLITTERS:
            raise error(f"`{call.name}` gives several tensors: name them", call.span,
                        help=f"e.g. `(a, b) = {call.name}(...)`, then `from a` or `concat(a, b)`")
        if op is None:
            hint = _known_as(call.name) or did_you_mean(call.name, [*REGISTRY, *self.program.blocks], "operators")
            plugin = "an operator of a plugin needs `--ops MODULE` (or the plugin installed); `graphdsl ops` lists them"
            raise error(f"unknown operator or block `{call.name}`", call.name_span,
                        help=hint or plugin)  # a close name is likelier than a missing plugin
        if op.merges:
            tensor_args = [a for a in call.args if a.name is None]
            if len(tensor_args) < 2:  # `mul(gate)` forgot the tensor it scales
                raise error(f"`{op.name}` needs the tensors to merge" + (", and one is given" if tensor_args else ""),
                            call.span, help=f"name them all, `{op.name}(a, b)` (`in` is the block's input), or give "
                            f"branches: `{op.name} {{ ... }}`")
            inputs = []
            for a in tensor_args:
                if not isinstance(a.value, (ast.Var, ast.InTensor)):
                    raise error(f"`{op.name}` takes names of tensors", a.span,
                                help="name a layer with `name: op(...)` or a branch with `name = op(...)`")
                inputs.append(self.tensor(a.value.name if isinstance(a.value, ast.Var) else IN, a.span, ctx))
            attrs, spans = self.op_args(op, call, ctx, [a for a in call.args if a.name is not None])
        else:
            attrs, spans = self.constant_args(op, call, ctx)
            inputs = [ctx.current]
        return self.add_node(op, attrs, inputs, path, call, spans)

    def constant_args(self, op: Op, call: ast.Call, ctx: Ctx) -> tuple[dict, dict]:
        """`op_args`, remembered for a call whose arguments are all literals (`conv(8, 1) * 100000` checks
        its arguments once, not a hundred thousand times)."""
        if not all(isinstance(a.value, ast.Const) for a in call.args):
            return self.op_args(op, call, ctx, call.args)
        known = self._constant_args.get(id(call))
        if known is None or known[0] is not call:
            known = (call, *self.op_args(op, call, ctx, call.args))
            self._constant_args[id(call)] = known
        return dict(known[1]), known[2]

    def op_args(self, op: Op, call: ast.Call, ctx: Ctx, args) -> tuple[dict, dict]:
        """The op's arguments, checked and normalised, with the span of each one given."""
        specs = {a.name: a for a in op.args}
        raw: dict = {}
        spans: dict = {}
        positional = [a for a in args if a.name is None]
        if len(positional) > len(op.args):
            most = _count(len(op.args), "positional argument")
            raise error(f"`{op.name}` takes at most {most}, got {len(positional)}",
                        positional[len(op.args)].span, help=op.doc)
        for spec, a in zip(op.args, positional):
            raw[spec.name], spans[spec.name] = a.value, a.span
        for a in args:
            if a.name is None:
                continue
            if a.name not in specs:
                raise error(f"`{op.name}` has no argument `{a.name}`", _name_span(a),
                            help=did_you_mean(a.name, specs, "arguments") or f"`{op.name}` takes no arguments")
            if a.name in raw:
                raise error(f"argument `{a.name}` given twice", _name_span(a))
            raw[a.name], spans[a.name] = a.value, a.span
        attrs: dict = {}
        for spec in op.args:
            if spec.name not in raw:
                if spec.required:
                    raise error(f"`{op.name}` needs argument `{spec.name}`" + (f" ({spec.doc})" if spec.doc else ""),
                                call.span, help=op.doc)
                attrs[spec.name] = spec.kind(spec.default)
                continue
            value = self.eval(raw[spec.name], ctx)
            try:
                attrs[spec.name] = spec.kind(value)
            except ArgError as e:
                computed = isinstance(value, float) and not isinstance(raw[spec.name], ast.Const)
                hint = "`/` with a remainder gives a number: use `//` for integer division" if (
                    computed and "integer" in str(e)) else None
                raise error(f"`{op.name}` argument `{spec.name}` must be {e}, got the {type_name(value)} {show(value)}",
                            raw[spec.name].span, help=hint) from None
        return attrs, spans

    def add_node(self, op: Op, attrs: dict, inputs: list, path: tuple[str, ...], where, spans=None) -> str | None:
        """One primitive op in the graph; its shape rule runs now."""
        spans = spans or {}
        if any(i is None for i in inputs):
            return None
        node = ".".join(path)
        if node in self.graph:
            raise error(f"`{node}` is already defined", where.span)
        if len(set(inputs)) != len(inputs):  # the IR holds one edge per pair of nodes
            raise error(f"layer `{node}`: `{op.name}` would merge a tensor with itself", _head_span(where),
                        help="to merge a tensor with itself, pass one copy through `identity` in its own branch")
        if self.graph.number_of_nodes() >= MAX_NODES:
            raise Exhausted(Diagnostic(f"the network grows past {MAX_NODES:,} layers", where.span,
                                       help="raise the limit with the environment variable GRAPHDSL_MAX_LAYERS"))
        shapes = [self.graph._node[i]["shape"] for i in inputs]
        head = _head_span(where)
        layouts = {is_channels_last(s) for s in shapes}
        if len(layouts) > 1:
            raise error(f"layer `{node}`: `{op.name}` merges channels-first and channels-last tensors: "
                        + ", ".join(fmt_shape(s) for s in shapes), head,
                        help="bring them to one layout first: `permute([0, 3, 1, 2])` turns HWC back into CHW")
        if True in layouts and not op.channels_last:
            raise error(f"layer `{node}`: `{op.name}` needs a channels-first (CxHxW) input, got the channels-last "
                        f"{fmt_shape(shapes[0])}", head,
                        help="turn it back with `permute([0, 3, 1, 2])` first")
        for s in shapes:
            if len(s) not in op.ranks:
                e = rank_error(op, s)
                raise error(f"layer `{node}`: {e.message}", head, help=e.help)
        try:
            shape = op.output_shape(attrs, shapes)
        except OpError as e:
            raise error(f"layer `{node}`: {e.message}", spans.get(e.arg, head), help=e.help) from None
        if any(d <= 0 for d in shape):
            raise error(f"layer `{node}`: `{op.name}` would output the empty shape {fmt_shape(shape)} "
                        f"from {fmt_shape(shapes[0])}", head,
                        help="the input is too small here; downsample less before this layer")
        self.graph.add_node(node, op=op.name, attrs=attrs, scope=path, span=where.span, shape=shape)
        for index, i in enumerate(inputs):
            self.graph.add_edge(i, node, index=index)
        return node

    # ---- parallel structure --------------------------------------------------------------------

    def branches(self, item: ast.Branches, ctx: Ctx, label: str | None) -> str | None:
        op = REGISTRY.get(item.op)
        if op is None or not op.merges:
            merging = sorted(name for name, o in REGISTRY.items() if o.merges)
            forms = [f"`{m} {{ ... }}`" for m in merging]
            raise error(f"`{item.op}` does not merge branches", item.name_span,
                        help="branches are merged by " + ", ".join(forms[:-1]) + " or " + forms[-1])
        target = ctx if label is None else ctx.child((*ctx.scope.path, label))
        start = ctx.current
        outs = self.branch_outputs(item.body, target, start)
        if not outs:
            raise error(f"`{item.op} {{ }}` has no branches", item.span)
        path = (*target.scope.path, target.scope.next_position())
        return self.add_node(op, {}, outs, path, item)

    def branch_outputs(self, stmts, ctx: Ctx, start: str | None) -> list:
        """Each statement is a branch from `start`; `if`, `for` and `let` shape the list of branches."""
        outs: list = []
        for stmt in stmts:
            self.budget.charge(1, stmt.span, "this branch")
            try:
                match stmt:
                    case ast.Doc() | ast.Let() | ast.Assert():  # no tensor: as in any body
                        self.stmt(stmt, ctx.fork(start))
                    case ast.If(condition=cond, then=then, orelse=orelse):
                        outs += self.branch_outputs(then if self.condition(cond, ctx) else orelse, ctx, start)
                    case ast.For(body=body):
                        for _ in self.passes(stmt, ctx):
                            outs += self.branch_outputs(body, ctx, start)
                    case ast.Labeled() | ast.Call() | ast.Group() | ast.Repeat() | ast.Branches() | ast.Residual():
                        branch = ctx.fork(start)
                        self.stmt(stmt, branch)
                        outs.append(branch.current)
                    case _:
                        raise error("only layers, groups, `let`, `if` and `for` can stand in a branch list", stmt.span,
                                    help="wrap a branch of several layers in `[ ... ]`")
            except Failure as f:
                self._report(f.diagnostic, ctx, f.says_it_repeats)
                outs.append(None)
            except Poisoned:
                outs.append(None)
        return outs

    def residual(self, item: ast.Residual, ctx: Ctx, label: str | None) -> str | None:
        target = ctx if label is None else ctx.child((*ctx.scope.path, label))
        start = ctx.current
        if item.when is not None and not self.condition(item.when, target.fork(start)):
            plain = target.fork(start)  # `residual if cond`: without the skip, the body alone
            self.body(item.body, plain)
            return plain.current
        main = target.fork(start)
        self.body(item.body, main)
        shortcut = start
        if item.shortcut is not None and (item.condition is None or self.condition(item.condition, target.fork(start))):
            side = target.fork(start)
            self.body(item.shortcut, side)
            shortcut = side.current
        path = (*target.scope.path, target.scope.next_position())
        if main.current is None or shortcut is None:
            return None
        a, b = (self.graph.nodes[n]["shape"] for n in (main.current, shortcut))
        if a != b:
            span = _keyword_span(item.shortcut_span or item.span, "shortcut" if item.shortcut_span else "residual")
            if item.when is not None and item.shortcut is None:
                fix = "keep the skip only where the shape stays: add `and in.channels == C` (and `stride == 1`) " \
                      "to the `residual if` condition"
            elif item.shortcut is None or main.current != start:
                fix = "add a projection: `shortcut if stride != 1 or in.channels != C { conv(C, 1, stride=stride) bn }`"
            else:
                fix = "make both paths end in the same shape"
            raise error(f"layer `{'.'.join(path)}`: `residual` adds equal shapes only: the body gives {fmt_shape(a)}, "
                        f"the shortcut {fmt_shape(b)}", span, help=fix)
        return self.add_node(REGISTRY["add"], {}, [main.current, shortcut], path, item)

    # ---- values ------------------------------------------------------------------------------------

    def eval(self, expr, ctx: Ctx):
        def in_shape():
            if ctx.current is None:
                return None if self.input_seen else NO_INPUT
            return self.graph.nodes[ctx.current]["shape"]

        return evaluate(expr, ctx.values, in_shape)

    def let(self, target, value, ctx: Ctx, span: Span) -> None:
        try:
            bind(target, self.eval(value, ctx), ctx.values, span)
        except (Failure, Poisoned):
            bind(target, POISON, ctx.values, span)  # later uses stay silent: the error is reported once
            raise

    def label(self, label, span: Span, ctx: Ctx) -> str:
        """A label as written, or computed from its template (`"denselayer{i + 1}"` -> `denselayer3`)."""
        if isinstance(label, str):
            return label
        text = []
        for part in label.parts:
            if isinstance(part, str):
                text.append(part)
                continue
            v = self.eval(part, ctx)
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise error(f"a label is built from integers and strings, got the {type_name(v)} {show(v)}", part.span,
                            help="e.g. `\"layer{i + 1}\"` with an integer `i`")
            text.append(str(v))
            if sum(map(len, text)) > MAX_LABEL:
                raise error(f"the computed label is longer than {MAX_LABEL} characters", span)
        name = "".join(text)
        if name in NAME_RESERVED:
            raise Failure(_reserved(name, span))
        if name.isdigit():
            raise Failure(Diagnostic("a computed label cannot be a number: unlabelled layers are numbered", span,
                                     notes=(f"it gives `{name}`",),
                                     help="leave the layer unlabelled to take its position, or add letters: "
                                          '`"layer{i}"`'))
        if not LABEL.match(name):
            raise Failure(Diagnostic("this computed label is not a module name", span,
                                     notes=(f"it gives {show(name)}",),
                                     help="labels are letters, digits, `_` and `-` (no dots, no spaces)"))
        return name

    def split(self, stmt: ast.Split, ctx: Ctx) -> None:
        """`(a, b) = chunk(2)`, `(a, b) = split(16, 48)`: channel slices of the current tensor, named.
        On an error the names stay known but unknown in value, so that their uses stay silent."""
        try:
            self._split(stmt, ctx)
        except (Failure, Poisoned):
            for name, _ in stmt.names:
                ctx.tensors.setdefault(name, None)
            raise

    def _split(self, stmt: ast.Split, ctx: Ctx) -> None:
        call = stmt.call
        self.require_input(stmt.span)
        if call.name not in SPLITTERS:
            raise error(f"`({', '.join(n for n, _ in stmt.names)}) = ...` takes `chunk` or `split`, not `{call.name}`",
                        call.name_span, help="`(a, b) = chunk(2)` splits the channels in two; name one tensor with "
                                             "`a = op(...)`")
        for a in call.args:
            if a.name is not None:
                raise error(f"`{call.name}` has no argument `{a.name}`", _name_span(a),
                            help="`chunk(n)` or `split(size1, size2, ...)`")
        values = [self.eval(a.value, ctx) for a in call.args]
        for v, a in zip(values, call.args):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise error(f"`{call.name}` takes positive integers, got the {type_name(v)} {show(v)}", a.span)
        if ctx.current is None:
            raise Poisoned()
        shape = self.graph.nodes[ctx.current]["shape"]
        if len(shape) != 3:
            raise error(f"`{call.name}` splits the channels of a CxHxW tensor, got the flat {fmt_shape(shape)}",
                        call.span)
        channels = shape[0]
        names = stmt.names
        if call.name == "chunk":
            if len(values) != 1:
                raise error("`chunk` takes one count: `chunk(2)`", call.span)
            (n,) = values
            if channels % n:
                even = divisors(channels, 4)
                raise error(f"`chunk({n})` cannot split {channels} channels into equal parts", call.args[0].span,
                            help=(f"{channels} divides by {', '.join(map(str, even))}; " if even else "")
                            + f"or give the sizes: `split(...)` adding up to {channels}")
            sizes = [channels // n] * n
        else:
            sizes = values
            if not sizes:
                raise error("`split` takes the size of each part: `split(16, 48)`", call.span)
            if sum(sizes) != channels:
                raise error(f"`split{show(tuple(sizes))}` adds up to {sum(sizes)} channels, the input has {channels}",
                            call.span, help=f"give sizes that add up to {channels}")
        if len(names) != len(sizes):
            raise error(f"`{call.name}` gives {len(sizes)} tensors, {len(names)} names are given", call.span,
                        help=f"name each part: `({', '.join(f'x{i + 1}' for i in range(len(sizes)))}) = ...`")
        start = 0
        for (name, span), size in zip(names, sizes):
            ctx.scope.claim(name, span)
            node = self.add_node(REGISTRY["channels"], {"start": start, "stop": start + size}, [ctx.current],
                                 (*ctx.scope.path, name), call)
            ctx.tensors[name] = node
            start += size

    def condition(self, expr, ctx: Ctx) -> bool:
        v = self.eval(expr, ctx)
        if not isinstance(v, bool):
            raise error(f"a condition must be true or false, got the {type_name(v)} {show(v)}", expr.span,
                        help="compare explicitly, e.g. `stride != 1`")
        return v

    def sequence(self, expr, ctx: Ctx) -> tuple:
        v = self.eval(expr, ctx)
        if not isinstance(v, tuple):
            raise error(f"`for` needs a list, got the {type_name(v)} {show(v)}", expr.span,
                        help="e.g. `for c in [64, 128]` or `for i in range(3)`")
        return v

    def tensor(self, name: str, span: Span, ctx: Ctx) -> str | None:
        if name in ctx.tensors:
            return ctx.tensors[name]
        raise error(f"unknown tensor `{name}`", span,
                    help=did_you_mean(name, ctx.tensors, "tensors") or "name a layer with `name: op(...)` first")


def _signature(block: ast.Definition) -> str:
    params = ", ".join(p.name for p in block.params)
    return f"`{block.name}({params})`" + (f": {block.doc.splitlines()[0]}" if block.doc else "")


def _has_input(stmts) -> bool:
    """Whether a network body states its `input` (at the top, or under an `if`)."""
    return any(isinstance(s, ast.Input) or (isinstance(s, ast.If) and (_has_input(s.then) or _has_input(s.orelse)))
               for s in stmts)


def _name_span(arg: ast.Arg) -> Span:
    """The span of a keyword argument's name (`stride` of `stride=2`)."""
    s = arg.span
    return Span(s.file, s.line, s.col, s.line, s.col + len(arg.name))


def _keyword_span(span: Span, keyword: str) -> Span:
    """The span of the keyword that starts a construct (`residual`, `shortcut`)."""
    return Span(span.file, span.line, span.col, span.line, span.col + len(keyword))


def _head_span(item) -> Span:
    """Where to point at an item in a message: its first line, not the whole body."""
    if isinstance(item, ast.Branches):
        return item.name_span
    if isinstance(item, ast.Residual):
        return _keyword_span(item.span, "residual")
    return item.span


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _foreign(value, depth: int = 0) -> str | None:
    """Why a value given from outside (the API, `-D`) is not one a spec can hold, or None."""
    if isinstance(value, (bool, int, float, str, Symbol)):
        return None
    if isinstance(value, tuple):
        if depth > 32:
            return "the value is a list nested too deeply"
        return next((p for p in (_foreign(v, depth + 1) for v in value[:100_001]) if p is not None), None)
    return f"a {type(value).__name__} is not a value of the language"


def _same_kind(value, default) -> bool:
    """Whether `value` can stand where `default` does: the same type, or an int for a float."""
    if isinstance(default, float) and not isinstance(value, bool):
        return isinstance(value, (int, float))
    return type(value) is type(default)


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _known_as(name: str) -> str | None:
    """`BatchNorm2d` -> "graphdsl calls it `bn`": the names users bring from PyTorch, Keras, Caffe."""
    for op in REGISTRY.values():
        if name.lower() in (alias.lower() for alias in op.known_as):
            return f"graphdsl calls it `{op.name}`"
    return None
