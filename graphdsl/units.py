"""How figures are written for people: `138.4M`, `1.2 MB`."""

from __future__ import annotations

TIMES = "×"  # between dimensions in diagrams and summaries: 64×56×56


def human(n: float) -> str:
    """138357544 -> 138.4M."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def figure(n: int, note: str = "") -> str:
    """138357544 -> `138,357,544 (138.4M)`, 672 -> `672`; a note joins the parenthesis:
    `11,513,626,624 (11.5G, conv + linear)`."""
    extra = [human(n)] if abs(n) >= 1000 else []
    extra += [note] if note else []
    return f"{n:,} ({', '.join(extra)})" if extra else f"{n:,}"


def human_bytes(n: int) -> str:
    """1234567 -> 1.2 MB (decimal units)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
