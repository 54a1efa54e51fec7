"""`graphdsl import SOURCE`: an existing network as a .cnn spec (click alone at module level)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from .ir import ImportFailure

TORCH_SOURCE = re.compile(r"[^:]+:[A-Za-z_][A-Za-z0-9_.]*\Z")


def parse_input(text: str) -> tuple[int, ...]:
    """`3x224x224` (or `3×224×224`) -> (3, 224, 224)."""
    parts = re.split("[x×]", text.strip())
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(f"expected a shape such as 3x224x224, got {text!r}")
    return tuple(int(p) for p in parts)


def default_name(source: str) -> str:
    """The network's name from the source: `torchvision.models:resnet50` -> `resnet50`."""
    name = source.rpartition(":")[2].rpartition(".")[2] or "imported"
    name = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return name if re.match(r"[A-Za-z_]", name) else f"net_{name}"


# the front ends of files: suffix -> (module of graphdsl.importers, format's name)
FILE_FORMATS = {".onnx": ("onnx_model", "ONNX"), ".prototxt": ("caffe", "Caffe prototxt"),
                ".cfg": ("darknet", "Darknet")}
TORCH_INPUT = (3, 224, 224)  # the default input of a PyTorch module (files say theirs)


def import_torch(source: str, kwargs: dict | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] = TORCH_INPUT, warnings: list | None = None) -> str:
    """The .cnn text of the nn.Module that `package.module:callable` (or `file.py:Name`) builds with
    `kwargs`: traced with torch.fx, lifted, printed. This imports and runs that code. Raises
    ImportFailure."""
    graph = torch_graph(source, kwargs, name, input_shape)
    if warnings is not None:
        warnings.extend(graph.warnings)
    return lifted_text(graph)


def torch_graph(source: str, kwargs: dict | None = None, name: str | None = None,
                input_shape: tuple[int, ...] = TORCH_INPUT):
    """The LayerGraph of the module `source` builds (its state_dict as the graph's weights)."""
    from . import fx

    kwargs = kwargs or {}
    model = fx.load_module(source, kwargs)
    shown_source = source + (f"({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})" if kwargs else "")
    graph = fx.trace(model, input_shape, name or default_name(source), shown_source)
    graph.weights = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    return graph


def import_model(model, name: str, input_shape: tuple[int, ...] = TORCH_INPUT, source: str = "",
                 warnings: list | None = None) -> str:
    """The .cnn text of an nn.Module object (put in eval mode): traced with torch.fx, lifted, printed.
    What the spec leaves out is appended to `warnings`. Raises ImportFailure."""
    from . import fx

    graph = fx.trace(model, input_shape, name, source)
    if warnings is not None:
        warnings.extend(graph.warnings)
    return lifted_text(graph)


def file_graph(path: Path, name: str | None = None, input_shape: tuple[int, ...] | None = None,
               weights: Path | None = None):
    """The LayerGraph of an ONNX, Caffe prototxt or Darknet file (with the weights of a Darknet
    `.weights` file), its module structure inferred where the format has none. Raises ImportFailure."""
    import importlib

    module_name, format_name = FILE_FORMATS[path.suffix.lower()]
    front = importlib.import_module(f".{module_name}", __package__)
    graph = front.load(path, name, input_shape, None)
    if weights is not None:
        if not hasattr(front, "read_weights"):
            raise ImportFailure(f"--weights is not read for {format_name} files",
                                "ONNX files carry their weights; give --weights with a Darknet .cfg")
        graph.weights = front.read_weights(graph, weights)
    if not any(layer.scopes for layer in graph.layers):
        from .regions import infer_scopes

        graph = infer_scopes(graph)
    return graph


def import_file(path: Path, name: str | None = None, input_shape: tuple[int, ...] | None = None,
                warnings: list | None = None) -> str:
    """The .cnn text of an ONNX, Caffe prototxt or Darknet file. Raises ImportFailure."""
    graph = file_graph(path, name, input_shape)
    if warnings is not None:
        warnings.extend(graph.warnings)
    return lifted_text(graph)


