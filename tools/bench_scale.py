"""How the back ends scale on big but plausible specs, against `check` on the same spec, in one process.

    python tools/bench_scale.py [--scale 1.0] [--dot] [--only chain,concat,named]

Three specs: a chain of 100,000 layers (`conv(8, 1) * 100000`), a 20,000-way concat (`concat { for ... }`)
and 12,000 named tensors (side branches `t0 = relu` ... written out, merged by one `concat(t0, ...)`).
For each it times

- check:   graphdsl.load (parse, elaborate, passes) and Network.figures(), what `graphdsl check` does;
- summary: the summary table's text (Summary(...).table()), and its JSON text (Summary(...).json());
- compile: the PyTorch source (backends.torch.generate; torch is not imported);
- render:  the DOT source of the diagram as `graphdsl render` draws it (auto_depth, then diagram);
           with --dot also `dot -Tsvg` on it, under the backend's time limit.

and prints a table with each back end's time as a ratio of check's. The target (issue 8) is summary and
compile within 3x of check. `--scale 0.1` runs the same shapes at a tenth of the size.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The default limit of 30,000 layers keeps every command on any spec within about 5 s; the scaling
# measured here is that of networks past it, which a user allows the same way.
os.environ.setdefault("GRAPHDSL_MAX_LAYERS", "1000000")

import graphdsl  # noqa: E402
from graphdsl.backends import dot  # noqa: E402
from graphdsl.backends import torch as backend  # noqa: E402
from graphdsl.backends.summary import Summary  # noqa: E402


def chain(n: int) -> str:
    return f"network chain {{\n    input 8x4x4\n    conv(8, 1) * {n}\n}}\n"


def concat(n: int) -> str:
    return f"network wide {{\n    input 8x4x4\n    concat {{ for i in range({n}) {{ conv(1, 1) }} }}\n}}\n"


def named(n: int) -> str:
    lines = [f"    t{i} = relu" for i in range(n)]  # short lines: a spec may have 200,000 tokens
    merge = ", ".join(f"t{i}" for i in range(n))
    return "network named {\n    input 8x4x4\n" + "\n".join(lines) + f"\n    concat({merge})\n}}\n"


SPECS = {"chain": (chain, 100_000, "chain of {:,} layers"), "concat": (concat, 20_000, "{:,}-way concat"),
         # 12,000: written out (a bind and a use each), more goes past the 100,000 tokens a file may have
         "named": (named, 12_000, "{:,} named tensors")}


def timed(fn):
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench(text: str, with_dot: bool) -> dict:
    times: dict[str, float] = {}
    times["check"], net = timed(lambda: (lambda n: (n, n.figures()))(graphdsl.load(text=text))[0])
    times["summary"], _ = timed(lambda: Summary(net.graph).table())
    times["summary json"], _ = timed(lambda: Summary(net.graph).json())
    times["compile"], gen = timed(lambda: backend.generate(net))

    def render():
        depth = dot.auto_depth(net.graph)
        return dot.diagram(net.graph, depth=depth).source

    times["render (DOT)"], source = timed(render)
    if with_dot:
        def draw():
            try:
                return dot.run_dot(source, "svg")
            except (OSError, dot.ExecutableNotFound) as e:
                return e
        times["dot -Tsvg"], _ = timed(draw)
    times["_boxes"] = source.count("tooltip=")
    times["_layers"] = len(net.graph) - 1
    times["_lines"] = gen.source.count("\n")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    ap.add_argument("--dot", action="store_true", help="also run graphviz's dot on the diagram")
    ap.add_argument("--only", default=",".join(SPECS), help="comma-separated: " + ", ".join(SPECS))
    args = ap.parse_args()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    rows = []
    for key in args.only.split(","):
        make, size, title = SPECS[key]
        n = max(2, int(size * args.scale))
        rows.append((title.format(n), bench(make(n), args.dot)))
    cols = [c for c in rows[0][1] if not c.startswith("_")]
    head = f"{'spec':<26}{'layers':>8}" + "".join(f"{c:>18}" for c in cols) + f"{'boxes':>7}"
    print(head)
    print("-" * len(head))
    for title, t in rows:
        cells = [f"{t['check']:.2f} s" if c == "check" else f"{t[c]:.2f} s {t[c] / t['check']:4.2f}x" for c in cols]
        print(f"{title:<26}{t['_layers']:>8,}" + "".join(f"{c:>18}" for c in cells) + f"{t['_boxes']:>7,}")
    worst = max(t[c] / t["check"] for _, t in rows for c in ("summary", "compile"))
    print(f"\nworst of summary/compile vs check: {worst:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
