"""Golden files: compare generated text with a committed file; GRAPHDSL_REGEN=1 rewrites it instead,
for review as a diff."""

from __future__ import annotations

import os
from pathlib import Path

REGEN = os.environ.get("GRAPHDSL_REGEN") == "1"


def check_golden(path: Path, text: str) -> None:
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run the test with GRAPHDSL_REGEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed; GRAPHDSL_REGEN=1 rewrites it"
