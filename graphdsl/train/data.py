"""Data sources for `graphdsl train --data SOURCE`, checked before anything loads.

- `digits`: the 8x8 handwritten digits that ship inside scikit-learn (1,797 images, 10 classes; real data,
  nothing downloaded). Each image is resized (bilinear) to the spec's HxW and its one channel repeated
  to the spec's channels.
- a folder of CIFAR-10 python batches (`data_batch_1` .. `data_batch_5`, `test_batch`, as in
  `cifar-10-python.tar.gz`; `cifar10:PATH` says so explicitly): 32x32 RGB, `test_batch` the validation set.
- an image folder (`folder:PATH`, or any other folder): torchvision's ImageFolder layout, one subfolder per
  class; `PATH/train/` and `PATH/val/` (ImageNet's layout) give the split, else `--val-split` does.

Tensor sources (digits, CIFAR-10) stay at their native size in memory and are augmented, resized and
normalised per batch, drawing from a generator seeded by (seed, epoch, rank): the same run gives the same
batches, and a resumed run the same as an uninterrupted one.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from .config import INSTALL_HELP, TrainConfig, TrainError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
DEFAULT_VAL_SPLIT = {"digits": 0.2, "cifar10": 0.1, "folder": 0.1, "synthetic": 0.1}
# Per source: (random-crop padding in native pixels, horizontal flips) when --augment is on.
DEFAULT_AUGMENT = {"digits": (1, False), "cifar10": (4, True), "folder": (0, True), "synthetic": (0, False)}
SYNTHETIC_IMAGES = 1024
SYNTHETIC_POOL = 64  # distinct synthetic images: batches index into them, on the training device
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Source:
    """What `--data` names: its kind (`digits`, `cifar10`, `folder`), the folder, and its classes."""

    kind: str
    path: Path | None
    classes: tuple[str, ...]
    native_channels: int | None  # None: any (an image folder converts to the spec's channels; synthetic data)
    images: int = 0  # synthetic data: how many

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> str:
        if self.kind == "synthetic":
            return f"synthetic data ({self.images:,} random images)"
        return "digits (scikit-learn)" if self.kind == "digits" else f"{self.kind} {self.path}"


def resolve(text: str, classes: int | None = None) -> Source:
    """The source `--data` names, with its class list; TrainError for a missing folder, a folder without
    images, a CIFAR folder with missing batches. Reads names only (and CIFAR's small batches.meta).
    `classes`: the network's, which synthetic data takes."""
    if text == "digits":
        return Source("digits", None, tuple(str(d) for d in range(10)), 1)
    if text == "synthetic" or text.startswith("synthetic:"):
        return _synthetic(text, classes or 10)
    kind, sep, rest = text.partition(":")
    if sep and kind in ("cifar10", "folder"):
        path = Path(rest)
    else:
        kind, path = "", Path(text)
    if not path.exists():
        raise TrainError(f"no such data folder `{path}`",
                         "--data takes `digits`, a folder of CIFAR-10 python batches (data_batch_1 .. 5, "
                         "test_batch) or an image folder with one subfolder per class")
    if not path.is_dir():
        raise TrainError(f"`{path}` is not a folder", "--data takes `digits` or a folder")
    if kind == "cifar10" or (not kind and _cifar_root(path) is not None):
        return _cifar(path)
    return _folder(path)


def _synthetic(text: str, classes: int) -> Source:
    count = text.partition(":")[2] or str(SYNTHETIC_IMAGES)
    if not count.isdigit() or int(count) < 2:
        raise TrainError(f"`{text}`: synthetic data takes a number of images (at least 2)", "e.g. synthetic:1024")
    return Source("synthetic", None, tuple(f"class {i}" for i in range(classes)), None, int(count))


def _cifar_root(path: Path) -> Path | None:
    for root in (path, path / "cifar-10-batches-py"):
        if (root / "data_batch_1").is_file():
            return root
    return None


def _cifar(path: Path) -> Source:
    root = _cifar_root(path)
    if root is None:
        raise TrainError(f"`{path}` holds no CIFAR-10 python batches (data_batch_1 .. data_batch_5)",
                         "unpack cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html there")
    missing = [n for n in CIFAR_TRAIN if not (root / n).is_file()]
    if missing:
        raise TrainError(f"`{root}` lacks the CIFAR-10 batch{'es' if len(missing) > 1 else ''} {', '.join(missing)}",
                         "unpack the whole cifar-10-python.tar.gz there")
    classes = tuple(f"class {i}" for i in range(10))
    meta = root / "batches.meta"
    if meta.is_file():
        try:
            names = _unpickle(meta).get(b"label_names")
            if names:
                classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        except TrainError:
            pass
    return Source("cifar10", root, classes, 3)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="bytes")  # noqa: S301 - the CIFAR-10 format is a pickle
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise TrainError(f"cannot read the CIFAR-10 batch `{path}`: {e}", "it should be a file of "
                         "cifar-10-python.tar.gz, as unpacked") from None
    if not isinstance(data, dict):
        raise TrainError(f"`{path}` is not a CIFAR-10 batch (a pickled dict)")
    return data


