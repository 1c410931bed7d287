"""How good are clustering-based candidate groups against TAG's exact selection?

For affinity tables small enough for the exact solver (the published CelebA-9 / Taskonomy-5 TAG
and CS tables, and random / planted tables of 8-12 tasks) and every maximum number of groups
k = 2..n-1, compare each clustering method's TAG objective with the exact optimum:

* ``gain``: (objective - one-group objective) / (optimum - one-group objective), the fraction of
  the exact selection's improvement over "all tasks in one network" that the method reaches
  (1 = optimal; works whatever the sign of the affinities; TAG's CelebA values are all negative,
  so a plain ratio objective / optimum is meaningless there: it is also printed, for tables
  with a positive optimum);
* ``optimal``: share of (table, k) where the method's objective equals the optimum (1e-9 rel.);
* ``ARI``: adjusted Rand index between the method's and the exact solution's serving partition
  (each task labelled by the group that serves it).

Then the time at 617 tasks (random table) per k.

    .venv/bin/python bench/bench_affinity_selection.py [--seeds 10] [--out results.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from pipeline.affinity import Affinity, candidate_groups, tag_exact

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "tag2021"
METHODS = ["spectral", "agglomerative", "spectral+search", "agglomerative+search", "best"]


def published() -> list[tuple[str, Affinity]]:
    out = []
    for name in (
        "celeba9_tag_affinity",
        "celeba9_cs_similarity",
        "taskonomy5_tag_affinity",
        "taskonomy5_cs_similarity",
    ):
        raw = json.loads((DATA / f"{name}.json").read_text())
        out.append((name, Affinity.from_recipient_table(raw["tasks"], raw["matrix"])))
    return out


def planted(n: int, rng: np.random.Generator) -> Affinity:
    """Tasks in 2-4 latent clusters: Z(s -> t) = offset_t + 1 if same cluster, + noise."""
    clusters = rng.integers(0, rng.integers(2, 5), size=n)
    same = clusters[:, None] == clusters[None, :]
    z = rng.normal(0, 1, size=n)[None, :] + same * 1.0 + rng.normal(0, 0.5, size=(n, n))
    return Affinity([f"p{i}" for i in range(n)], z)


def random_table(n: int, rng: np.random.Generator) -> Affinity:
    return Affinity([f"r{i}" for i in range(n)], rng.normal(size=(n, n)))


def compare(instances, methods=METHODS):
    rows = {m: {"gain": [], "ratio": [], "optimal": [], "ari": [], "time": []} for m in methods}
    for _, aff in instances:
        n = len(aff.tasks)
        ks = list(range(2, n))
        exact = {g.max_groups: g for g in tag_exact(aff.tasks, aff.recipient_table(), [1] + ks)}
        one = exact[1].objective
        for method in methods:
            start = time.perf_counter()
            got = {g.max_groups: g for g in candidate_groups(aff, ks, method=method)}
            rows[method]["time"].append(time.perf_counter() - start)
            for k in ks:
                opt, obj = exact[k].objective, got[k].objective
                span = opt - one
                rows[method]["gain"].append((obj - one) / span if span > 1e-12 else 1.0)
                if opt > 0:
                    rows[method]["ratio"].append(obj / opt)
                rows[method]["optimal"].append(obj >= opt - 1e-9 * max(abs(opt), 1e-12))
                rows[method]["ari"].append(adjusted_rand_score(exact[k].labels(), got[k].labels()))
    return rows


def summarise(label: str, rows) -> list[str]:
    lines = []
    for method, r in rows.items():
        gain = np.array(r["gain"])
        ratio = f"{np.median(r['ratio']):.3f}" if r["ratio"] else "n/a"
        lines.append(
            f"| {label} | {method} | {len(gain)} | {np.median(gain):.3f} | "
            f"{np.mean(np.clip(gain, -1, None)):.3f} | {np.min(gain):.3g} | {ratio} | "
            f"{np.mean(r['optimal']):.2f} | {np.mean(r['ari']):.2f} |"
        )
    return lines


def timing(n: int, ks: list[int], seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    aff = random_table(n, rng)
    lines = []
    for method in METHODS:
        for k in ks:
            start = time.perf_counter()
            g = candidate_groups(aff, [k], method=method)[0]
            lines.append(
                f"| {method} | {k} | {time.perf_counter() - start:.2f} | {g.n_groups} | "
                f"{g.objective:.4g} |"
            )
    return lines


def machine() -> str:
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("Model name")
        )
        cpus = next(
            line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("CPU(s)")
        )
        return f"{model}, {cpus} CPU(s), Python {platform.python_version()}"
    except Exception:  # noqa: BLE001 - informational only
        return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sizes", default="8,10,12")
    parser.add_argument("--big", type=int, default=617)
    parser.add_argument("--out")
    args = parser.parse_args()
    lines = [f"machine: {machine()}", ""]
    lines += [
        "| tables | method | (table, k) cases | median gain | mean gain (clipped at -1) | "
        "min gain | median ratio (opt > 0) | optimal | mean ARI |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += summarise("published TAG+CS (CelebA-9, Taskonomy-5)", compare(published()))
    sizes = [int(s) for s in args.sizes.split(",")]
    for kind, make in (("planted", planted), ("random", random_table)):
        instances = [
            (f"{kind}{n}-{s}", make(n, np.random.default_rng(1000 * n + s)))
            for n in sizes
            for s in range(args.seeds)
        ]
        lines += summarise(f"{kind}, n = {args.sizes}, {args.seeds} seeds", compare(instances))
    lines += [
        "",
        f"time at n = {args.big} (random table), one k per call:",
        "",
        "| method | k | seconds | groups used | objective |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += timing(args.big, [2, 5, 10, 20, 50])
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
