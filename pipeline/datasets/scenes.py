"""Procedural 3-D scenes with exact per-pixel ground truth, for dense multi-task learning.

A small ray caster in numpy: a synthetic stand-in for the Taskonomy-style task sets (Zamir et
al., CVPR 2018) on which Standley et al. (ICML 2020, "Which Tasks Should Be Learned Together in
Multi-task Learning?") studied task grouping, with the same kinds of tasks (segmentation,
depth, normals, edges, keypoints). Every target is computed from the ray hits, never
estimated, so a network's error on a task is the network's alone.

Camera and coordinates (camera space throughout, all ground truth is in it):
  pinhole at the origin looking along +z, x to the right, y up; horizontal field of view
  ``FOV_DEGREES``; focal length ``f = (size / 2) / tan(FOV / 2)`` pixels. Pixel (row r,
  column c) has its centre at ``u = (c + 0.5 - size/2) / f``, ``v = (size/2 - r - 0.5) / f``
  and its ray is ``t * (u, v, 1)``, so the ray parameter of a hit *is* its z.

Primitives: a floor plane ``y = floor_y`` (camera ``-floor_y`` above it, chequered albedo), a
back wall ``z = wall_z``, spheres and boxes (axis-aligned up to a rotation about the vertical
axis). Every primary ray hits the wall, so every pixel has a finite depth. Random scenes
(``random_scene``) have 1-3 spheres and 1-2 boxes resting on the floor, not touching each other.

Shading: Lambertian, one directional light plus ambient, ``albedo * (ambient + (1 - ambient) *
max(0, n . l) * lit)``, where ``lit`` is 0 where a shadow ray towards the light hits a sphere or
box. Planes cast no shadows (in random scenes the light comes from above and the camera's side,
so they could not).

Ground truth per pixel, from the nearest hit ``p = t (u, v, 1)`` of the pixel-centre ray:
  * ``segmentation``: the class of the hit primitive, ``CLASS_NAMES`` (0 floor, 1 sphere,
    2 box, 3 wall);
  * ``depth``: ``t`` = the z coordinate of ``p`` (z-buffer depth, not the Euclidean distance);
  * ``normals``: the analytic outward unit normal at ``p`` (sphere ``(p - c) / radius``, a box
    face's normal, floor ``(0, 1, 0)``, wall ``(0, 0, -1)``): always facing the camera;
  * ``edges``: 1 where a 4-neighbouring pixel sees another primitive (instance, not class: two
    spheres meeting in the image make an edge), on both sides of the boundary, else 0;
  * ``keypoints``: ``max_k exp(-d_k^2 / (2 sigma^2))``, d_k the pixel distance from the pixel
    centre to the projection of the centre of visible object k (sphere or box with at least
    one pixel), ``sigma = KEYPOINT_SIGMA * size`` (2 px at 64).

Relations known by construction (what a grouping method could discover):
  * normals derive from depth: back-projecting the depth map gives the surface ``P(r, c) =
    depth * (u, v, 1)``, and the normal is ``dP/dc x dP/dr`` normalised (the gradient of the
    depth surface); exact within a primitive, undefined across edges;
  * edges derive from segmentation and depth: a class change is an edge; the other edges are
    boundaries between two objects of one class, which do not touch, so there the depth jumps.
    No depth-jump threshold is applied within a primitive: all primitives are convex or
    planar, so depth is continuous on each, and any threshold would fire on the floor at
    grazing angles near the horizon;
  * keypoints derive from segmentation: one blob per visible object, at (near) the centre of
    its silhouette, which is exact for an unoccluded sphere seen straight on.

Scene i of ``render_scenes(n, size, seed)`` depends on (seed, i) only, so a smaller n is a
prefix of a larger one. ``load_scene_arrays`` caches the arrays as ``.npz``.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write

# Bump whenever a change alters any rendered value: it is part of the cache file name.
GENERATOR_VERSION = 1

CLASS_NAMES = ("floor", "sphere", "box", "wall")
FLOOR, SPHERE, BOX, WALL = range(4)

# Task -> the loader's per-pixel task type. Edges are a 2-class segmentation, not a 0/1
# regression: ~5-10% of pixels are edges, and cross-entropy with per-class metrics (IoU)
# treats the rare class fairly where mean squared error is dominated by the zeros.
TASKS = {
    "segmentation": "segmentation",
    "depth": "dense_regression",
    "normals": "normals",
    "edges": "segmentation",
    "keypoints": "dense_regression",
}
N_CLASSES = {"segmentation": len(CLASS_NAMES), "edges": 2}

FOV_DEGREES = 60.0
KEYPOINT_SIGMA = 1.0 / 32.0  # of the image size
_EPS = 1e-6
_SHADOW_OFFSET = 1e-4  # shadow rays start this far off the surface, so they miss it


@dataclass(frozen=True)
class Sphere:
    centre: tuple[float, float, float]
    radius: float
    colour: tuple[float, float, float]


@dataclass(frozen=True)
class Box:
    centre: tuple[float, float, float]
    half_extents: tuple[float, float, float]  # along the box's own x, y, z
    colour: tuple[float, float, float]
    yaw: float = 0.0  # rotation about the vertical axis, radians


@dataclass(frozen=True)
class Scene:
    objects: tuple[Sphere | Box, ...] = ()
    floor_y: float = -1.0
    wall_z: float = 10.0
    # Unit vector from a surface towards the light.
    light: tuple[float, float, float] = (0.0, 1.0, 0.0)
    ambient: float = 0.25
    floor_colours: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.55, 0.55, 0.55),
        (0.35, 0.35, 0.35),
    )
    wall_colour: tuple[float, float, float] = (0.6, 0.6, 0.6)
    tile: float = 1.0  # floor chequer size


def focal_length(size: int) -> float:
    return (size / 2) / math.tan(math.radians(FOV_DEGREES) / 2)


@functools.lru_cache(maxsize=8)
def _rays(size: int) -> np.ndarray:
    """(size*size, 3) ray directions (u, v, 1), row-major over pixels."""
    f = focal_length(size)
    centres = (np.arange(size) + 0.5 - size / 2) / f
    v, u = np.meshgrid(-centres, centres, indexing="ij")
    rays = np.stack([u, v, np.ones_like(u)], axis=-1).reshape(-1, 3)
    rays.setflags(write=False)
    return rays


def _sphere_hit(origins: np.ndarray, dirs: np.ndarray, s: Sphere) -> np.ndarray:
    """Ray parameter of the first hit in front of the origin, inf where none."""
    oc = origins - np.asarray(s.centre)
    a = np.einsum("ij,ij->i", dirs, dirs)
    b = np.einsum("ij,ij->i", dirs, oc)
    c = np.einsum("ij,ij->i", oc, oc) - s.radius**2
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def _yaw_matrix(yaw: float) -> np.ndarray:
    """Box frame -> camera frame (a column of box coordinates maps to R @ it)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _box_hit(origins: np.ndarray, dirs: np.ndarray, b: Box) -> tuple[np.ndarray, np.ndarray]:
    """Slab test in the box's frame: (ray parameter or inf, index of the entry face's axis)."""
    rot = _yaw_matrix(b.yaw)
    o = (origins - np.asarray(b.centre)) @ rot  # row-vector form of R^T (p - c)
    d = dirs @ rot
    h = np.asarray(b.half_extents)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-h - o) / d
        t2 = (h - o) / d
    near = np.fmin(t1, t2)
    far = np.fmax(t1, t2)
    axis = np.argmax(np.nan_to_num(near, nan=-np.inf), axis=1)
    t_in = np.nanmax(near, axis=1)
    t_out = np.nanmin(far, axis=1)
    hit = (t_in <= t_out) & (t_in > _EPS)
    return np.where(hit, t_in, np.inf), axis


