"""`graphdsl train` and `graphdsl compare`. Imports click alone at module level: graphdsl.cli registers these
commands at start-up, and `graphdsl check` must not pay for torch."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .config import OPTIMIZERS, SCHEDULES, TrainConfig, TrainError


def _defines(ctx, param, values):
    from ..cli import parse_define

    return dict(parse_define(v) for v in values)


def _load_ops(ctx, param, values):
    from ..cli import _load_ops as load_ops

    return load_ops(ctx, param, values)


def _fail(error: TrainError) -> None:
    from ..cli import shown_lines

    click.echo(shown_lines(error.render()), err=True)
    sys.exit(1)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--network", "-n", default=None, help="Which network of the file (default: the only one).")
@click.option("-D", "defines", multiple=True, callback=_defines, metavar="NAME=VALUE",
              help="Override a network parameter, e.g. -D num_classes=10.")
@click.option("--ops", "ops", multiple=True, callback=_load_ops, metavar="MODULE_OR_FILE",
              help="Load operators from a Python module or .py file (repeatable).")
@click.option("--import-root", "import_roots", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, exists=True), help="Also allow imports from DIR (repeatable).")
@click.option("--data", required=True, metavar="SOURCE",
              help="`digits` (scikit-learn's 8x8 digits), a folder of CIFAR-10 python batches (or cifar10:DIR), "
                   "an image folder with one subfolder per class (or folder:DIR), or synthetic[:N] (N random "
                   "images, for measuring speed).")
@click.option("--out", "-o", default=None, metavar="RUN_DIR",
              help="The run's folder: metrics.csv, curves.png, checkpoint.pt, run.json (default: runs/NETWORK).")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last checkpoint, exactly.")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True, help="Per process.")
@click.option("--lr", type=float, default=0.1, show_default=True, help="Learning rate (for a batch of all processes).")
@click.option("--momentum", type=float, default=0.9, show_default=True, help="SGD's momentum.")
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--optimizer", default="sgd", show_default=True, help=f"One of {', '.join(OPTIMIZERS)}.")
@click.option("--schedule", default="none", show_default=True,
              help=f"Learning-rate schedule per epoch: {', '.join(SCHEDULES)} (after --warmup-epochs).")
@click.option("--lr-step", type=int, default=30, show_default=True, help="step: epochs between decays.")
@click.option("--lr-gamma", type=float, default=0.1, show_default=True, help="step, multistep: the decay factor.")
@click.option("--milestones", default=None, metavar="E1,E2,...",
              help="multistep: epochs where the rate decays (default: half and three quarters of --epochs).")
@click.option("--warmup-epochs", type=int, default=0, show_default=True, help="Linear warm-up epochs.")
@click.option("--val-split", type=float, default=None,
              help="Fraction of the training images kept for validation (default: digits 0.2, image folder 0.1; "
                   "CIFAR-10 validates on test_batch, a folder with train/ and val/ on val/).")
@click.option("--clip-grad", type=float, default=None, metavar="NORM", help="Clip the gradients' norm to NORM.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--amp", is_flag=True, help="Mixed precision: float16 autocast with loss scaling on CUDA, bfloat16 "
                                          "autocast on CPU.")
@click.option("--channels-last", is_flag=True, help="Model and batches in channels_last memory format.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option("--seed", type=int, default=0, show_default=True, help="Weights, split, shuffling, augmentation.")
@click.option("--deterministic", is_flag=True, help="torch.use_deterministic_algorithms: bit-for-bit repeatable "
                                                    "runs, slower on CUDA.")
@click.option("--workers", type=int, default=0, show_default=True, help="DataLoader workers (image folders).")
@click.option("--threads", type=int, default=None, metavar="N",
              help="CPU threads per process (torch.set_num_threads; default: torch's, 1 under torchrun).")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Processes on this machine: launches torchrun (DistributedDataParallel).")
@click.option("--sync-bn", is_flag=True, help="With several processes on CUDA: BatchNorm as SyncBatchNorm.")
@click.option("--augment/--no-augment", default=True, show_default=True,
              help="Random crops and flips as the source's defaults (digits: 1-pixel shifts; CIFAR-10: 4-pixel "
                   "padded crops, flips; image folder: random resized crops, flips).")
@click.option("--crop-padding", type=int, default=None, metavar="PIXELS",
              help="Random crops after zero padding of PIXELS (native pixels; digits and CIFAR-10).")
@click.option("--hflip/--no-hflip", default=None, help="Random horizontal flips (default: on, off for digits).")
@click.option("--limit-batches", type=int, default=None, metavar="N", help="At most N training batches per epoch.")
def train(file, network, defines, ops, import_roots, data, out, resume, epochs, batch_size, lr, momentum, weight_decay,
          optimizer, schedule, lr_step, lr_gamma, milestones, warmup_epochs, val_split, clip_grad, device, amp,
          channels_last, compile_, seed, deterministic, workers, threads, nproc, sync_bn, augment, crop_padding, hflip,
          limit_batches):
    """Train FILE's network on a data source, on one process, or several under torchrun.

    Everything is checked before training starts (spec, data, classes against the network's outputs,
    options); a problem is an error and exit 1. Each epoch appends to RUN_DIR/metrics.csv, redraws
    RUN_DIR/curves.png and writes RUN_DIR/checkpoint.pt atomically. Under `torchrun --nproc-per-node N`
    (or with --nproc N) each process trains on its share of every batch with DistributedDataParallel.
    """
    from .distributed import launch, under_torchrun, world_from_env

    try:
        stones = [int(m) for m in milestones.split(",")] if milestones else []
    except ValueError:
        _fail(TrainError(f"--milestones takes epochs separated by commas, not `{milestones}`",
                         "e.g. --milestones 30,45"))
    config = TrainConfig(spec=file, data=data, out=out or "", network=network, defines=defines,
                         import_roots=[str(p) for p in import_roots], ops=[str(o) for o in ops], epochs=epochs,
                         batch_size=batch_size, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, optimizer=optimizer, schedule=schedule,
                         lr_step=lr_step, lr_gamma=lr_gamma, milestones=stones, warmup_epochs=warmup_epochs,
                         device=device, amp=amp, channels_last=channels_last, compile=compile_, seed=seed,
                         resume=resume, val_split=val_split, clip_grad=clip_grad, workers=workers, threads=threads,
                         nproc=nproc,
                         sync_bn=sync_bn, deterministic=deterministic, augment=augment, crop_padding=crop_padding,
                         hflip=hflip, limit_batches=limit_batches)
    world = world_from_env()
    if nproc > 1 and under_torchrun():
        _fail(TrainError("--nproc launches torchrun, but this process already runs under torchrun",
                         "drop --nproc: torchrun's --nproc-per-node says how many processes there are"))
    plan = checked(config, quiet=not world.main)
    if nproc > 1:
        click.echo(f"launching torchrun: {nproc} processes on this machine", err=True)
        sys.exit(launch(plan.config))
    run_plan(plan, world)


def checked(config: TrainConfig, quiet: bool = False):
    """The run's plan, or exit 1 with the diagnostics (printed once: by rank 0 where there are ranks)."""
    from ..cli import report, warn
    from ..diagnostics import SpecError
    from .plan import prepare

    try:
        plan = prepare(config)
    except SpecError as e:
        if not quiet:
            report(e.diagnostics, e.sources, "text")
        sys.exit(1)
    except TrainError as e:
        if quiet:
            sys.exit(1)
        _fail(e)
    if not quiet:
        warn(plan.net)
    return plan


def run_plan(plan, world) -> None:
    from .loop import run

    try:
        run(plan, world, lambda text: click.echo(text))
    except TrainError as e:
        if world.main:
            _fail(e)
        sys.exit(1)
    except KeyboardInterrupt:
        if world.main:
            click.echo(f"\ninterrupted; the last checkpoint is in {plan.run_dir}\nhelp: the same command with "
                       "--resume continues from it", err=True)
        sys.exit(130)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False), metavar="RUN_DIR...")
@click.option("-o", "--output", "out", default="curves.png", show_default=True, metavar="OUT",
              help="The figure: OUT.png, .svg or .pdf.")
@click.option("--metric", "metrics", multiple=True, metavar="METRIC",
              help="A panel per metric (repeatable): error (training dashed, validation solid), loss, train_error, "
                   "val_error, train_loss, val_loss, train_top1, val_top1, train_top5, val_top5, lr, images_per_s. "
                   "Default: error.")
@click.option("--label", "labels", multiple=True, metavar="NAME",
              help="A legend entry per run, in order (default: the run folders' names).")
@click.option("--title", default=None, help="The figure's title.")
def compare(runs, out, metrics, labels, title):
    """Overlay the curves of several training runs (their metrics.csv), one colour per run.

    The seed's figure: `graphdsl compare runs/plain20 runs/plain56 runs/resnet20 runs/resnet56 -o
    degradation.png` (training error dashed, validation error solid).
    """
    from ..diagnostics import did_you_mean
    from ..files import OutputRefused
    from .plot import FORMATS, METRICS, read_metrics
    from .plot import compare as draw

    metrics = list(metrics) or ["error"]
    for m in metrics:
        if m not in METRICS:
            _fail(TrainError(f"unknown metric `{m}`", did_you_mean(m, METRICS, "metrics")
                             or "known: " + ", ".join(METRICS)))
    suffix = Path(out).suffix.lstrip(".").lower()
    if suffix not in FORMATS:
        _fail(TrainError(f"cannot tell the format of `{out}`", "name the output .png, .svg or .pdf"))
    if labels and len(labels) != len(runs):
        _fail(TrainError(f"{len(labels)} --label for {len(runs)} runs", "give one --label per run, or none"))
    try:
        series = [(labels[i] if labels else Path(run).name or str(run), read_metrics(Path(run)))
                  for i, run in enumerate(runs)]
        empty = [label for label, rows in series if not rows]
        if empty:
            raise TrainError(f"run `{empty[0]}` has no epochs in its metrics.csv yet")
        draw(series, metrics, Path(out), title)
    except TrainError as e:
        _fail(e)
    except OutputRefused as e:
        _fail(TrainError(e.message, e.help))
    except OSError as e:
        _fail(TrainError(f"cannot write `{out}`: {e.strerror or e}"))
    epochs = ", ".join(f"{label} {len(rows)}" for label, rows in series)
    click.echo(f"wrote {out}: {len(series)} runs ({epochs} epochs), {', '.join(metrics)}")
