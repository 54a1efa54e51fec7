"""The command line: `graphdsl check FILE`. Only this module prints; the core returns values."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import click

from .diagnostics import Diagnostic, SpecError
from .export import export
from .files import OutputRefused, output_target, write_atomic
from .flops import CONVENTIONS
from .fmt import fmt_command
from .importers.command import import_
from .ops.base import fmt_shape
from .text import escape_controls
from .train.commands import compare, train
from .units import figure


def shown(text) -> str:
    """A file name, a network name or a value as it may go to a terminal: control characters (line ends
    too) escaped."""
    return escape_controls(str(text))


def shown_lines(text: str) -> str:
    """A rendered diagnostic as it may go to a terminal: control characters escaped, its lines kept."""
    return escape_controls(text, keep="\n")


def parse_define(text: str):
    """`-D name=value`: the value as the language reads a literal (int, float, bool, list; else a string)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise click.BadParameter(f"expected name=value, got {text!r}")
    raw = raw.strip()
    value: object
    if raw[:1] in ("[", "("):  # a list, as the spec writes one: `-D depths=[3, 3, 9, 3]`
        from .api import literal

        try:
            return name.strip(), literal(raw)
        except ValueError as e:
            raise click.BadParameter(f"{text!r}: {e}") from None
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


network_option = click.option("--network", "-n", default=None,
                              help="Which network of the file (default: the only one).")
define_option = click.option("-D", "defines", multiple=True, callback=_defines, metavar="NAME=VALUE",
                             help="Override a network parameter, e.g. -D num_classes=10.")


def _load_ops(ctx, param, values):
    """`--ops`: load the operator plugins, installed ones (unless GRAPHDSL_NO_PLUGINS=1) and these, once,
    before the command reads a spec. A plugin that cannot load is an error (exit 1)."""
    from .plugins import PluginError, load_plugins

    if not ctx.resilient_parsing:
        try:
            load_plugins(*values)
        except PluginError as e:
            click.echo(shown_lines(e.render()), err=True)
            ctx.exit(1)
    return values


ops_option = click.option("--ops", "ops", multiple=True, callback=_load_ops, expose_value=False,
                          metavar="MODULE_OR_FILE",
                          help="Load operators from a Python module or .py file (repeatable). Installed plugins "
                               "(entry point group graphdsl.ops) load unless GRAPHDSL_NO_PLUGINS=1.")


CONVENTION_NAMES = tuple(CONVENTIONS)

import_root_option = click.option(
    "--import-root", "import_roots", multiple=True, metavar="DIR",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Also allow imports from DIR (repeatable). By default imports stay inside the project root: the "
         "nearest folder above the spec holding .git, pyproject.toml or graphdsl.toml.")


def load_or_exit(file: str, network: str | None, defines: dict, fmt: str = "text", import_roots=(),
                 partial: bool = False):
    """Load a spec (the file named, always a path); on failure print the diagnostics and exit 1. Warnings of
    a valid spec go to stderr first."""
    from .api import load_spec

    try:
        loaded = load_spec(Path(file), None, network, defines, import_roots, partial=partial)
    except SpecError as e:
        report(e.diagnostics, e.sources, fmt)
        sys.exit(1)
    warn(loaded[0] if partial else loaded, fmt)
    return loaded


def warn(net, fmt: str = "text") -> None:
    """The spec's warnings on stderr (JSON output carries them in its document instead)."""
    if fmt != "json" and net.warnings:
        color = stderr_color()
        for w in net.warnings:
            text = w.render(net.sources, color=color)
            click.echo((text if color else shown_lines(text)) + "\n", err=True, color=color)


def report(diagnostics: list[Diagnostic], sources: dict, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({"ok": False, "diagnostics": [d.to_json() for d in diagnostics]}, indent=2,
                              ensure_ascii=True))
    else:
        color = stderr_color()
        text = SpecError(diagnostics, sources).render(color=color)
        # render escapes every line itself; shown_lines would escape the colours too
        click.echo(text if color else shown_lines(text), err=True, color=color)


def stderr_color() -> bool:
    """Whether diagnostics on stderr get colours (a terminal; NO_COLOR, TERM=dumb and FORCE_COLOR honoured).
    Only the error path asks, so the lexer is imported only there."""
    from .highlight import use_color

    return use_color(sys.stderr)


