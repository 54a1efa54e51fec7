"""`python -m graphdsl.train FILE --data SOURCE ...`: the train command, e.g. under
`torchrun --nproc-per-node 2 -m graphdsl.train FILE --data digits`."""

from .commands import train

if __name__ == "__main__":
    train(prog_name="graphdsl train")
