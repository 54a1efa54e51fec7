"""The inference build: every BatchNorm that follows a conv folded into the conv's weights and bias, and
the layers that do nothing in eval mode (dropout, identity, stochastic depth) left out.

The fold is a transform of the spec, not of a module: the program's syntax tree is rewritten (a `bn`
right after a `conv` in the same sequence of statements is removed and the conv gets `bias=true`; a no-op
is removed where the sequence keeps another layer) and elaborated as any spec is. The result is an
ordinary `Network`: its static figures are those of the folded network, and the usual code generator
writes its module. Each fold is then checked on the two IRs, in every instance of the statement (the
bn reads that conv's output and nothing else does, it normalises the conv's channels, and every other
layer reads what it read before, its inputs passed through the removed layers); a statement whose fold
is not legal everywhere keeps its bn.

>>> import graphdsl
>>> net = graphdsl.load(text="network n { input 3x8x8  conv(4, 3, bias=false)  bn  relu  dropout  flatten  linear(2) }")
>>> folded = fold(net)
>>> [(f.conv, f.bn, f.folded) for f in folded.folds], folded.dropped
([('0', '1', '0')], ('3',))
>>> [(n, d["op"], d["attrs"].get("bias")) for n, d in folded.network.graph.nodes(data=True)]
[('input', 'input', None), ('0', 'conv', True), ('1', 'relu', None), ('2', 'flatten', None), ('3', 'linear', True)]

Unlabelled layers after a removed one take the next position, as in nn.Sequential: `features.3` of
VGG-16-BN is `features.2` in its inference build. `fold_state_dict` maps the weights by the IRs.

API: `fold(net) -> Folded` (`.network`, `.folds`, `.dropped`, `.skipped`, `.node_map`, `.params`,
`.macs`, `.state_dict(sd)`, `.to_torch(...)`, `.describe()`); `fold_state_dict(original, folded, sd)`;
`build(net, state_dict=None, device=None, dtype=None, channels_last=None, fuse=False) -> nn.Module`;
`fuse_convolutions(module)`: convs with the activation, or addition and ReLU, after them as single oneDNN
calls (CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace

from . import ast
from .api import Network
from .backends.scopes import gc_paused
from .diagnostics import Span
from .elaborate import Elaborator
from .ops import REGISTRY
from .passes import inputs_of, run_passes
from .program import Program
from .syntax import parse

NO_OPS_IN_EVAL = ("dropout", "identity", "stochastic_depth")  # each returns its input in eval mode
_CONV_BIAS = [a.name for a in REGISTRY["conv"].args].index("bias")  # position of `bias` among conv's arguments
_MAX_TRIES = 20  # elaborations spent looking for the folds that are legal everywhere


class FoldError(RuntimeError):
    """The network cannot be rebuilt from its sources (it was not loaded from a spec)."""


@dataclass(frozen=True)
class Fold:
    """One BatchNorm folded into the conv before it: node ids in the original network, the conv's in the
    folded one, and the BatchNorm's eps."""

    conv: str
    bn: str
    folded: str
    eps: float


@dataclass(frozen=True)
class Skipped:
    """A layer the build keeps although it looked removable, and why."""

    node: str
    reason: str


@dataclass
class Folded:
    """An inference build: the folded `network` and how it relates to the `original`."""

    original: Network
    network: Network
    folds: tuple[Fold, ...] = ()
    dropped: tuple[str, ...] = ()  # original node ids of the no-ops left out
    skipped: tuple[Skipped, ...] = ()
    node_map: dict[str, str] = field(default_factory=dict)  # original node id -> folded node id, for every kept node

    @property
    def params(self) -> int:
        return self.network.params

    @property
    def macs(self) -> int:
        return self.network.macs

    def state_dict(self, state_dict) -> dict:
        """The original module's `state_dict` as the folded module's (see `fold_state_dict`)."""
        return fold_state_dict(self.original, self, state_dict)

    def to_torch(self, state_dict=None, device=None, dtype=None, channels_last=None, fuse=False):
        """The folded module (see `build`)."""
        return build(self, state_dict=state_dict, device=device, dtype=dtype, channels_last=channels_last,
                     fuse=fuse)

    def describe(self) -> str:
        """What the build changed, in a few lines (what `graphdsl compile --inference` prints)."""
        dropped = {}
        for node in self.dropped:
            op = self.original.graph.nodes[node]["op"]
            dropped[op] = dropped.get(op, 0) + 1
        parts = [f"{len(self.folds)} BatchNorm{'s' if len(self.folds) != 1 else ''} folded into their convs"]
        parts += [f"{n} {op} removed" for op, n in dropped.items()]
        lines = ["inference build: " + ", ".join(parts)]
        a, b = self.original, self.network
        lines.append(f"  parameters  {a.params:,} -> {b.params:,}")
        lines.append(f"  MACs        {a.macs:,} -> {b.macs:,}")
        lines.append(f"  other ops   {a.other_ops:,} -> {b.other_ops:,}")
        lines += [f"  kept `{s.node}`: {s.reason}" if s.node else f"  kept every layer: {s.reason}"
                  for s in self.skipped]
        return "\n".join(lines)