def _class_folders(root: Path) -> list[str]:
    """The subfolders of `root` that hold at least one image, sorted as ImageFolder sorts them."""
    found = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and _has_image(Path(entry.path)):
            found.append(entry.name)
    return found


def _has_image(folder: Path) -> bool:
    for _dirpath, _dirs, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            return True
    return False


def _folder(path: Path) -> Source:
    root = path / "train" if (path / "train").is_dir() and (path / "val").is_dir() else path
    classes = _class_folders(root)
    if not classes:
        loose = any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir() if p.is_file())
        raise TrainError(f"no images in `{root}`" + (" (its images are not in class subfolders)" if loose else ""),
                         "an image folder holds one subfolder per class: DIR/cat/1.png, DIR/dog/2.jpg, ... "
                         f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    if len(classes) < 2:
        raise TrainError(f"`{root}` has one class (`{classes[0]}`): nothing to tell apart",
                         "an image folder holds one subfolder per class")
    return Source("folder", path, tuple(classes), None)


def check_input(source: Source, input_shape: tuple) -> None:
    """TrainError where the spec's input cannot take the source's images."""
    shape = "x".join(str(d) for d in input_shape)
    if len(input_shape) != 3:
        raise TrainError(f"the network's input is {shape}, but {source.describe()} gives images (CxHxW)",
                         "declare an image input such as `input 3x32x32`")
    channels = input_shape[0]
    if source.native_channels == 3 and channels not in (1, 3):
        raise TrainError(f"the network's input has {channels} channels, but {source.describe()} gives RGB images",
                         "declare `input 3xHxW` (or 1xHxW for grey)")
    if source.kind == "folder" and channels not in (1, 3):
        raise TrainError(f"the network's input has {channels} channels; an image folder gives RGB or grey images",
                         "declare `input 3xHxW` (or 1xHxW for grey)")


# ---- loading (torch from here on) -------------------------------------------------------------------------


class TensorImages:
    """Images held as one tensor at their native size (N x C x h x w), made into batches of the spec's
    input shape: augmented (random crop with padding, flips), resized, channels adapted, normalised."""

    def __init__(self, images, labels, scale: float, shape: tuple, crop_padding: int, hflip: bool):
        self.images, self.labels, self.scale = images, labels, scale
        self.shape, self.crop_padding, self.hflip = tuple(shape), crop_padding, hflip
        self.mean = self.std = None

    def __len__(self) -> int:
        return len(self.labels)

    def normalise_from(self, indices) -> None:
        """Per-channel mean and standard deviation of the images at `indices` (the training split)."""
        import torch

        total, squares, count = 0.0, 0.0, 0
        for start in range(0, len(indices), 4096):
            x = self._channels(self.images[indices[start:start + 4096]].float() * self.scale)
            total = total + x.sum(dim=(0, 2, 3), dtype=torch.float64)
            squares = squares + (x.double() ** 2).sum(dim=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / count
        std = (squares / count - mean ** 2).clamp_min(1e-12).sqrt()
        self.mean, self.std = mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)

    def _channels(self, x):
        c = self.shape[0]
        if x.shape[1] == c:
            return x
        if x.shape[1] == 1:
            return x.expand(-1, c, -1, -1)
        return x.mean(dim=1, keepdim=True).expand(-1, c, -1, -1)  # colour to grey

    def batch(self, indices, train: bool, generator):
        import torch
        import torch.nn.functional as F

        index = torch.as_tensor(indices, dtype=torch.long)
        x = self.images[index].float() * self.scale
        if train and self.crop_padding:
            x = _random_crop(x, self.crop_padding, generator)
        if train and self.hflip:
            flip = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        if tuple(x.shape[2:]) != self.shape[1:]:
            x = F.interpolate(x, size=self.shape[1:], mode="bilinear", align_corners=False)
        x = (self._channels(x) - self.mean) / self.std
        return x.contiguous(), self.labels[index]


def _random_crop(x, padding: int, generator):
    """Each image shifted by up to `padding` pixels (zero padding, then a crop of the original size)."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


class SyntheticImages:
    """Random images for measuring the loop alone: a pool of SYNTHETIC_POOL images and their labels kept on
    the training device, batches gathered from it there (no decoding, no copy from the host)."""

    def __init__(self, count: int, shape: tuple, classes: int, seed: int, device: str):
        import torch

        generator = torch.Generator().manual_seed(seed)
        pool = min(count, SYNTHETIC_POOL)
        self.count = count
        self.images = torch.randn(pool, *shape, generator=generator).to(device)
        self.labels = torch.randint(0, classes, (pool,), generator=generator).to(device)

    def __len__(self) -> int:
        return self.count

    def batch(self, indices, train: bool, generator):
        import torch

        index = torch.as_tensor(indices, dtype=torch.long).remainder_(len(self.labels)).to(self.images.device)
        return self.images[index], self.labels[index]


class FolderImages:
    """An ImageFolder subset, decoded and transformed by a DataLoader's workers."""

    def __init__(self, dataset, workers: int):
        self.dataset, self.workers = dataset, workers

    def __len__(self) -> int:
        return len(self.dataset)

    def loader(self, indices, batch_size: int, seed: int):
        import torch
        from torch.utils.data import DataLoader, Subset

        generator = torch.Generator().manual_seed(seed)  # the workers' seeds: the same run draws the same crops
        return DataLoader(Subset(self.dataset, list(indices)), batch_size=batch_size, shuffle=False,
                          num_workers=self.workers, generator=generator, persistent_workers=False)


@dataclass
class Data:
    """The training and validation images of a source, shaped for the spec."""

    source: Source
    train: TensorImages | FolderImages | SyntheticImages
    val: TensorImages | FolderImages | SyntheticImages


def load(source: Source, input_shape: tuple, config: TrainConfig, device: str = "cpu") -> Data:
    """Read the source and split it (deterministically from the seed). Needs torch (and scikit-learn for
    digits, torchvision for image folders)."""
    padding, hflip = DEFAULT_AUGMENT[source.kind]
    if config.crop_padding is not None:
        padding = config.crop_padding
    if config.hflip is not None:
        hflip = config.hflip
    if not config.augment:
        padding, hflip = 0, False
    if source.kind == "folder":
        return _load_folder(source, input_shape, config, hflip)
    import torch

    if source.kind == "synthetic":
        train, val = split(source.images, config.val_split or DEFAULT_VAL_SPLIT["synthetic"], config.seed)
        return Data(source, SyntheticImages(len(train), input_shape, source.num_classes, config.seed, device),
                    SyntheticImages(len(val), input_shape, source.num_classes, config.seed + 1, device))

    if source.kind == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise TrainError(f"the digits data set needs scikit-learn ({e})", INSTALL_HELP) from None
        digits = load_digits()
        images = torch.from_numpy(digits.images).float().unsqueeze(1)  # 1797 x 1 x 8 x 8, values 0 .. 16
        labels = torch.from_numpy(digits.target).long()
        train_x, train_y, val_x, val_y, scale = images, labels, None, None, 1 / 16
    else:
        train_x, train_y = _cifar_batches(source.path, CIFAR_TRAIN)
        val_x = val_y = None
        if config.val_split is None and (source.path / "test_batch").is_file():
            val_x, val_y = _cifar_batches(source.path, ["test_batch"])
        scale = 1 / 255
    train_set = TensorImages(train_x, train_y, scale, input_shape, padding, hflip)
    if val_x is None:
        train_index, val_index = split(len(train_y), config.val_split or DEFAULT_VAL_SPLIT[source.kind], config.seed)
        val_set = TensorImages(train_x, train_y, scale, input_shape, 0, False)
    else:
        train_index, val_index = list(range(len(train_y))), None
        val_set = TensorImages(val_x, val_y, scale, input_shape, 0, False)
    train_set.normalise_from(train_index)
    val_set.mean, val_set.std = train_set.mean, train_set.std
    if val_index is not None:  # one tensor, two views: keep each split's rows
        train_set = _subset(train_set, train_index)
        val_set = _subset(val_set, val_index)
    return Data(source, train_set, val_set)


def _subset(images: TensorImages, index) -> TensorImages:
    import torch

    rows = torch.as_tensor(index, dtype=torch.long)
    out = TensorImages(images.images[rows], images.labels[rows], images.scale, images.shape, images.crop_padding,
                       images.hflip)
    out.mean, out.std = images.mean, images.std
    return out


def split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: a permutation drawn from `seed`, the first `fraction` for validation."""
    import torch

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, round(n * fraction))
    return sorted(order[cut:]), sorted(order[:cut])


def _cifar_batches(root: Path, names: list[str]):
    import numpy as np
    import torch

    xs, ys = [], []
    for name in names:
        batch = _unpickle(root / name)
        data, labels = batch.get(b"data"), batch.get(b"labels")
        if data is None or labels is None:
            raise TrainError(f"`{root / name}` is not a CIFAR-10 batch: it lacks `data` or `labels`")
        data = np.asarray(data, dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise TrainError(f"`{root / name}` is not a CIFAR-10 batch: `data` is {data.shape}, expected N x 3072")
        xs.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        ys.append(torch.as_tensor(list(labels), dtype=torch.long))
    labels = torch.cat(ys)
    if labels.numel() and (labels.min() < 0 or labels.max() > 9):
        raise TrainError(f"`{root}` has labels outside 0 .. 9: not CIFAR-10")
    return torch.cat(xs), labels


def _load_folder(source: Source, input_shape: tuple, config: TrainConfig, hflip: bool) -> Data:
    try:
        from torchvision import datasets, transforms
    except ImportError as e:
        raise TrainError(f"image folders need torchvision ({e})", INSTALL_HELP) from None
    channels, h, w = input_shape
    grey = [transforms.Grayscale(1)] if channels == 1 else []
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.5,))
    tail = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    evaluation = transforms.Compose([transforms.Resize((round(h / 0.875), round(w / 0.875))),
                                     transforms.CenterCrop((h, w)), *grey, *tail])
    if config.augment:
        flips = [transforms.RandomHorizontalFlip()] if hflip else []
        training = transforms.Compose([transforms.RandomResizedCrop((h, w)), *flips, *grey, *tail])
    else:
        training = evaluation
    root = source.path
    if (root / "train").is_dir() and (root / "val").is_dir() and config.val_split is None:
        train = datasets.ImageFolder(str(root / "train"), transform=training)
        val = datasets.ImageFolder(str(root / "val"), transform=evaluation)
        if val.classes != train.classes:
            raise TrainError(f"`{root}/val` has other classes than `{root}/train`",
                             "give both the same class subfolders")
        return Data(source, FolderImages(train, config.workers), FolderImages(val, config.workers))
    base = root / "train" if (root / "train").is_dir() and (root / "val").is_dir() else root
    train = datasets.ImageFolder(str(base), transform=training)
    val = datasets.ImageFolder(str(base), transform=evaluation)
    train_index, val_index = split(len(train), config.val_split or DEFAULT_VAL_SPLIT["folder"], config.seed)
    from torch.utils.data import Subset

    return Data(source, FolderImages(Subset(train, train_index), config.workers),
                FolderImages(Subset(val, val_index), config.workers))
