"""`graphdsl import SOURCE`: an existing network as a .cnn spec (click alone at module level)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

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


def import_torch(source: str, kwargs: dict | None = None, name: str | None = None,
                 input_shape: tuple[int, ...] = (3, 224, 224), warnings: list | None = None) -> str:
    """The .cnn text of the nn.Module that `package.module:callable` (or `file.py:Name`) builds with
    `kwargs`: traced with torch.fx, lifted, printed. This imports and runs that code. Raises
    ImportFailure."""
    from . import fx

    kwargs = kwargs or {}
    model = fx.load_module(source, kwargs)
    shown_source = source + (f"({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})" if kwargs else "")
    return import_model(model, name or default_name(source), input_shape, shown_source, warnings)


def import_model(model, name: str, input_shape: tuple[int, ...] = (3, 224, 224), source: str = "",
                 warnings: list | None = None) -> str:
    """The .cnn text of an nn.Module object (put in eval mode): traced with torch.fx, lifted, printed.
    What the spec leaves out is appended to `warnings`. Raises ImportFailure."""
    from ..printer import print_module
    from . import fx, lift

    graph = fx.trace(model, input_shape, name, source)
    if warnings is not None:
        warnings.extend(graph.warnings)
    return print_module(lift.lift(graph))


def _kwargs(ctx, param, values):
    from ..cli import parse_define

    return dict(parse_define(v) for v in values)


@click.command(name="import")
@click.argument("source")
@click.argument("kwargs", nargs=-1, callback=_kwargs, metavar="[NAME=VALUE]...")
@click.option("-o", "--output", "out", default=None, metavar="OUT.cnn",
              help="Where to write the spec (default: NAME.cnn here); `-` prints it.")
@click.option("--name", default=None, help="The network's name (default: the callable's).")
@click.option("--input", "input_shape", default="3x224x224", show_default=True, callback=lambda c, p, v: parse_input(v),
              help="The input shape without the batch, for tracing and for the spec's `input`.")
def import_(source, kwargs, out, name, input_shape):
    """Import a network as a .cnn spec: SOURCE is `package.module:callable` (torchvision.models:resnet50)
    or `path/to/file.py:ClassName`, built with the keyword arguments given (num_classes=10).

    This IMPORTS AND RUNS that Python code (it builds the model, traces it with torch.fx and runs one
    forward pass on a zero input): import only code you trust. The spec keeps the module names, so the
    original state_dict loads into the compiled spec with strict=True; repeated modules become blocks
    with parameters. The file is written atomically; on any error nothing is written. Exit status: 0
    written, 1 error.
    """
    from ..cli import shown, shown_lines, write_or_exit
    from .ir import ImportFailure

    if not TORCH_SOURCE.match(source):
        click.echo(f"error: `{shown(source)}` is no source graphdsl imports\nhelp: write "
                   "`package.module:callable` (torchvision.models:resnet50) or `path/to/file.py:ClassName`; "
                   "ONNX, Caffe and Darknet files are not supported yet", err=True)
        sys.exit(1)
    if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise click.BadParameter(f"{name!r} is not a name", param_hint="'--name'")
    try:
        import torch  # noqa: F401 - the PyTorch front end needs it
    except ImportError:
        click.echo("error: importing a PyTorch module needs torch\nhelp: pip install -e '.[torch]'", err=True)
        sys.exit(1)
    net_name = name or default_name(source)
    path = Path(out) if out not in (None, "-") else Path(f"{net_name}.cnn")
    warnings: list[str] = []
    try:
        text = import_torch(source, kwargs, net_name, input_shape, warnings)
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
    for w in warnings:
        click.echo(f"warning: {shown(w)}", err=True)
    if out == "-":
        click.echo(text, nl=False)
        return
    write_or_exit(path, text)
    from ..units import figure

    click.echo(f"wrote {shown(path)}: network `{shown(net.name)}`, {len(text.splitlines())} lines, "
               f"{figure(net.params)} parameters, {figure(net.macs, 'conv + linear')} MACs")
