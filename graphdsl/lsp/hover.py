"""Hover: what the thing at a position is, and its figures (output shape, parameters, MACs, receptive
field, stride) in every elaborated network that instantiates it. The figures are the passes' (node
attributes of the IR), found by span: the IR nodes whose span lies in the statement, and the members of
the block calls it makes. Nothing is re-derived."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from .. import ast
from ..backends.scopes import output_node
from ..diagnostics import Span
from ..ops import REGISTRY, fmt_shape
from ..program import Program
from ..units import TIMES, human
from .analysis import Analysis, Elaboration, real
from .navigation import signature, target_at, within


@dataclass(frozen=True)
class Instance:
    """One instantiation of a statement: the IR nodes it made, and their figures together."""

    network: str
    where: str  # the scope it sits in (`layer3.5`), or the node id for a single layer
    shape: tuple
    params: int
    macs: int
    rf: tuple[int, int]
    jump: tuple[int, int]

    def figures(self) -> str:
        rf = str(self.rf[0]) if self.rf[0] == self.rf[1] else f"{self.rf[0]}{TIMES}{self.rf[1]}"
        stride = str(self.jump[0]) if self.jump[0] == self.jump[1] else f"{self.jump[0]}{TIMES}{self.jump[1]}"
        return (f"{fmt_shape(self.shape, TIMES)} · {_count(self.params, 'param')} · {human(self.macs)} MACs · "
                f"RF {rf} · stride {stride}")


def _count(n: int, what: str) -> str:
    return f"{human(n)} {what}{'' if n == 1 else 's'}"


def instances(elaboration: Elaboration, span: Span) -> list[Instance]:
    """The instantiations of the statement at `span` in one elaborated network, in graph order: the IR
    nodes whose span lies in it and the members of the block calls it makes, grouped by the block call
    (outside the statement) each lies in. A statement of a block used 36 times has 36 instances."""
    nodes, calls, members, infos = elaboration.index()
    key = real(span.file)
    matched_scopes = [p for s, paths in calls.items() if real(s.file) == key and within(s, span) for p in paths]
    matched_nodes = [n for s, ids in nodes.items() if real(s.file) == key and within(s, span) for n in ids]
    inside = set(matched_scopes)

    def instance_of(path: tuple) -> tuple:
        for i in range(len(path) - 1, 0, -1):
            q = path[:i]
            info = infos.get(q)
            if q not in inside and info and info.get("kind") == "block":
                s = info.get("span")
                if s is None or not (real(s.file) == key and within(s, span)):
                    return q
        return ()

    groups: dict[tuple, set[str]] = {}
    for path in matched_scopes:
        groups.setdefault(instance_of(path), set()).update(members.get(path, ()))
    g = elaboration.graph
    for n in matched_nodes:
        groups.setdefault(instance_of(tuple(g.nodes[n]["scope"])), set()).add(n)
    order = {n: i for i, n in enumerate(g)}
    found = []
    for path, ids in groups.items():
        ids_sorted = sorted(ids, key=order.__getitem__)
        if not ids_sorted:
            continue
        out = g.nodes[output_node(g, ids_sorted)]
        where = ids_sorted[0] if len(ids_sorted) == 1 else (".".join(path) or elaboration.network)
        found.append((order[ids_sorted[0]], Instance(
            elaboration.network, where, out["shape"], sum(g.nodes[n].get("params", 0) for n in ids_sorted),
            sum(g.nodes[n].get("macs", 0) for n in ids_sorted), out.get("rf", (1, 1)), out.get("jump", (1, 1)))))
    return [i for _, i in sorted(found, key=lambda x: x[0])]


MAX_DISTINCT = 6  # distinct figures listed in a hover; more are counted


def _figures(same: list[Instance]) -> str:
    """The figures of instances that differ at most in their receptive field (given as a range)."""
    text = same[0].figures()
    low, high = min(i.rf for i in same), max(i.rf for i in same)
    if low == high:
        return text
    shown = [str(r[0]) if r[0] == r[1] else f"{r[0]}{TIMES}{r[1]}" for r in (low, high)]
    before, _, after = text.partition(" · RF ")
    return f"{before} · RF {shown[0]}–{shown[1]} · {after.split(' · ', 1)[1]}"


def summarise(found: list[Instance]) -> list[str]:
    """Lines of markdown: the figures of one instance, or of each distinct kind of instance with a count."""
    if not found:
        return []
    if len(found) == 1:
        i = found[0]
        return [f"`{i.figures()}`  ", f"as `{i.where}` in `{i.network}`"]
    distinct: dict[tuple, list[Instance]] = {}
    for i in found:  # the receptive field grows along a stage of identical blocks: not a difference
        distinct.setdefault((i.shape, i.params, i.macs, i.jump), []).append(i)
    networks = sorted({i.network for i in found})
    head = f"in {len(found)} instances" + (f" ({len(networks)} networks)" if len(networks) > 1 else
                                           f" in `{networks[0]}`")
    if len(distinct) == 1:
        return [f"{head}, all `{_figures(found)}`"]
    lines = [f"{head}, {len(distinct)} distinct:"]
    for same in list(distinct.values())[:MAX_DISTINCT]:
        lines.append(f"- ×{len(same)} `{_figures(same)}` (first `{same[0].where}`)")
    if len(distinct) > MAX_DISTINCT:
        lines.append(f"- … {len(distinct) - MAX_DISTINCT} more")
    return lines


def hover(analysis: Analysis, line: int, col: int, extra: Iterable[Elaboration] = ()) -> str | None:
    """Markdown for the thing at (line, col) of the analysed file: what it is, and its figures in every
    elaborated network that instantiates it (the file's own, and `extra` ones from files importing it)."""
    module, program = analysis.module, analysis.program
    if module is None:
        return None
    target = target_at(program, module, line, col)
    if target is None:
        return None
    extra = list(extra)
    # networks of open files importing this one stand in for those of a spec found on disk (`with_context`)
    elaborations = [*(_own_elaborations(analysis) if extra else analysis.elaborations), *extra]
    if target.kind == "import":
        return f"import `{target.name}`"
    if target.kind == "network":
        return _network_hover(target.node, elaborations)
    if target.kind == "block":
        lines = [f"```cnn\n{signature(target.node)}\n```"]
        if target.node.doc:
            lines.append(target.node.doc)
        calls = [i for e in elaborations for i in _block_calls(e, target.name)]
        if calls:
            lines.append(f"called {len(calls)} times in " + ", ".join(sorted({i for i in calls})))
        return "\n\n".join(lines)
    node = target.node
    if target.kind == "tensor":
        if target.name == "in":
            return "`in`: the tensor flowing into this " + node.kind
        node = node.item if isinstance(node, (ast.Labeled, ast.Bind)) else node
        if isinstance(node, ast.Split):
            return f"`{target.name}`: a part of `{node.call.name}`"
    found = [i for e in elaborations for i in instances(e, node.span)]
    head = _describe_item(program, node)
    if target.kind == "tensor":
        head = f"`{target.name}` = {head}"
    lines = [head]
    if isinstance(node, ast.Call) and node.name in program.blocks and program.blocks[node.name].doc:
        lines.append(program.blocks[node.name].doc)
    figures = summarise(found)
    if not figures:
        figures = ["not elaborated: no network of this file (with its defaults), of an open file importing it, "
                   "or of a spec beside it importing it instantiates it"]
    elif analysis.context is not None and not any(i.network in _own(analysis) for i in found):
        figures.append(f"(networks of `{os.path.basename(analysis.context)}`, which imports this file)")
    lines.append("\n".join(figures))
    return "\n\n".join(lines)


def _own_elaborations(analysis: Analysis) -> list[Elaboration]:
    return [e for e in analysis.elaborations if real(e.file) == real(analysis.file)]


def _own(analysis: Analysis) -> set[str]:
    return {e.network for e in _own_elaborations(analysis)}


def _describe_item(program: Program, item) -> str:
    match item:
        case ast.Call(name=name) if name in program.blocks:
            return f"block call `{name}`"
        case ast.Call(name=name) if name in REGISTRY:
            return f"`{name}`: {REGISTRY[name].doc or REGISTRY[name].family}"
        case ast.Call(name=name):
            return f"`{name}`"
        case ast.Repeat(item=inner):
            return f"repetition of {_describe_item(program, inner)}"
        case ast.Residual():
            return "`residual`"
        case ast.Branches(op=op):
            return f"`{op}` of branches"
        case ast.Group():
            return "group"
    return type(item).__name__.lower()


def _block_calls(elaboration: Elaboration, block: str) -> list[str]:
    infos = elaboration.graph.graph.get("scopes", {})
    return [elaboration.network for info in infos.values() if info.get("block") == block]


def _network_hover(net: ast.Definition, elaborations: list[Elaboration]) -> str:
    lines = [f"```cnn\n{signature(net)}\n```"]
    if net.doc:
        lines.append(net.doc)
    for e in elaborations:
        if e.network == net.name and real(e.file) == real(net.span.file):
            g = e.graph
            total = sum(d.get("params", 0) for _, d in g.nodes(data=True))
            macs = sum(d.get("macs", 0) for _, d in g.nodes(data=True))
            outs = ", ".join(fmt_shape(g.nodes[n]["shape"], TIMES) for _, n in g.graph.get("outputs", ()))
            shape = g.graph.get("input_shape")
            state = "" if e.complete else " (partial: errors stop the elaboration)"
            lines.append(f"`{fmt_shape(shape, TIMES) if shape else '?'} → {outs or '?'} · "
                         f"{_count(total, 'param')} · {human(macs)} MACs · {len(g) - 1} layers`{state}")
    return "\n\n".join(lines)

