"""Forward time of a compiled spec against torchvision's model with the same weights, on CPU.

    python tools/bench_forward.py [--repeats 10] [--batch 1 16] [--threads N] [--models resnet50 vgg16 googlenet]

For each model: the spec (specs/NAME.cnn, compiled with `to_torch`) and torchvision's model get the
same weights (torchvision's state_dict loaded into the spec's module with strict=True), both in eval
mode under torch.inference_mode. After warm-up runs, the two are timed in interleaved rounds
(spec, torchvision, spec, torchvision, ...) so that drift in the machine's speed hits both alike;
the table gives the median of each and the ratio spec / torchvision (target: <= 1.00 within noise;
the spread column is the interquartile range of the per-round ratios). GoogLeNet is built without
its auxiliary heads on both sides (`aux_logits=false`). The outputs are compared once as a check.
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

ROOT = Path(__file__).resolve().parent.parent

MODELS = {
    # name: (spec file, spec overrides, torchvision constructor)
    "resnet50": ("resnet50.cnn", {}, lambda: torchvision.models.resnet50()),
    "vgg16": ("vgg16.cnn", {}, lambda: torchvision.models.vgg16()),
    "googlenet": ("googlenet.cnn", {"aux_logits": False},
                  lambda: torchvision.models.googlenet(aux_logits=False, init_weights=False)),
}


def build(name: str):
    """(spec module, torchvision module, input shape) with the same weights, in eval mode."""
    file, overrides, make_tv = MODELS[name]
    net = graphdsl.load(ROOT / "specs" / file, **overrides)
    spec = net.to_torch()
    tv = make_tv()
    spec.load_state_dict(tv.state_dict(), strict=True)
    return spec.eval(), tv.eval(), tuple(net.input_shape)


def first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def timed(module, x) -> float:
    start = time.perf_counter()
    module(x)
    return time.perf_counter() - start


def bench(spec, tv, x, repeats: int, warmup: int) -> tuple[float, float, float, float]:
    """Median seconds of spec and torchvision, median and IQR of the per-round ratios."""
    with torch.inference_mode():
        for _ in range(warmup):
            spec(x)
            tv(x)
        a, b = [], []
        for _ in range(repeats):  # interleaved: A, B, A, B, ...
            a.append(timed(spec, x))
            b.append(timed(tv, x))
    ratios = sorted(p / q for p, q in zip(a, b))
    q1, q3 = (statistics.quantiles(ratios, n=4)[0], statistics.quantiles(ratios, n=4)[2]) if len(ratios) > 1 \
        else (ratios[0], ratios[0])
    return statistics.median(a), statistics.median(b), statistics.median(ratios), q3 - q1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="timed rounds per model and batch (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs of each first (default 2)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="batch sizes (default 1 16)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, CPU, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved rounds after {args.warmup} warm-up runs, eval + inference_mode")
    head = f"{'model':<11}{'batch':>6}{'spec ms':>11}{'tv ms':>11}{'spec/tv':>9}{'IQR':>7}{'max |diff|':>12}"
    print(head)
    print("-" * len(head))
    worst = 0.0
    for name in args.models:
        spec, tv, shape = build(name)
        for batch in args.batch:
            x = torch.randn(batch, *shape)
            with torch.inference_mode():
                diff = (first(spec(x)) - first(tv(x))).abs().max().item()
            ta, tb, ratio, iqr = bench(spec, tv, x, args.repeats, args.warmup)
            worst = max(worst, ratio)
            print(f"{name:<11}{batch:>6}{ta * 1e3:>11.1f}{tb * 1e3:>11.1f}{ratio:>9.3f}{iqr:>7.3f}{diff:>12.2e}",
                  flush=True)
    print(f"\nworst spec/torchvision ratio: {worst:.3f} (target <= 1.00 within noise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
