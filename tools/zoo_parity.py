"""Runtime parity of graphdsl specs with torchvision, on randomised weights.

    python tools/zoo_parity.py [MODEL ...] [--size N] [--train] [--seed S] [--json OUT.json]
    python tools/zoo_parity.py --spec specs/resnet18.cnn --model resnet18

Models: the arguments, or every model of tests/reference/torchvision_zoo.json whose spec
`specs/<model>.cnn` exists. For each: torchvision's model (weights=None, default arguments;
inception_v3 and googlenet with init_weights=False) gets random weights from a fixed seed, far from
torchvision's initialisation, so that every branch matters (at init an SE gate computed but never
applied, or a missing layer scale, changes the output by less than the tolerance):

- conv and linear weights ~ N(0, 1/fan_in) (activations stay O(1) through deep nets), biases ~ N(0, 0.1^2);
- BN, LayerNorm and GroupNorm weights ~ U(0.5, 1.5), biases ~ N(0, 0.1^2); BN running_mean ~ N(0, 0.1^2),
  running_var ~ U(0.5, 1.5), num_batches_tracked = 0;
- every other parameter (ConvNeXt's layer_scale, ...) ~ U(0.5, 1.5).

The spec (`graphdsl.compile`) loads that state_dict with strict=True. Both run in eval mode on one random
image at the reference resolution (`input` in torchvision_zoo.json, else the spec's input; `--size`
overrides): relative error = max|ours - ref| / max|ref| must be <= 1e-5. Models with auxiliary outputs
(inception_v3, googlenet; all with `--train`) are also compared in training mode, two images, under the
same torch.manual_seed before each forward (dropout), every output included. Prints a table and exits 1
if any model fails. `check_model(name, size=None, ...)` is the importable core (tests/test_zoo_parity.py).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

import torch
from torch import nn

import graphdsl

ROOT = Path(__file__).resolve().parent.parent
ZOO_FILE = ROOT / "tests" / "reference" / "torchvision_zoo.json"
TOLERANCE = 1e-5
AUX = {"inception_v3", "googlenet"}  # compared in training mode by default
EXTRA_KWARGS = {"googlenet": {"init_weights": False}}


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_graphdsl_tools_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


zoo_reference = _tool("zoo_reference")


@functools.cache
def zoo() -> dict:
    """The reference figures (tests/reference/torchvision_zoo.json), without `_source`."""
    data = json.loads(ZOO_FILE.read_text())
    data.pop("_source", None)
    return data


def spec_path(name: str) -> Path:
    return ROOT / "specs" / f"{name}.cnn"


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and buffer of `model` a random value (see the module doc), in place."""
    g = torch.Generator().manual_seed(seed)
    touched = set()
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    with torch.no_grad():
        for prefix, module in model.named_modules():
            for name, t in module.named_parameters(recurse=False):
                if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and name == "weight":
                    t.normal_(0.0, t[0].numel() ** -0.5, generator=g)
                elif isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, *norms)) and name == "bias":
                    t.normal_(0.0, 0.1, generator=g)
                else:  # norm weights, layer scales, ...
                    t.uniform_(0.5, 1.5, generator=g)
                touched.add(id(t))
            for name, t in module.named_buffers(recurse=False):
                if name == "running_mean":
                    t.normal_(0.0, 0.1, generator=g)
                elif name == "running_var":
                    t.uniform_(0.5, 1.5, generator=g)
                elif name == "num_batches_tracked":
                    t.zero_()
                else:
                    raise ValueError(f"randomize: no rule for buffer {prefix}.{name} of {type(module).__name__}")
                touched.add(id(t))
    missed = [k for k, t in [*model.named_parameters(), *model.named_buffers()] if id(t) not in touched]
    assert not missed, f"randomize missed {missed}"
    return model


def reference(name: str, seed: int = 0) -> nn.Module:
    """torchvision's `name` (weights=None, default arguments) with randomised weights, on the CPU. Built on
    the meta device and materialised empty: every value comes from `randomize`."""
    model = zoo_reference.build(name, **EXTRA_KWARGS.get(name, {}))
    return randomize(model.to_empty(device="cpu"), seed)


def _outputs(result) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def _compare(expected: tuple, got: tuple) -> tuple[float, float, str | None]:
    """(max abs diff, relative error, problem) over matching outputs."""
    if len(got) != len(expected):
        return float("inf"), float("inf"), f"{len(got)} outputs, torchvision has {len(expected)}"
    diff = rel = 0.0
    for i, (e, o) in enumerate(zip(expected, got)):
        if o.shape != e.shape:
            return float("inf"), float("inf"), f"output {i}: shape {list(o.shape)}, torchvision {list(e.shape)}"
        d = (o.double() - e.double()).abs().max().item()
        diff = max(diff, d)
        rel = max(rel, d / max(e.abs().max().item(), 1e-30))
    return diff, rel, None


