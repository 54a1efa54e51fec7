"""Training throughput of `graphdsl train`'s loop against a hand-written torchvision loop, same settings.

    python tools/bench_train.py --device cuda [--batch 256] [--images 12800] [--amp] [--channels-last]
    python tools/bench_train.py --device cpu --batch 2 --images 8 --rounds 1      # a tiny run (the tests')

Both sides train ResNet-18 (specs/resnet18.cnn compiled by graphdsl; torchvision.models.resnet18) on the
same synthetic ImageNet-sized data (3x224x224, 1000 classes), a pool of random images kept on the device,
so that the loop is measured and not the data loading: SGD with momentum 0.9 and weight decay 1e-4, lr
0.1, cross-entropy, optionally autocast (float16 + GradScaler on CUDA, bfloat16 on CPU) and
channels_last. graphdsl's side is its Trainer's training epoch (the one `graphdsl train` runs, metrics
kept on the device); the hand-written side is the plainest loop (forward, loss, zero_grad, backward,
step). After a warm-up epoch of each, rounds alternate (graphdsl, torchvision, graphdsl, ...) so that drift
in the machine's speed hits both alike; the table gives each side's median images/s per epoch and their
ratio (target on a GPU: >= 0.98).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphdsl.train.config import TrainConfig  # noqa: E402
from graphdsl.train.distributed import World  # noqa: E402
from graphdsl.train.loop import Trainer  # noqa: E402
from graphdsl.train.plan import prepare  # noqa: E402


def graphdsl_trainer(args, out: Path) -> Trainer:
    config = TrainConfig(spec=str(ROOT / "specs" / "resnet18.cnn"), data=f"synthetic:{args.images}", out=str(out),
                         batch_size=args.batch, lr=0.1, momentum=0.9, weight_decay=1e-4, device=args.device,
                         amp=args.amp, channels_last=args.channels_last,
                         val_split=1 / args.images)  # one validation image: the benchmark does not validate
    plan = prepare(config)
    device = "cuda:0" if args.device == "cuda" else "cpu"
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    return Trainer(plan, World(), device, lambda text: None)


class HandWritten:
    """The loop one writes by hand with torchvision: the same model, data pool, optimizer and precision."""

    def __init__(self, trainer: Trainer, args):
        device = trainer.device
        self.device, self.args = device, args
        self.cuda = device.startswith("cuda")
        self.memory_format = torch.channels_last if args.channels_last else torch.preserve_format
        self.model = torchvision.models.resnet18().to(device=device, memory_format=self.memory_format)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.scaler = torch.amp.GradScaler("cuda", enabled=args.amp and self.cuda)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.pool_x, self.pool_y = trainer.data.train.images, trainer.data.train.labels
        self.count = len(trainer.data.train)

    def epoch(self) -> float:
        """Seconds for one epoch of the same number of images as graphdsl's epoch."""
        self.model.train()
        generator = torch.Generator().manual_seed(0)
        order = torch.randperm(self.count, generator=generator)
        start = time.perf_counter()
        for first in range(0, self.count, self.args.batch):
            index = order[first:first + self.args.batch].remainder_(len(self.pool_y)).to(self.pool_x.device)
            x = self.pool_x[index].to(self.device, non_blocking=True, memory_format=self.memory_format)
            y = self.pool_y[index].to(self.device, non_blocking=True)
            with torch.autocast("cuda" if self.cuda else "cpu", dtype=torch.float16 if self.cuda else torch.bfloat16,
                                enabled=self.args.amp):
                loss = self.criterion(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--images", type=int, default=12800, help="training images per epoch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = graphdsl_trainer(args, Path(tmp) / "run")
        hand = HandWritten(trainer, args)
        images = len(trainer.data.train)

        def ours() -> float:
            counts, seconds = trainer.train_epoch(lambda n: None)
            assert counts.images == images
            return seconds

        ours()  # warm-up: allocator, cuDNN's algorithm search
        hand.epoch()
        mine, theirs = [], []
        for _ in range(args.rounds):
            mine.append(images / ours())
            theirs.append(images / hand.epoch())
    m, t = statistics.median(mine), statistics.median(theirs)
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"ResNet-18, one epoch of {images:,} synthetic 3x224x224 images, batch {args.batch}, {where}"
          f"{', amp' if args.amp else ''}{', channels_last' if args.channels_last else ''}; median of {args.rounds}")
    print(f"{'loop':<24}{'images/s':>12}")
    print(f"{'graphdsl train':<24}{m:>12,.1f}")
    print(f"{'hand-written torchvision':<24}{t:>12,.1f}")
    print(f"ratio graphdsl / hand-written: {m / t:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
