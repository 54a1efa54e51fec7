"""`graphdsl export FILE --format onnx`: the compiled network through torch's ONNX exporter.

The spec is compiled (`Network.to_torch()`), put in eval mode and exported with
`torch.onnx.export(..., dynamo=True, optimize=False)`: torch.export traces it and onnxscript translates
the graph. Of onnxscript's optimiser only constant folding runs, so that there is one ONNX node per layer
of the spec (the full optimiser would fold each BatchNormalization into the Conv before it, and the layer
would vanish from the file). Initializers are
named by the state_dict keys (`layer1.0.conv1.weight`); the exporter names nodes `node_Conv_12`, so
each node is renamed after the module it came from, which the exporter records in its metadata
(`pkg.torch.onnx.name_scopes`): `layer1.0.conv1/Conv`, `layer1.0/Add`. The file is checked with
`onnx.checker`, run with onnxruntime on CPU against the torch module on a random input (the largest
difference relative to the largest output is reported), and only then written, atomically.

torch, onnx, onnxscript and onnxruntime are the extra `[onnx]`; this module imports click alone until
the command runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

ONNX_INSTALL = "pip install -e '.[onnx]'"
DEFAULT_OPSET = 18
PARITY_TOLERANCE = 1e-4  # relative to the largest output magnitude


class ExportError(Exception):
    """An export that cannot be made (the extra missing, an operator the exporter refuses, a failed check)."""

    def __init__(self, message: str, help: str):
        super().__init__(message)
        self.message = message
        self.help = help


@dataclass
class OnnxExport:
    """An exported network: the serialised model and what the checks found."""

    data: bytes
    nodes: int
    opset: int
    inputs: list[str]
    outputs: list[str]
    parity: float | None  # max |onnxruntime - torch| / max |torch| on a random input; None where not run


def require_onnx():
    """torch, onnx, onnxscript and onnxruntime, or an ExportError naming the extra."""
    missing = []
    for name in ("torch", "onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          "not installed", f"install the extra: {ONNX_INSTALL}")


def export_onnx(net, *, batch: int = 1, dynamic_batch: bool = False, opset: int = DEFAULT_OPSET,
                verify: bool = True, seed: int = 0, module=None) -> OnnxExport:
    """`net` (a graphdsl.Network) as an ONNX model: exported, checked with onnx.checker and, with
    `verify`, compared with the torch module under onnxruntime. `module` is the compiled network to
    export (default: `net.to_torch()`, random weights). Raises ExportError."""
    require_onnx()
    import onnx
    import torch

    module = (module if module is not None else net.to_torch()).eval()
    torch.manual_seed(seed)
    x = torch.randn(batch, *net.input_shape)
    outputs = _output_names(net)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    try:
        program = _quiet(lambda: torch.onnx.export(
            module, (x,), None, dynamo=True, optimize=False, opset_version=opset, input_names=["input"],
            output_names=outputs, dynamic_shapes=dynamic_shapes, verbose=False))
    except Exception as e:  # noqa: BLE001 - the exporter's failure, reported without its traceback
        raise ExportError(f"torch's ONNX exporter failed: {type(e).__name__}: {_first_line(e)}",
                          "an operator of this spec may have no ONNX translation at this opset; "
                          "try another `--opset`") from None
    # constant folding only (no fusion): the bias-less convs' zero biases and shape arithmetic go away
    from onnxscript import optimizer

    optimizer.fold_constants(program.model)
    optimizer.remove_unused_nodes(program.model)
    model = program.model_proto
    name_nodes_by_scope(model)
    model.doc_string = f"graphdsl network `{net.name}`"
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - onnx.checker raises several types
        raise ExportError(f"the exported model fails onnx.checker: {_first_line(e)}",
                          "please report this with the spec") from None
    data = model.SerializeToString()
    parity = None
    if verify:
        check_batch = batch + 1 if dynamic_batch else batch  # a dynamic batch must work at another size
        parity = onnxruntime_parity(data, module, torch.randn(check_batch, *net.input_shape))
        if not parity <= PARITY_TOLERANCE:
            raise ExportError(f"onnxruntime's outputs differ from the torch module's by {parity:.2e} (relative), "
                              f"more than {PARITY_TOLERANCE:g}", "please report this with the spec")
    return OnnxExport(data, len(model.graph.node), opset, ["input"], outputs, parity)


def onnxruntime_parity(data: bytes, module, x) -> float:
    """The largest |onnxruntime - torch| over all outputs, relative to the largest |torch| output."""
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(x)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    worst = 0.0
    for want, have in zip(expected, got, strict=True):
        want = want.numpy()
        scale = max(float(np.abs(want).max()), 1e-12)
        worst = max(worst, float(np.abs(have - want).max()) / scale)
    return worst


def name_nodes_by_scope(model) -> None:
    """Rename each node `MODULE_PATH/OpType` (`layer1.0.conv1/Conv`; `/Flatten` at the top) after the
    innermost module the exporter recorded for it; a name that comes up again gets `_1`, `_2`, ..."""
    seen: dict[str, int] = {}
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        path = _module_path(meta.get("pkg.torch.onnx.name_scopes"))
        if path is None:
            continue
        name = f"{path}/{node.op_type}"
        count = seen.get(name, 0)
        seen[name] = count + 1
        node.name = name if count == 0 else f"{name}_{count}"


def _module_path(scopes: str | None) -> str | None:
    """`['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d']` -> `layer1.0.conv1`; the last entry is
    the aten op, the first the root module."""
    import ast as pyast

    if not scopes:
        return None
    try:
        names = pyast.literal_eval(scopes)
    except (ValueError, SyntaxError):
        return None
    if not isinstance(names, list) or not names or names[0] != "":
        return None
    return names[-2] if len(names) > 2 else ""


def _output_names(net) -> list[str]:
    from .backends.torch import returned_outputs

    names = returned_outputs(net.graph, training=False)
    return ["output"] if names == ["output"] or len(names) == 1 else list(names)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _quiet(fn):
    """Run the exporter without its progress lines and warnings on the terminal."""
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn()


def _defines(ctx, param, values):
    from .cli import parse_define

    return dict(parse_define(v) for v in values)


def _load_ops(ctx, param, values):
    from .cli import _load_ops

    return _load_ops(ctx, param, values)


@click.command(name="export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), required=True, help="The format to write.")
@click.option("-o", "--output", "out", default=None, metavar="OUT.onnx",
              help="Where to write the model (default: NETWORK.onnx here).")
@click.option("--network", "-n", default=None, help="Which network of the file (default: the only one).")
@click.option("-D", "defines", multiple=True, metavar="NAME=VALUE", callback=_defines,
              help="Override a network parameter, e.g. -D num_classes=10.")
@click.option("--ops", "ops", multiple=True, callback=_load_ops, expose_value=False, metavar="MODULE_OR_FILE",
              help="Load operators from a Python module or .py file (repeatable).")
@click.option("--import-root", "import_roots", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Also allow imports from DIR (repeatable).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="The batch size of the exported input.")
@click.option("--dynamic-batch", is_flag=True, help="Export the batch dimension as a symbol (`batch`).")
@click.option("--opset", type=click.IntRange(min=18), default=DEFAULT_OPSET, show_default=True,
              help="The ONNX opset (torch's exporter writes 18 and later).")
def export(file, fmt, out, network, defines, import_roots, batch, dynamic_batch, opset):
    """Export FILE's network to ONNX through torch's exporter (the extra: pip install -e '.[onnx]').

    Layers keep the spec's names: initializers are the state_dict keys, nodes are named after their
    module (`layer1.0.conv1/Conv`). The model is checked with onnx.checker and run with onnxruntime on
    CPU against the compiled module before it is written, atomically. Exit status: 0 written, 1 error.
    """
    from .cli import load_or_exit, refuse_output, shown, write_or_exit

    try:
        require_onnx()
    except ExportError as e:
        click.echo(f"error: {e.message}\nhelp: {e.help}", err=True)
        sys.exit(1)
    net = load_or_exit(file, network, defines, import_roots=import_roots)
    path = Path(out) if out is not None else Path(f"{net.name}.onnx")
    refuse_output(path, net.inputs)
    try:
        result = export_onnx(net, batch=batch, dynamic_batch=dynamic_batch, opset=opset)
    except ExportError as e:
        click.echo(f"{shown(file)}: error: {shown(e.message)}\nhelp: {shown(e.help)}", err=True)
        sys.exit(1)
    write_or_exit(path, result.data, net.inputs)
    shape = ("batch" if dynamic_batch else str(batch)) + "x" + "x".join(str(d) for d in net.input_shape)
    click.echo(f"wrote {shown(path)}: network `{shown(net.name)}`, opset {result.opset}, {result.nodes} nodes, "
               f"input {shape}, outputs {', '.join(result.outputs)}")
    click.echo(f"  onnx.checker  ok\n  onnxruntime   max relative difference {result.parity:.1e} (CPU)")
