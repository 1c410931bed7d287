"""taskgroup: which tasks should be learned together, under a compute budget."""

__version__ = "0.1.0"