def fold(net: Network) -> Folded:
    """The inference build of `net`: its spec rewritten (see the module doc), elaborated with the same
    parameters, and checked against `net` instance by instance."""
    if isinstance(net, Folded):
        return net
    program = _program(net)
    skip: set[Span] = set()
    reasons: dict[Span, Skipped] = {}
    drop_noops = True
    for _ in range(_MAX_TRIES):
        rewriter = _Rewriter(skip, drop_noops)
        graph = _elaborate(rewriter.program(program), net)
        if graph is None:  # a removal broke the spec (a name still used, say): fall back a step
            if drop_noops:
                drop_noops = False
                continue
            break
        problems, record = _check(net.graph, graph, rewriter)
        if not problems:
            folds, dropped, node_map = record
            return Folded(net, Network(graph, net.sources, net.inputs), folds, dropped, tuple(reasons.values()),
                          node_map)
        if None in problems:  # not tied to one statement: give up the removals of no-ops, then everything
            if drop_noops:
                drop_noops = False
                continue
            break
        for span, skipped in problems.items():
            skip.add(span)
            reasons.setdefault(span, skipped)
    # nothing removed: the network itself, rebuilt so that it is a separate object
    graph = _elaborate(program, net)
    if graph is None:
        raise FoldError(f"network `{net.name}` cannot be rebuilt from its sources")
    identity = {n: n for n in graph if n != "input"}
    graph.graph["inference"] = {"folds": [], "node_map": identity, "dropped": []}
    return Folded(net, Network(graph, net.sources, net.inputs), node_map=identity,
                  skipped=(*reasons.values(), Skipped("", "the spec could not be folded safely")))


# ---- the program behind a network -------------------------------------------------------------------


def _program(net: Network) -> Program:
    """The program `net` was elaborated from, parsed again from the texts it was read from (not from disk:
    the files may have changed since)."""
    main_file = net.graph.graph.get("file")
    if main_file not in net.sources:
        raise FoldError(f"network `{net.name}` has no sources to fold (it was not loaded from a spec)")
    modules = {}
    for file, text in net.sources.items():
        module, errors = parse(text, file)
        if module is None or errors:
            raise FoldError(f"`{file}` no longer parses")
        modules[file] = module
    program = Program(modules[main_file], sources=dict(net.sources))
    for file, module in modules.items():
        for definition in module.definitions:
            if definition.kind == "block":
                program.blocks.setdefault(definition.name, definition)
            elif file != main_file:
                program.imported_networks.setdefault(definition.name, definition)
    return program


def _elaborate(program: Program, original: Network):
    """The IR of `program`'s network of `original`'s name with `original`'s parameters; None on errors."""
    meta = original.graph.graph
    definition = program.networks.get(meta["name"])
    if definition is None:
        return None
    elaborator = Elaborator(program)
    with gc_paused():
        try:
            # the user's overrides (not every parameter): the same network, and the folded module's
            # docstring names the same `-D`s as the unfolded one's
            given = meta.get("overrides")
            graph = elaborator.network(definition, dict(given if given is not None else meta.get("params", {})))
        except RecursionError:
            return None
    if elaborator.diagnostics:
        return None
    run_passes(graph)
    return graph


