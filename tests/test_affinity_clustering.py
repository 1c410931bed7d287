"""Clustering-based candidate groups (pipeline.affinity.clustering) and the sampled higher-order
affinity (pipeline.affinity.higher_order)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from pipeline.affinity import (
    Affinity,
    AffinityFormatError,
    candidate_groups,
    evaluate,
    higher_order_affinity,
    pair_coverage,
    sample_subsets,
    subset_frame,
    tag_exact,
)
from pipeline.affinity.clustering import local_search


def _planted(n_clusters=3, per=4, seed=0, strength=2.0, noise=0.3):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_clusters), per)
    n = labels.size
    z = rng.normal(0, 1, size=n)[None, :] + strength * (labels[:, None] == labels[None, :])
    z = z + rng.normal(0, noise, size=(n, n))
    return Affinity([f"task {i} (c{c})" for i, c in enumerate(labels)], z), labels


@pytest.mark.parametrize(
    "method", ["spectral", "agglomerative", "spectral+search", "agglomerative+search"]
)
def test_planted_clusters_recovered(method):
    aff, labels = _planted()
    g = candidate_groups(aff, [3], method=method)[0]
    found = {frozenset(grp) for grp in g.groups}
    want = {frozenset(t for t, c in zip(aff.tasks, labels) if c == k) for k in range(3)}
    assert want <= found or (
        method.endswith("search")
        and g.objective
        >= evaluate(aff.tasks, aff.recipient_table(), [list(w) for w in want]).objective - 1e-12
    )
    if not method.endswith("search"):
        assert found == want


def test_search_matches_exact_on_planted_and_never_worse_than_clustering():
    aff, _ = _planted(seed=3)
    exact = {g.max_groups: g for g in tag_exact(aff.tasks, aff.recipient_table(), [2, 3, 4])}
    for base in ("spectral", "agglomerative"):
        plain = candidate_groups(aff, [2, 3, 4], method=base)
        searched = candidate_groups(aff, [2, 3, 4], method=base + "+search")
        for p, s in zip(plain, searched):
            assert s.objective >= p.objective - 1e-12
            assert s.objective <= exact[s.max_groups].objective + 1e-12
            assert s.n_groups <= s.max_groups
    assert searched[1].objective == pytest.approx(exact[3].objective, rel=1e-9)


def test_local_search_removes_singletons():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(6, 6))
    labels = local_search(t, np.arange(6), 6, np.full(6, -1e6))
    assert np.bincount(labels).min() >= 2


def test_auto_is_exact_small_and_clustering_large():
    aff, _ = _planted()
    auto = candidate_groups(aff, [3], method="auto")[0]
    assert auto.method == "exact"
    rng = np.random.default_rng(1)
    big = Affinity([f"t{i}" for i in range(40)], rng.normal(size=(40, 40)))
    g = candidate_groups(big, [4], method="auto")[0]
    assert g.method in ("spectral+search", "agglomerative+search") and g.n_groups <= 4
    best = candidate_groups(big, [4], method="best")[0]
    spectral = candidate_groups(big, [4], method="spectral+search")[0]
    assert best.objective >= max(g.objective, spectral.objective) - 1e-12
    assert set(g.serving) == set(big.tasks)


def test_617_tasks_in_seconds():
    rng = np.random.default_rng(0)
    aff = Affinity([f"assay {i}" for i in range(617)], rng.normal(size=(617, 617)))
    start = time.perf_counter()
    out = candidate_groups(aff, [5, 20], method="agglomerative+search")
    assert time.perf_counter() - start < 30
    assert [g.n_groups <= g.max_groups for g in out] == [True, True]
    assert all(len(g.serving) == 617 for g in out)


def test_non_finite_affinity_refused():
    z = np.ones((3, 3))
    z[0, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        candidate_groups(Affinity(["a", "b", "c"], z), [2], method="spectral")


# --- higher-order affinity --------------------------------------------------------------------


def test_sample_subsets_deterministic_and_covering():
    tasks = [f"t{i}" for i in range(10)]
    a = sample_subsets(tasks, k=4, m=12, seed=3)
    assert a == sample_subsets(tasks, k=4, m=12, seed=3)
    assert a != sample_subsets(tasks, k=4, m=12, seed=4)
    assert len(a) == 12 and all(len(s) == 4 == len(set(s)) for s in a)
    cov = pair_coverage(a, tasks)
    assert (cov[~np.eye(10, dtype=bool)] >= 1).all()


def test_sample_subsets_errors():
    tasks = [f"t{i}" for i in range(10)]
    with pytest.raises(ValueError, match=r"k=11 .* n=10"):
        sample_subsets(tasks, k=11, m=5)
    with pytest.raises(ValueError, match=r"need m >= 8"):  # 45 pairs / 6 per subset
        sample_subsets(tasks, k=4, m=7)
    assert len(sample_subsets(tasks, k=4, m=7, cover_pairs=False)) == 7
    # the counting bound holds (8 * 6 >= 45) but the greedy cover needs more: named m
    with pytest.raises(ValueError, match=r"greedy pair cover for seed=0 needs m >= 10"):
        sample_subsets(tasks, k=4, m=8, seed=0)
    assert len(sample_subsets(tasks, k=4, m=10, seed=0)) == 10


def test_higher_order_affinity_sign_and_values():
    # loss of t: 1.0, minus 0.5 whenever "helper" is in the subset
    tasks = ["t", "helper", "other", "x"]
    subsets = sample_subsets(tasks, k=2, m=6, seed=0)

    def losses(subset):
        return {s: 1.0 - 0.5 * (s == "t" and "helper" in subset) for s in subset}

    aff = higher_order_affinity(subset_frame(subsets, losses), tasks=tasks)
    i, h, o = 0, 1, 2
    assert aff.matrix[h, i] == pytest.approx(-0.5)  # Z(helper -> t) = - mean loss of t
    assert aff.matrix[o, i] == pytest.approx(-1.0)
    assert aff.matrix[h, i] > aff.matrix[o, i]  # better partner = higher affinity
    g = tag_exact(aff.tasks, aff.recipient_table(), [3])[0]
    assert g.serving["t"] == ("t", "helper")


def test_higher_order_planted_groups_by_spectral():
    rng = np.random.default_rng(0)
    tasks = [f"g{c}-{i}" for c in range(3) for i in range(4)]
    cluster = {t: int(t[1]) for t in tasks}
    subsets = sample_subsets(tasks, k=4, m=60, seed=1)

    def losses(subset):
        return {
            t: 1.0
            - 0.2 * sum(cluster[u] == cluster[t] for u in subset if u != t)
            + 0.02 * rng.normal()
            for t in subset
        }

    aff = higher_order_affinity(subset_frame(subsets, losses))
    g = candidate_groups(aff, [3], method="spectral")[0]
    assert {frozenset(x) for x in g.groups} == {
        frozenset(t for t in tasks if cluster[t] == c) for c in range(3)
    }


def test_higher_order_missing_pairs_named():
    frame = pd.DataFrame(
        [(0, "a", 1.0), (0, "b", 1.0), (1, "b", 1.0), (1, "c", 1.0)],
        columns=["subset", "task", "loss"],
    )
    with pytest.raises(
        AffinityFormatError, match=r"1 task pair\(s\) never trained together.*'a'\+'c'"
    ):
        higher_order_affinity(frame)
    with pytest.raises(AffinityFormatError, match="declares"):
        higher_order_affinity(frame.assign(tasks=["a+b", "a+b", "b", "b"]))


def test_higher_order_normalise_puts_tasks_on_one_scale():
    frame = pd.DataFrame(
        [
            (0, "a", 1.0),
            (0, "b", 100.0),
            (1, "a", 3.0),
            (1, "c", 5.0),
            (2, "b", 300.0),
            (2, "c", 15.0),
        ],
        columns=["subset", "task", "loss"],
    )
    raw = higher_order_affinity(frame)
    assert raw.matrix[0, 1] == pytest.approx(-100.0)  # Z(a -> b) = - loss of b with a
    norm = higher_order_affinity(frame, normalise=True)
    assert norm.matrix[0, 1] == pytest.approx(-0.5)  # 100 / mean(100, 300)
    assert norm.matrix[1, 0] == pytest.approx(-0.5)  # 1 / mean(1, 3)
