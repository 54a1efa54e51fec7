"""The settings of a training run, checked before anything heavy starts. No torch here."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..diagnostics import did_you_mean

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "multistep", "cosine")
DEVICES = ("cpu", "cuda")
INSTALL_HELP = "install the training extra: pip install -e '.[train]'"

# Settings a resumed run may change: how long it goes on, how it is spread out, where data loads, how the
# spec and the run folder are named (the spec's text itself must not change: run.json keeps its digest).
RESUMABLE = {"epochs", "resume", "workers", "nproc", "out", "spec", "limit_batches", "threads"}


class TrainError(Exception):
    """A run that cannot start (bad option, data or spec): a message and what to do, printed as
    `error:` / `help:` lines, exit 1."""

    def __init__(self, message: str, help: str | None = None):
        super().__init__(message)
        self.message = message
        self.help = help

    def render(self) -> str:
        return f"error: {self.message}" + (f"\nhelp: {self.help}" if self.help else "")


@dataclass
class TrainConfig:
    """Everything that determines a run. JSON round-trips (`to_json`/`from_json`): the `--nproc` launcher
    hands it to the workers, and each checkpoint carries it."""

    spec: str
    data: str
    out: str
    network: str | None = None
    defines: dict = field(default_factory=dict)
    import_roots: list = field(default_factory=list)
    ops: list = field(default_factory=list)  # --ops plugins: the workers of --nproc load them too
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    schedule: str = "none"
    lr_step: int = 30
    lr_gamma: float = 0.1
    milestones: list = field(default_factory=list)
    warmup_epochs: int = 0
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    resume: bool = False
    val_split: float | None = None
    clip_grad: float | None = None
    workers: int = 0
    threads: int | None = None
    nproc: int = 1
    sync_bn: bool = False
    deterministic: bool = False
    augment: bool = True
    crop_padding: int | None = None
    hflip: bool | None = None
    limit_batches: int | None = None
    aux_weight: float = 0.3

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def differences(self, saved: TrainConfig) -> list[str]:
        """The settings that differ from a checkpoint's, other than those a resumed run may change."""
        out = []
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(saved, f.name)
            if f.name not in RESUMABLE and mine != theirs:
                out.append(f"--{f.name.replace('_', '-')} is {mine!r} here, {theirs!r} in the checkpoint")
        return out

    def check(self) -> None:
        """Raise TrainError for settings that cannot work, before any data or torch is touched."""
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("schedule", self.schedule, SCHEDULES)
        choice("device", self.device, DEVICES)
        positive = {"epochs": self.epochs, "batch-size": self.batch_size, "nproc": self.nproc,
                    "threads": self.threads or 1, "lr-step": self.lr_step}
        for name, value in positive.items():
            if value < 1:
                raise TrainError(f"--{name} must be at least 1, not {value}")
        if self.lr <= 0:
            raise TrainError(f"--lr must be positive, not {self.lr}")
        if self.val_split is not None and not 0 < self.val_split < 1:
            raise TrainError(f"--val-split is a fraction of the training data, between 0 and 1, not {self.val_split}",
                             "e.g. --val-split 0.1 keeps 10% of the images for validation")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise TrainError(f"--clip-grad must be positive, not {self.clip_grad}")
        if self.limit_batches is not None and self.limit_batches < 1:
            raise TrainError(f"--limit-batches must be at least 1, not {self.limit_batches}")
        if self.schedule == "multistep" and not self.milestones:
            self.milestones = [max(1, self.epochs // 2), max(1, self.epochs * 3 // 4)]
        if self.sync_bn and self.device != "cuda":
            raise TrainError("--sync-bn needs --device cuda: torch's SyncBatchNorm runs on GPUs only",
                             "drop --sync-bn on CPU (each process normalises its own batch)")


def choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = did_you_mean(value, choices, f"{option}s")
        raise TrainError(f"unknown {option} `{value}`", hint or "known: " + ", ".join(choices))