def lifted_text(graph) -> str:
    """The .cnn text of a LayerGraph: lifted and printed, refused (ImportFailure) where the network is
    larger than graphdsl reads a spec of (layers, tokens: graphdsl/budget.py, syntax.MAX_TOKENS)."""
    from ..budget import MAX_LAYERS
    from ..printer import print_module
    from ..syntax import MAX_TOKENS, count_tokens
    from . import lift

    if len(graph.layers) >= MAX_LAYERS:  # the spec's input is a layer too
        raise ImportFailure(f"the network has {len(graph.layers):,} layers, more than a spec may have "
                            f"({MAX_LAYERS - 1:,})", "graphdsl bounds networks so that every command stays fast; "
                            "raise the limit with the environment variable GRAPHDSL_MAX_LAYERS")
    text = print_module(lift.lift(graph))
    if count_tokens(text) > MAX_TOKENS:
        raise ImportFailure(f"the imported spec has more than {MAX_TOKENS:,} tokens, more than graphdsl reads",
                            "the network is too large to write as a spec, or repeats in ways the importer does "
                            "not find (one block per repeated structure)")
    return text


def state_dict_bytes(net, weights: dict) -> bytes:
    """`weights` (state_dict key -> array) loaded strictly into the compiled spec `net`, saved with
    torch.save: the file `load_state_dict` takes. BatchNorm's `num_batches_tracked` counters, which no
    format but PyTorch keeps, start at 0. Raises ImportFailure when they do not fit the spec."""
    import io

    import numpy as np
    import torch

    module = net.to_torch()
    expected = module.state_dict()
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in tensors:
            tensors[key] = torch.zeros_like(value)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ImportFailure(f"the weights do not fit the imported spec: {str(e).strip().splitlines()[0]}",
                            "this is a bug of the importer; please report it") from None
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


def _kwargs(ctx, param, values):
    from ..cli import parse_define

    return dict(parse_define(v) for v in values)


@click.command(name="import")
@click.argument("source")
@click.argument("kwargs", nargs=-1, callback=_kwargs, metavar="[NAME=VALUE]...")
@click.option("-o", "--output", "out", default=None, metavar="OUT.cnn",
              help="Where to write the spec (default: NAME.cnn here); `-` prints it.")
@click.option("--name", default=None, help="The network's name (default: the callable's or the file's).")
@click.option("--input", "input_shape", default=None, callback=lambda c, p, v: v and parse_input(v),
              help="The input shape without the batch (default: 3x224x224 for a PyTorch module, the "
                   "file's own for ONNX, Caffe and Darknet).")
@click.option("--weights", "weights", default=None, metavar="FILE.weights",
              help="A Darknet .weights file for the .cfg: its weights go to --state-dict.")
@click.option("--state-dict", "state_dict", default=None, metavar="OUT.pt",
              help="Also write the source's weights as a state_dict for the compiled spec (checked by "
                   "loading it with strict=True; needs torch).")
