"""Loss-weighting registry: ``training.weighting`` -> a Weighting class (one file per method).

Method options live under ``training.<name>`` in the config (e.g. ``training.dwa.temperature``)
and reach the class as keyword arguments.
"""

from __future__ import annotations

from .base import Weighting
from .dwa import DWA
from .equal import Equal
from .gradnorm import GradNorm
from .uncertainty import Uncertainty

WEIGHTINGS: dict[str, type[Weighting]] = {
    cls.name: cls for cls in (Equal, Uncertainty, DWA, GradNorm)
}


def build_weighting(name: str, n_tasks: int, options: dict | None = None) -> Weighting:
    if name not in WEIGHTINGS:
        raise ValueError(f"training.weighting: unknown {name!r}; known: {sorted(WEIGHTINGS)}")
    return WEIGHTINGS[name](n_tasks, **(options or {}))


__all__ = ["WEIGHTINGS", "Weighting", "build_weighting"]
