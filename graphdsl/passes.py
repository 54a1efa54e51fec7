"""Static passes over the IR. Each writes its figures into the nodes and starts from `lint`.

>>> import graphdsl
>>> net = graphdsl.load(text="network n { input 3x32x32  conv(8, 3)  conv(8, 3) }")
>>> [net.graph.nodes[n]["rf"] for n in net.graph]
[(1, 1), (3, 3), (5, 5)]
"""

from __future__ import annotations

import re

import networkx as nx

from .diagnostics import Diagnostic
from .ops import REGISTRY, numel

NODE_KEYS = ("op", "attrs", "scope", "span", "shape")
SCOPE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\Z")  # a label (computed ones may have `-`) or a position


class IRError(AssertionError):
    """The IR broke an invariant: a bug in graphdsl, never in the spec."""


def lint(g: nx.DiGraph) -> None:
    """Check the IR's invariants; raise IRError listing what is wrong."""
    problems = []
    inputs = [n for n, d in g.nodes(data=True) if d.get("op") == "input"]
    if len(inputs) != 1:
        problems.append(f"expected one input node, found {len(inputs)}")
    if len(g) < 50_000 and not nx.is_directed_acyclic_graph(g):  # large graphs: acyclic by construction
        problems.append("the graph has a cycle")
    for n, d in g.nodes(data=True):
        missing = [k for k in NODE_KEYS if k not in d]
        if missing:
            problems.append(f"{n}: missing {missing}")
            continue
        if d["op"] != "input" and d["op"] not in REGISTRY:
            problems.append(f"{n}: unknown op {d['op']}")
        if not d["shape"] or any(not isinstance(x, int) or x <= 0 for x in d["shape"]):
            problems.append(f"{n}: bad shape {d['shape']}")
        if d["op"] != "input" and ".".join(d["scope"]) != n:
            problems.append(f"{n}: scope {d['scope']} does not match the node id")
        if d["op"] != "input" and not all(SCOPE_NAME.match(p) for p in d["scope"]):
            problems.append(f"{n}: scope {d['scope']} is not a module path")
        if any(".".join(d["scope"][:i]) in g for i in range(1, len(d["scope"]))):
            problems.append(f"{n}: lies inside another node")
        order = sorted(e["index"] for e in g._pred[n].values())
        if order != list(range(len(order))):
            problems.append(f"{n}: input indices {order}")
        if d["op"] != "input" and not order:
            problems.append(f"{n}: no inputs")
    for name, node in g.graph.get("outputs", []):
        if node not in g:
            problems.append(f"output {name}: no node {node}")
    if problems:
        raise IRError("; ".join(problems))


def inputs_of(g: nx.DiGraph, node: str) -> list[str]:
    """The inputs of `node` in argument order (concat order matters)."""
    pred = g._pred[node]  # the raw adjacency: networkx's edge views cost more than the passes themselves
    if len(pred) < 2:
        return list(pred)
    return sorted(pred, key=lambda u: pred[u]["index"])


def state_dict(g: nx.DiGraph) -> dict[str, tuple[int, ...]]:
    """The state_dict keys and tensor shapes of the module tree a backend builds from the IR (each
    op's `parameters` and `buffers` under its node id), with no torch: what `load_state_dict(...,
    strict=True)` will ask of a checkpoint."""
    sd: dict[str, tuple[int, ...]] = {}
    for n, d in g.nodes(data=True):
        if d["op"] == "input":
            continue
        op = REGISTRY[d["op"]]
        ins = [g.nodes[i]["shape"] for i in inputs_of(g, n)]
        tensors = {**op.parameters(d["attrs"], ins, d["shape"]), **op.buffers(d["attrs"], ins, d["shape"])}
        sd.update((f"{n}.{suffix}" if suffix else n, tuple(shape)) for suffix, shape in tensors.items())
    return sd


MAX_FIELD = 2**40  # receptive fields and strides are capped here (no input is this large)

FIGURES = ("params", "buffers", "macs", "other_ops", "activations")  # what `costs` writes into each node


def costs(g: nx.DiGraph) -> None:
    """Parameters, buffers, conv+linear MACs, other work, and activation size of each node."""
    nodes = g._node
    for n, d in nodes.items():
        if d["op"] == "input":
            d.update(params=0, buffers=0, macs=0, other_ops=0, activations=0)
            continue
        op = REGISTRY[d["op"]]
        ins = [nodes[i]["shape"] for i in inputs_of(g, n)]
        a, out = d["attrs"], d["shape"]
        d.update(params=op.param_count(a, ins, out), buffers=op.buffer_count(a, ins, out),
                 macs=op.macs(a, ins, out), other_ops=op.other_ops(a, ins, out), activations=numel(out))


def receptive_field(g: nx.DiGraph) -> None:
    """Receptive field and cumulative stride (per H and W) of each node; the largest through branches."""
    nodes = g._node  # plain dicts: networkx's node views cost more than the arithmetic
    for n, d in nodes.items():
        if d["op"] == "input":
            d.update(rf=(1, 1), jump=(1, 1))
            continue
        preds = inputs_of(g, n)
        if len(preds) == 1:
            p = nodes[preds[0]]
            rf, jump, shapes = p["rf"], p["jump"], [p["shape"]]
        else:
            ins = [nodes[p] for p in preds]
            shapes = [i["shape"] for i in ins]
            rf = tuple(max(i["rf"][k] for i in ins) for k in range(2))
            # the stride between output positions is that of the inputs at the output's resolution: a
            # broadcast 1x1 gate (squeeze-excitation) sees everything but does not set the grid
            grid = [i for i in ins if i["shape"][1:] == d["shape"][1:]] or ins
            jump = tuple(max(i["jump"][k] for i in grid) for k in range(2))
        win = REGISTRY[d["op"]].window(d["attrs"], shapes)
        if win is not None:
            # strided layers on a 1x1 map keep its size while the stride compounds: past any input a network
            # takes, the figures only grow; bounded, they stay printable and cheap
            rf = tuple(min(r + (k - 1) * j, MAX_FIELD) for r, k, j in zip(rf, win.kernel, jump))
            jump = tuple(min(j * s, MAX_FIELD) for j, s in zip(jump, win.stride))
        d["rf"], d["jump"] = rf, jump


def unused_results(g: nx.DiGraph) -> list[Diagnostic]:
    """Warnings for results computed and never used: a side branch that nothing reads (an SE gate
    computed and dropped changes the network silently), a chain left behind by `from`."""
    outputs = {node for _, node in g.graph.get("outputs", [])}
    bound = g.graph.get("bound", {})  # node -> (tensor name, span of the name), from `name = ...`
    warnings = []
    for n, d in g.nodes(data=True):
        if g.out_degree(n) or n in outputs or d["op"] == "input":
            continue
        if n in bound:
            name, span = bound[n]
            message = f"`{name}` is computed but never used"
        else:
            span = d["span"]
            message = f"the result of layer `{n}` is never used"
        warnings.append(Diagnostic(message, span, severity="warning",
                                   help="use it (in a merge such as `mul(in, x)` or `concat(a, x)`, with "
                                        "`from`, or in `output`), or remove it: as it is, it changes nothing"))
    return warnings


PASSES = (costs, receptive_field)


def run_passes(g: nx.DiGraph) -> None:
    lint(g)
    g.graph["warnings"] = unused_results(g)
    for p in PASSES:
        p(g)
