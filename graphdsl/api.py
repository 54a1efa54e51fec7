"""The Python face: `graphdsl.load(...)` returns a checked `Network`."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from .backends.scopes import gc_paused
from .diagnostics import Diagnostic, SpecError, too_deep
from .elaborate import Elaborator
from .ops import Shape, fmt_shape
from .passes import FIGURES, PASSES, inputs_of, run_passes
from .program import choose_network, load_program, read_source


@dataclass(frozen=True)
class Layer:
    """The static figures of one IR node."""

    name: str
    op: str
    attrs: dict
    shape: Shape
    inputs: tuple[str, ...]
    params: int
    buffers: int
    macs: int
    other_ops: int
    activations: int
    rf: tuple[int, int]
    jump: tuple[int, int]


class Network:
    """A checked network: the IR (`graph`), its shapes and its static figures."""

    def __init__(self, graph: nx.DiGraph, sources: dict[str, str], inputs: tuple[str, ...] = ()):
        self.graph = graph
        self.sources = sources
        self.inputs = tuple(inputs)  # the files read (real paths, the spec first): what no output may replace

    @property
    def warnings(self) -> list[Diagnostic]:
        """Diagnostics of severity "warning" (the spec is valid, but likely not what was meant)."""
        return list(self.graph.graph.get("warnings", ()))

    @property
    def name(self) -> str:
        return self.graph.graph["name"]

    @property
    def doc(self) -> str | None:
        return self.graph.graph["doc"]

    @property
    def input_shape(self) -> Shape:
        return self.graph.graph["input_shape"]

    @property
    def outputs(self) -> dict[str, str]:
        """Output name -> node id, in the order the network returns them."""
        return dict(self.graph.graph["outputs"])

    @property
    def output_shapes(self) -> dict[str, Shape]:
        return {name: self.graph.nodes[node]["shape"] for name, node in self.graph.graph["outputs"]}

    def _total(self, key: str) -> int:
        return sum(d[key] for _, d in self.graph.nodes(data=True))

    @property
    def params(self) -> int:
        """Learned parameters (BN running statistics are buffers, not counted)."""
        return self._total("params")

    @property
    def buffers(self) -> int:
        return self._total("buffers")

    @property
    def macs(self) -> int:
        """Multiply-accumulates of convolutions and linear layers, batch 1."""
        return self._total("macs")

    @property
    def other_ops(self) -> int:
        """Element operations of every other op (pooling, BN, activations, additions), batch 1."""
        return self._total("other_ops")

    @property
    def activations(self) -> int:
        """Elements of every layer's output in one forward pass at batch 1."""
        return self._total("activations")

    def layers(self) -> list[Layer]:
        """Per-node figures in graph order (a topological order: inputs come first)."""
        g = self.graph
        out = []
        for n, d in g.nodes(data=True):
            if d["op"] == "input":
                continue
            preds = tuple(inputs_of(g, n))
            out.append(Layer(n, d["op"], d["attrs"], d["shape"], preds, *(d[k] for k in FIGURES), d["rf"], d["jump"]))
        return out

    def layer(self, name: str) -> Layer:
        for layer in self.layers():
            if layer.name == name:
                return layer
        raise KeyError(name)

    def figures(self) -> dict:
        """The key figures as plain data (what `graphdsl check --format json` prints)."""
        return {
            "network": self.name,
            "input": list(self.input_shape),
            "outputs": {name: list(shape) for name, shape in self.output_shapes.items()},
            "training_outputs": list(self.graph.graph["training_outputs"]),
            "params": self.params,
            "buffers": self.buffers,
            "macs": self.macs,
            "other_ops": self.other_ops,
            "activations": self.activations,
            "layers": len(self.graph) - 1,
        }

    def summary(self, depth: int | None = None, convention: str = "macs"):
        """The static summary (graphdsl.backends.summary.Summary): rows per layer, or per block at `depth`;
        `str()` gives the table, `.format("json"|"csv"|"markdown")` the others. `convention` chooses how
        the cost column counts (graphdsl.flops.CONVENTIONS: "macs", "flops", "ptflops", ...)."""
        from .backends.summary import Summary

        return Summary(self.graph, depth, convention=convention)

    def memory(self, batch: int = 1, train: bool = True, optimizer: str = "sgd", dtype: str = "fp32",
               budget=None):
        """The memory this network needs at `batch`, worked out statically (graphdsl.memory.MemoryReport):
        parameters, gradients, optimizer state, buffers, the activations autograd saves for backward, and
        the peak (`train=False`: the inference peak of live activations). `budget` ("3GB", "3GiB" or bytes)
        adds whether it fits and the largest batch that does. `.format()` prints it."""
        from .memory import memory_report

        return memory_report(self, batch, train=train, optimizer=optimizer, dtype=dtype, budget=budget)

    def costs(self) -> dict[str, int]:
        """The network's cost under every convention (graphdsl.flops): {"macs": ..., "flops": ...,
        "ptflops": ..., ...}; `graphdsl flops FILE --explain` says how they differ."""
        from .flops import totals

        return totals(self.graph)

    def render(self, path: str | os.PathLike | None = None, format: str | None = None, depth: int | None = None,
               expand: bool = False):
        """The diagram as a graphviz.Digraph; with `path`, also written there (the format from `format` or
        the extension: svg, png, pdf or dot). `depth` folds every scope below it into one box; runs of
        identical blocks are folded unless `expand`."""
        from .backends import dot

        graph = dot.diagram(self.graph, depth=depth, expand=expand)
        if path is not None:
            dot.write(graph, path, format)
        return graph

    def source(self, outputs=None) -> str:
        """The Python source of a torch.nn.Module computing this network (graphdsl.backends.torch); it
        depends on torch alone. Generating it does not import torch. Raises SpecError where PyTorch
        cannot express the network (a layer named like an nn.Module attribute, an op without lowering).
        With `outputs`, the source of the feature extractor `to_torch(outputs=...)` builds."""
        from .backends.torch import source

        return source(self, outputs)

    def to_torch(self, device=None, dtype=None, outputs=None, *, inference: bool = False, state_dict=None,
                 channels_last=None, fuse: bool = False):
        """A torch.nn.Module built from `source()` (fresh random weights), moved to `device`/`dtype` if
        given. `forward` returns the network's outputs: in eval mode those not marked training-only
        (one tensor, or a tuple in the order of `output`), in training mode all of them when some are
        training-only (auxiliary heads, computed in training mode only, as torchvision's GoogLeNet).

        `outputs=["layer2", "layer3.1.conv2"]` builds a feature extractor instead (as torchvision's
        `create_feature_extractor`): its `forward` returns the dict {name: tensor} of those layers
        (node ids) or scopes (their output, see `taps`), in eval and training mode alike, and computes
        only what they need. Its state_dict keys are the network's, for the layers it keeps.

        `state_dict` (this network's module's: trained, or torchvision's) is loaded with strict=True.
        `inference=True` builds the inference build (graphdsl.inference.build, docs/inference.md):
        BatchNorms folded into their convs, dropout/identity/stochastic depth left out, eval mode, no
        gradients, conv weights channels_last on the CPU (`channels_last=` decides); `state_dict` is then
        folded, else fresh weights are; `fuse=True` adds oneDNN conv+activation fusion (opt-in)."""
        if inference:
            if outputs is not None:
                raise ValueError("to_torch(inference=True) builds the whole network, not a feature extractor")
            from .inference import build

            return build(self, state_dict=state_dict, device=device, dtype=dtype, channels_last=channels_last,
                         fuse=fuse)
        from .backends.torch import to_torch

        module = to_torch(self, device=device, dtype=dtype, outputs=outputs)
        if state_dict is not None:
            module.load_state_dict(state_dict, strict=True)
        return module

    def inference(self):
        """The inference build, statically (graphdsl.inference.Folded): `.network` (params, MACs, summary,
        source of the folded network), `.folds`, `.describe()`. Needs no torch."""
        from .inference import fold

        return fold(self)

    def diff(self, other: Network, labels: tuple[str, str] | None = None):
        """What changes from this network to `other`, layer by layer (graphdsl.diff.NetworkDiff): added,
        removed and changed layers matched by module path, with their deltas and the totals';
        `.format("text"|"json"|"markdown")`, `.diagram()`."""
        from .diff import diff

        return diff(self, other, labels=labels)

    def taps(self, names) -> dict[str, Shape]:
        """The static shape of each named layer or scope, {name: shape}, as `to_torch(outputs=names)`
        returns them. A name is a node id (`layer2.1.conv2`) or a scope path (`layer2`: its output node,
        the last of its layers whose result leaves it). An unknown name raises KeyError (TapError) with
        the closest names. Needs no torch."""
        from .backends.torch import tap_nodes

        return {name: self.graph.nodes[node]["shape"] for name, node in tap_nodes(self.graph, names)}

    def _repr_svg_(self) -> str | None:
        """Jupyter shows a Network as its diagram (nothing where the `dot` program is missing, fails or
        runs out of time)."""
        from .backends import dot

        try:
            return dot.svg(self.graph)  # folded as `render` draws it, under the `dot` time limit
        except (dot.ExecutableNotFound, OSError, subprocess.CalledProcessError):
            return None

    def __repr__(self) -> str:
        outs = ", ".join(f"{k}: {fmt_shape(v)}" for k, v in self.output_shapes.items())
        return (f"<Network {self.name}: input {fmt_shape(self.input_shape)}, outputs {outs}, "
                f"{self.params:,} params, {self.macs:,} MACs>")