def _box_normals(dirs: np.ndarray, b: Box, axis: np.ndarray) -> np.ndarray:
    rot = _yaw_matrix(b.yaw)
    d = dirs @ rot
    local = np.zeros_like(d)
    rows = np.arange(len(d))
    # The entry face is the one the ray travels into: its outward normal opposes the ray.
    local[rows, axis] = -np.sign(d[rows, axis])
    return local @ rot.T


def _instances(scene: Scene, size: int):
    """Nearest hit per pixel: (depth, instance id, hit points). Ids: 0 floor, 1 wall, 2 + k
    object k."""
    dirs = _rays(size)
    origins = np.zeros_like(dirs)
    depth = (scene.wall_z - origins[:, 2]) / dirs[:, 2]
    inst = np.ones(len(dirs), dtype=np.int64)
    with np.errstate(divide="ignore"):
        t_floor = np.where(dirs[:, 1] < 0, scene.floor_y / dirs[:, 1], np.inf)
    closer = t_floor < depth
    depth = np.where(closer, t_floor, depth)
    inst[closer] = 0
    box_axes = {}
    for k, obj in enumerate(scene.objects):
        if isinstance(obj, Sphere):
            t = _sphere_hit(origins, dirs, obj)
        else:
            t, box_axes[k] = _box_hit(origins, dirs, obj)
        closer = t < depth
        depth = np.where(closer, t, depth)
        inst[closer] = 2 + k
    return dirs, depth, inst, box_axes


