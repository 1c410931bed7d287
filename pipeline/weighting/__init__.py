"""Loss-weighting registry: ``training.weighting`` -> a Weighting class (one file per method)."""

from __future__ import annotations

from .base import Weighting
from .equal import Equal

WEIGHTINGS: dict[str, type[Weighting]] = {Equal.name: Equal}


def build_weighting(name: str, n_tasks: int) -> Weighting:
    if name not in WEIGHTINGS:
        raise ValueError(f"training.weighting: unknown {name!r}; known: {sorted(WEIGHTINGS)}")
    return WEIGHTINGS[name](n_tasks)


__all__ = ["WEIGHTINGS", "Weighting", "build_weighting"]