def refuse_output(path, inputs, *, written: str = "") -> None:
    """Exit 1 with an `error:` and a `help:` where `path` may not be written (see graphdsl.files)."""
    try:
        output_target(path, inputs)
    except OutputRefused as e:
        click.echo(f"error: {shown(e.message)}{written}\nhelp: {shown(e.help)}", err=True)
        sys.exit(1)


def write_or_exit(path, data: str | bytes, inputs=()) -> None:
    """Write an output atomically (graphdsl.files.write_atomic); where it may not or cannot be written,
    exit 1 with an `error:` (and a `help:`), the earlier file left as it was."""
    try:
        write_atomic(path, data, inputs)
    except OutputRefused as e:
        click.echo(f"error: {shown(e.message)}\nhelp: {shown(e.help)}", err=True)
        sys.exit(1)
    except OSError as e:
        click.echo(f"error: cannot write {shown(path)}: {shown(e.strerror or e)}", err=True)
        sys.exit(1)


def draw(graph, path: str, inputs) -> None:
    """Write a diagram to `path` (never over an input of the run); exit 1 on failure, or 3 where `dot`
    is missing (the DOT source is written next to it instead)."""
    from .backends import dot

    try:
        dot.write(graph, path)
    except dot.ExecutableNotFound:
        fallback = str(Path(path).with_suffix(".dot"))
        missing = f"; Graphviz's `dot` program is not on PATH, so {shown(path)} could not be drawn either"
        refuse_output(fallback, inputs, written=missing)
        try:
            dot.write(graph, fallback)
        except OSError as e:
            click.echo(f"error: cannot write {shown(fallback)}: {shown(e.strerror or e)}", err=True)
            sys.exit(1)
        click.echo(f"error: Graphviz's `dot` program is not on PATH, so {shown(path)} could not be drawn; wrote "
                   f"the DOT source to {shown(fallback)} instead\nhelp: {dot.INSTALL_HELP}; then run "
                   f"`dot -T{dot.format_of(path)} {shown(fallback)} -o {shown(path)}`", err=True)
        sys.exit(3)
    except OutputRefused as e:  # changed since it was checked
        click.echo(f"error: {shown(e.message)}\nhelp: {shown(e.help)}", err=True)
        sys.exit(1)
    except (OSError, subprocess.CalledProcessError) as e:
        click.echo(f"error: cannot write {shown(path)}: {shown(e)}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="graphdsl")
def main():
    """graphdsl: write a CNN once as a .cnn spec; check, compile, render and summarise it."""


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@network_option
@define_option
@ops_option
@import_root_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def check(file, network, defines, fmt, import_roots):
    """Check FILE statically: shapes, parameters and MACs, or located errors."""
    net = load_or_exit(file, network, defines, fmt, import_roots)
    figures = net.figures()
    if fmt == "json":
        warnings = [w.to_json() for w in net.warnings]
        from .flops import totals

        click.echo(json.dumps({"ok": True, **figures, "costs": totals(net.graph), "warnings": warnings}, indent=2,
                              ensure_ascii=True))
        return
    training = set(net.graph.graph["training_outputs"])
    outs = ", ".join(f"{name} {fmt_shape(s)}" + (" (training only)" if name in training else "")
                     for name, s in net.output_shapes.items())
    click.echo(f"{shown(file)}: ok: network `{shown(net.name)}`")
    click.echo(f"  input       {fmt_shape(net.input_shape)}")
    click.echo(f"  outputs     {shown(outs)}")
    click.echo(f"  layers      {figures['layers']:,}")
    click.echo(f"  parameters  {figure(net.params)}")
    click.echo(f"  MACs        {figure(net.macs, 'conv + linear')}")
    click.echo(f"  other ops   {figure(net.other_ops, 'pooling, norm, activations, adds')}")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", default=None, metavar="OUT",
              help="OUT.svg, .png, .pdf or .dot (default: NETWORK.svg here); `-` prints the DOT source.")
@network_option
@define_option
@ops_option
@import_root_option
@click.option("--depth", type=click.IntRange(min=1), default=None, metavar="N",
              help="Fold every block and group deeper than N levels into one box.")
