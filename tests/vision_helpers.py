"""Tiny image data and trunk modules for the dense-task tests (tests/test_dense.py,
tests/test_workflow_vision.py): written into a test's tmp_path, which the tests put on
sys.path / PYTHONPATH like a user's own module."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRUNK_MODULE = '''
import torch
from torch import nn


def conv(input_shape, width):
    """Spatial output; cost linear in width (one conv from the fixed input channels)."""
    return nn.Sequential(nn.Conv2d(input_shape[0], max(1, round(16 * width)), 3, padding=1),
                         nn.ReLU())


def deep(input_shape, width):
    c = max(1, round(8 * width))
    return nn.Sequential(nn.Conv2d(input_shape[0], c, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c, c, 3, padding=1), nn.ReLU())


def flat(input_shape, width):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()),
                                                 max(1, round(16 * width))), nn.ReLU())


def three_d(input_shape, width):
    # (batch, 4, H * W): neither vector nor image
    return nn.Sequential(nn.Conv2d(input_shape[0], 4, 1), nn.Flatten(2))


class _Staged(nn.Module):
    """Two stages (full, then half resolution) exposed through forward_stages (MTAN)."""

    def __init__(self, channels, width):
        super().__init__()
        c = max(1, round(8 * width))
        self.a = nn.Conv2d(channels, c, 3, padding=1)
        self.b = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)

    def forward_stages(self, x):
        h = torch.relu(self.a(x))
        return [h, torch.relu(self.b(h))]

    def forward(self, x):
        return self.forward_stages(x)[-1]


def staged(input_shape, width):
    return _Staged(input_shape[0], width)


def no_parameters(input_shape, width):
    return nn.ReLU()


def broken(input_shape, width):
    raise RuntimeError("out of coffee")
'''

TASKS = {
    "depth": "dense_regression",
    "seg": {"type": "segmentation", "classes": 3},
    "normals": "normals",
}


def write_trunk_module(directory: Path, name: str = "my_trunks") -> str:
    (directory / f"{name}.py").write_text(TRUNK_MODULE)
    return name


def write_images(path: Path, n: int = 120, size: int = 16, seed: int = 0, label: bool = False):
    """n images (3 channels) with depth, 3-class segmentation and normals computed from them,
    some pixels and samples unlabelled; ``label``: also a binary per-image task."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    depth = (2.0 * x[:, 0] + 1.0).astype(np.float32)
    depth[:, 0, :] = np.nan  # a row of unlabelled pixels in every image
    seg = (x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    seg[:, :, :2] = -1
    normals = np.stack([x[:, 0], x[:, 1], np.ones_like(x[:, 0])], axis=1).astype(np.float32)
    normals[3] = np.nan  # one sample without normals
    arrays = {"x": x, "depth": depth, "seg": seg, "normals": normals}
    if label:
        arrays["label"] = (x.mean(axis=(1, 2, 3)) > 0).astype(np.float64)
    np.savez(path, **arrays)
    return arrays
