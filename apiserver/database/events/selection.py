"""Owns matching stored series against the metrics a read asks for."""

from __future__ import annotations

# {metric: its variants, or None for all of them}; a read given None asks for every series.
Selection = dict[str, set[str] | None]


def selected(selection: Selection, metric: str, variant: str) -> bool:
    """Whether the series (metric, variant) is among the selected ones."""
    if metric not in selection:
        return False
    variants = selection[metric]
    return variants is None or variant in variants
