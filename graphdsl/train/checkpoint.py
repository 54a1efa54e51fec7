"""Checkpoints: written whole or not at all, carrying everything a resumed run needs to continue exactly.

A checkpoint (`RUN_DIR/checkpoint.pt`, `torch.save` format) holds the model's, optimizer's, scheduler's
and AMP scaler's state, the RNG states of python, numpy and torch (CPU and CUDA) of every rank, the
number of epochs done (the sampler's next epoch), the metrics so far, the run's settings and the spec's
text. It is written to a temporary file in the run folder, flushed to disk and renamed over the old one:
a run killed while writing leaves the previous checkpoint as it was (and a stray temporary file, removed
when the run resumes).
"""

from __future__ import annotations

import glob
import io
import os
import random
import signal
import tempfile
import time
from pathlib import Path

from ..files import output_target
from .config import TrainError

NAME = "checkpoint.pt"
TEMPORARY = ".graphdsl-*.tmp"
# Tests only: `write:E` kills the process (SIGKILL) halfway through writing epoch E's checkpoint,
# `step:E:S` at step S of epoch E (0-based epochs); `GRAPHDSL_TRAIN_WRITE_DELAY=SECONDS` sleeps there.
FAULT_ENV = "GRAPHDSL_TRAIN_FAULT"
DELAY_ENV = "GRAPHDSL_TRAIN_WRITE_DELAY"


def fault(kind: str, *where: int) -> None:
    """The fault hook: SIGKILL this process where GRAPHDSL_TRAIN_FAULT says (tests of resuming)."""
    wanted = os.environ.get(FAULT_ENV)
    if wanted and wanted == ":".join([kind, *map(str, where)]):
        os.kill(os.getpid(), signal.SIGKILL)


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, state: dict, epoch: int) -> Path:
    """Write `state` to RUN_DIR/checkpoint.pt atomically (temporary file, fsync, rename)."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    target = output_target(run_dir / NAME)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".graphdsl-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            delay = float(os.environ.get(DELAY_ENV) or 0)
            if delay:
                time.sleep(delay)
            fault("write", epoch)
            f.write(data[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_folder(run_dir)
    return target


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX: fsync the folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporaries(run_dir: Path) -> None:
    """Temporary files a killed run left behind (never a complete checkpoint)."""
    for path in glob.glob(str(run_dir / TEMPORARY)):
        try:
            os.unlink(path)
        except OSError:
            pass


def load(run_dir: Path) -> dict:
    """The checkpoint of RUN_DIR; TrainError where there is none or it cannot be read."""
    import torch

    path = run_dir / NAME
    if not path.is_file():
        raise TrainError(f"nothing to resume: `{path}` does not exist",
                         "start the run without --resume (or point --out at the run folder)")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a damaged file, whatever torch raises: say so, no traceback
        raise TrainError(f"cannot read the checkpoint `{path}`: {type(e).__name__}: {e}") from None
