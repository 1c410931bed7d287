"""Which errors a run may record as a result, and which must fail the job.

A random control or a Grad-TAG estimate that raises is recorded (status "failed", an empty
estimate) rather than fatal, and Snakemake then treats it as done: it is never retried. That
is right for an error the same training would raise again, and wrong for one of the machine's
moment (memory, disk, a network file system): those fail the job, so a rerun, or Snakemake's
``--retries``, tries again. Lives below every caller (no pipeline imports)."""

from __future__ import annotations

# What allocators say in a plain RuntimeError: torch's CPU allocator, CUDA and cuBLAS outside
# the caching allocator, C++'s std::bad_alloc as torch re-raises it, Windows.
OUT_OF_MEMORY_MESSAGES = (
    "can't allocate memory", "out of memory", "ALLOC_FAILED", "bad_alloc", "not enough memory",
)  # fmt: skip


def out_of_memory(error: BaseException) -> bool:
    """Out of memory: CUDA raises ``OutOfMemoryError``, Python a ``MemoryError``, the CPU
    allocator and others a plain ``RuntimeError`` (:data:`OUT_OF_MEMORY_MESSAGES`)."""
    import torch

    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(error, RuntimeError)
        and any(message in str(error) for message in OUT_OF_MEMORY_MESSAGES)
    )


def transient(error: BaseException) -> bool:
    """An error a retry may not repeat (out of memory, an ``OSError``: disk full, a file system
    gone), or not an ``Exception`` at all (Ctrl-C, exit): never recorded as a result."""
    return not isinstance(error, Exception) or out_of_memory(error) or isinstance(error, OSError)
