"""The convolutional encoder-decoder trunk: shapes, determinism, and a cost that halves."""

from __future__ import annotations

import pytest
import torch

from pipeline.models import scaled_widths
from pipeline.models.conv import DEFAULT_WIDTHS, ConvTrunk


def trunk(widths=DEFAULT_WIDTHS, seed: int = 0, **kw) -> ConvTrunk:
    return ConvTrunk(3, widths, torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("size", [64, 33])
def test_output_at_input_resolution(size: int) -> None:
    t = trunk()
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    out = t(x)
    assert out.shape == (2, t.out_channels, size, size)
    assert t.out_channels == t.out_features == DEFAULT_WIDTHS[0]
    assert torch.all(out >= 0) and out.abs().sum() > 0  # ReLU features, not dead


def test_stages_in_order() -> None:
    t = trunk((4, 8, 8, 16))
    stages = t.stages()
    assert isinstance(stages, torch.nn.ModuleList) and len(stages) == 7
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    outs = t.forward_stages(x)
    assert [o.shape[-1] for o in outs] == [32, 16, 8, 4, 8, 16, 32]
    assert [o.shape[1] for o in outs] == [4, 8, 8, 16, 8, 8, 4]
    assert torch.equal(outs[-1], t(x))
    assert [s.out_channels for s in stages] == [o.shape[1] for o in outs]


def test_weights_come_from_the_generator_only() -> None:
    torch.manual_seed(123)
    a = trunk(seed=7).state_dict()
    torch.manual_seed(456)  # the global RNG must not matter
    b = trunk(seed=7).state_dict()
    c = trunk(seed=8).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(torch.equal(a[k], c[k]) for k in a)


def test_macs_are_counted_convolutions() -> None:
    # Hand count for (16, 32, 32) on 3x64x64, 3x3 kernels: stem at 64^2, two stride-2 convs
    # (32^2, 16^2), decoder convs over the concatenations at 32^2 and 64^2.
    by_hand = 9 * (
        3 * 16 * 64**2 + 16 * 32 * 32**2 + 32 * 32 * 16**2 + 64 * 32 * 32**2 + 48 * 16 * 64**2
    )
    assert trunk().macs() == by_hand
    assert trunk(input_size=(32, 32)).macs() == by_hand // 4


def test_half_width_halves_the_cost() -> None:
    """What pipeline.models.widths_for_size does: bisect the first width, others in proportion."""
    full = trunk().macs()

    def ratio(first: int) -> float:
        return trunk(scaled_widths(DEFAULT_WIDTHS, first)).macs() / full

    ratios = [ratio(w) for w in range(1, DEFAULT_WIDTHS[0] + 1)]
    assert all(a < b for a, b in zip(ratios, ratios[1:]))  # bisection needs monotone cost
    best = min(range(1, DEFAULT_WIDTHS[0] + 1), key=lambda w: abs(ratio(w) - 0.5))
    assert 0.45 <= ratio(best) <= 0.55


def test_trains() -> None:
    t = trunk((8, 16))
    head = torch.nn.Conv2d(8, 1, 1)
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = x.mean(dim=1, keepdim=True)
    opt = torch.optim.Adam([*t.parameters(), *head.parameters()], 1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(head(t(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