def check_model(name: str, size: int | None = None, spec: str | Path | None = None, seed: int = 0,
                train: bool | None = None) -> dict:
    """Compare `specs/<name>.cnn` (or `spec`) with torchvision's `name` on randomised weights.

    Returns a dict: model, spec, size, params, max_abs, scale (max|ref|), relative, ok, seconds, and where
    training mode was compared (`train`: None means only for models with auxiliary outputs) train_size,
    train_max_abs, train_relative, train_outputs, plus `problem` (a message) where shapes or counts differ.
    Raises FileNotFoundError without a spec; load_state_dict errors propagate.
    """
    start = time.perf_counter()
    path = Path(spec) if spec is not None else spec_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    net = graphdsl.load(path)
    ref_size = zoo().get(name, {}).get("input", list(net.input_shape))[-1]
    size = size or ref_size
    train = name in AUX if train is None else train

    ref = reference(name, seed)
    ours = net.to_torch()
    ours.load_state_dict(ref.state_dict(), strict=True)
    result = {"model": name, "spec": str(path), "size": size, "params": sum(p.numel() for p in ref.parameters())}

    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(1, 3, size, size, generator=g)
    ref.eval()
    ours.eval()
    with torch.no_grad():
        expected, got = _outputs(ref(x)), _outputs(ours(x))
    diff, rel, problem = _compare(expected, got)
    result.update(max_abs=diff, scale=expected[0].abs().max().item(), relative=rel)
    ok = problem is None and rel <= TOLERANCE

    if train:
        # the auxiliary heads need the full resolution (inception_v3's needs 299: 17x17 at Mixed_6e)
        tsize = ref_size if name in AUX else size
        x = torch.randn(2, 3, tsize, tsize, generator=g)
        ref.train()
        ours.train()
        with torch.no_grad():
            torch.manual_seed(seed + 2)
            expected = _outputs(ref(x))
            torch.manual_seed(seed + 2)
            got = _outputs(ours(x))
        tdiff, trel, tproblem = _compare(expected, got)
        result.update(train_size=tsize, train_max_abs=tdiff, train_relative=trel, train_outputs=len(expected))
        ok = ok and tproblem is None and trel <= TOLERANCE
        problem = problem or (tproblem and f"training mode: {tproblem}")
    if problem:
        result["problem"] = problem
    result.update(ok=bool(ok), seconds=round(time.perf_counter() - start, 2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", help="torchvision model names (default: every zoo model with a spec)")
    parser.add_argument("--model", action="append", default=[], help="a model name (same as a positional one)")
    parser.add_argument("--spec", type=Path, help="the spec file, for a single model (default specs/<model>.cnn)")
    parser.add_argument("--size", type=int, help="input size for eval mode (default: the reference resolution)")
    parser.add_argument("--train", action="store_true", help="compare training mode for every model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    names = args.models + args.model
    if args.spec and len(names) != 1:
        parser.error("--spec needs exactly one model")
    if not names:
        names = [n for n in sorted(zoo()) if spec_path(n).exists()]
        if not names:
            print(f"no zoo model of {ZOO_FILE.name} has a spec in specs/ yet: nothing to check")
            return 0

    results = []
    head = f"{'model':22s} {'size':>5s} {'params':>13s} {'max abs diff':>13s} {'relative':>10s} {'seconds':>8s}  ok"
    print(head)
    for name in names:
        try:
            r = check_model(name, args.size, args.spec, args.seed, True if args.train else None)
        except Exception as e:  # a failing model is a row of the table, not the end of the run
            traceback.print_exc(file=sys.stderr)
            r = {"model": name, "ok": False, "problem": f"{type(e).__name__}: {e}"}
        results.append(r)
        if "relative" in r:
            rel = max(r["relative"], r.get("train_relative", 0.0))
            diff = max(r["max_abs"], r.get("train_max_abs", 0.0))
            print(f"{name:22s} {r['size']:5d} {r['params']:13,} {diff:13.3g} {rel:10.3g} {r['seconds']:8.2f}  "
                  f"{'ok' if r['ok'] else 'FAIL'}{'  ' + r['problem'] if 'problem' in r else ''}")
        else:
            print(f"{name:22s} FAIL  {r['problem']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    failed = [r["model"] for r in results if not r["ok"]]
    print(f"{len(results) - len(failed)}/{len(results)} ok" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
