"""The ``scenes`` dataset: procedural 3-D scenes (pipeline/datasets/scenes.py) with five dense
tasks (segmentation, depth, normals, edges, keypoints), built like an ``arrays`` file.

Config: ``{name: scenes, images: 2000, size: 64, seed: 0}``. Rendered once and cached as
``.npz`` (``TASKGROUP_CACHE``, default ~/.cache/taskgroup/scenes). A network's spec adds the
renderer's ``GENERATOR_VERSION`` (pipeline.datasets.network_dataset): a renderer change that
alters any value retrains everything, a cache hit retrains nothing.
"""

from __future__ import annotations

from .arrays import dataset_from_arrays
from .base import Dataset
from .scenes import N_CLASSES, TASKS, load_scene_arrays

# Loader defaults (like the synthetic dataset's, read with config.get).
DEFAULT_IMAGES, DEFAULT_SIZE = 2000, 64


def scenes_targets() -> dict:
    """Task -> its type (with classes for the class maps), as an arrays dataset declares it."""
    return {
        task: {"type": kind, "classes": N_CLASSES[task]} if task in N_CLASSES else kind
        for task, kind in TASKS.items()
    }


def load_scenes(config: dict) -> Dataset:
    images = int(config.get("images", DEFAULT_IMAGES))
    size = int(config.get("size", DEFAULT_SIZE))
    seed = int(config.get("seed", 0))
    arrays = load_scene_arrays(images, size, seed)
    return dataset_from_arrays(
        arrays, scenes_targets(), "x", "scenes", f"scenes(images={images}, size={size})"
    )