def _values(overrides: dict) -> dict:
    """Python values as the language's: lists are tuples (`cfg=[64, "M"]` works like `(64, "M")`)."""
    def value(v):
        return tuple(value(x) for x in v) if isinstance(v, (list, tuple)) else v

    return {k: value(v) for k, v in overrides.items()}




def literal(text: str):
    """The value of a literal written as in a spec (`[3, 3, 9, 3]`, `(1, 16)`): what `-D` takes for list
    parameters. Raises ValueError with the reason."""
    from .diagnostics import Failure
    from .evaluate import NO_INPUT, Poisoned, evaluate
    from .syntax import parse_expression

    try:
        return evaluate(parse_expression(text), {}, lambda: NO_INPUT)
    except Failure as f:
        raise ValueError(f.diagnostic.message) from None
    except Poisoned:
        raise ValueError("not a value") from None


SpecPath = str | os.PathLike


def load(path: SpecPath | None = None, network: str | None = None, *, text: str | None = None,
         import_roots: Iterable[SpecPath] = (), **overrides) -> Network:
    """Parse, elaborate and check a spec: the .cnn file at `path` (a str or a Path, always a file name),
    or the spec's text given as `text=...`.

    `network` picks one of several networks in the file; other keyword arguments override the
    network's parameters. Imports stay inside the project root (see docs/language.md);
    `import_roots` allows more folders. Raises SpecError carrying every diagnostic of the run.
    """
    return load_spec(path, text, network, overrides, import_roots)