def _occluded(points: np.ndarray, normals: np.ndarray, scene: Scene) -> np.ndarray:
    light = np.asarray(scene.light, dtype=np.float64)
    origins = points + _SHADOW_OFFSET * normals
    dirs = np.broadcast_to(light, points.shape)
    blocked = np.zeros(len(points), dtype=bool)
    for obj in scene.objects:
        t = (
            _sphere_hit(origins, dirs, obj)
            if isinstance(obj, Sphere)
            else _box_hit(origins, dirs, obj)[0]
        )
        blocked |= np.isfinite(t)
    return blocked


def _edges(inst: np.ndarray) -> np.ndarray:
    edges = np.zeros(inst.shape, dtype=bool)
    down = inst[1:, :] != inst[:-1, :]
    right = inst[:, 1:] != inst[:, :-1]
    edges[1:, :] |= down
    edges[:-1, :] |= down
    edges[:, 1:] |= right
    edges[:, :-1] |= right
    return edges


def project(point: tuple[float, float, float], size: int) -> tuple[float, float]:
    """(row, column) in continuous pixel coordinates (pixel (r, c) spans [r, r+1) x [c, c+1))
    of a camera-space point in front of the camera."""
    f = focal_length(size)
    x, y, z = point
    return size / 2 - f * y / z, size / 2 + f * x / z


def render_scene(scene: Scene, size: int = 64) -> dict[str, np.ndarray]:
    """One scene's image and ground truth: ``x`` (3, H, W), ``segmentation`` (H, W) int64,
    ``depth`` (H, W), ``normals`` (3, H, W), ``edges`` (H, W) int64, ``keypoints`` (H, W);
    floats are float32. Definitions in the module docstring."""
    dirs, depth, inst, box_axes = _instances(scene, size)
    points = dirs * depth[:, None]
    normals = np.zeros_like(points)
    normals[inst == 0] = (0.0, 1.0, 0.0)
    normals[inst == 1] = (0.0, 0.0, -1.0)
    albedo = np.empty_like(points)
    albedo[inst == 1] = scene.wall_colour
    on_floor = inst == 0
    chequer = (
        np.floor(points[on_floor, 0] / scene.tile) + np.floor(points[on_floor, 2] / scene.tile)
    ).astype(np.int64) % 2
    albedo[on_floor] = np.asarray(scene.floor_colours)[chequer]
    classes = np.where(inst == 0, FLOOR, WALL)
    for k, obj in enumerate(scene.objects):
        mine = inst == 2 + k
        if not mine.any():
            continue
        if isinstance(obj, Sphere):
            normals[mine] = (points[mine] - np.asarray(obj.centre)) / obj.radius
            classes[mine] = SPHERE
        else:
            normals[mine] = _box_normals(dirs[mine], obj, box_axes[k][mine])
            classes[mine] = BOX
        albedo[mine] = obj.colour
    # Re-normalise away float rounding (a sphere point is on the surface to ~1e-15).
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)

    light = np.asarray(scene.light, dtype=np.float64)
    lambert = np.maximum(normals @ light, 0.0)
    lit = lambert > 0
    if scene.objects and lit.any():
        shadowed = np.zeros_like(lit)
        shadowed[lit] = _occluded(points[lit], normals[lit], scene)
        lambert = np.where(shadowed, 0.0, lambert)
    image = np.clip(albedo * (scene.ambient + (1 - scene.ambient) * lambert)[:, None], 0, 1)

    inst_map = inst.reshape(size, size)
    keypoints = np.zeros((size, size))
    centres = np.arange(size) + 0.5
    for k, obj in enumerate(scene.objects):
        if not (inst == 2 + k).any():
            continue
        row, col = project(obj.centre, size)
        sigma = KEYPOINT_SIGMA * size
        blob = np.exp(
            -((centres[:, None] - row) ** 2 + (centres[None, :] - col) ** 2) / (2 * sigma**2)
        )
        keypoints = np.maximum(keypoints, blob)

    def image_first(a: np.ndarray) -> np.ndarray:
        return a.reshape(size, size, 3).transpose(2, 0, 1).astype(np.float32)

    return {
        "x": image_first(image),
        "segmentation": classes.reshape(size, size).astype(np.int64),
        "depth": depth.reshape(size, size).astype(np.float32),
        "normals": image_first(normals),
        "edges": _edges(inst_map).astype(np.int64),
        "keypoints": keypoints.astype(np.float32),
    }


def _footprint(obj: Sphere | Box) -> float:
    if isinstance(obj, Sphere):
        return obj.radius
    return math.hypot(obj.half_extents[0], obj.half_extents[2])