@click.option("--expand", is_flag=True, help="Draw every block: no folding of runs of identical blocks.")
def render(file, out, network, defines, import_roots, depth, expand):
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
    net = load_or_exit(file, network, defines, import_roots=import_roots)
    path = out or f"{net.name}.svg"
    if out != "-":
        refuse_output(path, net.inputs)
    if depth is None and not expand:
        depth = dot.auto_depth(net.graph)
        if depth is not None:
            click.echo(f"note: every level of `{shown(net.name)}` makes more than {dot.MAX_BOXES} boxes; drawn to "
                       f"--depth {depth} (--depth N draws more; a level of more than {dot.MAX_BOXES} items is cut, and "
                       "the diagram's title says what was left out)", err=True)
    graph = dot.diagram(net.graph, depth=depth, expand=expand)
    if out == "-":
        click.echo(graph.source, nl=False)
        return
    draw(graph, path, net.inputs)
    click.echo(f"wrote {shown(path)}: network `{shown(net.name)}`, {figure(net.params)} parameters, "
               f"{figure(net.macs)} MACs")


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@network_option
@define_option
@ops_option
@import_root_option
@click.option("--depth", type=click.IntRange(min=1), default=None, metavar="N",
              help="One row per block at depth N instead of one per layer.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table",
              show_default=True)
@click.option("--convention", type=click.Choice(list(CONVENTION_NAMES)), default="macs", show_default=True,
              help="How the cost column counts: conv + linear MACs, MACs of every op, FLOPs, or as a tool counts "
                   "(ptflops, thop, fvcore, torchinfo); `graphdsl flops FILE --explain` compares them.")
@click.option("--batch", type=click.IntRange(min=1), default=None, metavar="N",
              help="Also report memory at batch N: parameters, activations, the peak (inference unless --train).")
@click.option("--train", is_flag=True, help="Training memory: gradients, optimizer state, what autograd saves.")
@click.option("--optimizer", type=click.Choice(["sgd", "sgd-momentum", "adam", "adamw"]), default="sgd",
              show_default=True, help="With --train: the optimizer whose state is counted.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16-amp", "bf16-amp"]), default="fp32",
              show_default=True, help="Parameter and activation precision (AMP keeps fp32 master weights).")
@click.option("--fits", default=None, metavar="SIZE",
              help="Whether it fits in SIZE (3GB = 3e9 bytes, 3GiB or 3G = 3*2^30), and the largest batch that does.")
def summary(file, network, defines, import_roots, depth, fmt, convention, batch, train, optimizer, dtype, fits):
    """Tabulate FILE's network: per-layer shapes, parameters, MACs, memory, receptive field; totals.

    With --batch N (and --train, --optimizer, --dtype, --fits SIZE), the memory it needs, worked out
    statically: parameters, gradients, optimizer state, the activations autograd saves, the peak.
    Static: nothing runs. On an invalid spec, the rows up to the error, then the diagnostics (exit 1).
    """
    from .backends.summary import Summary

    if (train or fits) and batch is None:
        batch = 1
    if fits is not None:
        from .memory import parse_size

        try:
            parse_size(fits)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--fits'") from None
    net, diagnostics = load_or_exit(file, network, defines, "json" if fmt == "json" else "text", import_roots,
                                    partial=True)
    table = Summary(net.graph, depth, partial=bool(diagnostics), convention=convention)
    memory = None
    if batch is not None and not diagnostics:
        from .memory import memory_report

        memory = memory_report(net, batch, train=train, optimizer=optimizer, dtype=dtype, budget=fits)
    if fmt == "json":
        data = {"ok": not diagnostics, **table.to_json()}
        if memory is not None:
            data["memory"] = memory.to_dict()
        if diagnostics:
            data["diagnostics"] = [d.to_json() for d in diagnostics]
        if net.warnings:
            data["warnings"] = [w.to_json() for w in net.warnings]
        click.echo(json.dumps(data, indent=2, ensure_ascii=True))
    elif table.rows or not diagnostics:
        click.echo(table.format(fmt), nl=False)
        if memory is not None:
            text = memory.format("markdown" if fmt == "markdown" else "table", layers=False)
            click.echo("\n" + text, nl=not text.endswith("\n"))
    if diagnostics:
        if fmt != "json":
            report(diagnostics, net.sources, "text")
        sys.exit(1)


