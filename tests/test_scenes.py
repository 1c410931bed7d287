"""The procedural scene generator: determinism, exact ground truth on hand-built scenes, the
relations the module docstring claims, and the cache."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from pipeline.datasets import scenes
from pipeline.datasets.scenes import (
    BOX,
    FLOOR,
    N_CLASSES,
    SPHERE,
    TASKS,
    WALL,
    Box,
    Scene,
    Sphere,
    load_scene_arrays,
    render_scene,
    render_scenes,
)

SIZE = 41  # odd: the optical axis goes through the centre of pixel (20, 20)
MID = SIZE // 2


def pixel_rays(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of every pixel centre, from the documented formula (not the module's code)."""
    f = (size / 2) / math.tan(math.radians(60.0) / 2)
    c = (np.arange(size) + 0.5 - size / 2) / f
    return np.broadcast_to(c[None, :], (size, size)), np.broadcast_to(-c[:, None], (size, size))


def test_same_seed_same_arrays_and_prefix() -> None:
    a = render_scenes(5, 24, seed=3)
    b = render_scenes(5, 24, seed=3)
    longer = render_scenes(12, 24, seed=3)
    other = render_scenes(5, 24, seed=4)
    assert set(a) == {"x", "segmentation", "depth", "normals", "edges", "keypoints"}
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        np.testing.assert_array_equal(a[key], longer[key][:5])
    assert not np.array_equal(a["x"], other["x"])
    # seeds are not offsets: scene 1 of seed 3 is not scene 0 of seed 4
    assert not np.array_equal(a["x"][1], other["x"][0])
    assert not np.array_equal(a["x"][0], a["x"][1])  # scenes differ within a set too


def test_shapes_dtypes_ranges() -> None:
    a = render_scenes(6, 32, seed=0)
    assert a["x"].shape == (6, 3, 32, 32) and a["x"].dtype == np.float32
    assert a["normals"].shape == (6, 3, 32, 32) and a["normals"].dtype == np.float32
    for key in ("segmentation", "edges"):
        assert a[key].shape == (6, 32, 32) and a[key].dtype == np.int64
        assert a[key].min() >= 0 and a[key].max() < N_CLASSES[key]
    for key in ("depth", "keypoints"):
        assert a[key].shape == (6, 32, 32) and a[key].dtype == np.float32
    assert 0.0 <= a["x"].min() and a["x"].max() <= 1.0
    assert np.all(a["depth"] > 0) and np.all(np.isfinite(a["depth"]))
    np.testing.assert_allclose(np.linalg.norm(a["normals"], axis=1), 1.0, atol=1e-5)
    # every random scene shows at least one object, and each visible one gets a keypoint
    assert all(np.isin([SPHERE, BOX], s).any() for s in a["segmentation"])
    assert a["keypoints"].max() > 0.5
    assert set(TASKS) == set(a) - {"x"}
    assert {k for k, t in TASKS.items() if t == "segmentation"} == set(N_CLASSES)


def one_sphere(**kw) -> Scene:
    return Scene(
        objects=(Sphere((0.0, 0.0, 5.0), 1.0, (0.9, 0.2, 0.1)),),
        floor_y=-1.5,
        wall_z=10.0,
        light=(0.0, 0.0, -1.0),  # from the camera: n . l = 1 on the wall and at the sphere's front
        ambient=0.2,
        wall_colour=(0.3, 0.6, 0.4),
        **kw,
    )