def random_scene(rng: np.random.Generator) -> Scene:
    """1-3 spheres and 1-2 boxes on the floor in view, at least 0.1 apart (footprint circles),
    random colours, light direction, ambient level and wall distance."""
    floor_y = -1.0
    half_width = math.tan(math.radians(FOV_DEGREES) / 2)
    kinds = ["sphere"] * int(rng.integers(1, 4)) + ["box"] * int(rng.integers(1, 3))
    rng.shuffle(kinds)
    objects: list[Sphere | Box] = []
    for kind in kinds:
        colour = tuple(float(c) for c in rng.uniform(0.15, 1.0, 3))
        for _ in range(100):  # rejection sampling; a failed object is dropped
            z = float(rng.uniform(2.5, 6.5))
            x = float(rng.uniform(-0.55, 0.55) * z * half_width)
            if kind == "sphere":
                r = float(rng.uniform(0.3, 0.8))
                obj: Sphere | Box = Sphere((x, floor_y + r, z), r, colour)
            else:
                h = rng.uniform([0.25, 0.25, 0.25], [0.6, 0.8, 0.6])
                obj = Box(
                    (x, floor_y + float(h[1]), z),
                    (float(h[0]), float(h[1]), float(h[2])),
                    colour,
                    float(rng.uniform(0.0, math.pi / 2)),
                )
            if all(
                math.hypot(x - o.centre[0], z - o.centre[2]) > _footprint(obj) + _footprint(o) + 0.1
                for o in objects
            ):
                objects.append(obj)
                break
    elevation = math.radians(rng.uniform(30.0, 70.0))
    azimuth = math.radians(rng.uniform(-60.0, 60.0))
    light = (
        math.cos(elevation) * math.sin(azimuth),
        math.sin(elevation),
        -math.cos(elevation) * math.cos(azimuth),
    )
    grey = rng.uniform(0.3, 0.7)
    tint = rng.uniform(-0.08, 0.08, 3)
    return Scene(
        objects=tuple(objects),
        floor_y=floor_y,
        wall_z=float(rng.uniform(9.0, 13.0)),
        light=light,
        ambient=float(rng.uniform(0.15, 0.35)),
        floor_colours=(
            tuple(float(c) for c in np.clip(grey + 0.15 + tint, 0, 1)),
            tuple(float(c) for c in np.clip(grey - 0.15 + tint, 0, 1)),
        ),
        wall_colour=tuple(float(c) for c in rng.uniform(0.35, 0.85, 3)),
    )


def render_scenes(n: int, size: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random scenes stacked: ``x`` (n, 3, size, size) float32 in [0, 1],
    ``segmentation`` and ``edges`` (n, size, size) int64, ``depth`` and ``keypoints``
    (n, size, size) float32, ``normals`` (n, 3, size, size) float32. Scene i is drawn from
    ``default_rng([seed, i])``: it depends on (seed, i) only."""
    if n < 0 or size < 2 or seed < 0:
        raise ValueError(
            f"render_scenes: need n >= 0, size >= 2, seed >= 0; got {n}, {size}, {seed}"
        )
    out = {
        "x": np.empty((n, 3, size, size), np.float32),
        "segmentation": np.empty((n, size, size), np.int64),
        "depth": np.empty((n, size, size), np.float32),
        "normals": np.empty((n, 3, size, size), np.float32),
        "edges": np.empty((n, size, size), np.int64),
        "keypoints": np.empty((n, size, size), np.float32),
    }
    for i in range(n):
        scene = random_scene(np.random.default_rng([seed, i]))
        for key, value in render_scene(scene, size).items():
            out[key][i] = value
    return out


# Class maps are stored as uint8 in the cache (8x smaller); loading restores int64.
_COMPACT = ("segmentation", "edges")


def default_cache_dir() -> Path:
    root = os.environ.get("TASKGROUP_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "taskgroup"
    return base / "scenes"


def cache_path(n: int, size: int, seed: int, cache_dir: str | os.PathLike | None = None) -> Path:
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return directory / f"scenes-v{GENERATOR_VERSION}-n{n}-size{size}-seed{seed}.npz"


def load_scene_arrays(
    n: int, size: int = 64, seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """``render_scenes(n, size, seed)``, read from the cache file when it exists, else rendered
    and written there atomically (``pipeline.io.atomic_write``: a killed job leaves no file).
    Writing is best effort: the arrays are returned even when the cache cannot be written."""
    path = cache_path(n, size, seed, cache_dir)
    if path.exists():
        with np.load(path) as stored:
            return {
                k: stored[k].astype(np.int64) if k in _COMPACT else stored[k] for k in stored.files
            }
    arrays = render_scenes(n, size, seed)
    compact = {k: v.astype(np.uint8) if k in _COMPACT else v for k, v in arrays.items()}
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as fh:
            # A file object: given a name, np.savez would append ".npz" to the temporary one.
            np.savez(fh, **compact)
    except OSError as error:
        # e.g. two jobs rendering the same scenes: atomic_write assumes one writer per target
        # and removes the other's temporary file. The other job's copy is as good as ours.
        if not path.exists():
            warnings.warn(f"scene cache not written to {path}: {error}", stacklevel=2)
    return arrays