def load_partial(path: SpecPath | None = None, network: str | None = None, *, text: str | None = None,
                 import_roots: Iterable[SpecPath] = (), **overrides) -> tuple[Network, list[Diagnostic]]:
    """Like `load`, but errors found while elaborating give what elaborated before them.

    Returns (network, diagnostics), diagnostics empty for a valid spec. Otherwise the network holds
    the nodes that elaborated (the elaborator's partial graph), with their costs and receptive fields
    but unlinted, for reports that show them before the diagnostics (`graphdsl summary`). Raises
    SpecError, as `load` does, where nothing could elaborate: unreadable file, syntax or import
    errors, unknown network.
    """
    return load_spec(path, text, network, overrides, import_roots, partial=True)


def load_spec(path: SpecPath | None, text: str | None, network: str | None, overrides: dict,
              import_roots: Iterable[SpecPath] = (), partial: bool = False):
    """`load` (or `load_partial` where `partial`) with the overrides as a dict: the CLI's way in, where a
    network parameter may be named like a keyword of `load` (`text`, `import_roots`)."""
    graph, diagnostics, sources, inputs = _elaborate(path, text, network, _values(overrides), import_roots)
    if not diagnostics:
        run_passes(graph)
        net = Network(graph, sources, inputs)
        return (net, []) if partial else net
    if graph is None or not partial:
        raise SpecError(diagnostics, sources)
    for figures in PASSES:  # no lint: a partial graph is not a whole network
        figures(graph)
    return Network(graph, sources, inputs), diagnostics


