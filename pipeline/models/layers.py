"""Layers that know their inference cost in multiply-adds."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def _uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)


class Dense(nn.Linear):
    """``nn.Linear`` initialised from an explicit generator (thread-safe determinism: trainings
    may share a process, so the global RNG must not be used)."""

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator) -> None:
        super().__init__(in_features, out_features)
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default scale
        _uniform_(self.weight, bound, generator)
        _uniform_(self.bias, bound, generator)

    def macs(self) -> int:
        return self.in_features * self.out_features


class BinaryInput(nn.Module):
    """A linear layer over 0/1 features computed as a sum of the rows of the set bits.

    Mathematically ``Dense`` on a binary vector; an ECFP4 row has ~30 of 1024 bits set, so this
    is ~30x less work. Its nominal cost (``macs``) is the dense layer's: cost is a property of
    the architecture, not of this implementation trick.
    """

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        bound = 1.0 / math.sqrt(in_features)
        _uniform_(self.weight, bound, generator)
        _uniform_(self.bias, bound, generator)

    def forward(self, batch: SparseBatch) -> torch.Tensor:
        if _VMAP_FRIENDLY.get():
            # torch.func.vmap has no batching rule for embedding_bag (it would loop over the
            # batch of weights in Python); gather + index_add has one. Same sum, other order.
            rows = self.weight.index_select(0, batch.indices)
            out = torch.zeros(
                batch.n_rows, self.out_features, dtype=rows.dtype, device=rows.device
            ).index_add(0, batch.row_of_entry(), rows)
            return out + self.bias
        out = nn.functional.embedding_bag(batch.indices, self.weight, batch.offsets, mode="sum")
        return out + self.bias

    def macs(self) -> int:
        return self.in_features * self.out_features


class SparseBatch:
    """A batch of 0/1 rows as the flat set-bit indices and per-row offsets ``embedding_bag``
    takes."""

    def __init__(self, indices: torch.Tensor, offsets: torch.Tensor) -> None:
        self.indices, self.offsets = indices, offsets

    @property
    def n_rows(self) -> int:
        return int(self.offsets.numel())

    def to_dense(self, n_features: int) -> torch.Tensor:
        """The batch as a dense float (rows, n_features) 0/1 tensor (for a trunk of your own
        that does not take a SparseBatch)."""
        out = torch.zeros(self.n_rows, n_features, device=self.indices.device)
        out[self.row_of_entry(), self.indices] = 1.0
        return out

    def row_of_entry(self) -> torch.Tensor:
        """The batch row of each entry of ``indices``."""
        ends = torch.cat([self.offsets[1:], self.offsets.new_tensor([self.indices.numel()])])
        rows = torch.arange(self.n_rows, device=self.offsets.device)
        return torch.repeat_interleave(rows, ends - self.offsets)


_VMAP_FRIENDLY = contextvars.ContextVar("binary_input_vmap_friendly", default=False)


@contextmanager
def vmap_friendly() -> Iterator[None]:
    """Within this block (this thread or task only), layers avoid ops that torch.func.vmap
    cannot batch, so a network can be evaluated under many parameter sets at once."""
    token = _VMAP_FRIENDLY.set(True)
    try:
        yield
    finally:
        _VMAP_FRIENDLY.reset(token)


class SparseMatrix:
    """A 0/1 matrix as CSR, sliced into a SparseBatch by row ids with vectorised index
    arithmetic only (no per-row Python on the hot path)."""

    def __init__(self, x: torch.Tensor) -> None:
        rows, cols = torch.nonzero(x > 0, as_tuple=True)
        counts = torch.bincount(rows, minlength=x.shape[0])
        self.indptr = torch.zeros(x.shape[0] + 1, dtype=torch.long, device=x.device)
        self.indptr[1:] = torch.cumsum(counts, 0)
        self.indices = cols
        self.shape = tuple(x.shape)

    def take(self, rows: torch.Tensor) -> SparseBatch:
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        offsets = torch.zeros_like(lengths)
        offsets[1:] = torch.cumsum(lengths, 0)[:-1]
        # Entry k of the batch's flat list is indices[starts[r] + (k - offsets[r])] for its row r.
        shift = torch.repeat_interleave(starts - offsets, lengths)
        flat = shift + torch.arange(int(lengths.sum()), device=rows.device)
        return SparseBatch(self.indices[flat], offsets)


def flop_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Inference multiply-adds of ``module`` on one sample of ``input_shape``, counted by
    ``torch.utils.flop_counter`` (half its FLOPs): for modules whose cost has no formula here
    (a user's trunk, convolutions). Runs one forward in eval mode on zeros; the mode is
    restored."""
    from torch.utils.flop_counter import FlopCounterMode

    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = module.training
    module.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            module(torch.zeros(1, *input_shape, device=device))
    finally:
        module.train(was_training)
    return int(counter.get_total_flops()) // 2


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` ('same' padding) initialised from an explicit generator, with PyTorch's
    default scale (uniform in +-1/sqrt(fan_in)), or ``weight_bound`` for the weights."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        generator: torch.Generator,
        stride: int = 1,
        weight_bound: float | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2
        )
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        _uniform_(self.weight, bound if weight_bound is None else weight_bound, generator)
        _uniform_(self.bias, bound, generator)
