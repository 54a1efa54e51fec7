"""ONNX export and re-import of the smallest shipped spec of every family.

    python tools/onnx_roundtrip.py [SPEC ...]

For each spec (default: FAMILIES below): the compiled network, with randomised weights and BatchNorm
statistics (tools/zoo_parity.py's `randomize`), is exported by `graphdsl export`'s code
(graphdsl/export.py: torch's dynamo exporter, onnx.checker) and run under onnxruntime on CPU: the largest
output difference relative to the largest output must be <= 1e-4. The ONNX file is then imported again
(`graphdsl import FILE.onnx`'s code: graphdsl/importers/onnx_model.py, lifting, the printer): the spec
must check with the original's parameters, conv + linear MACs and output shapes, its compiled module
must load the file's initializers with strict=True, and its eval outputs must equal onnxruntime's
(<= 1e-4 relative). Prints one line per spec (lines of the imported spec against the original) and
exits 1 if any fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4

# the smallest shipped spec of each family, with the -D settings its figures are compared under (in eval
# mode a network returns its outputs that are not training-only: auxiliary heads are not exported, so the
# re-imported network is compared with the spec without them)
FAMILIES = {
    "specs/alexnet.cnn": {},
    "specs/vgg11.cnn": {},
    "specs/resnet18.cnn": {},
    "specs/resnext50_32x4d.cnn": {},
    "specs/wide_resnet50_2.cnn": {},
    "specs/googlenet.cnn": {"aux_logits": False},
    "specs/inception_v3.cnn": {"aux_logits": False},
    "specs/densenet121.cnn": {},
    "specs/mobilenet_v2.cnn": {},
    "specs/mobilenet_v3_small.cnn": {},
    "specs/mnasnet0_5.cnn": {},
    "specs/efficientnet_b0.cnn": {},
    "specs/efficientnet_v2_s.cnn": {},
    "specs/regnet_x_400mf.cnn": {},
    "specs/regnet_y_400mf.cnn": {},
    "specs/shufflenet_v2_x0_5.cnn": {},
    "specs/squeezenet1_1.cnn": {},
    "specs/convnext_tiny.cnn": {},
    "specs/cifar/resnet20.cnn": {},
    "specs/cifar/plain20.cnn": {},
}


def _zoo_parity():
    spec = importlib.util.spec_from_file_location("_tools_zoo_parity", ROOT / "tools" / "zoo_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def relative(got, want) -> float:
    import numpy as np

    return float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-12)


def roundtrip(spec: str, defines: dict) -> dict:
    """The figures of one spec's export (raises on failure) and re-import (`error` where it fails)."""
    import onnxruntime
    import torch

    import graphdsl
    from graphdsl.export import export_onnx

    net = graphdsl.load(ROOT / spec, **defines)
    module = _zoo_parity().randomize(net.to_torch()).eval()
    exported = export_onnx(net, module=module, verify=False)
    torch.manual_seed(1)
    x = torch.randn(1, *net.input_shape)
    session = onnxruntime.InferenceSession(exported.data, providers=["CPUExecutionProvider"])
    (ort,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})[:1]
    with torch.no_grad():
        want = module(x)
    want = (want[0] if isinstance(want, (tuple, list)) else want).numpy()
    export_diff = relative(ort, want)
    result = {"spec": spec, "params": net.params, "nodes": exported.nodes, "export": export_diff, "ok": False}
    try:
        result.update(_reimport(net, exported.data, x, ort))
    except Exception as e:  # noqa: BLE001 - a tool: the export's figures are reported all the same
        result["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        return result
    result["ok"] = result["same"] and export_diff <= TOLERANCE and result["import"] <= TOLERANCE
    result["spec_lines"] = len((ROOT / spec).read_text().splitlines())
    return result


def _reimport(net, data: bytes, x, ort) -> dict:
    """The ONNX file `data` imported again: its figures against `net`'s, its outputs against onnxruntime's."""
    import io

    import numpy as np
    import torch

    import graphdsl
    from graphdsl.importers import lift
    from graphdsl.importers.command import file_graph, state_dict_bytes
    from graphdsl.printer import print_module

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{net.name}.onnx"
        path.write_bytes(data)
        graph = file_graph(path)
        text = print_module(lift.lift(graph))
    imported = graphdsl.load(text=text)
    same = (imported.params == net.params and imported.macs == net.macs
            and list(imported.output_shapes.values())[:1] == list(net.output_shapes.values())[:1])
    reloaded = imported.to_torch().eval()
    reloaded.load_state_dict(torch.load(io.BytesIO(state_dict_bytes(imported, graph.weights))), strict=True)
    with torch.no_grad():
        got = reloaded(x)
    got = (got[0] if isinstance(got, (tuple, list)) else got).numpy()
    return {"same": same and bool(np.isfinite(got).all()), "import": relative(got, ort),
            "lines": len(text.splitlines())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", help="specs (default: the smallest of every family)")
    args = parser.parse_args(argv)
    specs = args.specs or list(FAMILIES)
    print(f"{'spec':32} {'params':>11} {'nodes':>6} {'export diff':>11} {'figures':>8} {'import diff':>11} "
          f"{'lines':>6} {'spec lines':>10} {'s':>5}")
    failed = 0
    for spec in specs:
        start = time.perf_counter()
        try:
            r = roundtrip(spec, FAMILIES.get(spec, {}))
        except Exception as e:  # noqa: BLE001 - a tool: report and go on
            failed += 1
            print(f"{spec:32} FAILED: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
            continue
        failed += not r["ok"]
        if "error" in r:
            print(f"{spec:32} {r['params']:>11,} {r['nodes']:>6} {r['export']:>11.1e}  import FAILED: {r['error']}")
            continue
        print(f"{spec:32} {r['params']:>11,} {r['nodes']:>6} {r['export']:>11.1e} "
              f"{'same' if r['same'] else 'DIFFER':>8} {r['import']:>11.1e} {r['lines']:>6} {r['spec_lines']:>10} "
              f"{time.perf_counter() - start:>5.1f}" + ("" if r["ok"] else "  FAILED"), flush=True)
    print(f"{len(specs) - failed} of {len(specs)} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