_LOOKS_LIKE_TEXT = re.compile(r"\n|\b(network|block)\b.*\{")


def _read(path, text) -> tuple[str, str | None, Diagnostic | None]:
    """(file name, text, problem) of what `load` was given: a path is always a file, text only by keyword."""
    if text is not None:
        if path is not None:
            raise TypeError("load() takes a path or text=..., not both")
        if not isinstance(text, str):
            raise TypeError(f"text= takes the text of a spec (a str), not {type(text).__name__}")
        return "<string>", text, None
    if path is None:
        raise TypeError("load() needs the path of a .cnn file, or the text of a spec as text=...")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load() takes the path of a .cnn file (str or Path), not {type(path).__name__}; "
                        "pass the text of a spec as text=...")
    file = str(Path(os.fsdecode(path)))
    source, problem = read_source(file)
    if problem is not None and isinstance(path, str) and _LOOKS_LIKE_TEXT.search(path) and not os.path.lexists(file):
        shown = path if len(path) <= 40 else path[:40] + "…"
        problem = Diagnostic(f"no such file `{shown}`", None,
                             help="a str is a path; to load the text of a spec, pass it as `text=...`")
    return file, source, problem


def _elaborate(path, text, network: str | None, overrides: dict, import_roots
               ) -> tuple[nx.DiGraph | None, list[Diagnostic], dict, tuple[str, ...]]:
    """The one way in: read, parse, import, elaborate. Returns the graph (None where nothing could
    elaborate), the diagnostics of the run, the sources they point into and the files read."""
    file, source, problem = _read(path, text)
    if problem is not None:
        return None, [problem], {}, ()
    with gc_paused():
        program = load_program(source, file, import_roots, from_file=text is None)
        inputs = tuple(program.inputs)
        if program.diagnostics:
            return None, program.diagnostics, program.sources, inputs
        net, problem = choose_network(program, network, file)
        if problem is not None:
            return None, [problem], program.sources, inputs
        elaborator = Elaborator(program)
        try:
            graph = elaborator.network(net, overrides)
        except RecursionError:
            return None, [too_deep(file)], program.sources, inputs
    return graph, elaborator.diagnostics, program.sources, inputs


def compile(path: SpecPath | None = None, network: str | None = None, *, text: str | None = None,
            import_roots: Iterable[SpecPath] = (), **overrides):
    """`load(...).to_torch()`: the spec as a torch.nn.Module."""
    return load(path, network, text=text, import_roots=import_roots, **overrides).to_torch()


def check(path: SpecPath | None = None, network: str | None = None, *, text: str | None = None,
          import_roots: Iterable[SpecPath] = (), **overrides) -> list[Diagnostic]:
    """The diagnostics of a spec (a path, or `text=...`), empty when it is valid."""
    try:
        load(path, network, text=text, import_roots=import_roots, **overrides)
    except SpecError as e:
        return e.diagnostics
    return []
