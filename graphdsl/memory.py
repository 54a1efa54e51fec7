"""Training and inference memory of a network, from the checked IR alone (no torch).

What one training step holds: parameters, gradients, optimizer state, buffers, and the tensors
autograd saves for the backward pass, which each op declares (`Op.saved_for_backward`), counted once
per storage as PyTorch holds them (an in-place ReLU shares its input's storage, a view keeps its base);
plus the transient tensors of a schedule that runs the forward in graph order and the backward in
reverse. Inference memory is the peak of the live activations of that schedule, a tensor freed after
its last consumer. docs/memory.md says what is modelled and where a real run differs.

Every figure is affine in the batch N (`const + per_sample * N`), so the peak, a maximum over the
schedule's steps, is the largest of a few lines, and the largest batch that fits a budget has a
closed form.

>>> import graphdsl
>>> net = graphdsl.load(text="network n { input 3x32x32  conv(8, 3)  bn  relu(inplace=true) }")
>>> report = memory_report(net.graph, batch=2, optimizer="sgd-momentum")
>>> report.parameters, report.gradients, report.optimizer_state, report.saved
(960, 960, 960, 139840)
>>> parse_size("3GiB"), parse_size("3GB"), parse_size("1.5G")
(3221225472, 3000000000, 1610612736)
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field

import networkx as nx

from .ops import REGISTRY, Saved, numel
from .passes import inputs_of

# ---- sizes ----------------------------------------------------------------------------------------

# SI prefixes with a B are powers of 10 (what disk makers and `3 GB` on a box mean); IEC ones (KiB,
# MiB, GiB) and a bare letter (`1.5G`, as `ls -h`, `free -h` and nvidia-smi's MiB count) powers of 2.
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*\Z", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes in a size such as `3GB` (3 * 10**9), `3GiB` (3 * 2**30), `1.5G` (a bare letter: 2**30),
    `512MB`, `512MiB` or `1000000` (bytes); the unit's case does not matter. Raises ValueError."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        return text
    m = _SIZE.match(str(text))
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. 3GiB = 3 * 2**30 bytes, 3GB = 3 * 10**9, 512MiB, "
                         "1.5G = 1.5 GiB)")
    return int(float(m.group(1)) * _UNITS[unit])


def human(n: float) -> str:
    """Bytes in powers of two, as GPU memory is sold and reported: 1.5 GiB, 97.5 MiB, 512 B."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}" if unit in ("TiB", "GiB") else f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