# ---- the rewrite ---------------------------------------------------------------------------------------


def _call_of(stmt) -> tuple[ast.Call, str | ast.Template | None] | None:
    """The op call a statement is (`conv(...)` or `name: conv(...)`), with its label."""
    if isinstance(stmt, ast.Call) and not stmt.inline:
        return stmt, None
    if isinstance(stmt, ast.Labeled) and isinstance(stmt.item, ast.Call) and not stmt.item.inline:
        return stmt.item, stmt.label
    return None


def _is_op(stmt, *names: str) -> bool:
    found = _call_of(stmt)
    return found is not None and found[0].name in names


def _walk(node):
    """Every syntax node under `node` (dataclasses and tuples of them), itself included."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, tuple):
            stack.extend(n)
        elif is_dataclass(n) and not isinstance(n, Span):
            stack.extend(getattr(n, f.name) for f in fields(n))


def _names_used(body) -> set[str]:
    """Every name a body reads a tensor by (where the elaborator looks up tensors): `from x`, `output x`,
    the tensors a merging op names (`add(x, y)`)."""
    names = set()
    for n in _walk(body):
        if isinstance(n, ast.From):
            names.add(n.name)
        elif isinstance(n, ast.Output):
            names.update(name for name, _ in (*n.names, *n.training))
        elif isinstance(n, ast.Call) and getattr(REGISTRY.get(n.name), "merges", False):
            names.update(a.value.name for a in n.args if a.name is None and isinstance(a.value, ast.Var))
    return names


def _reads_input(expr) -> bool:
    """Whether an expression depends on the tensor flowing in (`in.channels`): its value after the conv
    is not the value before it."""
    return any(isinstance(n, (ast.InAttr, ast.InTensor)) for n in _walk(expr))


def _makes_tensor(stmt) -> bool:
    return not isinstance(stmt, (ast.Doc, ast.Let, ast.Assert, ast.Input, ast.Output))


def _with_bias(stmt, bias):
    """The conv statement `stmt` with its `bias` argument computed by `bias(old expression or None)`."""
    call = stmt.item if isinstance(stmt, ast.Labeled) else stmt
    args = list(call.args)
    named = [i for i, a in enumerate(args) if a.name == "bias"]
    positional = [i for i, a in enumerate(args) if a.name is None]
    if named or len(positional) > _CONV_BIAS:
        i = named[0] if named else positional[_CONV_BIAS]
        args[i] = replace(args[i], value=bias(args[i].value))
    else:
        args.append(ast.Arg("bias", bias(None), call.span))
    call = replace(call, args=tuple(args))
    return replace(stmt, item=call) if isinstance(stmt, ast.Labeled) else call


class _Rewriter:
    """The syntax tree with the folds and removals made; records which statements (by the span of their
    call) it removed. Statements in `skip` stay."""

    def __init__(self, skip: set[Span], drop_noops: bool):
        self.skip = skip
        self.drop_noops = drop_noops
        self.folds: dict[Span, Span] = {}  # bn call -> the conv call it folds into
        self.dropped: set[Span] = set()
        self.names: set[str] = set()  # the names the current definition reads tensors by
        self._done: dict[int, ast.Definition] = {}

    def program(self, program: Program) -> Program:
        main = program.main
        return Program(replace(main, definitions=tuple(self.definition(d) for d in main.definitions)),
                       blocks={k: self.definition(d) for k, d in program.blocks.items()},
                       sources=program.sources,
                       imported_networks={k: self.definition(d) for k, d in program.imported_networks.items()})

    def definition(self, d: ast.Definition) -> ast.Definition:
        if id(d) not in self._done:
            self.names = _names_used(d.body)
            self._done[id(d)] = replace(d, body=self.body(d.body))
        return self._done[id(d)]

    def removable(self, stmt) -> bool:
        call, label = _call_of(stmt)
        if call.span in self.skip or isinstance(label, ast.Template):  # a computed name may be read anywhere
            return False
        return label is None or label not in self.names

    def body(self, stmts, keep_one: bool = False) -> tuple:
        """A sequence: each statement reads the tensor the one before gave. With `keep_one` (a group, a
        residual's body) a no-op stays where it is the sequence's only layer."""
        others = sum(1 for s in stmts if _makes_tensor(s) and not _is_op(s, *NO_OPS_IN_EVAL))
        out: list = []
        prev = None  # index in `out` of the statement right before, docs aside
        for stmt in stmts:
            stmt = self.inner(stmt)
            before = out[prev] if prev is not None else None
            if before is not None and _is_op(before, "conv"):
                if _is_op(stmt, "bn") and self.removable(stmt):
                    self.folds[_call_of(stmt)[0].span] = _call_of(before)[0].span
                    out[prev] = _with_bias(before, lambda old, s=stmt: ast.Const(True, s.span))
                    prev = None
                    continue
                if isinstance(stmt, ast.If) and not _reads_input(stmt.condition):
                    stmt, bias = self.fold_into_if(stmt, _call_of(before)[0].span)
                    if bias is not None:
                        out[prev] = _with_bias(before, bias)
            if self.drop_noops and _is_op(stmt, *NO_OPS_IN_EVAL) and self.removable(stmt) and (others or not keep_one):
                self.dropped.add(_call_of(stmt)[0].span)
                continue
            if not isinstance(stmt, ast.Doc):
                prev = len(out)
            out.append(stmt)
        return tuple(out)

    def fold_into_if(self, stmt: ast.If, conv: Span):
        """`conv(...)  if batch_norm { bn }`: the bn leaves the branch, the conv's bias becomes
        `batch_norm or <bias>`. Returns the `if` and how to compute the bias (None: nothing folded)."""
        def split(branch):
            first = next((i for i, s in enumerate(branch) if not isinstance(s, ast.Doc)), None)
            if first is not None and _is_op(branch[first], "bn") and self.removable(branch[first]):
                self.folds[_call_of(branch[first])[0].span] = conv
                return branch[:first] + branch[first + 1:], True
            return branch, False

        then, in_then = split(stmt.then)
        orelse, in_else = split(stmt.orelse)
        if not (in_then or in_else):
            return stmt, None
        cond = stmt.condition
        span = cond.span
        when = ast.Const(True, span) if in_then and in_else else cond if in_then else ast.Not(cond, span)

        def bias(old):
            return ast.Const(True, span) if old is None else ast.BinOp("or", when, old, span)

        return replace(stmt, then=then, orelse=orelse), bias

    def inner(self, stmt):
        """The statement with the sequences inside it rewritten."""
        match stmt:
            case ast.Labeled() | ast.Bind():
                return replace(stmt, item=self.item(stmt.item))
            case ast.If():
                return replace(stmt, then=self.body(stmt.then), orelse=self.body(stmt.orelse))
            case ast.For():
                return replace(stmt, body=self.body(stmt.body))
            case ast.Call() | ast.Group() | ast.Residual() | ast.Repeat() | ast.Branches():
                return self.item(stmt)
        return stmt

    def item(self, item):
        match item:
            case ast.Group():
                return replace(item, body=self.body(item.body, keep_one=True))
            case ast.Residual():
                shortcut = None if item.shortcut is None else self.body(item.shortcut)
                return replace(item, body=self.body(item.body, keep_one=True), shortcut=shortcut)
            case ast.Repeat():
                return replace(item, item=self.item(item.item))
            case ast.Branches():
                return replace(item, body=self.branches(item.body))
        return item

    def branches(self, stmts) -> tuple:
        """A branch list: each statement is a branch of its own, none is removed; what they hold is."""
        out = []
        for stmt in stmts:
            match stmt:
                case ast.If():
                    stmt = replace(stmt, then=self.branches(stmt.then), orelse=self.branches(stmt.orelse))
                case ast.For():
                    stmt = replace(stmt, body=self.branches(stmt.body))
                case ast.Labeled() | ast.Bind():
                    stmt = replace(stmt, item=self.item(stmt.item))
                case ast.Call() | ast.Group() | ast.Residual() | ast.Repeat() | ast.Branches():
                    stmt = self.item(stmt)
            out.append(stmt)
        return tuple(out)


# ---- the check on the two IRs ---------------------------------------------------------------------------


def _check(original, folded, rewriter: _Rewriter) -> tuple[dict, tuple | None]:
    """Whether `folded` is `original` with the rewriter's folds and removals and nothing else, instance by
    instance. Returns ({span of a statement to keep: why} (key None: a difference not tied to one), and
    where there is none (folds, dropped nodes, node map)). Records the same in `folded.graph`."""
    removed = {n for n, d in original.nodes(data=True)
               if (d["op"] == "bn" and d["span"] in rewriter.folds)
               or (d["op"] in NO_OPS_IN_EVAL and d["span"] in rewriter.dropped)}
    kept = [n for n in original if n not in removed]
    if len(kept) != len(folded):
        return {None: Skipped("", "the folded network has other layers")}, None
    node_map = dict(zip(kept, folded))

    def source(n):  # the node a removed node passes through
        while n in removed:
            n = inputs_of(original, n)[0]
        return n

    problems: dict = {}
    folds, fold_of = [], {}
    for b in (n for n in original if n in removed and original.nodes[n]["op"] == "bn"):  # in graph order
        d = original.nodes[b]
        (c,) = inputs_of(original, b)
        conv = original.nodes[c]
        why = None
        if conv["op"] != "conv" or c in removed:
            why = "it does not read a conv"
        elif list(original.successors(c)) != [b] or c in dict(original.graph["outputs"]).values():
            why = f"the output of `{c}` is read by more than this BatchNorm"
        elif len(d["shape"]) != 3 or d["shape"][0] != conv["shape"][0]:
            why = "it does not normalise the conv's channels"
        elif folded.nodes[node_map[c]]["attrs"].get("bias") is not True:
            why = "its conv gets no bias"
        if why is not None:
            problems[d["span"]] = Skipped(b, why)
            continue
        fold_of[c] = b
        folds.append(Fold(c, b, node_map[c], float(d["attrs"]["eps"])))
    for b in sorted(removed):
        if original.nodes[b]["op"] != "bn" and len(inputs_of(original, b)) != 1:
            problems[original.nodes[b]["span"]] = Skipped(b, "it has several inputs")
    if problems:
        return problems, None
    for o, f in node_map.items():
        a, b = original.nodes[o], folded.nodes[f]
        attrs = dict(a["attrs"])
        if o in fold_of:
            attrs["bias"] = True
        if a["op"] != b["op"] or a["shape"] != b["shape"] or attrs != b["attrs"]:
            return {None: Skipped(o, f"`{o}` differs in the folded network (`{f}`)")}, None
        if [node_map[source(p)] for p in inputs_of(original, o)] != list(inputs_of(folded, f)):
            return {None: Skipped(o, f"`{o}` reads other tensors in the folded network")}, None
    outputs = [(name, node_map[source(n)]) for name, n in original.graph["outputs"]]
    if outputs != list(folded.graph["outputs"]):
        return {None: Skipped("", "the folded network has other outputs")}, None
    node_map.pop("input", None)
    dropped = tuple(n for n in original if n in removed and original.nodes[n]["op"] != "bn")
    folded.graph["inference"] = {"folds": [(f.conv, f.bn, f.folded, f.eps) for f in folds],
                                 "node_map": dict(node_map), "dropped": list(dropped)}
    return {}, (tuple(folds), dropped, node_map)


# ---- weights and modules (these import torch) ------------------------------------------------------------


def _record(folded) -> dict:
    network = folded.network if isinstance(folded, Folded) else folded
    record = network.graph.graph.get("inference")
    if record is None:
        raise ValueError(f"network `{network.name}` is not an inference build (make one with `fold(net)`)")
    return record


def _owner(graph, key: str) -> str | None:
    """The node a state_dict key belongs to: `layer1.0.conv1.weight` -> `layer1.0.conv1`; a bare parameter's
    key is its node id."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        node = ".".join(parts[:i])
        if node in graph and node != "input":
            return node
    return None


def fold_state_dict(original: Network, folded, state_dict) -> dict:
    """The weights of `original`'s module (its `state_dict`, trained or fresh) as those of the folded
    module: each folded conv gets w * g / sqrt(v + eps) and (b - m) * g / sqrt(v + eps) + beta from its
    BatchNorm's weight g, bias beta, running mean m and variance v (eps from the IR), computed in float64
    and stored in the conv weight's dtype; every other key moves to its node's id in the folded network.
    `folded` is the Folded of `fold(original)` or its `.network`. The result loads with strict=True."""
    import torch

    record = _record(folded)
    g = original.graph
    node_map, folds = record["node_map"], record["folds"]
    folded_bns = {bn for _, bn, _, _ in folds}
    out = {}
    for key, value in state_dict.items():
        node = _owner(g, key)
        if node is None:
            out[key] = value
        elif node in folded_bns:
            continue
        elif node in node_map:
            out[node_map[node] + key[len(node):]] = value
        else:
            raise ValueError(f"`{key}` belongs to `{node}`, which the inference build leaves out")
    for conv, bn, target, eps in folds:
        weight = state_dict[f"{conv}.weight"]
        w = weight.detach().to(torch.float64)
        channels = w.shape[0]
        bias = state_dict.get(f"{conv}.bias")
        b = bias.detach().to(torch.float64) if bias is not None else torch.zeros(channels, dtype=torch.float64)
        mean = state_dict[f"{bn}.running_mean"].detach().to(torch.float64)
        var = state_dict[f"{bn}.running_var"].detach().to(torch.float64)
        gamma = state_dict.get(f"{bn}.weight")
        beta = state_dict.get(f"{bn}.bias")
        gamma = gamma.detach().to(torch.float64) if gamma is not None else torch.ones_like(mean)
        beta = beta.detach().to(torch.float64) if beta is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + eps)
        out[f"{target}.weight"] = (w * scale.reshape(-1, *([1] * (w.dim() - 1)))).to(weight.dtype)
        out[f"{target}.bias"] = ((b - mean) * scale + beta).to(weight.dtype)
    return out


