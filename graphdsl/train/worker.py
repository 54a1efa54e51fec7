"""What `graphdsl train --nproc N` runs in each process under torchrun:
`python -m graphdsl.train.worker SETTINGS.json` (the settings the launcher checked and wrote)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from ..plugins import PluginError, load_plugins
    from .commands import checked, run_plan
    from .config import TrainConfig
    from .distributed import world_from_env

    args = sys.argv[1:] if argv is None else argv
    config = TrainConfig.from_json(Path(args[0]).read_text())
    world = world_from_env()
    try:
        load_plugins(*config.ops)  # as `--ops` did in the launcher
    except PluginError as e:
        if world.main:
            print(e.render(), file=sys.stderr)
        sys.exit(1)
    run_plan(checked(config, quiet=not world.main), world)


if __name__ == "__main__":
    main()
