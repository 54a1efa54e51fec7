"""Everything checked before a run starts (before torch, before any process group): the settings, the
spec, the data source, the spec's outputs against the data's classes, the run folder. No torch here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from ..diagnostics import SpecError
from .config import INSTALL_HELP, TrainConfig, TrainError
from .data import Source, check_input, resolve

RUN_FILE = "run.json"  # the settings and the spec's digest, as text: what --resume and `compare` read


@dataclass
class Plan:
    config: TrainConfig
    net: object  # graphdsl.api.Network
    source: Source
    run_dir: Path

    @property
    def spec_digest(self) -> str:
        return sources_digest(self.net.sources)


def sources_digest(sources: dict) -> str:
    text = json.dumps(sorted(sources.items()), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare(config: TrainConfig) -> Plan:
    """Check a run; raises TrainError (or SpecError for an invalid spec) with nothing started."""
    from ..api import load_spec

    config.check()
    net = load_spec(Path(config.spec), None, config.network, config.defines, config.import_roots)
    if not config.out:
        config.out = str(Path("runs") / net.name)
    outputs = list(net.output_shapes.values())
    source = resolve(config.data, outputs[0][0] if outputs and len(outputs[0]) == 1 else None)
    check_extras(source)
    check_outputs(net, source)
    check_input(source, tuple(net.input_shape))
    run_dir = Path(config.out)
    check_run_dir(run_dir, config, sources_digest(net.sources))
    return Plan(config, net, source, run_dir)


def check_extras(source: Source) -> None:
    """The packages of the training extra this run needs, looked up without importing them."""
    needed = {"torch": "PyTorch", "matplotlib": "matplotlib (the curves)"}
    if source.kind == "digits":
        needed["sklearn"] = "scikit-learn (the digits data set)"
    if source.kind == "folder":
        needed["torchvision"] = "torchvision (image folders)"
    missing = [what for module, what in needed.items() if find_spec(module) is None]
    if missing:
        raise TrainError(f"training needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                         "installed", INSTALL_HELP)


def check_outputs(net, source: Source) -> None:
    """Every output must be a vector of one score per class of the data: compared statically, before any
    module is built."""
    classes = source.num_classes
    for name, shape in net.output_shapes.items():
        shown = "x".join(str(d) for d in shape)
        if len(shape) != 1:
            raise TrainError(f"output `{name}` of network `{net.name}` is {shown}, not a vector of class scores",
                             "end the network with `flatten` and `linear(num_classes)`")
        if shape[0] != classes:
            names = ", ".join(source.classes[:5]) + (", ..." if classes > 5 else "")
            raise TrainError(f"output `{name}` of network `{net.name}` has {shape[0]} scores, but {source.describe()} "
                             f"has {classes} classes ({names})",
                             f"pass `-D num_classes={classes}` where the network takes that parameter, or end it "
                             f"with `linear({classes})`")


def check_run_dir(run_dir: Path, config: TrainConfig, digest: str) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"--out `{run_dir}` exists and is not a folder", "give a folder for the run's files")
    saved = run_dir / RUN_FILE
    if not config.resume:
        if (run_dir / "checkpoint.pt").exists() or (run_dir / "metrics.csv").exists() or saved.exists():
            raise TrainError(f"`{run_dir}` already holds a run",
                             "pass --resume to continue it, or choose another folder with --out")
        return
    if not saved.is_file() or not (run_dir / "checkpoint.pt").is_file():
        raise TrainError(f"nothing to resume in `{run_dir}`: no checkpoint there",
                         "start the run without --resume, or point --out at the run's folder")
    try:
        record = json.loads(saved.read_text())
        before = TrainConfig.from_json(json.dumps(record["config"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrainError(f"cannot read `{saved}`: {e}") from None
    if record.get("spec_digest") != digest:
        raise TrainError(f"the spec (or a file it imports) has changed since `{run_dir}` was started",
                         "resume with the spec as it was, or start a new run with --out")
    differences = config.differences(before)
    if differences:
        raise TrainError("--resume continues a run with its own settings, but " + "; ".join(differences),
                         "give the same options as the run had (only --epochs, --workers, --nproc and "
                         "--limit-batches may change)")
    if record.get("epochs_done", 0) >= config.epochs:
        raise TrainError(f"`{run_dir}` has done {record['epochs_done']} epochs already, --epochs is {config.epochs}",
                         f"pass --epochs N with N > {record['epochs_done']} to train on")


def run_record(plan: Plan, epochs_done: int) -> str:
    """RUN_DIR/run.json: the settings, the network and the spec's digest, the epochs done."""
    record = {"config": json.loads(plan.config.to_json()), "network": plan.net.name,
              "spec_digest": plan.spec_digest, "data": plan.source.describe(), "epochs_done": epochs_done}
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


__all__ = ["Plan", "SpecError", "prepare"]
