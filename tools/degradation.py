"""The seed's degradation experiment (He et al. 2016, figure 6): plain-20 and plain-56 against ResNet-20 and
ResNet-56 on the same data, the curves overlaid by `graphdsl compare`.

    python tools/degradation.py                                   # digits resized to 32x32 (no CIFAR here)
    python tools/degradation.py --data ~/cifar-10-batches-py      # the paper's setting on real CIFAR-10
    python tools/degradation.py --epochs 2 --limit-batches 3      # a smoke run

Each network trains with `graphdsl train` (a subprocess each, `--jobs` of them at a time, `--threads` CPU
threads each) into RUN_ROOT/NAME; then `graphdsl compare` draws training error (dashed) and validation
error (solid) per epoch into `-o` (default docs/images/degradation.png), and the final figures are
printed as a table.

Recipes: `digits` (the default for --data digits): 8 epochs, batch 64, SGD lr 0.1, momentum 0.9, weight
decay 1e-4, constant rate (the paper's first phase), digits' default augmentation (1-pixel shifts).
`paper` (the default for any other --data): the paper's section 4.2: batch 128, lr 0.1 divided by 10 at
32k and 48k iterations, stopped at 64k (epochs 82, 123 and 164 of CIFAR-10's 50k images at 391
batches each), weight decay 1e-4, momentum 0.9, 4-pixel padded crops and flips.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ["plain20", "plain56", "resnet20", "resnet56"]
RECIPES = {
    "digits": {"epochs": 8, "batch-size": 64, "lr": 0.1, "momentum": 0.9, "weight-decay": 1e-4, "schedule": "none"},
    "paper": {"epochs": 164, "batch-size": 128, "lr": 0.1, "momentum": 0.9, "weight-decay": 1e-4,
              "schedule": "multistep", "milestones": "82,123"},
}


def train_command(args, name: str) -> list[str]:
    recipe = dict(RECIPES[args.recipe])
    if args.epochs:
        recipe["epochs"] = args.epochs
    command = [sys.executable, "-m", "graphdsl.train", str(ROOT / "specs" / "cifar" / f"{name}.cnn"),
               "--data", args.data, "--out", str(args.runs / name), "--seed", str(args.seed)]
    for option, value in recipe.items():
        command += [f"--{option}", str(value)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.limit_batches:
        command += ["--limit-batches", str(args.limit_batches)]
    if args.device != "cpu":
        command += ["--device", args.device]
    if (args.runs / name / "checkpoint.pt").exists():
        command.append("--resume")  # a stopped experiment continues where it was
    return command


def train(args, name: str) -> tuple[str, int, float, str]:
    start = time.perf_counter()
    result = subprocess.run(train_command(args, name), capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return name, result.returncode, time.perf_counter() - start, result.stdout + result.stderr


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", help="digits (default) or a folder of CIFAR-10 python batches")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                        help="digits or paper (default: digits for --data digits, else paper)")
    parser.add_argument("--epochs", type=int, default=None, help="instead of the recipe's")
    parser.add_argument("--limit-batches", type=int, default=None)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "degradation", help="RUN_ROOT")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "images" / "degradation.png")
    parser.add_argument("--jobs", type=int, default=2, help="networks trained at the same time")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per training process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.recipe = args.recipe or ("digits" if args.data == "digits" else "paper")
    sys.path.insert(0, str(ROOT))

    failed = False
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # The deep nets first: they take longest.
        for name, code, seconds, output in pool.map(lambda n: train(args, n), ["plain56", "resnet56", "plain20",
                                                                                 "resnet20"]):
            print(f"{name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
            if code:
                print(output, file=sys.stderr)
                failed = True
    if failed:
        return 1
    from graphdsl.train.commands import compare
    from graphdsl.train.plot import read_metrics

    title = (f"plain vs residual nets on {'digits (8x8, resized to 32x32)' if args.data == 'digits' else args.data}, "
             f"{args.recipe} recipe")
    compare.main([*(str(args.runs / n) for n in NETWORKS), "-o", str(args.output), "--metric", "error",
                  "--metric", "train_loss", "--title", title], standalone_mode=False)
    print(f"\n{'network':<10}{'epochs':>7}{'train error':>13}{'val error':>11}{'train loss':>12}{'s/epoch':>9}")
    for name in NETWORKS:
        rows = read_metrics(args.runs / name)
        last = rows[-1]
        seconds = sum(r["seconds"] for r in rows) / len(rows)
        print(f"{name:<10}{len(rows):>7}{100 * (1 - last['train_top1']):>12.2f}%{100 * (1 - last['val_top1']):>10.2f}%"
              f"{last['train_loss']:>12.4f}{seconds:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