def test_sphere_ground_truth_by_hand() -> None:
    out = render_scene(one_sphere(), SIZE)
    u, v = pixel_rays(SIZE)
    # Centre pixel: ray (0, 0, 1) meets the sphere at z = 5 - 1, facing the camera.
    assert out["segmentation"][MID, MID] == SPHERE
    assert out["depth"][MID, MID] == pytest.approx(4.0, abs=1e-5)
    np.testing.assert_allclose(out["normals"][:, MID, MID], (0, 0, -1), atol=1e-6)
    np.testing.assert_allclose(out["x"][:, MID, MID], (0.9, 0.2, 0.1), atol=1e-6)  # n . l = 1
    # Silhouette along the centre row: the ray (u, 0, 1) passes within 1 of (0, 0, 5) iff
    # 25 - 25 / (1 + u^2) <= 1, i.e. |u| <= 1/sqrt(24).
    inside = np.abs(u[MID]) <= 1 / math.sqrt(24)
    assert not np.any(np.isclose(np.abs(u[MID]), 1 / math.sqrt(24), atol=1e-3))
    assert 3 < inside.sum() < SIZE - 3
    np.testing.assert_array_equal(out["segmentation"][MID] == SPHERE, inside)
    # Depth along the row inside: nearest root of |t (u, 0, 1) - (0, 0, 5)|^2 = 1.
    a = 1 + u[MID] ** 2
    t = (5 - np.sqrt(np.maximum(25 - a * 24, 0))) / a
    np.testing.assert_allclose(out["depth"][MID][inside], t[inside], rtol=1e-5)
    # Outside it on that row: the wall, at its analytic depth and normal.
    assert np.all(out["segmentation"][MID][~inside] == WALL)
    np.testing.assert_allclose(out["depth"][MID][~inside], 10.0, rtol=1e-6)
    np.testing.assert_allclose(out["normals"][:, MID, 0], (0, 0, -1), atol=1e-6)
    np.testing.assert_allclose(out["x"][:, MID, 0], (0.3, 0.6, 0.4), atol=1e-6)
    # Bottom centre: the floor y = -1.5 at depth -1.5 / v, normal up, lit at grazing 0.
    assert out["segmentation"][-1, MID] == FLOOR
    assert out["depth"][-1, MID] == pytest.approx(-1.5 / v[-1, MID], rel=1e-6)
    np.testing.assert_allclose(out["normals"][:, -1, MID], (0, 1, 0), atol=1e-6)
    # Edges: exactly the pixels of the row next to the silhouette transition, on both sides.
    change = np.flatnonzero(np.diff(inside.astype(int)))
    expected = np.zeros(SIZE, dtype=np.int64)
    expected[change] = expected[change + 1] = 1
    np.testing.assert_array_equal(out["edges"][MID], expected)
    assert out["edges"][MID, MID] == 0 and out["edges"][5, 5] == 0
    # Keypoint: the centre projects to the centre of pixel (20, 20); peak 1 there only.
    assert np.unravel_index(out["keypoints"].argmax(), out["keypoints"].shape) == (MID, MID)
    assert out["keypoints"][MID, MID] == pytest.approx(1.0)
    sigma = SIZE / 32
    assert out["keypoints"][MID, MID + 2] == pytest.approx(math.exp(-4 / (2 * sigma**2)), rel=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["normals"], axis=0), 1.0, atol=1e-6)


def test_floor_wall_crease_is_an_edge() -> None:
    out = render_scene(Scene(floor_y=-1.5, wall_z=10.0), SIZE)
    seg = out["segmentation"]
    _, v = pixel_rays(SIZE)
    # The floor is nearer than the wall below v = -1.5 / 10.
    np.testing.assert_array_equal(seg == FLOOR, v < -0.15)
    edge_rows = np.flatnonzero(out["edges"].any(axis=1))
    first_floor = np.flatnonzero((seg == FLOOR).any(axis=1))[0]
    assert list(edge_rows) == [first_floor - 1, first_floor]
    assert out["keypoints"].max() == 0.0  # no objects, no keypoints


def test_rotated_box_face_by_hand() -> None:
    box = Box((0.0, 0.0, 5.0), (1.0, 1.0, 1.0), (0.2, 0.4, 0.8), yaw=math.pi / 4)
    out = render_scene(Scene(objects=(box,), floor_y=-1.5, wall_z=10.0), SIZE)
    u, _ = pixel_rays(SIZE)
    # Turned 45 degrees, the front edge is at z = 5 - sqrt(2) and the faces right of it have
    # normal (sin 45, 0, -cos 45): on it, 0.707 (t u) - 0.707 (t - 5) = 1.
    col = MID + 5
    assert u[MID, col] < math.sqrt(2) / 5  # left of the right-hand vertex (sqrt 2, 0, 5)
    assert out["segmentation"][MID, col] == BOX
    expected = (5 - math.sqrt(2)) / (1 - u[MID, col])
    assert out["depth"][MID, col] == pytest.approx(expected, rel=1e-5)
    s = math.sqrt(0.5)
    np.testing.assert_allclose(out["normals"][:, MID, col], (s, 0, -s), atol=1e-6)
    np.testing.assert_allclose(out["normals"][:, MID, MID - 5], (-s, 0, -s), atol=1e-6)


