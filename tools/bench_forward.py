"""Forward time of a compiled spec, and of its inference build, against torchvision's model with the same
weights, on CPU.

    python tools/bench_forward.py [--repeats 10] [--batch 1 16] [--threads N] [--models resnet50 vgg16 ...]
                                  [--channels-last auto|on|off]

For each model, four modules with the same weights, all in eval mode under torch.inference_mode:

- `tv`: torchvision's model, its BatchNorm statistics and affine parameters set to random values (as
  if trained: with the fresh ones a wrong fold would go unseen);
- `spec`: the spec (specs/NAME.cnn) compiled with `to_torch`, torchvision's state_dict loaded with
  strict=True;
- `inference`: the spec's inference build (graphdsl.inference.build) from that same state_dict: every
  BatchNorm after a conv folded into it, dropout and the like left out, conv weights channels_last
  (unless `--channels-last off`);
- `fused`: the same with `fuse=True`: each conv and the activation (or addition and ReLU) after it as
  one oneDNN call with a prepacked weight (graphdsl.inference.fuse_convolutions).

After warm-up runs, they are timed in interleaved rounds (spec, tv, inference, fused, spec, tv, ...) so
that drift in the machine's speed hits them alike; the table gives the median of each, the ratios
spec / tv (target: <= 1.00 within noise), inference / tv (target: <= 0.85 at batch 16 for resnet50
and googlenet), with the interquartile range of its per-round ratios, and fused / tv, as medians of the
per-round ratios, and the largest difference of each output from torchvision's, relative to its
largest value (target <= 1e-4). `--variants` times fewer.
GoogLeNet is built without its auxiliary heads on both sides (`aux_logits=false`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

import graphdsl
from graphdsl.inference import build as inference_build

ROOT = Path(__file__).resolve().parent.parent

MODELS = {
    # name: (spec file, spec overrides, torchvision constructor)
    "resnet50": ("resnet50.cnn", {}, lambda: torchvision.models.resnet50()),
    "vgg16": ("vgg16.cnn", {}, lambda: torchvision.models.vgg16()),
    "googlenet": ("googlenet.cnn", {"aux_logits": False},
                  lambda: torchvision.models.googlenet(aux_logits=False, init_weights=False)),
    "mobilenet_v2": ("mobilenet_v2.cnn", {}, lambda: torchvision.models.mobilenet_v2()),
    "efficientnet_b0": ("efficientnet_b0.cnn", {}, lambda: torchvision.models.efficientnet_b0()),
}
VARIANTS = ("spec", "tv", "inference", "fused")
SHORT = {"spec": "spec", "tv": "tv", "inference": "inf", "fused": "fused"}  # column labels


def randomize_norms(module):
    """Random running statistics and affine parameters in every BatchNorm (seeded by the caller)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.3, 2.8)
                if m.affine:
                    m.weight.uniform_(0.3, 1.7)
                    m.bias.uniform_(-0.5, 0.5)
    return module


def build(name: str, channels_last, variants):
    """({variant: module}, input shape): the modules with torchvision's weights, in eval mode."""
    file, overrides, make_tv = MODELS[name]
    net = graphdsl.load(ROOT / "specs" / file, **overrides)
    tv = randomize_norms(make_tv()).eval()
    spec = net.to_torch()
    spec.load_state_dict(tv.state_dict(), strict=True)
    modules = {"spec": spec.eval(), "tv": tv}
    if "inference" in variants:
        modules["inference"] = inference_build(net, state_dict=tv.state_dict(), channels_last=channels_last)
    if "fused" in variants:
        modules["fused"] = inference_build(net, state_dict=tv.state_dict(), channels_last=channels_last, fuse=True)
    return {k: modules[k] for k in VARIANTS if k in variants}, tuple(net.input_shape)


def first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def timed(module, x) -> float:
    start = time.perf_counter()
    module(x)
    return time.perf_counter() - start


def quartiles(values) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, statistics.median(values), q3


def bench(modules: dict, x, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per round of each module, timed in interleaved rounds."""
    times: dict[str, list[float]] = {k: [] for k in modules}
    with torch.inference_mode():
        for _ in range(warmup):
            for m in modules.values():
                m(x)
        for _ in range(repeats):  # interleaved: spec, tv, inference, fused, spec, tv, ...
            for k, m in modules.items():
                times[k].append(timed(m, x))
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="timed rounds per model and batch (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs of each first (default 2)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="batch sizes (default 1 16)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                    help="what to time against tv (default: all; tv is always timed)")
    ap.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                    help="the inference build's conv weights NHWC (default auto: build's default, on for CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, CPU, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved rounds after {args.warmup} warm-up runs, eval + inference_mode, "
          f"inference build channels_last {args.channels_last}")
    shown = [k for k in VARIANTS if k in args.variants and k != "tv"]
    head = (f"{'model':<16}{'batch':>6}{'tv ms':>9}" + "".join(f"{SHORT[k] + ' ms':>9}" for k in shown)
            + "".join(f"{SHORT[k] + '/tv':>9}" for k in shown) + (f"{'inf IQR':>13}" if "inference" in shown else "")
            + "".join(f"{SHORT[k] + ' diff':>11}" for k in shown))
    print(head)
    print("-" * len(head))
    worst: dict = {}
    worst_diff = 0.0
    for name in args.models:
        modules, shape = build(name, channels_last, args.variants)
        for batch in args.batch:
            x = torch.randn(batch, *shape)
            with torch.inference_mode():
                out = {k: first(m(x)) for k, m in modules.items()}
            scale = out["tv"].abs().max().item()
            diff = {k: (out[k] - out["tv"]).abs().max().item() / scale for k in shown}
            times = bench(modules, x, args.repeats, args.warmup)
            ratios = {k: sorted(a / b for a, b in zip(times[k], times["tv"])) for k in shown}
            row = f"{name:<16}{batch:>6}{statistics.median(times['tv']) * 1e3:>9.1f}"
            row += "".join(f"{statistics.median(times[k]) * 1e3:>9.1f}" for k in shown)
            row += "".join(f"{statistics.median(ratios[k]):>9.3f}" for k in shown)
            if "inference" in shown:
                q1, _, q3 = quartiles(ratios["inference"])
                row += f"{f'{q1:.3f}-{q3:.3f}':>13}"
            row += "".join(f"{diff[k]:>11.1e}" for k in shown)
            print(row, flush=True)
            for k in shown:
                worst[k, batch] = max(worst.get((k, batch), 0.0), statistics.median(ratios[k]))
                if k != "spec":
                    worst_diff = max(worst_diff, diff[k])
    print()
    for k in shown:
        print(f"worst {k}/tv: " + ", ".join(f"{r:.3f} at batch {b}" for (v, b), r in worst.items() if v == k))
    print("targets: spec/tv <= 1.00 within noise; inference/tv <= 0.85 at batch 16 for resnet50 and googlenet; "
          f"outputs within 1e-4 (largest of the inference builds: {worst_diff:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