# ---- precisions and optimizers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """How a training step stores its numbers. Under autocast (`half` set) the parameters, their
    gradients and the optimizer state stay float32; ops on autocast's lower-precision list (conv,
    linear) cast their inputs and weights to `half` bytes, ops on its float32 list (layer_norm,
    softmax) to float32, and the others compute in the widest dtype of their inputs."""

    name: str
    param: int  # bytes per parameter, gradient, optimizer-state value
    act: int  # bytes per activation value outside autocast's casts (the input batch)
    half: int | None  # autocast's lower precision; None: no autocast
    label: str


PRECISIONS = {
    "fp32": Precision("fp32", 4, 4, None, "float32"),
    "bf16": Precision("bf16", 2, 2, None, "bfloat16 throughout (model.to(torch.bfloat16))"),
    "fp16-amp": Precision("fp16-amp", 4, 4, 2, "float16 autocast, float32 master weights and optimizer state"),
    "bf16-amp": Precision("bf16-amp", 4, 4, 2, "bfloat16 autocast, float32 master weights and optimizer state"),
}


@dataclass(frozen=True)
class Optimizer:
    """What torch.optim keeps per parameter after a step, and what its step allocates on the side."""

    name: str
    state: tuple[str, ...]  # per-parameter buffers of the parameter's size and dtype
    step_counter: bool  # a float32 scalar tensor `step` per parameter tensor
    temporaries: int  # parameter-sized temporaries of the (foreach) step
    label: str


OPTIMIZERS = {
    "sgd": Optimizer("sgd", (), False, 0, "SGD: no state"),
    "sgd-momentum": Optimizer("sgd-momentum", ("momentum_buffer",), False, 0, "SGD with momentum: momentum_buffer"),
    "adam": Optimizer("adam", ("exp_avg", "exp_avg_sq"), True, 1, "Adam: exp_avg, exp_avg_sq, step"),
    "adamw": Optimizer("adamw", ("exp_avg", "exp_avg_sq"), True, 1, "AdamW: exp_avg, exp_avg_sq, step"),
}

_FIXED = {"float32": 4, "int64": 8, "bool": 1}


def _choose(table: dict, key: str, what: str):
    if key not in table:
        raise ValueError(f"unknown {what} `{key}`: one of {', '.join(table)}")
    return table[key]


# ---- the schedule ---------------------------------------------------------------------------------


class _Storage:
    """One allocation: `const + per * N` bytes."""

    __slots__ = ("const", "per", "saved_first", "id")

    def __init__(self, const: int, per: int, sid: int):
        self.const, self.per, self.id = const, per, sid
        self.saved_first: int | None = None  # forward index of the earliest op that saves it


@dataclass
class MemoryRow:
    """One layer: its output, what its backward keeps, and the bytes first counted here (at `batch`)."""

    name: str
    op: str
    shape: tuple
    dtype_bytes: int
    output_bytes: int
    saved_bytes: int
    saved: list[str] = field(default_factory=list)


@dataclass
class Step:
    """One point of the schedule: its live bytes are `const + per_sample * N`, of which `fixed` are
    parameters, buffers, optimizer state, gradients and autocast copies (the rest: activations)."""

    label: str
    const: int
    per_sample: int
    fixed: int = 0

    def at(self, batch: int) -> int:
        return self.const + self.per_sample * batch


@dataclass
class MemoryReport:
    """Memory of one training step (`train`) or one inference pass, at `batch`; bytes throughout."""

    network: str
    batch: int
    train: bool
    optimizer: str | None
    dtype: str
    device: str
    rows: list[MemoryRow]
    parameters: int  # the parameters' bytes
    parameter_count: int
    gradients: int
    optimizer_state: int
    buffers: int
    saved: int  # activations saved for backward, at `batch` (0 in inference)
    saved_per_sample: int
    saved_const: int  # saved tensors that do not grow with the batch (per-channel statistics)
    weight_copies: int  # autocast's half-precision copies of conv and linear weights
    activation_peak: int  # the live activations (saved and transient) at the peak
    peak: int  # everything at the peak
    peak_at: str
    steps: list[Step] = field(repr=False, default_factory=list)
    budget: int | None = None

    def peak_for(self, batch: int) -> int:
        """The peak at another batch size (the schedule does not depend on it)."""
        return max(s.at(batch) for s in self.steps)

    @property
    def largest_batch(self) -> int | None:
        """The largest batch whose peak fits `budget`, 0 if none does; None without a budget."""
        return None if self.budget is None else _largest(self.steps, self.budget)

    @property
    def fits(self) -> bool | None:
        return None if self.budget is None else self.peak <= self.budget

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = len(self.steps)
        d["largest_batch"] = self.largest_batch
        d["fits"] = self.fits
        d["peak_formula"] = self.formula()
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def formula(self) -> dict:
        """The peak step's line: `peak(N) = const + per_sample * N` near this batch."""
        best = max(self.steps, key=lambda s: s.at(self.batch))
        return {"const": best.const, "per_sample": best.per_sample, "at": best.label}

    def fits_line(self) -> str | None:
        if self.budget is None:
            return None
        k = self.largest_batch
        budget = f"{human(self.budget)} ({self.budget:,} B)"
        verdict = "fits" if self.fits else "does not fit"
        if not k:
            return f"{budget}: does not fit even at batch 1 (needs {human(self.peak_for(1))})"
        return f"{budget}: batch {self.batch} {verdict}; fits at batch ≤ {k:,}"

    def format(self, fmt: str = "table", layers: bool = True) -> str:
        """Text for people: "table" (aligned columns) or "markdown"; `layers=False` gives the totals only."""
        if fmt not in ("table", "markdown"):
            raise ValueError(f"unknown format `{fmt}`: table or markdown")
        md = fmt == "markdown"
        out = []
        mode = (f"training, {OPTIMIZERS[self.optimizer].label}" if self.train and self.optimizer
                else "inference")
        title = f"{self.network}: memory at batch {self.batch:,}, {mode}, {PRECISIONS[self.dtype].label}"
        out += [f"**{title}**" if md else title, ""]
        if layers and self.rows:
            out += _layer_table(self.rows, self.train, md) + [""]
        out += _totals_table(self, md)
        return "\n".join(out) + "\n"