# Module names that a generated file must not shadow in the folder it is written to.
_SHADOWED = {"torch", "torchvision", "graphdsl", "numpy", "networkx", "lark", "click", "rich", "graphviz"}


def default_module_path(name: str) -> Path:
    """`NETWORK.py` in the current folder; `NETWORK_model.py` where `NETWORK.py` would shadow a module
    that the generated code or Python needs (`torch.py`, `copy.py`) or is no module name (`class.py`)."""
    import keyword

    if name in _SHADOWED or name in sys.stdlib_module_names or keyword.iskeyword(name) or not name.isidentifier():
        name = f"{name}_model"
    return Path(f"{name}.py")


@main.command(name="compile")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", default=None, metavar="OUT.py",
              help="Where to write the module (default: NETWORK.py here); `-` prints it.")
@network_option
@define_option
@ops_option
@import_root_option
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where --run runs.")
@click.option("--run", "run_it", is_flag=True,
              help="Build the module and run one forward pass on a random input; report the output shapes.")
@click.option("--inference", is_flag=True,
              help="Compile the inference build: BatchNorms folded into convs, dropout/identity left out "
                   "(docs/inference.md).")
def compile_(file, out, network, defines, import_roots, device, run_it, inference):
    """Compile FILE's network to a PyTorch module: the Python source of an nn.Module that needs torch alone.

    The file is written atomically: on any error (invalid spec, failed --run) nothing is written and an
    earlier file is left as it was. Exit status: 0 written, 1 error.
    """
    from .backends import torch as backend

    net = load_or_exit(file, network, defines, import_roots=import_roots)
    folded = None
    if inference:
        from .inference import FoldError, fold

        try:
            folded = fold(net)
        except FoldError as e:
            click.echo(f"error: {shown(e)}", err=True)
            sys.exit(1)
    target = folded.network if folded is not None else net
    path = Path(out) if out not in (None, "-") else default_module_path(net.name + ("_inference" if inference else ""))
    if out != "-":
        refuse_output(path, net.inputs)
    try:
        gen = backend.generate(target)
    except SpecError as e:
        report(e.diagnostics, e.sources, "text")
        sys.exit(1)
    runs = []
    if run_it:
        try:
            backend.check_device(device)
        except backend.DeviceError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        try:
            module = folded.to_torch(device=device) if folded is not None else backend.build(gen, device)
            runs.append(("eval", 1, *backend.run(module, net.input_shape, device, batch=1, training=False)))
            # the auxiliary outputs exist in training mode only; the inference build has none
            if net.graph.graph["training_outputs"] and not inference:
                runs.append(("training", 2, *backend.run(module, net.input_shape, device, batch=2, training=True)))
        except Exception as e:  # noqa: BLE001 - a failed run of generated code: report it, write nothing
            click.echo(f"error: the generated module failed to run on {device}: {type(e).__name__}: {e}", err=True)
            sys.exit(1)
    if out == "-":
        click.echo(gen.source, nl=False)
    else:
        write_or_exit(path, gen.source, net.inputs)
        outs = ", ".join(f"{name} {fmt_shape(s)}" for name, s in net.output_shapes.items())
        click.echo(f"wrote {shown(path)}: class {gen.class_name}, the network `{shown(net.name)}` of {shown(file)}")
        click.echo(f"  input       {fmt_shape(net.input_shape)}")
        click.echo(f"  outputs     {shown(outs)}")
        click.echo(f"  parameters  {figure(target.params)}")
        click.echo(f"  MACs        {figure(target.macs, 'conv + linear')}")
        if folded is not None:
            for line in folded.describe().splitlines():
                click.echo(f"  {shown(line)}")
        if path.suffix == ".py" and path.stem.isidentifier():
            where = "" if str(path.parent) == "." else f" (with {path.parent} on sys.path)"
            click.echo(f"  use         from {path.stem} import {gen.class_name}{shown(where)}")
    for mode, batch, shapes, seconds in runs:
        names = backend.returned_outputs(target.graph, training=mode == "training")
        outs = shown(", ".join(f"{n} {fmt_shape(s)}" for n, s in zip(names, shapes)))
        click.echo(f"ran on {device}, {mode} mode, batch {batch}: {outs} ({seconds:.2f} s)",
                   err=out == "-")