def build(net, state_dict=None, device=None, dtype=None, channels_last=None, fuse=False):
    """The inference build of `net` (a Network, or the Folded of `fold(net)`) as an nn.Module in eval mode,
    its parameters without gradients: the weights of `state_dict` (the original module's, e.g. trained),
    or of a freshly built original module, folded. `channels_last` (default: on the CPU) stores the conv
    weights NHWC, which makes oneDNN run every conv and what follows it NHWC; the input may stay NCHW.
    `fuse=True` (CPU, float32) runs each conv with the activation or the addition and ReLU after it as
    one oneDNN call with a prepacked weight (`fuse_convolutions`). Measured (docs/inference.md): no faster
    at batch 16 on an idle CPU (but for MobileNetV2), slower at batch 1, faster under heavy load; and the
    module is then a torch.fx.GraphModule for eval mode only, whose state_dict lacks the conv weights and
    which neither pickles nor exports. Hence not the default."""
    import torch

    folded = fold(net)
    if state_dict is None:
        state_dict = folded.original.to_torch().state_dict()
    module = folded.network.to_torch()
    module.load_state_dict(fold_state_dict(folded.original, folded, state_dict), strict=True)
    module.eval().requires_grad_(False)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if device is not None or dtype is not None:
        module = module.to(device=device, dtype=dtype)
    if channels_last is None:
        channels_last = torch.device(device or "cpu").type == "cpu"
    if channels_last:
        module = module.to(memory_format=torch.channels_last)  # 4-D tensors only: the conv weights
    if fuse:
        if not all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters()):
            raise ValueError("fused convolutions run on the CPU in float32 only")
        module = fuse_convolutions(module)
    return module


