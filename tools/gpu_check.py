"""One prepared check of the PyTorch backend on a GPU machine (under 5 minutes on one H100).

    python tools/gpu_check.py                     # the full check on CUDA
    python tools/gpu_check.py --device cpu --quick   # a smoke test of this script on CPU

1. every spec of specs/ (not specs/lib/): build on the device, forward + backward in training
   mode in fp32 and under bf16 autocast (outputs and gradients finite, every parameter reached);
2. the same specs in eval mode on the device against CPU with the same weights (TF32 off; the error
   is relative to the scale of the CPU output: max |a - b| / max |b| <= 1e-3). On `--device cpu`
   the comparison is channels_last against contiguous instead;
3. ResNet-50 training steps (batch 64, channels_last, bf16 autocast, SGD with momentum) of the
   compiled spec against torchvision's resnet50 with the same weights, timed in interleaved steps
   (spec, torchvision, spec, ...); the ratio of the median step times (target <= 1.00);
4. torch.compile on the compiled ResNet-50: graph breaks from torch._dynamo.explain, then one
   inductor-compiled forward against eager (skipped with --quick or --no-inductor).

Prints one table, a row per check. Exit status: 0 every check passed, 1 a check failed, 2 CUDA was
asked for and is not there. `--quick`: the three smallest specs (by MACs), batch 2, two timed steps.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

import graphdsl  # noqa: E402

TOLERANCE = 1e-3
BUDGET_S = 285  # optional stages are skipped once the run is this old


class Table:
    def __init__(self):
        self.failed = 0
        self.start = time.perf_counter()
        print(f"{'check':<22}{'spec':<28}{'status':<7}detail")
        print("-" * 100)

    def row(self, check: str, spec: str, ok: bool | None, detail: str) -> None:
        status = "ok" if ok else "SKIP" if ok is None else "FAIL"
        self.failed += ok is False
        print(f"{check:<22}{spec:<28}{status:<7}{detail}", flush=True)

    @property
    def age(self) -> float:
        return time.perf_counter() - self.start


def spec_files(quick: bool) -> list[tuple[str, graphdsl.Network]]:
    found = []
    for path in sorted((ROOT / "specs").rglob("*.cnn")):
        rel = path.relative_to(ROOT / "specs")
        if rel.parts[0] == "lib":
            continue
        found.append((str(rel), path))
    nets = []
    for rel, path in found:
        try:
            nets.append((rel, graphdsl.load(path)))
        except graphdsl.SpecError as e:
            nets.append((rel, e))
    if quick:
        good = sorted((n for n in nets if not isinstance(n[1], Exception)), key=lambda n: n[1].macs)
        nets = good[:3]
    return nets


def outputs(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fwd_bwd(net, device: str, batch: int, bf16: bool) -> str:
    module = net.to_torch(device=device).train()
    x = torch.randn(batch, *net.input_shape, device=device)
    start = time.perf_counter()
    with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
        outs = outputs(module(x))
    if len(outs) != len(net.outputs):
        raise AssertionError(f"{len(outs)} outputs in training mode, the spec has {len(net.outputs)}")
    for o, shape in zip(outs, net.output_shapes.values()):
        if tuple(o.shape) != (batch, *shape):
            raise AssertionError(f"output shape {tuple(o.shape)}, static {(batch, *shape)}")
    loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    sync(device)
    seconds = time.perf_counter() - start
    if not all(torch.isfinite(o).all() for o in outs) or not torch.isfinite(loss):
        raise AssertionError("non-finite output")
    missing = [n for n, p in module.named_parameters() if p.grad is None]
    if missing:
        raise AssertionError(f"no gradient for {missing[:3]}{'...' if len(missing) > 3 else ''}")
    bad = [n for n, p in module.named_parameters() if not torch.isfinite(p.grad).all()]
    if bad:
        raise AssertionError(f"non-finite gradient in {bad[:3]}")
    dtypes = "/".join(sorted({str(o.dtype).replace("torch.", "") for o in outs}))
    return (f"{seconds:.2f} s, {len(outs)} output(s) {dtypes}, loss {loss.item():.3g}, "
            f"{sum(p.numel() for p in module.parameters()):,} params")


def compare(net, device: str, batch: int) -> str:
    """Eval outputs on `device` against CPU (or channels_last against contiguous on CPU)."""
    cpu = net.to_torch().eval()
    x = torch.randn(batch, *net.input_shape)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.inference_mode():
            want = outputs(cpu(x))[0]
            if device == "cpu":
                other, what = copy.deepcopy(cpu).to(memory_format=torch.channels_last), "channels_last vs contiguous"
                got = outputs(other(x.to(memory_format=torch.channels_last)))[0]
            else:
                other, what = copy.deepcopy(cpu).to(device), f"{device} vs cpu"
                got = outputs(other(x.to(device)))[0].cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    scale = want.abs().max().clamp_min(1e-6)
    err = ((got.float() - want).abs().max() / scale).item()
    if not err <= TOLERANCE:
        raise AssertionError(f"{what}: relative error {err:.2e} > {TOLERANCE:.0e} (scale {scale.item():.3g})")
    return f"{what}: relative error {err:.1e} (scale {scale.item():.3g})"


def train_timing(device: str, batch: int, warmup: int, steps: int) -> tuple[float, float]:
    """Median seconds per training step: compiled spec, torchvision (same initial weights)."""
    net = graphdsl.load(ROOT / "specs" / "resnet50.cnn")
    spec = net.to_torch()
    tv = torchvision.models.resnet50()
    spec.load_state_dict(tv.state_dict(), strict=True)
    kind = device.split(":")[0]
    models = []
    for m in (spec, tv):
        m = m.to(device, memory_format=torch.channels_last).train()
        models.append((m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)))
    x = torch.randn(batch, *net.input_shape, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step(m, opt) -> float:
        sync(device)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=kind, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(outputs(m(x))[0], y)
        loss.backward()
        opt.step()
        sync(device)
        return time.perf_counter() - start

    for _ in range(warmup):
        for m, opt in models:
            step(m, opt)
    times: list[list[float]] = [[], []]
    for _ in range(steps):  # interleaved
        for i, (m, opt) in enumerate(models):
            times[i].append(step(m, opt))
    return statistics.median(times[0]), statistics.median(times[1])


def compile_check(device: str, batch: int, inductor: bool, table: Table) -> None:
    net = graphdsl.load(ROOT / "specs" / "resnet50.cnn")
    module = net.to_torch(device=device).eval()
    x = torch.randn(batch, *net.input_shape, device=device)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(module)(x)
    breaks = explanation.graph_break_count
    reasons = "; ".join(str(r.reason)[:80] for r in explanation.break_reasons[:2])
    table.row("dynamo explain", "resnet50.cnn", breaks == 0,
              f"{explanation.graph_count} graph(s), {breaks} graph break(s){': ' + reasons if reasons else ''}")
    if not inductor:
        table.row("torch.compile", "resnet50.cnn", None, "inductor run skipped (--quick / --no-inductor)")
        return
    torch._dynamo.reset()
    start = time.perf_counter()
    compiled = torch.compile(module)
    with torch.no_grad():
        got = compiled(x)
        want = module(x)
    sync(device)
    err = ((got - want).abs().max() / want.abs().max().clamp_min(1e-6)).item()
    table.row("torch.compile", "resnet50.cnn", err <= 1e-2,
              f"inductor forward in {time.perf_counter() - start:.0f} s (compile included), "
              f"relative error vs eager {err:.1e}")


def guarded(table: Table, check: str, spec: str, fn, *args) -> None:
    try:
        table.row(check, spec, True, fn(*args))
    except Exception as e:  # noqa: BLE001 - every failure becomes a row
        line = traceback.extract_tb(e.__traceback__)[-1]
        table.row(check, spec, False, f"{type(e).__name__}: {str(e)[:160]} ({Path(line.filename).name}:{line.lineno})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="three smallest specs, small batches, few steps")
    ap.add_argument("--batch", type=int, default=None, help="training-timing batch (default 64; --quick: 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps each (default 15; --quick: 2)")
    ap.add_argument("--no-inductor", action="store_true", help="skip the inductor-compiled forward")
    args = ap.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available (torch {torch.__version__}, torch.cuda.is_available() is false): "
              "nothing checked. Run on a GPU machine, or `--device cpu --quick` for a smoke test.", file=sys.stderr)
        return 2
    quick = args.quick
    batch = args.batch or (2 if quick else 64)
    steps = args.steps or (2 if quick else 15)
    torch.manual_seed(0)
    cuda = device.startswith("cuda")
    where = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"gpu_check: torch {torch.__version__}, torchvision {torchvision.__version__}, {device} ({where})"
          f"{', quick' if quick else ''}")
    table = Table()

    for rel, net in spec_files(quick):
        if isinstance(net, Exception):
            table.row("load", rel, False, str(net).splitlines()[0][:160])
            continue
        guarded(table, "fwd+bwd fp32", rel, fwd_bwd, net, device, 2, False)
        guarded(table, "fwd+bwd bf16 autocast", rel, fwd_bwd, net, device, 2, True)
        guarded(table, "eval vs cpu", rel, compare, net, device, 2)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    try:
        spec_s, tv_s = train_timing(device, batch, 1 if quick else 5, steps)
        table.row("train step resnet50", "resnet50.cnn", True,
                  f"batch {batch}, channels_last, bf16 autocast, SGD: spec {spec_s * 1e3:.1f} ms, "
                  f"torchvision {tv_s * 1e3:.1f} ms, spec/tv {spec_s / tv_s:.3f} (median of {steps} interleaved)")
    except Exception as e:  # noqa: BLE001
        table.row("train step resnet50", "resnet50.cnn", False, f"{type(e).__name__}: {str(e)[:160]}")

    if table.age > BUDGET_S:
        table.row("dynamo explain", "resnet50.cnn", None, f"skipped: {table.age:.0f} s spent")
    else:
        try:
            compile_check(device, 2, not (quick or args.no_inductor) and table.age < BUDGET_S - 120, table)
        except Exception as e:  # noqa: BLE001
            table.row("torch.compile", "resnet50.cnn", False, f"{type(e).__name__}: {str(e)[:160]}")

    print("-" * 100)
    print(f"{table.failed} failed; {table.age:.0f} s in all")
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())