def test_shadow_of_a_sphere_under_a_vertical_light() -> None:
    grey = (0.5, 0.5, 0.5)
    scene = Scene(
        objects=(Sphere((0.0, -0.3, 4.0), 1.0, (1.0, 1.0, 1.0)),),
        floor_y=-1.5,
        wall_z=10.0,
        light=(0.0, 1.0, 0.0),
        ambient=0.2,
        floor_colours=(grey, grey),
    )
    out = render_scene(scene, SIZE)
    u, v = pixel_rays(SIZE)
    floor = out["segmentation"] == FLOOR
    x, z = u * out["depth"], out["depth"]
    # Light straight down: the shadow is the sphere's vertical projection, a unit disc.
    shadow = x**2 + (z - 4.0) ** 2 < 1.0
    assert (floor & shadow).sum() > 5 and (floor & ~shadow).sum() > 5
    np.testing.assert_allclose(out["x"][0][floor & shadow], 0.5 * 0.2, atol=1e-6)
    np.testing.assert_allclose(out["x"][0][floor & ~shadow], 0.5, atol=1e-6)


def test_normals_follow_from_depth() -> None:
    """The docstring's relation: the back-projected depth surface's tangents give the normal."""
    out = render_scenes(3, 64, seed=1)
    u, v = pixel_rays(64)
    ok = []
    for depth, normals, edges in zip(out["depth"], out["normals"], out["edges"]):
        p = np.stack([u * depth, v * depth, depth]).astype(np.float64)
        d_col = (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]) / 2
        d_row = (p[:, 2:, 1:-1] - p[:, :-2, 1:-1]) / 2
        n = np.cross(d_col, d_row, axis=0)
        n /= np.linalg.norm(n, axis=0)
        # away from edges (a 3x3 window without one)
        e = edges.astype(bool)
        near = np.zeros_like(e)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                near[1:-1, 1:-1] |= e[1 + dr : 63 + dr, 1 + dc : 63 + dc]
        cos = np.einsum("chw,chw->hw", n, normals[:, 1:-1, 1:-1])[~near[1:-1, 1:-1]]
        ok.append(cos)
    cos = np.concatenate(ok)
    assert np.median(cos) > 0.9999
    assert np.mean(cos > 0.99) > 0.98


def test_edges_contain_every_class_change() -> None:
    out = render_scenes(4, 32, seed=2)
    seg, edges = out["segmentation"], out["edges"]
    change = seg[:, 1:, :] != seg[:, :-1, :]
    assert np.all(edges[:, 1:, :][change] == 1) and np.all(edges[:, :-1, :][change] == 1)
    change = seg[:, :, 1:] != seg[:, :, :-1]
    assert np.all(edges[:, :, 1:][change] == 1) and np.all(edges[:, :, :-1][change] == 1)
    assert 0.01 < edges.mean() < 0.3


def test_cache_renders_once(tmp_path, monkeypatch) -> None:
    calls = []
    real = scenes.render_scenes

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(scenes, "render_scenes", counting)
    first = load_scene_arrays(4, 16, seed=5, cache_dir=tmp_path)
    path = scenes.cache_path(4, 16, 5, tmp_path)
    assert path.exists() and calls == [(4, 16, 5)]
    mtime = path.stat().st_mtime_ns
    second = load_scene_arrays(4, 16, seed=5, cache_dir=tmp_path)
    assert calls == [(4, 16, 5)] and path.stat().st_mtime_ns == mtime
    for key in first:
        assert second[key].dtype == first[key].dtype
        np.testing.assert_array_equal(first[key], second[key])
    assert f"v{scenes.GENERATOR_VERSION}" in path.name
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_cache_default_dir_from_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TASKGROUP_CACHE", str(tmp_path))
    assert scenes.cache_path(2, 8, 0).parent == tmp_path / "scenes"


def test_interrupted_cache_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    def half_written(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # a killed job: not swallowed, and nothing is left behind

    monkeypatch.setattr(scenes.np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        load_scene_arrays(2, 8, seed=0, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_still_returns_arrays(tmp_path, monkeypatch) -> None:
    def disk_full(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scenes.np, "savez", disk_full)
    with pytest.warns(UserWarning, match="scene cache not written"):
        arrays = load_scene_arrays(2, 8, seed=0, cache_dir=tmp_path)
    np.testing.assert_array_equal(arrays["x"], render_scenes(2, 8, 0)["x"])
    assert list(tmp_path.iterdir()) == []
    assert not os.path.exists(scenes.cache_path(2, 8, 0, tmp_path))
