"""How numbers look wherever a human reads them: one home for each format.

Bytes use decimal units with one decimal (``55.2 MB``), the way download sizes are
usually quoted; widths look as in the model ids (``1.0``, ``0.75``); accuracies and
latencies keep the one decimal upstream publishes.
"""

from __future__ import annotations

_BYTE_UNITS = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB"))


def format_bytes(n: int | float | None) -> str:
    """``55_200_000`` -> ``55.2 MB``; None -> ``?``."""
    if n is None:
        return "?"
    for scale, unit in _BYTE_UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def format_width(width: float) -> str:
    """A width multiplier as the model ids spell it: 1.0, 0.75, 0.5, 1.4."""
    text = f"{width:g}"
    return text if "." in text else f"{width:.1f}"


def format_percent(value: float | None) -> str:
    """Top-1 / top-5 with one decimal, as published; ``-`` when unknown."""
    return "-" if value is None else f"{value:.1f}"


def format_ms(value: float | None) -> str:
    """A latency rounded like the published figures (one decimal; two below 1 ms)."""
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def format_count(value: float | None) -> str:
    """MACs / params in millions as the catalog gives them (no trailing zeros)."""
    return "-" if value is None else f"{value:g}"
