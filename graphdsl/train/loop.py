"""The training loop: one process's share of a run (the whole run where there is one process).

Per epoch: the DistributedSampler's shuffle of the training split (the same permutation for any number
of processes; rank r takes every r-th index), forward under autocast where asked, cross-entropy of the
main output plus `aux_weight` (0.3, as GoogLeNet's and Inception-v3's papers) times that of each
training-only output, backward (DDP averages gradients over processes), optional gradient clipping,
the optimizer step; then validation on this process's shard of the validation split, metrics summed
over processes, and rank 0 writes metrics.csv, curves.png, run.json and the checkpoint.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable

import click

from . import checkpoint, distributed, plot
from .config import INSTALL_HELP, TrainConfig, TrainError
from .data import Data, FolderImages, load
from .distributed import World
from .plan import Plan, run_record


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(config: TrainConfig) -> Callable[[int], float]:
    """The schedule as a function of the epoch (0-based): linear warm-up, then the schedule asked for."""
    warm = config.warmup_epochs

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / warm
        e = epoch - warm
        if config.schedule == "step":
            return config.lr_gamma ** (e // config.lr_step)
        if config.schedule == "multistep":
            return config.lr_gamma ** sum(e >= m for m in config.milestones)
        if config.schedule == "cosine":
            span = max(1, config.epochs - warm)
            return 0.5 * (1 + math.cos(math.pi * min(e, span) / span))
        return 1.0

    return factor


def make_optimizer(config: TrainConfig, params):
    import torch

    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def split_outputs(out):
    """(main output, training-only outputs) of what the module returned."""
    if isinstance(out, (tuple, list)):
        return out[0], list(out[1:])
    return out, []


def training_loss(criterion, out, labels, aux_weight: float):
    """(main logits, the main output's loss, the loss to minimise): the main loss plus `aux_weight` times
    the loss of each auxiliary head (GoogLeNet's paper, section 5, and Inception-v3's weigh them 0.3)."""
    main, aux = split_outputs(out)
    loss = criterion(main, labels)
    total = loss
    for head in aux:
        total = total + aux_weight * criterion(head, labels)
    return main, loss, total


class Counts:
    """Sums over an epoch: loss, top-1 and top-k hits, images. Kept on the device and read once at the
    end of the epoch: reading them every step would make the host wait for the GPU at every step."""

    def __init__(self, k: int, device: str):
        import torch

        self.k = k
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss x images, top-1 hits, top-k hits
        self.images = 0

    def add(self, logits, labels, loss) -> None:
        import torch

        n = labels.shape[0]
        with torch.no_grad():
            best = logits.float().topk(self.k, dim=1).indices
            hits = best.eq(labels.view(-1, 1))
            self.sums += torch.stack([loss.double() * n, hits[:, 0].sum().double(), hits.any(dim=1).sum().double()])
        self.images += n

    def reduced(self, world: World, device: str) -> tuple[float, float, float]:
        loss, top1, topk = self.sums.tolist()
        loss, top1, topk, images = distributed.all_sum(world, [loss, top1, topk, self.images], device)
        images = max(images, 1)
        return loss / images, top1 / images, topk / images


class Trainer:
    def __init__(self, plan: Plan, world: World, device: str, echo: Callable[[str], None]):
        import torch

        self.plan, self.config, self.world, self.device, self.echo = plan, plan.config, world, device, echo
        config = self.config
        self.cuda = device.startswith("cuda")
        self.memory_format = torch.channels_last if config.channels_last else torch.preserve_format
        seed_everything(config.seed)
        self.data: Data = load(plan.source, tuple(plan.net.input_shape), config, device)
        core = plan.net.to_torch()  # the same initial weights on every rank (DDP broadcasts rank 0's anyway)
        if config.sync_bn and world.distributed:
            core = torch.nn.SyncBatchNorm.convert_sync_batchnorm(core)
        self.core = core.to(device=device, memory_format=self.memory_format)
        model = self.core
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[world.local_rank] if self.cuda else None)
        if config.compile:
            model = torch.compile(model)
        self.model = model
        self.optimizer = make_optimizer(config, self.core.parameters())
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(config))
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp and self.cuda)
        self.amp_dtype = torch.float16 if self.cuda else torch.bfloat16
        self.criterion = torch.nn.CrossEntropyLoss()
        self.k = min(5, plan.source.num_classes)
        self.epoch = 0
        self.rows: list[dict] = []
        seed_everything(config.seed + world.rank)  # dropout draws differ between ranks

    def core_params(self) -> int:
        return sum(p.numel() for p in self.core.parameters())

    # ---- resuming ------------------------------------------------------------------------------------

    def resume(self) -> None:
        state = checkpoint.load(self.plan.run_dir)
        self.core.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch = state["epoch"]
        self.rows = list(state["metrics"])
        states = state["rng"]
        if len(states) != self.world.size:
            self.echo(f"note: the checkpoint was written by {len(states)} processes, this run has {self.world.size}: "
                      "random draws will not continue exactly")
        checkpoint.set_rng_state(states[self.world.rank % len(states)])

    def save(self) -> None:
        states = distributed.gather(self.world, checkpoint.rng_state())
        if not self.world.main:
            return
        state = {"model": self.core.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": states,
                 "epoch": self.epoch, "sampler_epoch": self.epoch, "metrics": self.rows,
                 "config": self.config.to_json(), "spec_sources": dict(self.plan.net.sources),
                 "network": self.plan.net.name, "world_size": self.world.size}
        checkpoint.save(self.plan.run_dir, state, self.epoch - 1)

    # ---- batches -------------------------------------------------------------------------------------

    def train_indices(self) -> list[int]:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(len(self.data.train)), num_replicas=self.world.size, rank=self.world.rank,
                                     shuffle=True, seed=self.config.seed, drop_last=False)
        sampler.set_epoch(self.epoch)
        return list(sampler)

    def batches(self, images, indices: list[int], train: bool):
        import torch

        size = self.config.batch_size
        seed = hash((self.config.seed, self.epoch, self.world.rank, train)) % 2**62
        if isinstance(images, FolderImages):
            yield from images.loader(indices, size, seed)
            return
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, len(indices), size):
            yield images.batch(indices[start:start + size], train, generator)

    def steps(self, n: int) -> int:
        steps = math.ceil(n / self.config.batch_size)
        return min(steps, self.config.limit_batches) if self.config.limit_batches else steps

    def autocast(self):
        import torch

        return torch.autocast("cuda" if self.cuda else "cpu", dtype=self.amp_dtype, enabled=self.config.amp)

    def to_device(self, x, y):
        x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
        return x, y.to(self.device, non_blocking=True)

    # ---- one epoch -----------------------------------------------------------------------------------

    def train_epoch(self, progress) -> tuple[Counts, float]:
        import torch

        self.model.train()
        counts = Counts(self.k, self.device)
        indices = self.train_indices()
        steps = self.steps(len(indices))
        start = time.perf_counter()
        for step, (x, y) in enumerate(self.batches(self.data.train, indices, train=True)):
            if step >= steps:
                break
            checkpoint.fault("step", self.epoch, step)
            x, y = self.to_device(x, y)
            with self.autocast():
                main, loss, total = training_loss(self.criterion, self.model(x), y, self.config.aux_weight)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            if self.config.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.core.parameters(), self.config.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            counts.add(main.detach(), y, loss.detach())
            progress(1)
        if self.cuda:
            torch.cuda.synchronize()
        return counts, time.perf_counter() - start

    def validate(self) -> Counts:
        import torch

        self.core.eval()
        counts = Counts(self.k, self.device)
        indices = list(range(self.world.rank, len(self.data.val), self.world.size))  # a shard, no padding
        with torch.no_grad():
            for x, y in self.batches(self.data.val, indices, train=False):
                x, y = self.to_device(x, y)
                with self.autocast():
                    logits, _ = split_outputs(self.core(x))
                    loss = self.criterion(logits.float(), y)
                counts.add(logits, y, loss)
        return counts

    def fit(self) -> list[dict]:
        config = self.config
        tty = self.world.main and sys.stderr.isatty()
        while self.epoch < config.epochs:
            lr = self.optimizer.param_groups[0]["lr"]
            steps = self.steps(len(self.data.train) // self.world.size + 1)
            if tty:
                with click.progressbar(length=steps, label=f"epoch {self.epoch + 1}/{config.epochs}",
                                       file=sys.stderr, show_pos=True) as bar:
                    train, seconds = self.train_epoch(bar.update)
            else:
                train, seconds = self.train_epoch(lambda n: None)
            val = self.validate()
            self.scheduler.step()
            train_loss, train_top1, train_topk = train.reduced(self.world, self.device)
            val_loss, val_top1, val_topk = val.reduced(self.world, self.device)
            images = distributed.all_sum(self.world, [train.images], self.device)[0]
            seconds = distributed.all_max(self.world, seconds, self.device)
            self.epoch += 1
            row = {"epoch": self.epoch, "lr": lr, "train_loss": train_loss, "train_top1": train_top1,
                   "train_top5": train_topk, "val_loss": val_loss, "val_top1": val_top1, "val_top5": val_topk,
                   "images_per_s": images / max(seconds, 1e-9), "seconds": seconds}
            self.rows.append(row)
            self.echo(epoch_line(row, config.epochs, self.k))
            self.write_files()
        return self.rows

    def write_files(self) -> None:
        plan = self.plan
        if self.world.main:
            plot.write_metrics(plan.run_dir, self.rows)
            plot.run_curves(self.rows, plan.run_dir / "curves.png", f"{plan.net.name} on {plan.source.describe()}")
        self.save()
        if self.world.main:
            from ..files import write_atomic

            write_atomic(plan.run_dir / "run.json", run_record(plan, self.epoch))


def epoch_line(row: dict, epochs: int, k: int) -> str:
    return (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
            f"top-1 {100 * row['train_top1']:.2f}%  val loss {row['val_loss']:.4f} "
            f"top-1 {100 * row['val_top1']:.2f}% top-{k} {100 * row['val_top5']:.2f}%  "
            f"{row['images_per_s']:,.0f} images/s  {row['seconds']:.1f} s")


def run(plan: Plan, world: World, echo: Callable[[str], None]) -> list[dict]:
    """Train as `plan` says, as this process's share of `world`; returns the metrics per epoch. Rank 0
    writes the files and prints (through `echo`)."""
    try:
        import torch
    except ImportError as e:
        raise TrainError(f"training needs PyTorch ({e})", INSTALL_HELP) from None
    config = plan.config
    if config.device == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda, but CUDA is not available here", "use --device cpu")
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif config.device == "cuda":
        torch.backends.cudnn.benchmark = True
    say = echo if world.main else (lambda text: None)
    device = distributed.start(world, config.device)
    try:
        if world.main:
            plan.run_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.remove_temporaries(plan.run_dir)
        trainer = Trainer(plan, world, device, say)
        if config.resume:
            trainer.resume()
        data = trainer.data
        procs = f"{world.size} processes" if world.distributed else "1 process"
        say(f"training `{plan.net.name}` ({trainer.core_params():,} parameters) on {plan.source.describe()}: "
            f"{len(data.train):,} training / {len(data.val):,} validation images, {plan.source.num_classes} classes; "
            f"{config.device}, {procs}, batch {config.batch_size} per process"
            + (f"; resumed after epoch {trainer.epoch}" if config.resume else ""))
        try:
            rows = trainer.fit()
        except torch.OutOfMemoryError:
            raise TrainError(f"out of memory on {device} at --batch-size {config.batch_size}",
                             "lower --batch-size, or add --amp; `graphdsl summary FILE --batch N --train --fits SIZE` "
                             "says what fits") from None
        # Every rank waits for rank 0's last files before any leaves the process group: a rank tearing
        # gloo down while another still uses it can abort ("terminate called without an active exception").
        distributed.barrier(world)
        say(f"wrote {plan.run_dir}: metrics.csv, curves.png, checkpoint.pt, run.json")
        return rows
    finally:
        distributed.stop(world)
