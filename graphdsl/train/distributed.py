"""Processes: the rank this one is under torchrun, the process group, reductions, and `--nproc N`, which
launches torchrun itself (`python -m torch.distributed.run`) on this machine.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for each process it starts; a
process without them is a world of one and starts no process group. Gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import TrainConfig


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the only process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    env = os.environ
    if "WORLD_SIZE" not in env:
        return World()
    return World(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def start(world: World, device: str) -> str:
    """Join the process group (where there are several processes) and return this process's device."""
    import torch

    if device == "cuda":
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(world.local_rank)
    if world.distributed:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return device


def stop(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_sum(world: World, values: list[float], device: str) -> list[float]:
    """Element-wise sum of `values` over every process (float64)."""
    if not world.distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_max(world: World, value: float, device: str) -> float:
    if not world.distributed:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def gather(world: World, obj) -> list:
    """Every process's `obj`, in rank order (all of them get the list)."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def launch(config: TrainConfig) -> int:
    """Run `config` in `config.nproc` processes on this machine under torchrun (its standalone
    rendezvous); returns torchrun's exit status. The settings travel as a JSON file."""
    fd, path = tempfile.mkstemp(prefix="graphdsl-train-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(config.to_json())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={config.nproc}",
               "-m", "graphdsl.train.worker", path]
    env = dict(os.environ)
    # The workers must import this graphdsl, wherever it was imported from.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        return subprocess.call(command, env=env)
    finally:
        os.unlink(path)
