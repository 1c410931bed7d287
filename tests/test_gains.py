"""Intervals on gains (pipeline/selection/gains.py) on constructed inputs: identical groupings
give exactly 0 with an interval at 0; a planted per-sample shift is detected and covered; the
bootstrap's 95 % interval covers a known difference about 95 % of the time; paired seeds give
the Student t interval; a missing per-sample file is said, not fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from pipeline.sample_losses import samples_file, write_sample_losses
from pipeline.selection.gains import (
    SampleLosses,
    Served,
    bootstrap_interval,
    compare,
    seed_interval,
)

TASKS = ("a", "b", "c")
N_ROWS = 200


def _file(tmp_path: Path, network: str, losses: dict[str, np.ndarray], rows: np.ndarray) -> str:
    """A TEST_LOSSES file of ``network``: per task, the loss of each row (NaN: unlabelled)."""
    parts = {"row": [], "task": [], "loss": []}
    for task, values in losses.items():
        labelled = ~np.isnan(values)
        parts["row"].append(rows[labelled])
        parts["task"] += [task] * int(labelled.sum())
        parts["loss"].append(values[labelled])
    n = len(parts["task"])
    table = pa.table({
        "network": [network] * n, "seed": np.zeros(n, dtype=np.int64), "config_hash": ["h"] * n,
        "row": np.concatenate(parts["row"]).astype(np.int32), "task": parts["task"],
        "loss": np.concatenate(parts["loss"]).astype(np.float32),
        "weight": np.ones(n, dtype=np.int32),
    })  # fmt: skip
    path = tmp_path / f"{network}.parquet"
    write_sample_losses(table, path)
    return str(path)


def _served(method: str, networks: dict[str, str], means: dict[str, dict[str, float]]) -> Served:
    """A one-seed grouping serving each task by ``networks[task]``, whose loss is its mean."""
    test = np.array([means[networks[t]][t] for t in TASKS])
    return Served(method, 1.0, TASKS, tuple(networks[t] for t in TASKS), test, {0: test.sum()})


def _losses(rng: np.random.Generator, shift: float = 0.0) -> dict[str, np.ndarray]:
    out = {}
    for task in TASKS:
        values = rng.gamma(2.0, 0.3, N_ROWS) + shift
        values[rng.random(N_ROWS) < 0.3] = np.nan  # unlabelled rows
        out[task] = values
    return out


def _means(losses: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        t: float(np.nanmean(v.astype(np.float32).astype(np.float64))) for t, v in losses.items()
    }


@pytest.fixture
def rows() -> np.ndarray:
    # Dataset row ids of the test split: not 0..n-1, as in a real split.
    return np.sort(np.random.default_rng(1).choice(5 * N_ROWS, N_ROWS, replace=False))


def test_identical_groupings_give_exactly_zero(tmp_path: Path, rows: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    base, other = _losses(rng), _losses(rng)
    files = {"n1": _file(tmp_path, "n1", base, rows), "n2": _file(tmp_path, "n2", other, rows)}
    means = {"n1": _means(base), "n2": _means(other)}
    serve = {"a": "n1", "b": "n2", "c": "n1"}
    samples = SampleLosses(files, rows, resamples=500)
    gain = bootstrap_interval(_served("x", serve, means), _served("y", serve, means), samples)
    assert gain.difference == 0.0 and gain.low == 0.0 and gain.high == 0.0
    assert gain.distinguishable is False and gain.how == "bootstrap" and gain.resamples == 500


def test_a_planted_per_sample_shift_is_detected_and_covered(tmp_path: Path, rows) -> None:
    rng = np.random.default_rng(0)
    base = _losses(rng)
    better = {t: v - 0.05 for t, v in base.items()}  # every labelled row 0.05 lower
    noisy = {t: v + rng.normal(0, 0.3, N_ROWS) for t, v in base.items()}  # no shift, noise
    files = {n: _file(tmp_path, n, losses, rows)
             for n, losses in (("base", base), ("better", better), ("noisy", noisy))}  # fmt: skip
    means = {"base": _means(base), "better": _means(better), "noisy": _means(noisy)}
    samples = SampleLosses(files, rows, resamples=1000)
    reference = _served("all_in_one", dict.fromkeys(TASKS, "base"), means)
    shifted = _served("optimal", {"a": "better", "b": "better", "c": "base"}, means)
    gain = bootstrap_interval(shifted, reference, samples)
    # Two tasks, each 0.05 lower on every row: a gain of 0.1 in every resample.
    assert gain.difference == pytest.approx(0.1, abs=1e-6)
    assert gain.low == pytest.approx(0.1, abs=1e-5) and gain.high == pytest.approx(0.1, abs=1e-5)
    assert gain.distinguishable
    # Noise without a shift: an interval of real width that covers the true difference 0.
    mixed = _served("esa", {"a": "noisy", "b": "noisy", "c": "noisy"}, means)
    noise = bootstrap_interval(mixed, reference, samples)
    assert noise.high - noise.low > 0.01
    assert noise.low <= noise.difference <= noise.high
    # The same draw for every comparison: reproducible from the seed.
    again = bootstrap_interval(mixed, reference, SampleLosses(files, rows, resamples=1000))
    assert (again.low, again.high) == (noise.low, noise.high)


def test_bootstrap_interval_covers_a_known_difference_about_95_percent(tmp_path: Path) -> None:
    """Per-row loss differences with a known mean: the interval should cover the true total
    difference in ~95 % of independent test sets (binomial spread at 150 trials: 0.88-0.99)."""
    n, trials, covered = 120, 150, 0
    rows = np.arange(n)
    true_shift = 0.04
    for k in range(trials):
        rng = np.random.default_rng(100 + k)
        a = {"a": rng.gamma(2.0, 0.3, n)}
        b = {"a": a["a"] + true_shift + rng.normal(0, 0.2, n)}
        files = {"A": _file(tmp_path, "A", a, rows), "B": _file(tmp_path, "B", b, rows)}
        means = {"A": _means(a), "B": _means(b)}
        ga = Served("x", 1.0, ("a",), ("A",), np.array([means["A"]["a"]]), {0: 0.0})
        gb = Served("y", 1.0, ("a",), ("B",), np.array([means["B"]["a"]]), {0: 0.0})
        gain = bootstrap_interval(ga, gb, SampleLosses(files, rows, 400, seed=k))
        covered += gain.low <= true_shift <= gain.high
    assert 0.88 <= covered / trials <= 0.99


def test_rows_without_a_label_in_a_resample_fall_back_to_the_full_sample(
    tmp_path: Path, rows
) -> None:
    rng = np.random.default_rng(3)
    sparse = {t: np.full(N_ROWS, np.nan) for t in TASKS}
    for t in TASKS:
        sparse[t][:2] = rng.random(2)  # two labelled rows: often none in a resample
    other = {t: v + 0.5 for t, v in sparse.items()}
    files = {"s": _file(tmp_path, "s", sparse, rows), "o": _file(tmp_path, "o", other, rows)}
    means = {"s": _means(sparse), "o": _means(other)}
    samples = SampleLosses(files, rows, resamples=300)
    gain = bootstrap_interval(
        _served("x", dict.fromkeys(TASKS, "s"), means),
        _served("y", dict.fromkeys(TASKS, "o"), means),
        samples,
    )
    assert np.isfinite([gain.low, gain.high]).all()
    assert gain.low == pytest.approx(1.5, abs=1e-5) and gain.high == pytest.approx(1.5, abs=1e-5)


def test_paired_seeds_give_the_student_t_interval() -> None:
    rng = np.random.default_rng(0)
    seeds = [0, 1, 2, 4]
    a_totals = {s: 10 + rng.normal() for s in seeds}
    b_totals = {s: a_totals[s] + 0.3 + rng.normal(0, 0.1) for s in seeds}
    b_totals[9] = 1.0  # a seed only the reference has: not paired
    test = np.zeros(3)
    a = Served("optimal", 2.0, TASKS, ("x",) * 3, test, a_totals)
    b = Served("all_in_one", 2.0, TASKS, ("y",) * 3, test, b_totals)
    gain = compare(a, b)
    d = np.array([b_totals[s] - a_totals[s] for s in seeds])
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert gain.how == "seeds_t" and gain.n_seeds == 4
    assert gain.difference == pytest.approx(d.mean())
    assert (gain.low, gain.high) == pytest.approx((ci.low, ci.high))
    with pytest.raises(ValueError, match="1 paired seed"):
        seed_interval(a, Served("y", 2.0, TASKS, ("y",) * 3, test, {0: 1.0}))


def test_a_missing_per_sample_file_is_said_not_fatal(tmp_path: Path, rows) -> None:
    rng = np.random.default_rng(0)
    base = _losses(rng)
    files = {"n1": _file(tmp_path, "n1", base, rows), "gone": str(tmp_path / "gone.parquet")}
    means = {"n1": _means(base), "gone": _means(base)}
    a = _served("optimal", dict.fromkeys(TASKS, "n1"), means)
    b = _served("all_in_one", dict.fromkeys(TASKS, "gone"), means)
    gain = compare(a, b, lambda: SampleLosses(files, rows, 100))
    assert gain.low is None and gain.distinguishable is None
    assert gain.how.startswith("none: no per-sample test losses for network 'gone'")
    assert "gone.parquet is missing" in gain.how
    said = compare(a, b, lambda: "selection.epoch is 'best_val'")
    assert said.how == "none: selection.epoch is 'best_val'" and said.difference == 0.0


def test_samples_file_mirrors_the_runs_path() -> None:
    metrics = "results/runs/hard_sharing-equal/seed0/full/a+b.parquet"
    assert samples_file(metrics) == Path(
        "results/samples/hard_sharing-equal/seed0/full/a+b.parquet"
    )
    with pytest.raises(ValueError, match="not a network file"):
        samples_file("elsewhere/x/y/z/w.parquet")


def test_gains_frame_compares_the_answer_with_the_control_and_all_in_one() -> None:
    """A 'control' answer (the trained random candidates, issue 19) is compared like any
    reference, and is itself compared with all-in-one; seeds are paired."""
    import pandas as pd

    from pipeline.selection.candidates import Candidates
    from pipeline.selection.gains import gains_frame
    from pipeline.selection.outputs import LABELS, gains_section
    from pipeline.selection.scoring import score
    from pipeline.selection.solving import Outcome, Settings

    sets = [("a", "b", "c"), ("a", "b"), ("c",), ("a", "c"), ("b",)]
    members = np.array([[t in s for t in TASKS] for s in sets])
    rng = np.random.default_rng(0)
    seeds = [0, 1, 2]
    # Per seed: a shared seed effect, the networks' own level, a little noise.
    level = np.array([1.0, 0.8, 0.9, 0.95, 0.97])[:, None, None]
    test_seeds = level + rng.normal(0, 0.3, (1, 1, 3)) + rng.normal(0, 0.005, (5, 3, 3))
    test_seeds = np.where(members[:, :, None], test_seeds, np.nan)
    test = test_seeds.mean(axis=2)
    cand = Candidates(
        architecture="hard_sharing", weighting="equal", tasks=list(TASKS),
        networks=["+".join(s) + "@full" for s in sets], size=["full"] * 5,
        cost=np.ones(5), members=members, val=test, test=test, early=test,
        test_seeds=test_seeds, seeds=seeds, trained=np.ones(5, dtype=bool),
    )  # fmt: skip
    chosen = {"all_in_one": (0,), "optimal": (1, 2), "control": (3, 4)}
    scored = [
        score(Outcome(m, 2.0, "ok", cand=cand, chosen=c, selection=cand.val), cand)
        for m, c in chosen.items()
    ]
    settings = Settings(budgets=(2.0,))
    frame = gains_frame([(cand, scored)], settings)
    pairs = {(r.method, r.against): r for r in frame.itertuples()}
    assert set(pairs) == {("optimal", "all_in_one"), ("optimal", "control"),
                          ("control", "all_in_one")}  # fmt: skip
    for row in frame.itertuples():
        assert row.how == "seeds_t" and row.n_seeds == 3
    # Planted: optimal's networks 0.2/0.1 below all-in-one's per task, the control's 0.05/0.03.
    assert pairs["optimal", "all_in_one"].difference == pytest.approx(0.2 + 0.2 + 0.1, abs=0.02)
    assert pairs["optimal", "control"].difference == pytest.approx(0.15 + 0.17 + 0.05, abs=0.02)
    assert all(r.low > 0 for r in frame.itertuples())  # every planted gain is found
    text = gains_section(cand, pd.DataFrame(frame), settings.budgets)
    assert f"vs {LABELS['control']}" in text and "paired over 3 seeds" in text
    assert "gain, distinguishable from 0" in text
