"""Models: the sparse first layer is exactly a dense linear layer on 0/1 inputs, and the cost
model counts the architecture's multiply-adds (checked against hand counts)."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch.nn import functional as F

from pipeline.models import (
    ModelShape,
    build_model,
    model_macs,
    network_cost,
    reference_macs,
    scaled_widths,
    widths_for_size,
)
from pipeline.models.layers import BinaryInput, Dense, SparseMatrix


def _binary_matrix(rows: int, cols: int, density: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(rows, cols, generator=g) < density).float()
    x[3] = 0.0  # an all-zero row (an empty bag)
    x[5] = 1.0  # an all-ones row
    return x


def _dense_from_batch(batch, n_rows: int, cols: int) -> torch.Tensor:
    """Rebuild the dense 0/1 rows a SparseBatch describes, one row at a time (slow, obvious)."""
    out = torch.zeros(n_rows, cols)
    ends = [*batch.offsets.tolist()[1:], batch.indices.numel()]
    for r, (start, end) in enumerate(zip(batch.offsets.tolist(), ends)):
        out[r, batch.indices[start:end]] = 1.0
    return out


@pytest.mark.parametrize(
    "rows",
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],  # all, in order
        [11, 3, 3, 0, 5, 7],  # out of order, a repeat, the empty and the full row
        [3],  # just the empty row
        [10, 11],  # the last rows
    ],
)
def test_sparse_matrix_take_equals_dense_row_selection(rows: list[int]) -> None:
    x = _binary_matrix(12, 40, 0.2, seed=1)
    matrix = SparseMatrix(x)
    assert matrix.shape == (12, 40)
    index = torch.tensor(rows, dtype=torch.long)
    batch = matrix.take(index)
    assert batch.offsets.numel() == len(rows)
    assert torch.equal(_dense_from_batch(batch, len(rows), 40), x[index])


def test_binary_input_equals_dense_linear_forward_and_gradients() -> None:
    x = _binary_matrix(16, 50, 0.15, seed=2)
    x[:, 10] = 0.0  # a feature no row has
    layer = BinaryInput(50, 7, torch.Generator().manual_seed(0))
    rows = torch.tensor([4, 0, 15, 3, 5, 9, 9, 1])
    sparse_out = layer(SparseMatrix(x).take(rows))

    weight = layer.weight.detach().clone().requires_grad_(True)  # (in, out)
    bias = layer.bias.detach().clone().requires_grad_(True)
    dense_out = F.linear(x[rows], weight.t(), bias)
    torch.testing.assert_close(sparse_out, dense_out, rtol=1e-6, atol=1e-6)
    # The empty row is the bias alone.
    torch.testing.assert_close(sparse_out[3], layer.bias.detach())

    upstream = torch.randn(sparse_out.shape, generator=torch.Generator().manual_seed(3))
    (sparse_out * upstream).sum().backward()
    (dense_out * upstream).sum().backward()
    torch.testing.assert_close(layer.weight.grad, weight.grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(layer.bias.grad, bias.grad, rtol=1e-6, atol=1e-6)
    # Only weights of features set in the batch receive gradient.
    unused = x[rows].sum(dim=0) == 0
    assert unused.any()
    assert torch.all(layer.weight.grad[unused] == 0)


def test_binary_network_equals_dense_network_with_the_same_weights() -> None:
    shape = ModelShape(in_features=30, hidden=(16, 8), head_hidden=(4,))
    dense = build_model("hard_sharing", shape, (16, 8), [1, 3], torch.Generator().manual_seed(0))
    sparse_shape = ModelShape(in_features=30, hidden=(16, 8), head_hidden=(4,), binary_input=True)
    sparse = build_model(
        "hard_sharing", sparse_shape, (16, 8), [1, 3], torch.Generator().manual_seed(9)
    )
    state = dense.state_dict()
    state["trunk.layers.0.weight"] = state["trunk.layers.0.weight"].t().contiguous()
    sparse.load_state_dict(state)
    x = _binary_matrix(10, 30, 0.3, seed=4)
    rows = torch.arange(10)
    for a, b in zip(dense(x), sparse(SparseMatrix(x).take(rows))):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert dense.macs() == sparse.macs()


# ------------------------------------------------------------------------------------ cost


def hand_macs(in_features: int, hidden, head_hidden, output_dims) -> int:
    """Multiply-adds of an MLP trunk plus one MLP head per task, counted by hand."""
    trunk = sum(a * b for a, b in zip([in_features, *hidden[:-1]], hidden))
    heads = 0
    for out in output_dims:
        widths = [hidden[-1], *head_hidden, out]
        heads += sum(a * b for a, b in pairwise(widths))
    return trunk + heads


SHAPE = ModelShape(in_features=32, hidden=(64, 64), head_hidden=())


def test_full_single_task_cost_is_exactly_one() -> None:
    macs, cost = network_cost("hard_sharing", SHAPE, SHAPE.hidden, [1])
    assert macs == 32 * 64 + 64 * 64 + 64 * 1
    assert reference_macs("hard_sharing", SHAPE) == 32 * 64 + 64 * 64 + 64 * 1
    assert cost == 1.0
    # The reference is the full single-task network whatever is priced: a half-width one
    # costs its own hand-counted multiply-adds over that reference.
    _, half = network_cost("hard_sharing", SHAPE, (32, 32), [1])
    assert half == pytest.approx((32 * 32 + 32 * 32 + 32) / (32 * 64 + 64 * 64 + 64))


@pytest.mark.parametrize("binary_input", [False, True])
def test_multi_task_cost_adds_the_extra_heads(binary_input: bool) -> None:
    shape = ModelShape(
        in_features=100, hidden=(40, 20), head_hidden=(8,), binary_input=binary_input
    )
    reference = 100 * 40 + 40 * 20 + (20 * 8 + 8 * 1)
    assert hand_macs(100, (40, 20), (8,), [1]) == reference
    # Three tasks: a binary, a 5-class and a regression head on one trunk.
    macs, cost = network_cost("hard_sharing", shape, shape.hidden, [1, 5, 1])
    extra_heads = (20 * 8 + 8 * 5) + (20 * 8 + 8 * 1)
    assert macs == reference + extra_heads
    assert cost == pytest.approx(1.0 + extra_heads / reference, rel=1e-12)


def test_half_size_cost_is_about_one_half_and_the_best_width() -> None:
    shape = ModelShape(in_features=1024, hidden=(128, 128), head_hidden=(), binary_input=True)
    widths = widths_for_size("hard_sharing", shape, "half")
    _, cost = network_cost("hard_sharing", shape, widths, [1])
    assert abs(cost - 0.5) <= 0.02
    assert widths[0] == widths[1] < 128  # equal hidden widths stay equal
    # No neighbouring first-layer width comes closer to half of the hand-counted reference.
    reference = hand_macs(1024, (128, 128), (), [1])
    assert cost == pytest.approx(hand_macs(1024, widths, (), [1]) / reference)
    for neighbour in (widths[0] - 1, widths[0] + 1):
        ratio = hand_macs(1024, (neighbour, neighbour), (), [1]) / reference
        assert abs(ratio - 0.5) >= abs(cost - 0.5)


def test_widths_for_size_full_and_proportions() -> None:
    shape = ModelShape(in_features=50, hidden=(96, 48, 24), head_hidden=(4,))
    assert widths_for_size("hard_sharing", shape, "full") == (96, 48, 24)
    half = widths_for_size("hard_sharing", shape, "half")
    assert all(h < f for h, f in zip(half, shape.hidden))
    # The other layers keep their ratio to the first (up to rounding).
    assert abs(half[1] - half[0] / 2) <= 0.5 and abs(half[2] - half[0] / 4) <= 0.5
    _, cost = network_cost("hard_sharing", shape, half, [1])
    assert abs(cost - 0.5) <= 0.02


def test_cost_grows_monotonically_with_width() -> None:
    shape = ModelShape(in_features=20, hidden=(30, 15), head_hidden=())
    costs = [
        model_macs("hard_sharing", shape, scaled_widths(shape.hidden, w), [1]) for w in range(1, 31)
    ]
    assert all(a <= b for a, b in pairwise(costs))
    assert costs[-1] == hand_macs(20, (30, 15), (), [1])
    # A wider trunk gives a wider half network.
    wide = ModelShape(in_features=20, hidden=(60, 30), head_hidden=())
    assert (widths_for_size("hard_sharing", wide, "half")[0]
            > widths_for_size("hard_sharing", shape, "half")[0])  # fmt: skip


def test_dense_layer_reports_its_macs() -> None:
    layer = Dense(13, 7, torch.Generator().manual_seed(0))
    assert layer.macs() == 13 * 7
    assert BinaryInput(13, 7, torch.Generator().manual_seed(0)).macs() == 13 * 7


# ------------------------------------------------------------------------------------ init


def _state(seed: int, binary_input: bool = False) -> dict:
    shape = ModelShape(in_features=24, hidden=(16, 16), head_hidden=(8,), binary_input=binary_input)
    model = build_model(
        "hard_sharing", shape, shape.hidden, [1, 2], torch.Generator().manual_seed(seed)
    )
    return model.state_dict()


@pytest.mark.parametrize("binary_input", [False, True])
def test_init_is_deterministic_given_the_generator_seed(binary_input: bool) -> None:
    a, b, c = _state(5, binary_input), _state(5, binary_input), _state(6, binary_input)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not torch.equal(a[k], c[k]) for k in a)


def test_init_does_not_use_the_global_rng() -> None:
    torch.manual_seed(0)
    a = _state(5)
    torch.manual_seed(123)
    torch.rand(10)
    b = _state(5)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_init_scale_is_linear_default() -> None:
    layer = Dense(400, 300, torch.Generator().manual_seed(0))
    bound = 1.0 / 400**0.5
    assert layer.weight.abs().max() <= bound
    assert layer.weight.abs().max() > 0.95 * bound  # uniform over the whole range


def test_unknown_architecture_names_the_key() -> None:
    with pytest.raises(ValueError, match="model.architecture"):
        build_model("soft_sharing", SHAPE, SHAPE.hidden, [1], torch.Generator())


def test_trunk_needs_a_layer() -> None:
    with pytest.raises(ValueError, match="model.hidden"):
        build_model("hard_sharing", ModelShape(8, (), ()), (), [1], torch.Generator())