def import_(source, kwargs, out, name, input_shape, weights, state_dict):
    """Import a network as a .cnn spec. SOURCE is a file — an ONNX model (.onnx), a Caffe deploy
    definition (.prototxt), a Darknet config (.cfg) — or a PyTorch module: `package.module:callable`
    (torchvision.models:resnet50) or `path/to/file.py:ClassName`, built with the keyword arguments given
    (num_classes=10).

    A PyTorch source IMPORTS AND RUNS that Python code (it builds the model, traces it with torch.fx and
    runs one forward pass on a zero input): import only code you trust. Files are only read. The spec
    keeps the source's layer and module names, so its weights load into the compiled spec with
    strict=True; repeated structure becomes blocks with parameters. Files are written atomically; on any
    error nothing is written. Exit status: 0 written, 1 error.
    """
    from ..cli import shown, shown_lines, write_or_exit

    suffix = Path(source).suffix.lower()
    is_file = suffix in FILE_FORMATS
    if not is_file and not TORCH_SOURCE.match(source):
        click.echo(f"error: `{shown(source)}` is no source graphdsl imports\nhelp: give an .onnx, .prototxt "
                   "or .cfg file, or a PyTorch module as `package.module:callable` (torchvision.models:resnet50) "
                   "or `path/to/file.py:ClassName`", err=True)
        sys.exit(1)
    if is_file and kwargs:
        click.echo(f"error: NAME=VALUE arguments are for PyTorch modules, not {FILE_FORMATS[suffix][1]} files\n"
                   "help: leave them out", err=True)
        sys.exit(1)
    if weights is not None and suffix != ".cfg":
        click.echo("error: --weights goes with a Darknet .cfg\nhelp: ONNX files carry their weights; a "
                   "PyTorch module's are its state_dict (write them with --state-dict)", err=True)
        sys.exit(1)
    if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise click.BadParameter(f"{name!r} is not a name", param_hint="'--name'")
    if not is_file or state_dict is not None:
        try:
            import torch  # noqa: F401 - the PyTorch front end and the state_dict need it
        except ImportError:
            what = "writing a state_dict" if is_file else "importing a PyTorch module"
            click.echo(f"error: {what} needs torch\nhelp: pip install -e '.[torch]'", err=True)
            sys.exit(1)
    try:
        if is_file:
            if not Path(source).exists():
                raise ImportFailure(f"cannot read `{source}`: no such file", "check the path")
            if not Path(source).is_file():
                raise ImportFailure(f"cannot read `{source}`: it is not a regular file", "give the file itself")
            # the file's own name for its network (a prototxt's `name:`) unless --name says otherwise
            graph = file_graph(Path(source), name, input_shape or None,
                               Path(weights) if weights is not None else None)
        else:
            graph = torch_graph(source, kwargs, name or default_name(source), input_shape or TORCH_INPUT)
        text = lifted_text(graph)
    except ImportFailure as e:
        diagnostic, sources = e.diagnostic()
        click.echo(shown_lines(diagnostic.render(sources)), err=True)
        sys.exit(1)
    # the spec must check before it is written: a spec graphdsl refuses is a bug of the importer
    from ..api import load
    from ..diagnostics import SpecError

    try:
        net = load(text=text)
    except SpecError as e:
        click.echo(f"error: the imported spec does not check (a bug of the importer; please report it):\n"
                   f"{shown_lines(e.render())}", err=True)
        sys.exit(1)
    path = Path(out) if out not in (None, "-") else Path(f"{_file_name(net.name)}.cnn")
    weights_data = None
    if weights is not None and state_dict is None:
        click.echo("warning: the --weights are read and checked against the .cfg, but written nowhere: give "
                   "--state-dict OUT.pt to keep them", err=True)
    if state_dict is not None:
        if not graph.weights:
            click.echo(f"error: `{shown(source)}` carries no weights\nhelp: give a Darknet .cfg its "
                       "--weights file, or leave --state-dict out", err=True)
            sys.exit(1)
        try:
            weights_data = state_dict_bytes(net, graph.weights)
        except ImportFailure as e:
            click.echo(shown_lines(e.diagnostic()[0].render({})), err=True)
            sys.exit(1)
    for w in graph.warnings:
        click.echo(f"warning: {shown(w)}", err=True)
    inputs = [source] if is_file else []
    inputs += [weights] if weights is not None else []
    outputs = ([Path(state_dict)] if weights_data is not None else []) + ([path] if out != "-" else [])
    _check_targets(outputs, inputs)  # both refused before either is written
    if weights_data is not None:
        write_or_exit(Path(state_dict), weights_data, inputs)
    if out == "-":
        click.echo(text, nl=False)
    else:
        write_or_exit(path, text, inputs)
        from ..units import figure

        click.echo(f"wrote {shown(path)}: network `{shown(net.name)}`, {len(text.splitlines())} lines, "
                   f"{figure(net.params)} parameters, {figure(net.macs, 'conv + linear')} MACs")
    if weights_data is not None:
        click.echo(f"wrote {shown(state_dict)}: {len(graph.weights)} tensors (loads into the compiled spec "
                   "with strict=True)")


def _check_targets(outputs: list[Path], inputs: list) -> None:
    """Exit 1 with an `error:` unless every output may be written (graphdsl.files.output_target: not an
    input, not a directory or device, ...) and no two are the same file."""
    from ..cli import shown
    from ..files import OutputRefused, output_target

    seen: dict[Path, Path] = {}
    for output in outputs:
        try:
            target = output_target(output, inputs)
        except OutputRefused as e:
            click.echo(f"error: {shown(e.message)}\nhelp: {shown(e.help)}", err=True)
            sys.exit(1)
        if target in seen:
            click.echo(f"error: the spec and the state_dict would both be written to `{shown(output)}`\n"
                       "help: give -o and --state-dict different paths", err=True)
            sys.exit(1)
        seen[target] = output


def _file_name(name: str) -> str:
    """The spec's file name for a network name: letters, digits and `_` only."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name) or "imported"
