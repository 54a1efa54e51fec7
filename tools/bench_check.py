"""How fast the front end loads and checks a spec, in process (no interpreter start).

    python tools/bench_check.py [--repeats 15]

Prints the median time to load + check specs/resnet152.cnn, and for generated plain chains of
1,000 / 10,000 layers, with the time per layer, so growth can be read as linear or not. The
ratio column compares each run against the 1,000-layer chain measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import graphdsl

ROOT = Path(__file__).resolve().parent.parent


def chain(layers: int) -> str:
    """A spec of `layers` layers: conv/relu pairs at constant shape, then a head."""
    pairs = max(1, (layers - 3) // 2)
    body = "\n".join("    conv(16, 3, pad=1) relu" for _ in range(pairs))
    return f"network chain{layers} {{\n    input 16x32x32\n{body}\n    avgpool(global) flatten linear(10)\n}}\n"


def median_time(fn, repeats: int) -> float:
    fn()  # warm the parser cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cli_wall(spec: Path, repeats: int) -> float:
    """Wall time of `graphdsl check` as a user runs it, interpreter start included."""
    cmd = [sys.executable, "-m", "graphdsl.cli", "check", str(spec)]
    return median_time(lambda: subprocess.run(cmd, check=True, capture_output=True), repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    resnet = ROOT / "specs" / "resnet152.cnn"
    rows = [("specs/resnet152.cnn", len(graphdsl.load(resnet).graph) - 1,
             median_time(lambda: graphdsl.load(resnet), args.repeats))]
    for n in (1_000, 10_000):
        text = chain(n)
        rows.append((f"chain of {n:,} layers", len(graphdsl.load(text=text).graph) - 1,
                     median_time(lambda t=text: graphdsl.load(text=t), max(3, args.repeats // 3))))
    base = rows[1][2] / rows[1][1]
    print(f"{'spec':<26}{'layers':>8}{'median s':>11}{'us/layer':>10}{'vs 1k chain':>13}")
    for name, layers, t in rows:
        per = t / layers
        print(f"{name:<26}{layers:>8,}{t:>11.4f}{per * 1e6:>10.1f}{per / base:>12.2f}x")
    wall = cli_wall(resnet, max(3, args.repeats // 3))
    print(f"\n`graphdsl check specs/resnet152.cnn` wall time, interpreter start included: {wall:.3f} s")
    print(f"targets: resnet152 load+check <= 0.3 s ({'met' if rows[0][2] <= 0.3 else 'MISSED'}), "
          f"CLI <= 0.5 s ({'met' if wall <= 0.5 else 'MISSED'}), us/layer flat from 1k to 10k layers")


if __name__ == "__main__":
    main()
