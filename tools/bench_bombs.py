"""The tiny-spec bombs of issue 8, each through the real CLI: wall time, peak memory, exit code and the
first line of the diagnostic. Every bomb must end in under a second and 200 MB with a located error.

    python tools/bench_bombs.py [--command check|summary|render|compile]

Each run is a fresh `graphdsl` process (its interpreter start, ~0.3 s, included), measured with wait4.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRAPHDSL = [sys.executable, "-m", "graphdsl.cli"]


def net(body: str, blocks: str = "", params: str = "") -> str:
    return f"{blocks}\nnetwork bomb{params} {{\n    input 3x8x8\n    {body}\n}}\n"


def sharing() -> str:
    lines = ["let a0 = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    lines += [f"let a{i} = [{', '.join([f'a{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n    ".join(lines)


BOMBS = {
    "nested loops 1e5 x 1e5": net("for i in range(100000) { for j in range(100000) { } }"),
    "[[[ ] * 1e5] * 1e5] * 1e5": net("[[[ ] * 100000] * 100000] * 100000"),
    "40 blocks each calling the next twice": "\n".join(
        ["block b0() { relu }"] + [f"block b{i}() {{ b{i - 1}() b{i - 1}() }}" for i in range(1, 41)]) + net("b40()"),
    "[[conv * 1000] * 1000] * 1000": net("[[conv(8, 1) * 1000] * 1000] * 1000"),
    "list by sharing, 1e9 elements": net(sharing() + "\n    conv(a8, 3)"),
    "the same list as a block argument": "block b(x) { relu }\n" + net(sharing() + "\n    b(a8)"),
    "100,000 errors from one loop": net("for i in range(100000) { let x = u }"),
    "60,000 `=` on one line": net("= " * 60000),
    "4,000 unknown x 4,000 known names": "network bomb(" + ", ".join(f"k{i} = 1" for i in range(4000)) + ") {\n"
    "    input 3x8x8\n" + "".join(f"    conv(u{i}, 1)\n" for i in range(4000)) + "}\n",
    "2 MB list literal": net("let x = [" + ", ".join(["1"] * 700_000) + "]"),
    "range(2**63)": net("let x = range(9223372036854775807)\n    relu"),
    "5,000-digit integer": net("let x = " + "9" * 5000 + "\n    relu"),
    "5,000-digit input size": "network bomb {\n    input 3x" + "9" * 5000 + "x8\n    relu\n}\n",
    "lists nested 400 deep": net("let x = " + "[" * 400 + "1" + "]" * 400 + "\n    relu"),
    "string doubled 20 times": net('let s = "a"\n    for i in range(20) { let s = s + s }\n    relu'),
}


def run(command: str, spec: Path) -> tuple[float, int, int, str]:
    """(seconds, peak RSS in MB, exit code, first stderr line)."""
    args = [*GRAPHDSL, command, str(spec)] + (["-o", "-"] if command in ("render", "compile") else [])
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    first = next((line for line in err.splitlines() if line.strip()), "")
    return seconds, usage.ru_maxrss // 1024, code, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--command", default="check", choices=["check", "summary", "render", "compile"])
    args = parser.parse_args()
    worst = (0.0, 0)
    print(f"{'bomb':40} {'wall':>7} {'peak':>7} {'exit':>4}  diagnostic")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in BOMBS.items():
            spec = Path(tmp) / "bomb.cnn"
            spec.write_text(text)
            seconds, mb, code, first = run(args.command, spec)
            worst = (max(worst[0], seconds), max(worst[1], mb))
            shown = first if len(first) <= 110 else first[:107] + "..."
            print(f"{name:40} {seconds:6.2f}s {mb:5d}MB {code:4d}  {shown.replace(tmp, '')}")
    print(f"worst: {worst[0]:.2f} s, {worst[1]} MB (target: < 1 s, < 200 MB, each a located error, exit 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