@main.command(name="flops")
@click.argument("file", type=click.Path(dir_okay=False))
@network_option
@define_option
@ops_option
@import_root_option
@click.option("--convention", "conventions", multiple=True, type=click.Choice(list(CONVENTION_NAMES)),
              help="Only these conventions (repeatable; default: all).")
@click.option("--explain", is_flag=True, help="Per op family: how many layers, and what each convention counts.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
def flops(file, network, defines, import_roots, conventions, explain, fmt):
    """FILE's cost under every convention: conv + linear MACs (torchvision's figure), MACs of every op,
    FLOPs (2 x MACs, as torch's FlopCounterMode), and as ptflops, thop, fvcore and torchinfo count.

    With --explain, a table per op family shows where the conventions differ, to reconcile a figure
    from another tool. Static: nothing runs.
    """
    from . import flops as costs

    net = load_or_exit(file, network, defines, "json" if fmt == "json" else "text", import_roots)
    text = costs.report(net.graph, fmt=fmt, conventions=list(conventions) or None, explained=explain)
    click.echo(text, nl=not text.endswith("\n"))


@main.command(name="diff")
@click.argument("file_a", metavar="A", type=click.Path(dir_okay=False))
@click.argument("file_b", metavar="[B]", required=False, type=click.Path(dir_okay=False))
@click.option("--network", "-n", default=None, help="The network of both files (default: the only one).")
@click.option("--network-a", default=None, help="A's network, where it differs from B's.")
@click.option("--network-b", default=None, help="B's network, where it differs from A's.")
@define_option
@click.option("-A", "defines_a", multiple=True, callback=_defines, metavar="NAME=VALUE",
              help="Override a parameter of A only (after -D).")
@click.option("-B", "defines_b", multiple=True, callback=_defines, metavar="NAME=VALUE",
              help="Override a parameter of B only (after -D).")
@ops_option
@import_root_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.option("-o", "--output", "out", default=None, metavar="OUT",
              help="Also draw B with what changed coloured: OUT.svg, .png, .pdf or .dot.")
@click.option("--depth", type=click.IntRange(min=1), default=None, metavar="N",
              help="For -o: fold every scope deeper than N levels.")
@click.option("--expand", is_flag=True, help="For -o: draw every block.")
@click.option("--exit-code", is_flag=True, help="Exit 1 where the networks differ (as `git diff --exit-code`).")
def diff_(file_a, file_b, network, network_a, network_b, defines, defines_a, defines_b, import_roots, fmt, out,
          depth, expand, exit_code):
    """Compare two networks layer by layer: what was added, removed or changed (shapes, parameters, MACs,
    receptive field), matched by module path, and the totals. B defaults to A: `graphdsl diff
    specs/resnet50.cnn -B num_classes=10` compares one spec under two settings.

    Exit status: 0 compared (with --exit-code, 1 where they differ); 1 an invalid spec; 3 `dot` missing
    for -o.
    """
    from .backends import dot
    from .diff import diff

    if depth is not None and expand:
        raise click.UsageError("--depth and --expand exclude each other: --expand draws every level")
    if out is not None:
        try:
            dot.format_of(out)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'-o'") from None
    file_b = file_b or file_a
    sides = []
    for file, net_name, own in ((file_a, network_a, defines_a), (file_b, network_b, defines_b)):
        name = net_name or network
        overrides = {**defines, **own}
        sides.append((load_or_exit(file, name, overrides, "json" if fmt == "json" else "text", import_roots),
                      _diff_label(file, name, defines, own, "A" if not sides else "B")))
    (a, label_a), (b, label_b) = sides
    result = diff(a, b, labels=(label_a, label_b))
    if out is not None:
        refuse_output(out, [*a.inputs, *b.inputs])
        draw(result.diagram(depth=depth, expand=expand), out, [*a.inputs, *b.inputs])
    click.echo(result.format(fmt), nl=not result.format(fmt).endswith("\n"))
    if exit_code and not result.empty:
        sys.exit(1)


def _diff_label(file: str, network: str | None, defines: dict, own: dict, side: str) -> str:
    """How a side of a diff is named: the file as typed, its network, its overrides (`-B num_classes=10`)."""
    from .values import show

    parts = [file] + ([f"--network {network}"] if network else [])
    parts += [f"-D {k}={show(v)}" for k, v in defines.items()]
    parts += [f"-{side} {k}={show(v)}" for k, v in own.items()]
    return " ".join(parts)


@main.command(name="ops")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@ops_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def ops_(names, fmt):
    """List the operators specs can use: name, family, who provides it (builtin or the plugin), arguments.

    With NAMEs, those operators with their documentation. `--ops` adds a plugin's, to see what it provides.
    """
    from .diagnostics import did_you_mean
    from .ops import REGISTRY
    from .plugins import describe, signature

    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        hint = did_you_mean(unknown[0], REGISTRY, "operators")
        click.echo(f"error: no operator `{shown(unknown[0])}`" + (f"\nhelp: {shown(hint)}" if hint else ""), err=True)
        sys.exit(1)
    infos = [describe(n) for n in (names or REGISTRY)]
    if fmt == "json":
        click.echo(json.dumps(infos, indent=2))
    elif names:
        for i, info in enumerate(infos):
            click.echo(("\n" if i else "") + f"{info['name']}({signature(info)})")
            click.echo(f"  family    {info['family']}\n  from      {info['provider']}")
            if info["doc"]:
                click.echo(f"  doc       {info['doc']}")
            for a in info["args"]:
                arg = a["name"] if a["required"] else f"{a['name']}={a['default']}"
                click.echo(f"  argument  {arg}" + (f": {a['doc']}" if a["doc"] else ""))
            if info["known_as"]:
                click.echo(f"  known as  {', '.join(info['known_as'])}")
    else:
        rows = [("operator", "family", "from", "arguments")]
        rows += [(i["name"], i["family"], i["provider"], signature(i)) for i in infos]
        widths = [max(len(r[k]) for r in rows) for k in range(3)]
        for r in rows:
            click.echo("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[3]]).rstrip())


# Errors of the output stream itself: the disk or device is full, or it failed.
main.add_command(fmt_command)
main.add_command(train)
main.add_command(compare)
main.add_command(export)
main.add_command(import_)


@main.command(name="lsp")
@click.option("--stdio", is_flag=True, hidden=True,
              help="Accepted for clients that pass it (vscode-languageclient does); stdio is the only transport.")
def lsp_(stdio):
    """The language server for editors, on stdin/stdout: diagnostics as you type, shapes and costs on hover,
    go to definition, completion, symbols, formatting (docs/editors.md). Needs `pip install -e '.[lsp]'`."""
    from .lsp import ServerUnavailable, serve

    try:
        serve()
    except ServerUnavailable as e:
        raise click.ClickException(str(e)) from None


_OUTPUT_ERRORS = {errno.ENOSPC, errno.EIO, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _silence_stdout() -> None:
    """Point the standard output at the null device, so that nothing more (not even the interpreter's
    flush at exit) fails on it: the recipe of Python's documentation for SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run(argv: list[str] | None = None) -> None:
    """The `graphdsl` console script: `main`, with failures of the output stream handled.

    A reader that stops reading (`graphdsl summary net.cnn | head -1`) is no error: nothing more is printed
    and there is no traceback; the exit status is 1, as click gives (the output was cut short). A full or
    failing output device gives `error: cannot write the output: ...` and exit 1, no traceback either.
    """
    code: int | str | None = 0
    try:
        try:
            main.main(args=argv, prog_name="graphdsl")
        except SystemExit as e:
            code = e.code
        for stream in (sys.stdout, sys.__stdout__):  # click wraps a broken stdout; the real one may hold more
            if stream is not None:
                stream.flush()
    except BrokenPipeError:  # the reader has gone: keep the command's status (click's 1 if cut short)
        _silence_stdout()
    except OSError as e:
        if e.errno not in _OUTPUT_ERRORS:
            raise
        _silence_stdout()
        click.echo(f"error: cannot write the output: {e.strerror}", err=True)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    run()
