"""taskgroup: which tasks should be learned together, under a compute budget."""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: ``import pipeline`` stays cheap (no torch) until a network is loaded.
    if name == "load_network":
        from .predict import load_network

        return load_network
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


__all__ = ["load_network"]
