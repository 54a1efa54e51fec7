"""Reference figures of torchvision's modern CNN zoo: tests/reference/torchvision_zoo.json.

    python tools/zoo_reference.py                      # recompute every model, rewrite the file
    python tools/zoo_reference.py --models a,b         # recompute a subset, merged into the existing file
    python tools/zoo_reference.py --check [--models a,b]   # recompute and diff against the file; exit 1 on a difference

Every model is built by torchvision 0.29.1 with `weights=None` and its default arguments
(`inception_v3(init_weights=False)`: aux_logits=True, transform_input=False) on the meta device, so
nothing is initialised, allocated or downloaded, and run once on a meta input. Per model:

- `input`: [3, H, W], the crop size of the model's IMAGENET1K_V1 weights' transforms (read from the
  weights enum, nothing downloaded); `input_from` names the weights entry it came from.
- `params`: sum of `p.numel()` over `model.parameters()`.
- `buffers`: sum of `numel()` over the state_dict entries that are not parameters (BN running mean and
  variance, and each `num_batches_tracked`, which counts 1).
- `macs`: `torch.utils.flop_counter.FlopCounterMode` total FLOPs // 2, model.eval(), batch 1, at `input`
  (convolutions and matrix products only: pooling, norms, activations and additions are not counted).
- `out`: the output shape in eval mode, batch 1.
- `state_dict`: key -> shape.
- inception_v3 only: `aux_out`, the auxiliary output's shape in training mode, and `macs_train`, the
  MACs per image in training mode (main net + auxiliary head; eval mode skips the head). Both are measured
  at batch 2 (BN in training mode needs more than one value per channel) and given per image.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from unittest import mock

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model_builder, get_model_weights, list_models
from torchvision.models.regnet import BlockParams

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "reference" / "torchvision_zoo.json"

FIXED = [
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    "squeezenet1_0", "squeezenet1_1", "densenet121", "densenet161", "densenet169", "densenet201",
    "inception_v3", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
    "mnasnet1_3", *[f"efficientnet_b{i}" for i in range(8)], "efficientnet_v2_s", "efficientnet_v2_m",
    "efficientnet_v2_l", "convnext_tiny", "convnext_small", "convnext_base", "convnext_large",
]
REGNETS = sorted(m for m in list_models(module=torchvision.models) if m.startswith(("regnet_x_", "regnet_y_")))
MODELS = FIXED + REGNETS

# Builder arguments besides weights=None (inception_v3 would otherwise warn and run scipy's init).
KWARGS = {"inception_v3": {"init_weights": False}}
# regnet_y_128gf has no IMAGENET1K_V1 weights (only SWAG ones): its 224 px resolution is that of
# IMAGENET1K_SWAG_LINEAR_V1 (the SWAG_E2E_V1 weights were fine-tuned at 384).
WEIGHTS_ENTRY = {"regnet_y_128gf": "IMAGENET1K_SWAG_LINEAR_V1"}

SOURCE = {
    "torch": torch.__version__.split("+")[0],
    "torchvision": torchvision.__version__.split("+")[0],
    "generated_by": "python tools/zoo_reference.py",
    "how": (
        "torchvision.models.<name>(weights=None, **defaults) (inception_v3: init_weights=False, so "
        "aux_logits=True, transform_input=False) built under `with torch.device('meta')`; input [3, H, W] "
        "= crop_size of get_model_weights(name).IMAGENET1K_V1.transforms() (regnet_y_128gf: "
        "IMAGENET1K_SWAG_LINEAR_V1, the only 224 px entry), named in `input_from`; params = sum p.numel() "
        "over model.parameters(); buffers = sum numel of the state_dict entries that are not parameters "
        "(num_batches_tracked counts 1 each); macs = FlopCounterMode total // 2 in eval mode, batch 1, "
        "conv + matmul only; out = eval-mode output shape, batch 1; state_dict = key -> shape; inception_v3 "
        "also aux_out (training-mode auxiliary output shape) and macs_train (training-mode MACs per image, "
        "main net + aux head), both measured at batch 2 and given per image."
    ),
}


_from_init_params = BlockParams.from_init_params.__func__


def _block_params_on_cpu(cls, *args, **kwargs):
    """RegNet's builders compute their stage widths with torch ops (`.tolist()`): on the CPU."""
    with torch.device("cpu"):
        return _from_init_params(cls, *args, **kwargs)


