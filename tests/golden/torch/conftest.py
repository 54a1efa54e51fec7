"""The .py files here are golden outputs of the PyTorch code generator, not tests or doctests."""

collect_ignore_glob = ["*.py"]
