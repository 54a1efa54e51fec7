"""Round trip of `graphdsl import` on torchvision's CNNs, against the hand-written specs of specs/.

    python tools/import_roundtrip.py [MODEL ...] [--show MODEL]

For each model: torchvision's module (weights=None) is imported (torch.fx, lifting, the printer); the
imported spec must check with the same parameters, conv + linear MACs and output shapes as the
hand-written `specs/<model>.cnn` (under the same -D settings); its compiled module must load
torchvision's state_dict (randomised weights, tools/zoo_parity.py) with strict=True and compute the same
eval outputs on a random image (max|ours - ref| / max|ref| <= 1e-5; with auxiliary heads, also every output
in training mode, dropout off). Prints one line per model with the
lines of the imported spec against the hand-written one and exits 1 if any model fails.

Lines are counted two ways: all lines, and code lines (no blank line, no comment line, no doc-string
line). The hand-written count is the model's file plus every file it imports (specs/lib/...): what a
reader needs; the imported spec is one file.
`roundtrip(name)` is the importable core (tests/test_import_fx.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-5

# model -> (torchvision keyword arguments, -D settings of the hand-written spec)
MODELS = {
    "resnet18": ({}, {}),
    "resnet34": ({}, {}),
    "resnet50": ({}, {}),
    "resnet101": ({}, {}),
    "resnet152": ({}, {}),
    "resnext50_32x4d": ({}, {}),
    "wide_resnet50_2": ({}, {}),
    "googlenet": ({"init_weights": False}, {}),  # with the auxiliary heads (training outputs)
    "mobilenet_v2": ({}, {}),
    "mobilenet_v3_large": ({}, {}),
    "mobilenet_v3_small": ({}, {}),
    "efficientnet_b0": ({}, {}),
    "squeezenet1_0": ({}, {}),
    "squeezenet1_1": ({}, {}),
    "inception_v3": ({"init_weights": False}, {}),
    "regnet_x_400mf": ({}, {}),
    "regnet_y_400mf": ({}, {}),
    "mnasnet1_0": ({}, {}),
    "densenet121": ({}, {}),
    "vgg11": ({}, {}),
    "vgg16_bn": ({}, {}),
    "alexnet": ({}, {}),
    "shufflenet_v2_x1_0": ({}, {}),
    "convnext_tiny": ({}, {}),
    "efficientnet_v2_s": ({}, {}),
}



def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spec_files(path: Path) -> list[Path]:
    """The spec and every file it imports, transitively."""
    seen: list[Path] = []
    todo = [path.resolve()]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        for m in re.finditer(r'^import\s+"([^"]+)"', p.read_text(), re.M):
            todo.append((p.parent / m.group(1)).resolve())
    return seen


def count_lines(text: str) -> tuple[int, int]:
    """(all lines, code lines): code lines are neither blank, nor comments, nor inside a doc string."""
    total = code = 0
    in_doc = False
    for line in text.splitlines():
        total += 1
        s = line.strip()
        if in_doc:
            in_doc = s.count('"""') % 2 == 0
            continue
        if s.startswith('"""'):
            in_doc = s.count('"""') == 1
            continue
        if s and not s.startswith("#"):
            code += 1
    return total, code


def roundtrip(name: str, check_outputs: bool = True, seed: int = 0) -> dict:
    import torch
    import torchvision

    import graphdsl
    from graphdsl.importers.command import import_torch

    kwargs, defines = MODELS[name]
    hand_path = ROOT / "specs" / f"{name}.cnn"
    hand = graphdsl.load(hand_path, **defines)
    text = import_torch(f"torchvision.models:{name}", kwargs, name, hand.input_shape)  # inception_v3: 299
    imported = graphdsl.load(text=text)
    hand_lines = [count_lines(p.read_text()) for p in spec_files(hand_path)]
    result = {
        "model": name, "text": text,
        "lines": count_lines(text),
        "hand_lines": (sum(a for a, _ in hand_lines), sum(b for _, b in hand_lines)),
        "params": (imported.params, hand.params),
        "macs": (imported.macs, hand.macs),
        "outputs": (list(imported.output_shapes.values()), list(hand.output_shapes.values())),
    }
    figures_ok = result["params"][0] == result["params"][1] and result["macs"][0] == result["macs"][1] and \
        result["outputs"][0] == result["outputs"][1]
    result["figures_ok"] = figures_ok
    if check_outputs:
        zoo_parity = _tool("zoo_parity")
        ref = zoo_parity.randomize(getattr(torchvision.models, name)(**kwargs), seed).eval()
        ours = imported.to_torch().eval()
        ours.load_state_dict(ref.state_dict(), strict=True)
        torch.manual_seed(seed)
        x = torch.randn(1, *imported.input_shape)
        with torch.no_grad():
            want, got = ref(x), ours(x)
        result["rel_error"] = float((got - want).abs().max() / want.abs().max())
        if len(imported.output_shapes) > 1:  # training outputs (auxiliary heads): compared in training mode
            result["rel_error"] = max(result["rel_error"], _training_error(ref, ours, imported.input_shape, seed))
    result["ok"] = figures_ok and result.get("rel_error", 0.0) <= TOLERANCE
    return result


def _training_error(ref, ours, input_shape, seed: int) -> float:
    """The largest relative difference between the outputs of `ref` and `ours` in training mode (batch
    statistics; dropout off, so that both compute the same), every output of the tuple compared in order."""
    import torch

    for model in (ref, ours):
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
    torch.manual_seed(seed + 1)
    x = torch.randn(2, *input_shape)  # batch 2: batch norm on a 1x1 map needs more than one value
    with torch.no_grad():
        want, got = tuple(ref(x)), tuple(ours(x))
    if len(want) != len(got):
        return float("inf")
    return max(float((g - w).abs().max() / w.abs().max()) for g, w in zip(got, want))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="models (default: all of MODELS)")
    parser.add_argument("--show", action="store_true", help="print each imported spec")
    parser.add_argument("--no-outputs", action="store_true", help="figures only, no state_dict / output check")
    args = parser.parse_args(argv)
    models = args.models or list(MODELS)
    failed = 0
    print(f"{'model':<18} {'imported':>9} {'hand':>6} {'ratio':>6}  {'code':>5} {'hand':>5} {'ratio':>6}  "
          f"{'params':>11}  {'figures':>7}  {'rel err':>8}  time")
    for name in models:
        t = time.time()
        try:
            r = roundtrip(name, check_outputs=not args.no_outputs)
        except Exception as e:  # noqa: BLE001 - one model's failure is a line of the table
            failed += 1
            print(f"{name:<18} FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        if args.show:
            print(r["text"])
        (a, ac), (h, hc) = r["lines"], r["hand_lines"]
        err = f"{r['rel_error']:.1e}" if "rel_error" in r else "-"
        print(f"{name:<18} {a:>9} {h:>6} {a / h:>6.2f}  {ac:>5} {hc:>5} {ac / hc:>6.2f}  {r['params'][0]:>11,}  "
              f"{'same' if r['figures_ok'] else 'DIFFER':>7}  {err:>8}  {time.time() - t:.1f}s")
        if not r["ok"]:
            failed += 1
            if not r["figures_ok"]:
                print(f"  imported {r['params'][0]:,} params {r['macs'][0]:,} MACs {r['outputs'][0]}; "
                      f"hand-written {r['params'][1]:,} params {r['macs'][1]:,} MACs {r['outputs'][1]}")
    print(f"{len(models) - failed} of {len(models)} models round-trip")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