def build(name: str, **kwargs) -> torch.nn.Module:
    """torchvision's model with default arguments (and `KWARGS`, `kwargs`) on the meta device."""
    kwargs = {**KWARGS.get(name, {}), **kwargs}
    with mock.patch.object(BlockParams, "from_init_params", classmethod(_block_params_on_cpu)), torch.device("meta"):
        return get_model_builder(name)(weights=None, **kwargs)


def resolution(name: str) -> tuple[int, str]:
    """(crop size, weights entry it came from), from the weights enum alone (no download)."""
    enum = get_model_weights(name)
    entry = WEIGHTS_ENTRY.get(name, "IMAGENET1K_V1")
    crop = enum[entry].transforms().crop_size
    assert len(crop) == 1 or crop[0] == crop[1], (name, crop)
    return int(crop[0]), f"{enum.__name__}.{entry}"


def count_macs(model: torch.nn.Module, x: torch.Tensor):
    """(MACs, output) of one forward pass."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(x)
    return counter.get_total_flops() // 2, out


def figures(name: str) -> dict:
    size, source = resolution(name)
    model = build(name).eval()
    params = {k for k, _ in model.named_parameters()}
    state = model.state_dict()
    with torch.device("meta"):
        x = torch.empty(1, 3, size, size)
    macs, out = count_macs(model, x)
    entry = {
        "input": [3, size, size],
        "input_from": source,
        "params": sum(p.numel() for p in model.parameters()),
        "buffers": sum(t.numel() for k, t in state.items() if k not in params),
        "macs": macs,
        "out": list(out.shape),
        "state_dict": {k: list(t.shape) for k, t in state.items()},
    }
    if name == "inception_v3":
        model.train()
        with torch.device("meta"):
            x2 = torch.empty(2, 3, size, size)
        macs2, outs = count_macs(model, x2)
        main, aux = outs
        assert list(main.shape) == [2, *entry["out"][1:]]
        entry["aux_out"] = [1, *aux.shape[1:]]
        entry["macs_train"] = macs2 // 2
    return entry


def dumps(data: dict) -> str:
    """json with sorted keys and indent 1, each list of numbers on one line (shapes stay readable)."""
    text = json.dumps(data, indent=1, sort_keys=True)
    text = re.sub(r"\[\s*([-\d.,\s]+?)\s*\]", lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1))) + "]", text)
    return text + "\n"


def diff(old: dict, new: dict, path: str = "") -> list[str]:
    """Human-readable differences between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for k in sorted(old.keys() | new.keys()):
            here = f"{path}.{k}" if path else k
            if k not in old:
                lines.append(f"+ {here}: {json.dumps(new[k])[:100]}")
            elif k not in new:
                lines.append(f"- {here}")
            else:
                lines += diff(old[k], new[k], here)
        return lines
    return [] if old == new else [f"~ {path}: {json.dumps(old)[:100]} -> {json.dumps(new)[:100]}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", help="comma-separated subset (default: all); merged into the existing file")
    parser.add_argument("--check", action="store_true", help="recompute and diff against the file, write nothing")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else MODELS
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"not in the zoo: {', '.join(unknown)} (known: {', '.join(MODELS)})")

    existing = json.loads(args.output.read_text()) if args.output.exists() else {}
    fresh = {"_source": SOURCE}
    for name in names:
        fresh[name] = figures(name)
        e = fresh[name]
        print(f"{name:22s} {e['input'][1]:4d}px  params {e['params']:>12,}  macs {e['macs']:>16,}", file=sys.stderr)

    if args.check:
        old = {k: existing.get(k) for k in fresh} if args.models else existing
        lines = diff(old, fresh)
        print("\n".join(lines) if lines else f"{args.output}: up to date ({len(names)} models checked)")
        return 1 if lines else 0

    merged = {**existing, **fresh} if args.models else fresh
    args.output.write_text(dumps(merged))
    print(f"wrote {args.output} ({len(merged) - 1} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
