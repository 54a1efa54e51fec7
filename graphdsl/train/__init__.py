"""`graphdsl train` and `graphdsl compare`: train a spec's compiled module on a data source, on one process
or many (torchrun + DistributedDataParallel), and plot the curves of runs.

Training sits outside the compiler: it takes `graphdsl.load(...).to_torch()` and uses PyTorch's own
machinery (autocast, DistributedDataParallel, torch.compile). Layout:

- `config.py`      the run's settings (`TrainConfig`) and their checks; no torch
- `plan.py`        what is checked before a run starts: spec, data, classes, input, run folder; no torch
- `data.py`        data sources: `digits`, CIFAR-10 python batches, an image folder, synthetic data
- `loop.py`        the loop: optimizer, schedule, epochs, metrics, checkpoints
- `checkpoint.py`  atomic checkpoints and the RNG states they carry
- `distributed.py` the process group under torchrun, reductions, `--nproc` launching torchrun
- `plot.py`        metrics.csv and the curves (matplotlib, Agg)
- `commands.py`    the click commands `train` and `compare` (imports click alone at module level)
- `worker.py`      what `--nproc N` runs under torchrun
- `__main__.py`    `python -m graphdsl.train FILE ...` (e.g. `torchrun ... -m graphdsl.train FILE ...`)

torch, torchvision, matplotlib and scikit-learn are imported inside functions: importing this package
costs nothing (`graphdsl.cli` imports `commands` at start-up).
"""
