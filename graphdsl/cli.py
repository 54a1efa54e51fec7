"""The command line: `graphdsl check FILE`. Only this module prints; the core returns values."""

from __future__ import annotations

import json
import sys

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


if __name__ == "__main__":
    main()
