"""The oracle, tested: stand-ins for graphdsl that misbehave on purpose, one per finding class, must
each be caught, and a well-behaved run must not be. (A fuzzer whose oracle cannot fail proves
nothing.)"""

from __future__ import annotations

import os
import signal
import sys
import time

from .case import Case, blob
from .oracle import findings
from .sandbox import Limits, Sandbox, default_entry, warm_up

SPEC = "network ok { input 3x8x8 conv(4, 3, pad=1) relu avgpool(global) flatten linear(2) }\n"


def _misbehave(args: list[str]) -> None:
    """A stand-in CLI: `args[0]` says how to misbehave."""
    how = args[0]
    if how == "raise":
        raise ValueError("deliberate")
    if how == "hang":
        time.sleep(60)
    if how == "memory":
        # one allocation past the 1 GB limit fails at once (MemoryError); filling blocks up to the limit
        # took over the 2 s time limit on a loaded machine and read as a hang
        blocks = [bytearray(64 << 20), bytearray(4 << 30)]
        print(len(blocks))
    if how == "terminal":
        print("net.cnn:1:1: error: \x1b]0;owned\x07")
        sys.exit(1)
    if how == "bidi":
        print("ok: network `a\u202eb`")
        return
    if how == "exit":
        sys.exit(7)
    if how == "written":
        with open("out.py", "w") as f:
            f.write("partial")
        sys.exit(1)
    if how == "clobber":
        with open("net.cnn", "w") as f:
            f.write("")
        return
    if how == "device":
        os.unlink("null")
        with open("null", "w") as f:
            f.write("x")
        return
    if how == "disclose":
        with open("../outside/secret.txt") as f:
            print("error: " + f.read().splitlines()[0], file=sys.stderr)
        sys.exit(1)
    if how == "flood":
        sys.stderr.write("error: x\n" * 300_000)
        sys.exit(1)
    if how == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "reject":
        sys.exit(1)
    if how == "fine":
        print("net.cnn: ok")
        return
    default_entry(args)


CASES: list[tuple[str, Case]] = [
    ("traceback", Case(["raise"])),
    ("hang", Case(["hang"])),
    ("memory", Case(["memory"])),
    ("terminal", Case(["terminal"])),
    ("terminal", Case(["bidi"])),
    ("exit-code", Case(["exit"])),
    ("written-on-error", Case(["written"])),
    ("clobbered", Case(["clobber"], {"net.cnn": blob(SPEC)})),
    ("clobbered", Case(["device"], devices={"null": "null"})),
    ("disclosure", Case(["disclose"], {"../outside/secret.txt": blob("FUZZ-SECRET the quick brown fox\n")},
                        secrets=["../outside/secret.txt"])),
    ("flood", Case(["flood"])),
    ("crash", Case(["crash"])),
    ("wrong-reject", Case(["reject"], {"net.cnn": blob(SPEC)}, expect_ok=True)),
    (None, Case(["fine"], {"net.cnn": blob(SPEC)})),
    (None, Case(["check", "net.cnn"], {"net.cnn": blob(SPEC)}, expect_ok=True)),
    (None, Case(["compile", "net.cnn", "-o", "out.py"], {"net.cnn": blob(SPEC)}, expect_ok=True)),
]


def run(log=print) -> bool:
    """Run every stand-in; True when each is caught as its class (and the clean ones are clean)."""
    from .case import can_make_devices

    warm_up()
    ok = True
    cases = [(cls, c) for cls, c in CASES if can_make_devices() or not c.devices]
    with Sandbox(Limits(time_s=2.0, memory_mb=1024), jobs=2, entry=_misbehave) as sandbox:
        expected = {id(c): cls for cls, c in cases}
        for res in sandbox.run_many([c for _, c in cases]):
            want = expected[id(res.case)]
            got = {f.cls for f in findings(res, sandbox.limits)}
            good = (want in got) if want else not got
            ok &= good
            log(f"{'ok  ' if good else 'FAIL'} {res.case.args[0]:<10} expected {want or 'nothing'}, "
                f"found {', '.join(sorted(got)) or 'nothing'}")
    return ok
