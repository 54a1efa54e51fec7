"""The stage settings torchvision 0.29.1 actually builds for RegNet X/Y and EfficientNet B0-B7 / V2,
as inputs for hand-written specs. Prints tables and writes tools/zoo_configs.json.

    python tools/zoo_configs.py [--json PATH]

Each builder is called as torchvision calls it, with its final model constructor (`_regnet`,
`_efficientnet`) replaced by one that captures its arguments, so the settings are the ones after
`BlockParams.from_init_params` (quantised widths, `_adjust_widths_groups_compatibilty`) and after the
EfficientNet width/depth multipliers. Derived columns follow torchvision's block code:

- RegNet (stem: 3x3 conv, stride 2, 32 channels, BN, ReLU): bottleneck width w_b =
  round(width * bottleneck_multiplier), groups = w_b // group_width, SE squeeze channels =
  round(se_ratio * block input width): `se_first` for a stage's first block (input = previous stage
  width, 32 for stage 1), `se_rest` for the others (input = width).
- EfficientNet (stem: 3x3 conv, stride 2, first stage's in_channels, BN, SiLU): in each stage the first
  block has the stage's stride and in_channels, the others stride 1 and in = out. expanded =
  _make_divisible(in * expand_ratio, 8) for the first block (`expanded_rest` for the others); MBConv's SE
  squeeze = max(1, in // 4) (first block; `se_rest` for the others); FusedMBConv has no SE. Last conv:
  `last_channel` (1x1, BN, SiLU), then dropout and the classifier.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from unittest import mock

import torchvision
from torchvision.models import efficientnet, get_model_builder, list_models, regnet

HERE = Path(__file__).resolve().parent


class Captured(Exception):
    def __init__(self, args, kwargs):
        self.args_, self.kwargs = args, kwargs


def capture(module, constructor: str, name: str):
    """The arguments the builder `name` passes to `module.constructor`."""
    def stop(*args, **kwargs):
        raise Captured(args, kwargs)

    with mock.patch.object(module, constructor, stop):
        try:
            get_model_builder(name)(weights=None)
        except Captured as c:
            return c.args_, c.kwargs
    raise RuntimeError(f"{name} did not call {constructor}")


def regnet_config(name: str) -> dict:
    (bp, *_), _ = capture(regnet, "_regnet", name)
    stages, width_in = [], 32
    for width, stride, depth, group_width, bm in bp._get_expanded_params():
        w_b = int(round(width * bm))
        se = (lambda w: int(round(bp.se_ratio * w))) if bp.se_ratio else (lambda w: 0)
        stages.append({"depth": depth, "width": width, "group_width": group_width, "bottleneck_multiplier": bm,
                       "stride": stride, "w_b": w_b, "groups": w_b // group_width,
                       "se_first": se(width_in), "se_rest": se(width)})
        width_in = width
    return {"stem_width": 32, "se_ratio": bp.se_ratio, "stages": stages}


def efficientnet_config(name: str) -> dict:
    (setting, dropout, last_channel, *_), kwargs = capture(efficientnet, "_efficientnet", name)
    norm = kwargs.get("norm_layer")
    stages = []
    for c in setting:
        fused = isinstance(c, efficientnet.FusedMBConvConfig)
        expand = c.adjust_channels
        stages.append({"block": "FusedMBConv" if fused else "MBConv", "expand_ratio": c.expand_ratio,
                       "kernel": c.kernel, "stride": c.stride, "in_channels": c.input_channels,
                       "out_channels": c.out_channels, "num_layers": c.num_layers,
                       "expanded": expand(c.input_channels, c.expand_ratio),
                       "expanded_rest": expand(c.out_channels, c.expand_ratio),
                       "se": 0 if fused else max(1, c.input_channels // 4),
                       "se_rest": 0 if fused else max(1, c.out_channels // 4)})
    return {"stem": setting[0].input_channels, "stages": stages,
            "last_channel": last_channel if last_channel is not None else 4 * setting[-1].out_channels,
            "dropout": dropout,
            "bn": dict(norm.keywords) if norm is not None else {"eps": 1e-5, "momentum": 0.1}}


def table(rows: list[dict], keys: list[str]) -> str:
    cells = [keys] + [[str(r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys))]
    return "\n".join("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=HERE / "zoo_configs.json")
    args = parser.parse_args(argv)

    models = list_models(module=torchvision.models)
    regnets = sorted(m for m in models if m.startswith(("regnet_x_", "regnet_y_")))
    effnets = sorted(m for m in models if m.startswith("efficientnet_"))
    out = {"_source": f"torchvision {torchvision.__version__.split('+')[0]}; python tools/zoo_configs.py"}
    for name in regnets:
        cfg = out[name] = regnet_config(name)
        print(f"{name}  (stem {cfg['stem_width']}, se_ratio {cfg['se_ratio']})")
        print(table(cfg["stages"], list(cfg["stages"][0])))
    for name in effnets:
        cfg = out[name] = efficientnet_config(name)
        print(f"{name}  (stem {cfg['stem']}, last {cfg['last_channel']}, dropout {cfg['dropout']}, bn {cfg['bn']})")
        print(table(cfg["stages"], list(cfg["stages"][0])))
    args.json.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
