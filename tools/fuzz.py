"""Fuzz graphdsl with hostile input: no hangs, no blow-ups, no tracebacks, no terminal injection.

    python tools/fuzz.py --inputs 100000                     # the long run (2 jobs, seed 0)
    python tools/fuzz.py --inputs 2000 --seed 7 --minimize   # find, minimise, add to tests/fuzz_corpus
    python tools/fuzz.py --replay                            # run the corpus: which findings remain

Inputs come from graphdsl's grammar (random derivations, alone and inside drawn networks), from
well-formed networks drawn construct by construct, from token- and byte-level mutations of every
shipped spec, doc example and malformed test spec, from resource bombs, and from file-system and
command-line cases (FIFOs, private device nodes, odd paths, outputs aimed at inputs, closed and
full stdout, odd options). Each runs in a forked child (or, where the interpreter's exit matters,
a fresh `graphdsl` process) with a wall-time, memory and file-size limit, in a fresh folder.
Findings are listed by class and signature; with --minimize, one delta-debugged reproducer per
signature goes to the corpus, which tests/test_fuzz.py replays. Exit status: 0 no finding, 1
findings.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzzing.campaign import Campaign, replay  # noqa: E402
from fuzzing.sandbox import Limits  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", type=int, default=1000, help="how many inputs (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="the random seed: the same seed draws the same inputs")
    p.add_argument("--jobs", type=int, default=2, help="inputs run at a time (default 2)")
    p.add_argument("--corpus", type=Path, default=ROOT / "tests" / "fuzz_corpus", help="the corpus folder")
    p.add_argument("--minimize", action="store_true", help="minimise one reproducer per new finding into the corpus")
    p.add_argument("--time-limit", type=float, default=5.0, help="seconds of wall time per input (more is a hang)")
    p.add_argument("--memory-limit-mb", type=int, default=1024, help="address space per input (more is a blow-up)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop drawing inputs after this long")
    p.add_argument("--no-corpus-seeds", action="store_true", help="do not mutate the corpus's entries")
    p.add_argument("--json", type=Path, default=None, help="also write the figures and findings as JSON here")
    p.add_argument("--replay", action="store_true", help="run the corpus entries only, and list what each still shows")
    p.add_argument("--self-test", action="store_true",
                   help="check the oracle: stand-ins that misbehave on purpose must each be caught")
    p.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    a = p.parse_args(argv)
    limits = Limits(time_s=a.time_limit, memory_mb=a.memory_limit_mb)

    if a.self_test:
        from fuzzing import selftest

        return 0 if selftest.run() else 1

    if a.replay:
        results = replay(a.corpus, limits, a.jobs)
        for name, found in results.items():
            details = "".join(f"\n       [{f.cls}] {f.detail[:150]}" for f in found)
            print(f"{'FAIL' if found else 'ok  '} {name}{details}")
        failing = sum(1 for f in results.values() if f)
        print(f"\n{len(results)} corpus entries, {failing} still failing")
        if a.json:
            a.json.write_text(json.dumps({n: [{"class": f.cls, "signature": f.signature, "detail": f.detail}
                                              for f in fs] for n, fs in results.items()}, indent=1))
        return 1 if failing else 0

    log = (lambda *x: None) if a.quiet else (lambda *x: print(*x, flush=True))
    campaign = Campaign(seed=a.seed, inputs=a.inputs, jobs=a.jobs, limits=limits,
                        corpus=None if a.no_corpus_seeds and not a.minimize else a.corpus, minimize=a.minimize,
                        max_seconds=a.max_seconds, log=log)
    print(f"fuzzing graphdsl: {a.inputs:,} inputs, seed {a.seed}, {a.jobs} jobs, {a.time_limit:g} s and "
          f"{a.memory_limit_mb} MB per input", flush=True)
    campaign.run()
    print(campaign.report())
    if a.json:
        a.json.write_text(json.dumps(campaign.to_json(), indent=1))
    return 1 if campaign.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
