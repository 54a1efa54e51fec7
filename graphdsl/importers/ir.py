"""The importer's layer graph: what every front end produces and the lifting back end reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..diagnostics import Diagnostic, Span

INPUT = "input"  # the name of the network's input among a layer's `inputs`


@dataclass(frozen=True)
class Scope:
    """A module enclosing layers: its path (`layer1.0`), its kind (the class name, `Bottleneck`) and
    whether it is a numbered container whose children run in order (nn.Sequential and its subclasses)."""

    path: str
    kind: str
    sequential: bool = False


@dataclass
class Layer:
    """One layer: a graphdsl operator (`conv`, `bn`, `relu`, `add`, `concat`, `flatten`, ...) with its
    arguments as graphdsl names them (`out`, `kernel`, `stride`, ...; pairs as tuples), the layers whose
    outputs it takes (or INPUT), where its weights live (`layer1.0.conv1`; None for a function such as
    `torch.flatten`), the modules around it outermost first, and its output shape without the batch."""

    name: str
    op: str
    args: dict
    inputs: tuple[str, ...]
    path: str | None = None
    scopes: tuple[Scope, ...] = ()
    shape: tuple[int, ...] | None = None
    where: str | None = None  # what a diagnostic names: `file.py:12`, an ONNX node, a prototxt line
    holds_weights: bool = False  # a module with parameters or buffers: it must keep its path


@dataclass
class LayerGraph:
    """A whole network: its layers in an order where inputs come first, and the layer it returns (all
    the layers it returns, in order, when there are several: Darknet's YOLO heads). Front ends that read
    weights (ONNX initializers, Darknet `.weights`) put them in `weights`, keyed as the compiled spec's
    state_dict is: `{layer.path}.weight`, `.bias`, `.running_mean`, ... (numpy arrays)."""

    name: str
    input_shape: tuple[int, ...]
    layers: list[Layer]
    output: str
    source: str = ""  # what was imported, for the spec's doc string
    doc: str | None = None
    warnings: list = field(default_factory=list)  # what the spec leaves out, in words
    outputs: tuple[str, ...] = ()  # every output when there are several (empty: just `output`)
    training_outputs: tuple[str, ...] = ()  # those of `outputs` returned in training only, listed last
    inferred_scopes: bool = False  # the modules were invented by regions.infer_scopes, not the original's
    weights: dict = field(default_factory=dict)  # state_dict key -> numpy array
    by_name: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.by_name = {layer.name: layer for layer in self.layers}

    def layer(self, name: str) -> Layer:
        return self.by_name[name]


def unique_name(base: str, taken: set) -> str:
    """`base`, or `base_2`, `base_3`, ... : the first not in `taken`, which it joins."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


class ImportFailure(Exception):
    """A source that cannot be imported: a message, a `help:` and where (a Span for text formats, or a
    string such as a module path or an ONNX node name)."""

    def __init__(self, message: str, help: str | None = None, span: Span | None = None, where: str | None = None):
        super().__init__(message)
        self.message, self.help, self.span, self.where = message, help, span, where

    def diagnostic(self) -> tuple[Diagnostic, dict[str, str]]:
        """The diagnostic and the sources it quotes. A `where` of the form `file.py:12` (the line of a
        model's forward() that made the layer) becomes a span on that line's code."""
        span, sources = self.span, {}
        if span is not None:  # a text format's line: quote it
            try:
                sources[span.file] = Path(span.file).read_text(encoding="utf-8-sig", errors="replace")
            except OSError:
                pass
        match = re.fullmatch(r"(.+):(\d+)", self.where or "")
        if span is None and match:
            try:
                text = Path(match.group(1)).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = None
            lines = text.splitlines() if text is not None else []
            line = int(match.group(2))
            if 0 < line <= len(lines):
                code = lines[line - 1]
                start = len(code) - len(code.lstrip()) + 1
                shown = _relative(match.group(1))  # Python names the file absolutely: as the user would
                span = Span(shown, line, start, line, len(code.rstrip()) + 1)
                sources[shown] = text
        message = f"{self.where}: {self.message}" if self.where and span is None else self.message
        return Diagnostic(message, span, help=self.help), sources


def _relative(path: str) -> str:
    """`path` relative to the working folder where it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path