# ---- fused convolutions (CPU) ------------------------------------------------------------------------------

# Activations oneDNN applies inside the convolution (the names are its post-op attributes), as the generated
# code and torch.fx write them: F.relu(x, inplace=True), torch.sigmoid(x), nn.ReLU6 modules...
_UNARY_FUNCTIONS = {"relu": "relu", "relu6": ("hardtanh", [0.0, 6.0]), "silu": "swish", "hardswish": "hardswish",
                    "sigmoid": "sigmoid", "tanh": "tanh"}
_UNARY_MODULES = {"ReLU": "relu", "ReLU6": ("hardtanh", [0.0, 6.0]), "SiLU": "swish", "Hardswish": "hardswish",
                  "Sigmoid": "sigmoid", "Tanh": "tanh"}


def _fused_conv_class():
    import torch

    class FusedConv2d(torch.nn.Module):
        """A Conv2d with the activation after it, or the addition and ReLU after it, in one oneDNN call
        (torch.ops.mkldnn._convolution_pointwise, what torch.compile's CPU backend uses), its weight
        reordered once into oneDNN's layout."""

        def __init__(self, conv, unary: str = "none", scalars=(), binary: str | None = None):
            super().__init__()
            self.padding, self.stride = list(conv.padding), list(conv.stride)
            self.dilation, self.groups = list(conv.dilation), conv.groups
            self.unary, self.scalars, self.binary = unary, list(scalars), binary
            weight = conv.weight.detach()
            self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                weight.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, None)
            self.bias = None if conv.bias is None else conv.bias.detach().clone()

        def forward(self, x, other=None):
            if self.binary is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.packed, self.bias, self.padding, self.stride, self.dilation, self.groups, self.unary,
                    self.scalars, "")
            return torch.ops.mkldnn._convolution_pointwise.binary(
                x, other, self.packed, self.bias, self.padding, self.stride, self.dilation, self.groups,
                self.binary, 1.0, None if self.unary == "none" else self.unary, self.scalars, "")

        def extra_repr(self) -> str:
            post = " + ".join(p for p in (self.binary, self.unary) if p and p != "none")
            return f"groups={self.groups}, stride={tuple(self.stride)}" + (f", then {post}" if post else "")

    return FusedConv2d