def _layer_table(rows: list[MemoryRow], train: bool, md: bool) -> list[str]:
    head = ["Layer", "Operator", "Output", "Out. memory"] + (["Saved", "Saved for backward"] if train else [])
    body = []
    for r in rows:
        cells = [r.name, r.op, "×".join(map(str, r.shape)), human(r.output_bytes)]
        if train:
            cells += [human(r.saved_bytes) if r.saved_bytes else "-", ", ".join(r.saved)]
        body.append(cells)
    right = {3, 4}
    if md:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i in right else "---"
                                                                  for i in range(len(head))) + "|"]
        return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(head)]

    def line(cells):
        return " " + "   ".join(c.rjust(w) if i in right else c.ljust(w)
                                for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(head), " " + "─" * (sum(widths) + 3 * (len(widths) - 1)), *map(line, body)]


def _totals_table(r: MemoryReport, md: bool) -> list[str]:
    def b(n: int) -> str:
        return f"{human(n)} ({n:,} B)"

    rows = [("Parameters", f"{b(r.parameters)}: {r.parameter_count:,} × {PRECISIONS[r.dtype].param} B")]
    if r.train:
        opt = OPTIMIZERS[r.optimizer]
        rows.append(("Gradients", b(r.gradients)))
        state = " + ".join(opt.state + (("step",) if opt.step_counter else ())) or "none"
        rows.append(("Optimizer state", f"{b(r.optimizer_state)}: {state}"))
    rows.append(("Buffers", f"{b(r.buffers)} (BN running statistics)"))
    if r.weight_copies:
        rows.append(("Autocast copies", f"{b(r.weight_copies)}: half-precision conv/linear weights"))
    if r.train:
        rows.append(("Saved activations", f"{b(r.saved)}: {human(r.saved_per_sample)} per sample"
                     + (f" + {human(r.saved_const)}" if r.saved_const else "")))
        rows.append(("Peak", f"{b(r.peak)} at {r.peak_at}; activations {human(r.activation_peak)} of it"))
    else:
        rows.append(("Activation peak", f"{b(r.activation_peak)} live at {r.peak_at}"))
        rows.append(("Peak", f"{b(r.peak)}: parameters, buffers and the activation peak"))
    f = r.formula()
    rows.append(("Per batch", f"peak(N) = {human(f['const'])} + {human(f['per_sample'])} × N (at {f['at']})"))
    if r.budget is not None:
        rows.append(("Fits", r.fits_line()))
    if md:
        return ["| Memory | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    width = max(len(k) for k, _ in rows)
    return [f"{k.ljust(width)}   {v}" for k, v in rows]


def _largest(steps: list[Step], budget: int) -> int:
    """The largest N with every step's `const + per_sample * N` within `budget` (0: none)."""
    best = math.inf
    for s in steps:
        if s.const > budget:
            return 0
        if s.per_sample:
            best = min(best, (budget - s.const) // s.per_sample)
    return 0 if best == math.inf else int(best)  # nothing grows with the batch: no answer beyond "any"


class _Analysis:
    """Everything batch-independent: per-layer saved tensors, the schedule's steps."""

    def __init__(self, g: nx.DiGraph, train: bool, prec: Precision, opt: Optimizer | None, device: str):
        self.g, self.train, self.prec, self.opt, self.device = g, train, prec, opt, device
        self.rows: list[MemoryRow] = []
        self.rows_per: list[tuple[int, int, int, int]] = []  # (out const, out per, saved const, saved per)
        self.steps: list[Step] = []
        self._ids = 0
        self.run()

    def new(self, const: int, per: int) -> _Storage:
        self._ids += 1
        return _Storage(const, per, self._ids)

    def nbytes(self, kind: str, same: int) -> int:
        if kind == "same":
            return same
        if kind == "mask":
            return 1 if self.device == "cuda" else same
        if kind == "upcast":
            return 4 if self.prec.half else same
        return _FIXED[kind]

    def run(self) -> None:
        g, prec, train = self.g, self.prec, self.train
        outputs = [node for _, node in g.graph["outputs"]]
        output_set = set(outputs)
        if not train:  # eval mode computes what the outputs that are not training-only need
            only = g.graph.get("training_outputs")
            only = set(only if only is not None else [name for name, _ in g.graph["outputs"][1:]])
            wanted = [node for name, node in g.graph["outputs"] if name not in only]
            needed = set(wanted)
            for node in wanted:
                needed |= nx.ancestors(g, node)
            outputs = wanted
        order = [n for n in g.nodes if train or n in needed]
        index = {n: i for i, n in enumerate(order)}
        preds = {n: inputs_of(g, n) for n in order}
        nodes = g.nodes

        def writable(node: str) -> bool:  # as the torch backend decides (Generator.writable)
            while True:
                d = nodes[node]
                if d["op"] == "input" or node in output_set or g.out_degree(node) > 1:
                    return False
                op = REGISTRY[d["op"]]
                if not op.aliases_input:
                    return op.overwritable
                node = inputs_of(g, node)[0]

        # ---- forward: storages, dtypes, saved tensors ----
        storage: dict[str, _Storage] = {}
        width: dict[str, int] = {}  # bytes per element of each node's output
        grads: dict[str, bool] = {}
        params: dict[str, int] = {}  # parameter count of each node
        tensor_count: dict[str, int] = {}  # parameter tensors of each node
        saved_by: dict[str, list[_Storage]] = {}
        allocated: dict[str, list[_Storage]] = {}  # what each op allocates besides what it saves (casts)
        param_count = buffer_bytes = copies = 0
        saved_set: dict[int, _Storage] = {}
        for i, n in enumerate(order):
            d = nodes[n]
            if d["op"] == "input":
                storage[n] = self.new(0, numel(d["shape"]) * prec.act)
                width[n], grads[n], params[n] = prec.act, False, 0
                self.rows_per.append((0, 0, 0, 0))
                self.rows.append(MemoryRow(n, "input", tuple(d["shape"]), prec.act, 0, 0, []))
                continue
            op = REGISTRY[d["op"]]
            ps = preds[n]
            ins = [nodes[p]["shape"] for p in ps]
            out = d["shape"]
            a = dict(d["attrs"])
            if a.get("inplace") and not all(writable(p) for p in ps):
                a["inplace"] = False
            if op.accumulates:
                a["inplace"] = writable(ps[0])
            shapes = op.parameters(a, ins, out)
            params[n] = sum(numel(s) for s in shapes.values())
            tensor_count[n] = len(shapes)
            param_count += params[n]
            bdt = op.buffer_dtypes(a)
            buffer_bytes += sum(numel(s) * _FIXED.get(bdt.get(k, ""), prec.param)
                                for k, s in op.buffers(a, ins, out).items())
            # dtypes under autocast
            in_w = [width[p] for p in ps]
            casts: dict[int, _Storage] = {}
            if prec.half and op.autocast in ("lower", "fp32"):
                compute = prec.half if op.autocast == "lower" else 4
                for j in range(len(ps)):
                    if in_w[j] != compute:
                        casts[j] = self.new(0, numel(ins[j]) * compute)
                if op.autocast == "lower":
                    copies += sum(numel(s) for k, s in shapes.items() if k == "weight") * prec.half
            else:
                compute = max(in_w)
            width[n] = 4 if (prec.half and op.autocast == "widen") else compute
            # the output's storage
            share = op.shares_storage(a, train)
            if share is not None and width[ps[share]] == width[n]:
                storage[n] = storage[ps[share]]
                out_new = None
            else:
                storage[n] = out_new = self.new(0, numel(out) * width[n])
            grads[n] = train and (params[n] > 0 or any(grads[p] for p in ps))
            saved: list[_Storage] = []
            fresh: list[_Storage] = [*casts.values()] + ([out_new] if out_new else [])
            described: list[str] = []
            sc = sp = 0
            if grads[n]:
                for s in op.saved_for_backward(a, ins, out, tuple(grads[p] for p in ps)):
                    st, note, made = self._resolve(s, n, ps, storage, casts, compute)
                    saved.append(st)
                    if made:
                        fresh.append(st)
                    if st.saved_first is None:
                        st.saved_first = i
                        saved_set[st.id] = st
                        sc, sp = sc + st.const, sp + st.per
                        described.append(s.what + note)
                    else:
                        described.append(s.what + note + " (shared)")
            saved_by[n] = saved
            allocated[n] = fresh
            self.rows_per.append((0, numel(out) * width[n], sc, sp))
            self.rows.append(MemoryRow(n, op.label(d["attrs"]), tuple(out), width[n], 0, 0, described))

        self.param_count = param_count
        self.param_bytes = param_count * prec.param
        self.buffer_bytes = buffer_bytes
        self.copies = copies
        self.saved_const = sum(s.const for s in saved_set.values())
        self.saved_per = sum(s.per for s in saved_set.values())
        opt = self.opt
        if train and opt is not None:
            self.param_tensors = tensors = sum(tensor_count.values())
            self.state_bytes = len(opt.state) * self.param_bytes + (4 * tensors if opt.step_counter else 0)
        else:
            self.param_tensors = 0
            self.state_bytes = 0
        self._schedule(order, index, preds, storage, width, grads, params, saved_by, allocated, outputs)

    def _resolve(self, s: Saved, n, ps, storage, casts, compute) -> tuple[_Storage, str, bool]:
        """The storage a saved tensor is, a note for people, and whether the op allocates it."""
        if s.of == "out":
            return storage[n], "", False
        if isinstance(s.of, int):
            j = s.of
            return (casts[j], " (cast)", False) if j in casts else (storage[ps[j]], "", False)
        size = numel(s.shape) * self.nbytes(s.dtype, compute)
        note = f" {s.dtype}" if s.dtype in _FIXED and _FIXED[s.dtype] != compute else ""
        if s.dtype == "mask":
            note = " bool" if self.device == "cuda" else ""
        return (self.new(0, size) if s.batched else self.new(size, 0)), note, True

    def _schedule(self, order, index, preds, storage, width, grads, params, saved_by, allocated, outputs) -> None:
        g, train = self.g, self.train
        resident = self.param_bytes + self.buffer_bytes + self.state_bytes
        live: dict[int, _Storage] = {}
        lc = lp = 0

        def alloc(s: _Storage):
            nonlocal lc, lp
            if s.id not in live:
                live[s.id] = s
                lc, lp = lc + s.const, lp + s.per

        def free(s: _Storage):
            nonlocal lc, lp
            if live.pop(s.id, None) is not None:
                lc, lp = lc - s.const, lp - s.per

        # when each storage's last reader runs in the forward (the input and the outputs stay)
        death: dict[int, int] = {}
        end = len(order)
        for i, n in enumerate(order):
            st = storage[n]
            last = max((index[s] for s in g.successors(n) if s in index), default=i)
            if nodes_op(g, n) == "input" or n in outputs:
                last = end
            death[st.id] = max(death.get(st.id, -1), last)
        dying: dict[int, list[_Storage]] = {}
        for n in order:
            st = storage[n]
            if death[st.id] < end:
                dying.setdefault(death[st.id], [])
                if st not in dying[death[st.id]]:
                    dying[death[st.id]].append(st)
        copies = self.copies
        steps = self.steps
        phase = "forward" if train else "inference"
        for i, n in enumerate(order):
            if i == 0:
                alloc(storage[n])
            for s in allocated.get(n, ()):
                alloc(s)
            steps.append(Step(f"{phase} `{n}`" if i else "the input", resident + copies + lc, lp, resident + copies))
            for s in allocated.get(n, ()):  # casts and the like that nothing keeps
                if s.saved_first is None and s is not storage[n]:
                    free(s)
            for s in dying.get(i, ()):
                if s.saved_first is None:
                    free(s)
        if not train:
            return
        # ---- backward, in reverse, with set_to_none gradients (torch's default) ----
        grad_of: dict[str, _Storage] = {}
        refs: dict[int, int] = {}
        grads_done = 0
        for n in outputs:
            st = self.new(0, storage[n].per)
            grad_of[n] = st
            refs[st.id] = 1
            alloc(st)
        steps.append(Step("the loss's gradient", resident + copies + lc, lp, resident + copies))
        release_at: dict[int, list[_Storage]] = {}
        seen: set[int] = set()
        for n in order:
            for s in saved_by.get(n, ()):
                if s.id not in seen:
                    seen.add(s.id)
                    release_at.setdefault(s.saved_first, []).append(s)

        def here(n: str) -> Step:
            fixed = resident + copies + grads_done
            return Step(f"backward `{n}`", fixed + lc, lp, fixed)

        def drop(s: _Storage):
            refs[s.id] -= 1
            if not refs[s.id]:
                free(s)

        for i in range(len(order) - 1, -1, -1):
            n = order[i]
            mine = grad_of.get(n)
            if mine is not None and grads[n] and nodes_op(g, n) != "input":
                grads_done += params[n] * self.prec.param
                op = REGISTRY[g.nodes[n]["op"]]
                for p in preds[n]:
                    if not grads[p]:
                        continue
                    if op.passes_gradient:
                        new = mine
                        refs[new.id] += 1
                    else:
                        new = self.new(0, numel(g.nodes[p]["shape"]) * width[p])
                        refs[new.id] = 1
                        alloc(new)
                    old = grad_of.get(p)
                    if old is None:
                        grad_of[p] = new
                    elif refs[old.id] == 1 and old is not new:  # accumulate in place
                        steps.append(here(n))
                        drop(new)
                    else:  # a new sum
                        total = self.new(0, numel(g.nodes[p]["shape"]) * width[p])
                        refs[total.id] = 1
                        alloc(total)
                        steps.append(here(n))
                        drop(old)
                        drop(new)
                        grad_of[p] = total
                steps.append(here(n))
            if mine is not None:
                drop(mine)
            for s in release_at.get(i, ()):
                free(s)
        opt = self.opt
        temps = opt.temporaries * self.param_bytes if opt else 0
        fixed = self.param_bytes * 2 + self.buffer_bytes + self.state_bytes
        steps.append(Step("the optimizer step", fixed + temps, 0, fixed))


def nodes_op(g: nx.DiGraph, n: str) -> str:
    return g.nodes[n]["op"]


def _graph(net) -> nx.DiGraph:
    return net if isinstance(net, nx.DiGraph) else net.graph


def memory_report(graph, batch: int = 1, train: bool = True, optimizer: str = "sgd", dtype: str = "fp32", *,
                  device: str = "cuda", budget: int | str | None = None) -> MemoryReport:
    """Memory of one training step (`train`) or one inference pass of `graph` (an IR or a Network) at
    `batch`, for `dtype` (fp32, bf16, fp16-amp, bf16-amp) and `optimizer` (sgd, sgd-momentum, adam,
    adamw). `device` "cuda" or "cpu" changes one rule: the dropout mask (bool on CUDA). With `budget`
    (bytes, or a size such as "3GiB") the report answers whether, and up to which batch, it fits."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"the batch must be a positive integer, got {batch!r}")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"unknown device `{device}`: cuda or cpu")
    prec = _choose(PRECISIONS, dtype, "dtype")
    opt = _choose(OPTIMIZERS, optimizer, "optimizer") if train else None
    g = _graph(graph)
    an = _Analysis(g, train, prec, opt, device)
    rows = []
    for row, (_, op_per, sc, sp) in zip(an.rows, an.rows_per):
        row.output_bytes = op_per * batch
        row.saved_bytes = sc + sp * batch
        rows.append(row)
    rows = [r for r in rows if r.op != "input"]
    peak_step = max(an.steps, key=lambda s: s.at(batch))
    grads = an.param_bytes if train else 0
    return MemoryReport(
        network=g.graph.get("name", "network"), batch=batch, train=train, optimizer=optimizer if train else None,
        dtype=dtype, device=device, rows=rows, parameters=an.param_bytes, parameter_count=an.param_count,
        gradients=grads, optimizer_state=an.state_bytes, buffers=an.buffer_bytes,
        saved=an.saved_const + an.saved_per * batch, saved_per_sample=an.saved_per, saved_const=an.saved_const,
        weight_copies=an.copies,
        activation_peak=peak_step.at(batch) - peak_step.fixed, peak=peak_step.at(batch), peak_at=peak_step.label,
        steps=an.steps,
        budget=None if budget is None else parse_size(budget))


def largest_batch(graph, budget_bytes: int | str, train: bool = True, optimizer: str = "sgd",
                  dtype: str = "fp32", *, device: str = "cuda") -> int:
    """The largest batch whose peak memory fits `budget_bytes` (an int, or a size such as "3GiB");
    0 if not even one sample fits. Exact for the model: every step of the schedule is affine in the
    batch, so it is the smallest of `(budget - const) // per_sample` over the steps."""
    report = memory_report(graph, 1, train, optimizer, dtype, device=device)
    return _largest(report.steps, parse_size(budget_bytes))
