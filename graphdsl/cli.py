"""The command line: `graphdsl check FILE`. Only this module prints; the core returns values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from .diagnostics import Diagnostic, SpecError


def parse_define(text: str):
    """`-D name=value`: the value as the language reads a literal (int, float, bool, string)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise click.BadParameter(f"expected name=value, got {text!r}")
    raw = raw.strip()
    value: object
    if raw in ("true", "false"):
        value = raw == "true"
    else:
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    return name.strip(), value


def _defines(ctx, param, values):
    return dict(parse_define(v) for v in values)


def fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def human(n: float) -> str:
    """138357544 -> 138.4M."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


network_option = click.option("--network", "-n", default=None,
                              help="Which network of the file (default: the only one).")
define_option = click.option("-D", "defines", multiple=True, callback=_defines, metavar="NAME=VALUE",
                             help="Override a network parameter, e.g. -D num_classes=10.")


def load_or_exit(file: str, network: str | None, defines: dict, fmt: str = "text"):
    """Load a spec; on failure print the diagnostics and exit 1."""
    from .api import load

    try:
        return load(file, network, **defines)
    except SpecError as e:
        report(e.diagnostics, e.sources, fmt)
        sys.exit(1)


def report(diagnostics: list[Diagnostic], sources: dict, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({"ok": False, "diagnostics": [d.to_json() for d in diagnostics]}, indent=2))
    else:
        click.echo(SpecError(diagnostics, sources).render(), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="graphdsl")
def main():
    """graphdsl: write a CNN once as a .cnn spec; check, compile, render and summarise it."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@network_option
@define_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def check(file, network, defines, fmt):
    """Check FILE statically: shapes, parameters and MACs, or located errors."""
    net = load_or_exit(file, network, defines, fmt)
    figures = net.figures()
    if fmt == "json":
        click.echo(json.dumps({"ok": True, **figures}, indent=2))
        return
    outs = ", ".join(f"{name} {fmt_shape(s)}" for name, s in net.output_shapes.items())
    click.echo(f"{file}: ok: network `{net.name}`")
    click.echo(f"  input       {fmt_shape(net.input_shape)}")
    click.echo(f"  outputs     {outs}")
    click.echo(f"  layers      {figures['layers']:,}")
    click.echo(f"  parameters  {net.params:,} ({human(net.params)})")
    click.echo(f"  MACs        {net.macs:,} ({human(net.macs)}, conv + linear)")
    click.echo(f"  other ops   {net.other_ops:,} ({human(net.other_ops)}, pooling, norm, activations, adds)")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", default=None, metavar="OUT",
              help="OUT.svg, .png, .pdf or .dot (default: NETWORK.svg here); `-` prints the DOT source.")
@network_option
@define_option
@click.option("--depth", type=click.IntRange(min=1), default=None, metavar="N",
              help="Fold every block and group deeper than N levels into one box.")
@click.option("--expand", is_flag=True, help="Draw every block: no folding of runs of identical blocks.")
def render(file, out, network, defines, depth, expand):
    """Draw FILE's network with graphviz: operators, tensor shapes on edges, blocks as clusters.

    Runs of identical blocks are folded (`bottleneck ×35`) unless --expand. Exit status: 0 drawn,
    1 invalid spec (nothing written), 3 the graphviz `dot` program is missing (the .dot source is
    written instead).
    """
    from .backends import dot

    if depth is not None and expand:
        raise click.UsageError("--depth and --expand exclude each other: --expand draws every level")
    if out not in (None, "-"):
        try:
            dot.format_of(out)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'-o'") from None
    net = load_or_exit(file, network, defines)
    graph = dot.diagram(net.graph, depth=depth, expand=expand)
    if out == "-":
        click.echo(graph.source, nl=False)
        return
    path = out or f"{net.name}.svg"
    try:
        dot.write(graph, path)
    except dot.ExecutableNotFound:
        fallback = str(Path(path).with_suffix(".dot"))
        dot.write(graph, fallback)
        click.echo(f"wrote {fallback} (DOT source only)\nerror: {dot.INSTALL_HELP}; then run "
                   f"`dot -T{dot.format_of(path)} {fallback} -o {path}`", err=True)
        sys.exit(3)
    except (OSError, subprocess.CalledProcessError) as e:
        click.echo(f"error: cannot write {path}: {e}", err=True)
        sys.exit(1)
    click.echo(f"wrote {path}: network `{net.name}`, {net.params:,} parameters ({human(net.params)}), "
               f"{net.macs:,} MACs ({human(net.macs)})")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@network_option
@define_option
@click.option("--depth", type=click.IntRange(min=1), default=None, metavar="N",
              help="One row per block at depth N instead of one per layer.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table",
              show_default=True)
def summary(file, network, defines, depth, fmt):
    """Tabulate FILE's network: per-layer shapes, parameters, MACs, memory, receptive field; totals.

    Static: nothing runs. On an invalid spec, the rows up to the error, then the diagnostics (exit 1).
    """
    from .api import load_partial
    from .backends.summary import Summary

    try:
        net, diagnostics = load_partial(file, network, **defines)
    except SpecError as e:
        report(e.diagnostics, e.sources, "json" if fmt == "json" else "text")
        sys.exit(1)
    table = Summary(net.graph, depth, partial=bool(diagnostics))
    if fmt == "json":
        data = {"ok": not diagnostics, **table.to_json()}
        if diagnostics:
            data["diagnostics"] = [d.to_json() for d in diagnostics]
        click.echo(json.dumps(data, indent=2))
    elif table.rows or not diagnostics:
        click.echo(table.format(fmt), nl=False)
    if diagnostics:
        if fmt != "json":
            report(diagnostics, net.sources, "text")
        sys.exit(1)


if __name__ == "__main__":
    main()