def fuse_convolutions(module):
    """`module` (eval mode, float32, on the CPU) traced with torch.fx, with every Conv2d as one fused oneDNN
    call with a prepacked weight: with the activation that alone reads its output (relu, relu6, silu,
    hardswish, sigmoid, tanh), or with the addition that alone reads it and the ReLU after that (a
    ResNet block's end). Returns the torch.fx.GraphModule; the prepacked weights are not in its
    state_dict. A module that does not trace is returned as it was."""
    import operator

    import torch
    import torch.fx
    import torch.nn.functional as F

    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception:  # noqa: BLE001 - e.g. a submodule named like a Python keyword: fx cannot write it
        return module
    fused_conv = _fused_conv_class()
    functions = {getattr(F, name): attr for name, attr in _UNARY_FUNCTIONS.items() if hasattr(F, name)}
    functions.update({torch.relu: "relu", torch.sigmoid: "sigmoid", torch.tanh: "tanh"})
    adds = (operator.add, operator.iadd, torch.add)

    def unary_of(node):
        if node.op == "call_function" and node.target in functions:
            if len(node.args) != 1 or set(node.kwargs) - {"inplace"}:
                return None
            return functions[node.target]
        if node.op == "call_module":
            return _UNARY_MODULES.get(type(gm.get_submodule(node.target)).__name__)
        return None

    def only_user(node):
        return next(iter(node.users)) if len(node.users) == 1 else None

    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        conv = gm.get_submodule(node.target)
        if (type(conv) is not torch.nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str)
                or conv.weight.dtype != torch.float32 or conv.weight.device.type != "cpu"):
            continue
        user, replaced, args, unary, binary = only_user(node), [node], (node.args[0],), "none", None
        if user is not None and user.op == "call_function" and user.target in adds and len(user.args) == 2 \
                and not user.kwargs and all(isinstance(a, torch.fx.Node) for a in user.args):
            other = user.args[1] if user.args[0] is node else user.args[0]
            after = only_user(user)
            if other is not node:
                binary, args, replaced = "add", (node.args[0], other), [node, user]
                if after is not None and unary_of(after) == "relu":
                    unary, replaced = "relu", [node, user, after]
        elif user is not None and unary_of(user) is not None:
            unary, replaced = unary_of(user), [node, user]
        scalars = ()
        if isinstance(unary, tuple):
            unary, scalars = unary
        name = f"fused_{count}"
        gm.add_submodule(name, fused_conv(conv, unary, scalars, binary))
        with gm.graph.inserting_before(replaced[-1]):
            new = gm.graph.call_module(name, args)
        replaced[-1].replace_all_uses_with(new)
        for old in reversed(replaced):
            gm.graph.erase_node(old)
        count += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm
