"""metrics.csv and the curves drawn from it (matplotlib, Agg backend: no display needed).

One row per epoch: accuracies are fractions (0 .. 1), losses the mean cross-entropy of the main output,
`images_per_s` the training throughput of all processes together, `seconds` the epoch's wall time.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..files import write_atomic
from .config import INSTALL_HELP, TrainError

COLUMNS = ["epoch", "lr", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5",
           "images_per_s", "seconds"]
# `compare --metric`: single columns, errors (1 - top-1, in %), and pairs drawn as the seed's figure 6
# does (training dashed, validation solid).
DERIVED = {"train_error": "train_top1", "val_error": "val_top1"}
PAIRS = {"error": ("train_error", "val_error"), "loss": ("train_loss", "val_loss")}
METRICS = ("error", "loss", "train_error", "val_error", "train_loss", "val_loss", "train_top1", "val_top1",
           "train_top5", "val_top5", "lr", "images_per_s")
FORMATS = ("png", "svg", "pdf")
LABELS = {"train_error": "training error (%)", "val_error": "validation error (%)", "error": "error (%)",
          "loss": "loss", "train_loss": "training loss", "val_loss": "validation loss", "lr": "learning rate",
          "images_per_s": "images/s", "train_top1": "training top-1", "val_top1": "validation top-1",
          "train_top5": "training top-5", "val_top5": "validation top-5"}


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row[k]) for k in COLUMNS})
    return out.getvalue()


def _cell(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of RUN_DIR/metrics.csv as numbers; TrainError where it is missing or not ours."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise TrainError(f"`{run_dir}` holds no metrics.csv", "give run folders written by `graphdsl train --out`")
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("epoch", "train_top1", "val_top1", "train_loss", "val_loss")
                       if c not in (reader.fieldnames or [])]
            if missing:
                raise TrainError(f"`{path}` lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
            return [{k: float(v) for k, v in row.items() if k in COLUMNS and v not in (None, "")} for row in reader]
    except (OSError, ValueError, csv.Error) as e:
        raise TrainError(f"cannot read `{path}`: {e}") from None


def value(row: dict, metric: str) -> float:
    if metric in DERIVED:
        return 100.0 * (1.0 - row[DERIVED[metric]])
    return row[metric]


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise TrainError(f"plotting needs matplotlib ({e})", INSTALL_HELP) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, inputs=()) -> None:
    fmt = path.suffix.lstrip(".").lower() or "png"
    buffer = io.BytesIO()
    # A fixed creation date and no software stamp: the same curves give the same bytes.
    metadata = {"png": {"Software": None}, "svg": {"Creator": None, "Date": None},
                "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}[fmt]
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.hashsalt": "graphdsl"}):  # fixed ids in SVG output
        fig.savefig(buffer, format=fmt, dpi=120, bbox_inches="tight", metadata=metadata)
    write_atomic(path, buffer.getvalue(), inputs)


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def run_curves(rows: list[dict], path: Path, title: str) -> None:
    """The run's own figure: loss, top-1 error and learning rate per epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (loss, error, lr) = plt.subplots(1, 3, figsize=(13, 3.8))
    try:
        loss.plot(epochs, [r["train_loss"] for r in rows], "--", label="training")
        loss.plot(epochs, [r["val_loss"] for r in rows], label="validation")
        loss.set_ylabel("cross-entropy loss")
        error.plot(epochs, [value(r, "train_error") for r in rows], "--", label="training")
        error.plot(epochs, [value(r, "val_error") for r in rows], label="validation")
        error.set_ylabel("top-1 error (%)")
        lr.plot(epochs, [r["lr"] for r in rows])
        lr.set_ylabel("learning rate")
        for ax in (loss, error, lr):
            _epoch_axis(ax)
        loss.legend()
        error.legend()
        fig.suptitle(title)
        fig.tight_layout()
        _save(fig, path)
    finally:
        plt.close(fig)


def compare(runs: list[tuple[str, list[dict]]], metrics: list[str], path: Path, title: str | None = None) -> None:
    """Overlay the curves of several runs, one panel per metric, one colour per run. A pair metric (`error`,
    `loss`) draws training dashed and validation solid in one panel, as the seed's figure 6."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 4.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    try:
        for ax, metric in zip(axes[0], metrics):
            for i, (label, rows) in enumerate(runs):
                colour = colours[i % len(colours)]
                epochs = [r["epoch"] for r in rows]
                if metric in PAIRS:
                    train, val = PAIRS[metric]
                    ax.plot(epochs, [value(r, train) for r in rows], "--", color=colour, linewidth=1, alpha=0.8)
                    ax.plot(epochs, [value(r, val) for r in rows], color=colour, linewidth=2, label=label)
                else:
                    ax.plot(epochs, [value(r, metric) for r in rows], color=colour, linewidth=2, label=label)
            _epoch_axis(ax)
            ax.set_ylabel(LABELS[metric] + (" — dashed: training, solid: validation" if metric in PAIRS else ""))
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        _save(fig, path)
    finally:
        plt.close(fig)


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    write_atomic(Path(run_dir) / "metrics.csv", csv_text(rows))
