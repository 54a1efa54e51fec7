"""How long one reanalysis takes in the language server, against `graphdsl check`'s in-process path.

    python tools/bench_lsp.py [SPEC] [-n N]

One reanalysis is what the server does after each edit settles: parse the document and its imports,
elaborate each network of the file with its defaults, run the passes (`graphdsl.lsp.analysis.analyse`).
The peer is `graphdsl.api.load_spec`, what `graphdsl check` runs in process, on the same spec. Also timed:
the reanalysis of the library `specs/lib/resnet.cnn` alone (elaborated through the first spec beside it
that imports it), a hover on the bottleneck's `conv2` (it indexes the IR once per analysis), and a
completion. Prints the
median of N runs of each and the ratio to the peer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphdsl.api import load_spec  # noqa: E402
from graphdsl.lsp.analysis import analyse, analyse_document  # noqa: E402
from graphdsl.lsp.completion import complete  # noqa: E402
from graphdsl.lsp.hover import hover  # noqa: E402


def median_ms(fn, n: int) -> float:
    fn()  # warm: the grammar, the registry
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "resnet152.cnn"))
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    spec = os.path.abspath(args.spec)
    text = Path(spec).read_text()

    check = median_ms(lambda: load_spec(Path(spec), None, None, {}), args.n)
    reanalysis = median_ms(lambda: analyse(text, spec), args.n)

    lib = ROOT / "specs" / "lib" / "resnet.cnn"
    lib_text = lib.read_text()
    lib_analysis = analyse(lib_text, str(lib))
    library = median_ms(lambda: analyse_document(lib_text, str(lib)), args.n)
    deps = analyse(text, spec).elaborations
    row = next(i for i, line in enumerate(lib_text.split("\n"), 1) if "conv2: conv(width" in line)

    def hover_conv2():
        deps[0]._by_span = None  # the index is built once per analysis: count it
        return hover(lib_analysis, row, 10, deps)

    hovering = median_ms(hover_conv2, args.n)
    typed = text + "\nnetwork x {\n    input 3x32x32\n    conv(8, 3, "
    last = typed.split("\n")
    completing = median_ms(lambda: complete(typed, len(last), len(last[-1]) + 1, lib_analysis), args.n)

    print(f"spec: {os.path.relpath(spec, ROOT)} (median of {args.n})")
    print(f"  graphdsl check, in process (peer)  {check:8.1f} ms")
    print(f"  lsp reanalysis                     {reanalysis:8.1f} ms   ({reanalysis / check:.2f}x the peer)")
    print(f"  lsp reanalysis of lib/resnet.cnn   {library:8.1f} ms   (its blocks elaborated by a spec importing it)")
    print(f"  lsp hover on conv2 (50 instances)  {hovering:8.1f} ms")
    print(f"  lsp completion after `conv(`       {completing:8.1f} ms")


if __name__ == "__main__":
    main()
