"""Delta debugging of a failing case, while the same finding persists.

Files other than the main spec are dropped where they can be; then each file is reduced by lines,
then tokens, then characters (ddmin over complements: the complements of one partition are tried in
parallel, the first that still fails wins); files made of repeated parts have their repeat counts
halved and their parts dropped; options are dropped last. A budget of runs and seconds bounds it
(each try of a hang costs the whole time limit).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from .case import Case, Parts, join
from .mutate import tokens
from .oracle import Finding, findings
from .sandbox import Sandbox

# Findings about how much an input costs: reproducers keep a margin over the limit.
RESOURCE = ("hang", "memory", "flood")


class Budget(Exception):
    pass


def same_problem(found: Finding, target: Finding) -> bool:
    """Where a hang or a flood happens varies from run to run; its class and command do not."""
    if found.cls != target.cls:
        return False
    if found.cls in ("hang", "memory", "flood", "written-on-error", "exit-code"):
        return found.signature.split("@")[0].split(":")[0] == target.signature.split("@")[0].split(":")[0]
    return found.signature == target.signature


class Minimizer:
    def __init__(self, sandbox: Sandbox, max_runs: int = 200, max_seconds: float = 40.0):
        self.sandbox = sandbox
        self.max_runs = max_runs
        self.max_seconds = max_seconds

    def minimize(self, case: Case, target: Finding) -> Case:
        self.runs, self.started = 0, time.monotonic()
        best = case
        try:
            best = self._drop_files(best, target)
            order = [best.main] + [p for p in best.files if p != best.main]
            for path in order:
                if path in best.files:
                    best = self._reduce_file(best, path, target)
            best = self._drop_options(best, target)
        except Budget:
            pass
        return best

    # ---- running candidates ----------------------------------------------------------------------

    def _first_failing(self, candidates: list[Case], target: Finding) -> int | None:
        """The index of the first candidate that still shows the finding (run `jobs` at a time)."""
        jobs = self.sandbox.jobs
        for start in range(0, len(candidates), jobs):
            if self.runs >= self.max_runs or time.monotonic() - self.started > self.max_seconds:
                raise Budget
            batch = candidates[start:start + jobs]
            self.runs += len(batch)
            hits = []
            for res in self.sandbox.run_many(batch):
                if any(same_problem(f, target) for f in findings(res, self.sandbox.limits)):
                    hits.append(next(k for k, c in enumerate(batch) if c is res.case))
            if hits:
                return start + min(hits)
        return None

    def _ddmin(self, units: list, rebuild: Callable[[list], Case], target: Finding) -> list:
        n = 2
        while len(units) >= 2:
            chunk = -(-len(units) // n)
            parts = [(i, i + chunk) for i in range(0, len(units), chunk)]
            candidates = [units[:a] + units[b:] for a, b in parts]
            hit = self._first_failing([rebuild(c) for c in candidates], target)
            if hit is not None:
                units = candidates[hit]
                n = max(n - 1, 2)
            elif n >= len(units):
                break
            else:
                n = min(n * 2, len(units))
        return units

    # ---- the steps -------------------------------------------------------------------------------

    def _drop_files(self, case: Case, target: Finding) -> Case:
        keep = [p for p in case.files if p == case.main or p in case.secrets]
        others = [p for p in case.files if p not in keep]

        def build(subset: list[str]) -> Case:
            return replace(case, files={k: v for k, v in case.files.items() if k in keep or k in subset})

        if others and self._first_failing([build([])], target) is not None:
            return build([])
        return build(self._ddmin(others, build, target))

    def _reduce_file(self, case: Case, path: str, target: Finding) -> Case:
        parts = case.files[path]

        def with_parts(p: Parts) -> Case:
            return replace(case, files={**case.files, path: p})

        if len(parts) > 1 or (parts and parts[0][1] > 1):
            return self._reduce_parts(case, path, target)
        data = join(parts)
        if path in case.secrets or len(data) > 400_000:
            return case
        if target.cls in RESOURCE and len(data) > 2000:
            return self._reduce_lines(case, path, target)
        text = data.decode("utf-8", "surrogateescape")

        def rebuild(units: list[str]) -> Case:
            return with_parts([("".join(units).encode("utf-8", "surrogateescape"), 1)])

        units = self._ddmin(text.splitlines(keepends=True), rebuild, target)
        units = self._ddmin(tokens("".join(units)), rebuild, target)
        if len("".join(units)) < 3000:
            units = self._ddmin(list("".join(units)), rebuild, target)
        return rebuild(units)

    def _reduce_lines(self, case: Case, path: str, target: Finding) -> Case:
        """Lines only, for a big input that hangs or blows up (what it costs grows with its size: tokens
        and characters would only walk it down to the limit)."""
        lines = join(case.files[path]).splitlines(keepends=True)

        def build(units: list[bytes]) -> Case:
            return replace(case, files={**case.files, path: [(b"".join(units), 1)]})

        return build(self._ddmin(lines, build, target))

    def _reduce_parts(self, case: Case, path: str, target: Finding) -> Case:
        parts = list(case.files[path])

        def build(p: Parts) -> Case:
            return replace(case, files={**case.files, path: p})

        parts = self._ddmin(parts, build, target)
        for i in range(len(parts)):
            halved = False
            while parts[i][1] > 1:
                trial = parts[:i] + [(parts[i][0], parts[i][1] // 2)] + parts[i + 1:]
                if self._first_failing([build(trial)], target) is None:
                    break
                parts, halved = trial, True
            if halved and target.cls in RESOURCE:  # a margin: twice the count that still failed
                parts[i] = (parts[i][0], parts[i][1] * 2)
        return build(parts)

    def _drop_options(self, case: Case, target: Finding) -> Case:
        args = list(case.args)
        i = 2
        while i < len(args):
            width = 2 if args[i] in ("-D", "--network", "--depth", "--format", "--ops", "--device") else 1
            if args[i] in ("-o", "--output") and case.command in ("compile", "render"):
                i += 2
                continue
            trial = replace(case, args=args[:i] + args[i + width:])
            if self._first_failing([trial], target) is not None:
                args = trial.args
                case = trial
            else:
                i += width
        return case
