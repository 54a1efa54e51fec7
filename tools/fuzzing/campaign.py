"""A fuzz run: draw inputs from every generator, run them, collect findings, minimise one reproducer
per finding into the corpus, and report the figures."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .bombs import Bombs
from .case import Case, Parts, blob, can_make_devices, join
from .fscases import FsCases
from .grammar import Coverage, Deriver
from .minimize import Minimizer
from .mutate import Mutator
from .oracle import Finding, findings
from .sandbox import Limits, Result, Sandbox, warm_up
from .seeds import load_seeds, valid_seeds
from .synth import Synth

# How often each generator is drawn (relative weights).
MIX = {"synth": 18, "grammar": 10, "mutate-tokens": 26, "mutate-bytes": 14, "bomb": 6, "fs-cli": 12, "corpus": 4,
       "synth-mutate": 10}


@dataclass
class Record:
    finding: Finding
    case: Case
    count: int = 0
    origins: Counter = field(default_factory=Counter)


@dataclass
class Stats:
    inputs: int = 0
    seconds: float = 0.0
    max_rss: int = 0
    max_wall: float = 0.0
    by_generator: Counter = field(default_factory=Counter)
    ok_by_generator: Counter = field(default_factory=Counter)  # exit 0: reached the end of the pipeline
    by_class: Counter = field(default_factory=Counter)  # inputs with a finding of that class
    rules: set[str] = field(default_factory=set)
    refused: int = 0  # generated cases the sandbox refused as unsafe (a generator bug)


class Generator:
    """A deterministic stream of cases for one seed."""

    def __init__(self, seed: int, corpus: list[Case] | None = None, devices: bool | None = None):
        self.rng = random.Random(seed)
        self.seeds = load_seeds()
        self.mutator = Mutator(self.rng, self.seeds)
        self.deriver = Deriver(self.rng)
        self.synth = Synth(self.rng)
        self.bombs = Bombs(self.rng)
        self.devices = can_make_devices() if devices is None else devices
        small = [s.files[s.main] for s in valid_seeds(small=True)]
        self.fs = FsCases(self.rng, small, self.devices)
        self.corpus = corpus or []

    def set_valid(self, specs: list[bytes]) -> None:
        """The small specs that do check (found by running them): what the file-system cases use."""
        if specs:
            self.fs.valid = specs

    def __iter__(self) -> Iterator[Case]:
        kinds = [k for k in MIX if k != "corpus" or self.corpus]
        weights = [MIX[k] for k in kinds]
        while True:
            kind = self.rng.choices(kinds, weights)[0]
            case = getattr(self, "_" + kind.replace("-", "_"))()
            if not case.origin.startswith(kind):
                case.origin = f"{kind}:{case.origin}" if case.origin else kind
            yield case

    # ---- spec cases: a spec and a command ---------------------------------------------------------

    def command(self, main: str, extra: list[str] | tuple = ()) -> list[str]:
        rng = self.rng
        r = rng.random()
        if r < 0.45:
            args = ["check", main] + (["--format", "json"] if rng.random() < 0.1 else [])
        elif r < 0.63:
            args = ["summary", main]
            if rng.random() < 0.3:
                args += rng.choice((["--depth", "1"], ["--depth", "2"], ["--format", "json"], ["--format", "csv"],
                                    ["--format", "markdown"]))
        elif r < 0.78:
            args = ["compile", main, "-o", "-"]
        elif r < 0.90:
            args = ["render", main, "-o", "-"] + (["--expand"] if rng.random() < 0.2 else [])
        elif r < 0.95:
            args = ["compile", main, "-o", "out.py"]
        else:
            args = ["render", main, "-o", rng.choice(("out.svg", "out.dot"))]
        return args + list(extra)

    def _spec_case(self, files: dict[str, Parts], main: str, extra=(), origin: str = "") -> Case:
        return Case(self.command(main, extra), files, main=main, origin=origin)

    def _synth(self) -> Case:
        text, extra = self.synth.spec()
        return self._spec_case({"net.cnn": blob(text)}, "net.cnn", extra, "synth")

    def _synth_mutate(self) -> Case:
        text, extra = self.synth.spec()
        text = self.mutator.tokens(text)
        return self._spec_case({"net.cnn": blob(text)}, "net.cnn", extra, "synth-mutate")

    def _grammar(self) -> Case:
        if self.rng.random() < 0.6:
            text = self.deriver.derive("start")
        else:  # a derived statement inside a drawn network: the derivation reaches the elaborator
            base, _ = self.synth.spec()
            stmt = self.deriver.derive("stmt")
            at = base.find("\n", base.find("input "))
            text = base[:at + 1] + "    " + stmt + "\n" + base[at + 1:]
        return self._spec_case({"net.cnn": blob(text)}, "net.cnn", (), "grammar")

    def _seed(self):
        valid = [s for s in self.seeds if s.valid]
        seed = self.rng.choice(valid if valid and self.rng.random() < 0.75 else self.seeds)
        # mostly the main file; sometimes a file it imports
        target = seed.main if len(seed.files) == 1 or self.rng.random() < 0.7 else self.rng.choice(list(seed.files))
        return seed, target

    def _mutate_tokens(self) -> Case:
        seed, target = self._seed()
        files = {p: blob(d) for p, d in seed.files.items()}
        files[target] = blob(self.mutator.tokens(seed.files[target].decode("utf-8", "replace")))
        return self._spec_case(files, seed.main, seed.args, f"mutate-tokens:{seed.name}")

    def _mutate_bytes(self) -> Case:
        seed, target = self._seed()
        files = {p: blob(d) for p, d in seed.files.items()}
        files[target] = blob(self.mutator.bytes(seed.files[target]))
        return self._spec_case(files, seed.main, seed.args, f"mutate-bytes:{seed.name}")

    def _bomb(self) -> Case:
        family, files, main = self.bombs.draw()
        return self._spec_case(files, main, (), f"bomb:{family}")

    def _fs_cli(self) -> Case:
        return self.fs.draw()

    def _corpus(self) -> Case:
        base = self.rng.choice(self.corpus)
        case = Case.from_json(base.to_json())
        if case.main in case.files and len(case.files[case.main]) == 1 and case.files[case.main][0][1] == 1:
            data = join(case.files[case.main])
            data = (self.mutator.bytes(data) if self.rng.random() < 0.3
                    else self.mutator.tokens(data.decode("utf-8", "replace")).encode("utf-8", "surrogatepass"))
            case.files[case.main] = blob(data)
        case.origin = f"corpus:{base.origin}"
        return case


class Campaign:
    def __init__(self, *, seed: int = 0, inputs: int = 1000, jobs: int = 2, limits: Limits | None = None,
                 corpus: Path | None = None, minimize: bool = False, max_seconds: float | None = None,
                 write_corpus: bool = True, log=print):
        self.seed, self.inputs, self.jobs = seed, inputs, jobs
        self.limits = limits or Limits()
        self.corpus_dir = corpus
        self.minimize = minimize
        self.max_seconds = max_seconds
        self.write_corpus = write_corpus
        self.log = log
        self.stats = Stats()
        self.records: dict[str, Record] = {}
        self.coverage = Coverage()

    def run(self) -> Stats:
        warm_up()
        corpus = [c for _, c in load_corpus(self.corpus_dir)] if self.corpus_dir else []
        gen = Generator(self.seed, corpus)
        started = self._started = time.monotonic()
        with Sandbox(self.limits, self.jobs, coverage=self.coverage) as sandbox:
            gen.set_valid(self._valid_small(sandbox, gen))
            for res in sandbox.run_many(self._cases(gen, started)):
                self._record(res)
            self.stats.seconds = time.monotonic() - started
            if self.minimize and self.corpus_dir and self.write_corpus:
                self._minimise_all(sandbox)
        return self.stats

    def _cases(self, gen: Generator, started: float) -> Iterator[Case]:
        produced = 0
        for case in gen:
            if produced >= self.inputs or (self.max_seconds and time.monotonic() - started > self.max_seconds):
                return
            try:
                case.check_safe(Path("/box"))
            except ValueError:
                self.stats.refused += 1
                continue
            produced += 1
            yield case

    def _valid_small(self, sandbox: Sandbox, gen: Generator) -> list[bytes]:
        candidates = [Case(["check", "net.cnn"], {"net.cnn": blob(d)}) for d in gen.fs.valid]
        return [join(r.case.files["net.cnn"]) for r in sandbox.run_many(candidates)
                if r.status == 0 and not findings(r, sandbox.limits)]

    def _record(self, res: Result) -> None:
        st = self.stats
        st.inputs += 1
        family = res.case.origin.split(":")[0]
        st.by_generator[family] += 1
        if res.status == 0:
            st.ok_by_generator[family] += 1
        st.max_rss = max(st.max_rss, res.max_rss)
        st.max_wall = max(st.max_wall, res.wall_s)
        st.rules.update(res.rules)
        found = findings(res, self.limits)
        for cls in {f.cls for f in found}:
            st.by_class[cls] += 1
        for f in found:
            rec = self.records.get(f.key)
            if rec is None:
                rec = self.records[f.key] = Record(f, res.case)
                self.log(f"  new finding #{len(self.records)} [{f.cls}] {f.signature}: {f.detail[:150]}"
                         f"  (input {st.inputs}, {res.case.origin}, {' '.join(map(ascii, res.case.args))[:80]})")
            elif res.case.size() < rec.case.size() and res.case.origin.split(":")[0] == rec.case.origin.split(":")[0]:
                rec.case = res.case  # keep the smallest example
            rec.count += 1
            rec.origins[family] += 1
        if st.inputs % 1000 == 0:
            self.log(f"  {st.inputs:,} inputs, {len(self.records)} distinct findings, "
                     f"{time.monotonic() - self._started:.0f} s")

    def _minimise_all(self, sandbox: Sandbox) -> None:
        minimizer = Minimizer(sandbox)
        for key, rec in sorted(self.records.items()):
            name = corpus_name(rec.finding)
            if (self.corpus_dir / f"{name}.cnn").exists() or (self.corpus_dir / f"{name}.json").exists():
                continue
            self.log(f"  minimising {key} ...")
            small = minimizer.minimize(rec.case, rec.finding)
            rec.case = small
            write_entry(self.corpus_dir, name, small, rec.finding)

    def coverage_figures(self) -> tuple[int, int, int, int]:
        rules = {r for r in self.stats.rules if not r.startswith("$")}
        terms = {r[1:] for r in self.stats.rules if r.startswith("$")}
        return (len(rules & self.coverage.rules), len(self.coverage.rules), len(terms & self.coverage.terminals),
                len(self.coverage.terminals))

    def report(self) -> str:
        st = self.stats
        rate = st.inputs / st.seconds if st.seconds else 0.0
        r_cov, r_all, t_cov, t_all = self.coverage_figures()
        missing = sorted(self.coverage.rules - st.rules)
        lines = [
            "",
            f"inputs            {st.inputs:,} in {st.seconds:.0f} s ({rate:.1f} inputs/s, {self.jobs} jobs, "
            f"seed {self.seed})",
            f"grammar rules     {r_cov}/{r_all} ({100 * r_cov / max(1, r_all):.0f} %) of rules and aliases; "
            f"terminals {t_cov}/{t_all}" + (f"; not reached: {', '.join(missing)}" if missing else ""),
            f"peak memory       {st.max_rss / (1 << 20):.0f} MB (max RSS of one input); "
            f"longest input {st.max_wall:.1f} s",
            "",
            "findings by class (inputs)",
        ]
        from .oracle import CLASSES

        for cls in CLASSES:
            distinct = sum(1 for r in self.records.values() if r.finding.cls == cls)
            lines.append(f"  {cls:<18} {st.by_class[cls]:>7,}  ({distinct} distinct)")
        lines += ["", "generator           inputs   exit 0"]
        for g, n in sorted(st.by_generator.items()):
            lines.append(f"  {g:<16} {n:>8,}   {100 * st.ok_by_generator[g] / n:5.1f} %")
        if self.records:
            lines += ["", "distinct findings"]
            for _, rec in sorted(self.records.items()):
                lines.append(f"  [{rec.finding.cls}] {rec.finding.signature}  x{rec.count}: {rec.finding.detail[:140]}")
        if st.refused:
            lines.append(f"\n(refused {st.refused} unsafe generated cases)")
        return "\n".join(lines)

    def failed(self) -> bool:
        return bool(self.records)

    def to_json(self) -> dict:
        r_cov, r_all, t_cov, t_all = self.coverage_figures()
        st = self.stats
        return {"inputs": st.inputs, "seconds": st.seconds, "inputs_per_s": st.inputs / st.seconds if st.seconds else 0,
                "rules_covered": r_cov, "rules": r_all, "terminals_covered": t_cov, "terminals": t_all,
                "max_rss_mb": st.max_rss / (1 << 20), "by_class": dict(st.by_class),
                "findings": [{"class": r.finding.cls, "signature": r.finding.signature, "detail": r.finding.detail,
                              "count": r.count, "case": r.case.to_json()} for r in self.records.values()]}


# ---- the corpus ---------------------------------------------------------------------------------


def corpus_name(finding: Finding) -> str:
    import hashlib

    return f"{finding.cls}-{hashlib.sha256(finding.key.encode()).hexdigest()[:8]}"


def write_entry(folder: Path, name: str, case: Case, finding: Finding | None = None) -> None:
    """`name.cnn` (the main spec) and, unless the case is a plain `check` of it, `name.json` with the rest.
    A main spec of repeated parts or over 64 kB stays in the JSON only."""
    folder.mkdir(parents=True, exist_ok=True)
    data = case.to_json()
    if finding is not None:
        data["finding"] = {"class": finding.cls, "signature": finding.signature, "detail": finding.detail}
    main_inline = (case.main in case.files and len(case.files[case.main]) == 1 and case.files[case.main][0][1] == 1
                   and case.size() < 64_000)
    if main_inline:
        (folder / f"{name}.cnn").write_bytes(case.main_text())
        del data["files"][case.main]
        if case.is_plain_check():
            return
    (folder / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n")


def load_corpus(folder: Path | None) -> list[tuple[str, Case]]:
    """Every entry: `x.json` (with `x.cnn` as its main spec where present), or a bare `x.cnn` to check."""
    if folder is None or not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            case = Case.from_json(data)
            spec = path.with_suffix(".cnn")
            if spec.exists() and case.main is not None:
                case.files[case.main] = blob(spec.read_bytes())
            out.append((path.stem, case))
        elif path.suffix == ".cnn" and not path.with_suffix(".json").exists():
            out.append((path.stem, Case(["check", "net.cnn"], {"net.cnn": blob(path.read_bytes())}, origin="corpus")))
    return out


def replay(folder: Path, limits: Limits | None = None, jobs: int = 2) -> dict[str, list[Finding]]:
    """Run every corpus entry: name -> its findings (empty where the problem is fixed)."""
    warm_up()
    entries = load_corpus(folder)
    out: dict[str, list[Finding]] = {}
    with Sandbox(limits or Limits(), jobs) as sandbox:
        by_id = {id(c): name for name, c in entries}
        for res in sandbox.run_many([c for _, c in entries]):
            out[by_id[id(res.case)]] = findings(res, sandbox.limits)
    return dict(sorted(out.items()))


__all__ = ["Campaign", "Generator", "load_corpus", "write_entry", "replay", "corpus_name"]
