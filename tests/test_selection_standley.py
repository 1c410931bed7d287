"""Ground truth: Standley et al.'s published loss tables and curves (tests/data/standley2020).

Every published optimal, ESA and HOA value of settings 1-4 (108 values; make_plots.py of
tstandley/taskgrouping) must come out of the solver, with one documented exception (README.md
there): at budget 1 of setting 1 the files give 0.50278 for OS and ESA where the paper prints
0.50273. The validation tables hold exact ties (setting 1: task d in the single d and the pair
d+n; setting 4: col3 in two pairs and their triple); the tie-break rule (fewer networks, lower
cost, measured, fewer tasks) picks the sets the paper picks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.selection import run_external
from pipeline.selection.candidates import build, query_external
from pipeline.selection.external import check_external, write_external
from pipeline.selection.scoring import score
from pipeline.selection.solving import Settings, solve_candidates
from pipeline.selection.standley import read_setting

DATA = Path(__file__).parent / "data" / "standley2020"
BUDGETS = [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5]
PUBLISHED = {
    "optimal": [0.50273, 0.46132, 0.45224, 0.44612, 0.44235, 0.43932, 0.43555, 0.43555, 0.43481],
    "esa": [0.50273, 0.48732, 0.46727, 0.46063, 0.45722, 0.45058, 0.45058, 0.44742, 0.44742],
    "hoa": [0.50278, 0.46132, 0.45474, 0.4505, 0.44875, 0.44489, 0.44112, 0.44552, 0.44196],
    "independent": [0.51456, 0.50139, 0.47704, 0.46515, None, None, 0.45456, None, 0.44774],
    "all_in_one": [0.50273, None, 0.4916, 0.48873, None, None, 0.4883, None, None],
    "random": [
        0.50278,
        0.485347,
        0.473641,
        0.469079,
        0.465265,
        0.46271,
        0.460238,
        0.458358,
        0.456486,
    ],
    "worst": [0.50278, 0.50278, 0.50278, 0.50278, 0.50278, 0.50278, 0.50179, 0.50179, 0.49941],
}
# The only feasible choice at budget 1 is the all-five network: 0.50278 in results_test.txt.
BUDGET_1_FROM_FILES = 0.50278


def candidates(setting: int):
    frames = query_external(check_external(read_setting(DATA, setting)))
    (cand,) = build(frames)
    return cand


def curves(setting: int, random_samples: int = 200) -> dict[str, list[float]]:
    settings = Settings(cost_tolerance=0.0, random_samples=random_samples)
    out: dict[str, list[float]] = {}
    cand = candidates(setting)
    for outcome in solve_candidates(cand, settings):
        out.setdefault(outcome.method, []).append(score(outcome, cand).test_total)
    return out


@pytest.fixture(scope="module")
def setting1() -> dict[str, list[float]]:
    return curves(1, random_samples=3000)


@pytest.mark.parametrize("method", ["optimal", "esa"])
def test_setting1_optimal_and_esa(setting1, method):
    ours = setting1[method]
    assert ours[0] == pytest.approx(BUDGET_1_FROM_FILES, abs=5e-6)  # documented exception
    assert ours[1:] == pytest.approx(PUBLISHED[method][1:], abs=5e-6)


def test_setting1_hoa(setting1):
    assert setting1["hoa"] == pytest.approx(PUBLISHED["hoa"], abs=5e-6)


# make_plots.py of tstandley/taskgrouping (commit bb1496e), settings 2-4.
PUBLISHED_OTHER = {
    2: {
        "esa": [0.35989, 0.35989, 0.34696, 0.34696, 0.34483, 0.34483, 0.34483, 0.34483, 0.34483],
        "hoa": [0.35989, 0.35758, 0.31733, 0.31562, 0.31177, 0.30525, 0.3019, 0.3019, 0.30187],
        "optimal": [0.35989, 0.35478, 0.31733, 0.3145, 0.30606, 0.3049, 0.3019, 0.3019, 0.30167],
    },
    3: {
        "esa": [0.42998, 0.44778, 0.43055, 0.39507, 0.40381, 0.39404, 0.40278, 0.39404, 0.40278],
        "hoa": [0.42998, 0.44778, 0.40887, 0.38776, 0.38352, 0.38682, 0.38574, 0.38574, 0.38471],
        "optimal": [
            0.42998,
            0.42275,
            0.40857,
            0.38776,
            0.38352,
            0.38352,
            0.38249,
            0.38249,
            0.38249,
        ],
    },
    4: {
        "esa": [
            0.684042,
            0.684042,
            0.677567,
            0.680649,
            0.677349,
            0.676049,
            0.676049,
            0.675976,
            0.675976,
        ],
        "hoa": [
            0.684042,
            0.678697,
            0.674597,
            0.671067,
            0.669696,
            0.671867,
            0.670496,
            0.670496,
            0.670496,
        ],
        "optimal": [
            0.684042,
            0.678697,
            0.674597,
            0.671067,
            0.669696,
            0.669696,
            0.668986,
            0.668986,
            0.668986,
        ],
    },
}


@pytest.mark.parametrize("setting", [2, 3, 4])
def test_other_settings_reproduce_every_published_value(setting):
    ours = curves(setting, random_samples=20)
    for method, published in PUBLISHED_OTHER[setting].items():
        assert ours[method] == pytest.approx(published, abs=5e-7), method


def test_setting1_baselines_that_follow_from_the_files(setting1):
    # All-in-one: only its cost-1 network is in the files (the paper's larger ones are not).
    assert setting1["all_in_one"][0] == pytest.approx(BUDGET_1_FROM_FILES, abs=5e-6)
    # Independent: all half-size singles at 2.5, all full-size at 5 (other budgets used
    # networks of other widths that were not published).
    assert setting1["independent"][3] == pytest.approx(PUBLISHED["independent"][3], abs=5e-6)
    assert setting1["independent"][8] == pytest.approx(PUBLISHED["independent"][8], abs=5e-6)
    # Worst: the paper took the max of 10 million random draws, which can only fall short of
    # the exact maximum; where it did not, we agree.
    for ours, published in zip(setting1["worst"], PUBLISHED["worst"]):
        assert ours >= published - 5e-6
    assert setting1["worst"][:6] == pytest.approx(PUBLISHED["worst"][:6], abs=5e-6)
    assert setting1["worst"][7] == pytest.approx(PUBLISHED["worst"][7], abs=5e-6)


def test_setting1_random_is_standleys_sampler(setting1):
    ours = np.array(setting1["random"])
    # Same sampler, so the means agree within Monte-Carlo error (3000 draws vs 10^6).
    assert ours == pytest.approx(PUBLISHED["random"], abs=1.5e-3)
    # And a random choice is never better than the optimum nor worse than the worst.
    assert np.all(ours >= np.array(setting1["optimal"]) - 1e-9)
    assert np.all(ours <= np.array(setting1["worst"]) + 1e-9)


@pytest.mark.parametrize("setting", [2, 3, 4])
def test_other_settings_run_and_are_sane(setting):
    cand = candidates(setting)
    settings = Settings(cost_tolerance=0.0, random_samples=100)
    outcomes = solve_candidates(cand, settings)
    by = {(o.method, o.budget): o for o in outcomes}
    for method in ("optimal", "esa", "hoa"):
        # Every budget is feasible (the all-task network costs 1) and the selection objective
        # can only improve with budget.
        objective = []
        for b in BUDGETS:
            o = by[method, b]
            assert o.status == "ok"
            objective.append(np.nanmin(o.selection[list(o.chosen)], axis=0).sum())
        assert np.all(np.diff(objective) <= 1e-12)
    optimal = [score(by["optimal", b], cand).test_total for b in BUDGETS]
    worst = [score(by["worst", b], cand).test_total for b in BUDGETS]
    assert np.all(np.isfinite(optimal)) and np.all(np.array(worst) >= np.array(optimal) - 1e-9)
    if setting == 4:
        # results_alt_20.txt lacks the pair {col2, col3}: ESA can never pick it.
        pair = cand.networks.index("col2+col3@full")
        assert np.isnan(cand.early[pair, cand.members[pair]]).all()
        assert all(pair not in by["esa", b].chosen for b in BUDGETS)


def test_external_round_trip_reproduces_setting1(tmp_path):
    frame = read_setting(DATA, 1)
    config = {"cost_tolerance": 0.0, "random_samples": 50}
    results = {}
    for suffix in ("csv", "parquet"):
        path = tmp_path / f"setting1.{suffix}"
        write_external(frame, path)
        run_external(path, config, tmp_path / suffix)
        results[suffix] = pd.read_parquet(tmp_path / suffix / "groupings.parquet")
    pd.testing.assert_frame_equal(results["csv"], results["parquet"])
    g = results["csv"]
    optimal = g[g["selection_method"] == "optimal"].groupby("budget")["test_total"].first()
    assert optimal.iloc[1:].tolist() == pytest.approx(PUBLISHED["optimal"][1:], abs=5e-6)
    png = (tmp_path / "csv" / "budget_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 400 and height >= 300  # a real figure, not an empty canvas
    summary = (tmp_path / "csv" / "summary.md").read_text()
    # The optimal total at the largest budget appears in the summary's table, as written.
    assert f"{optimal.iloc[-1]:.5f}" in summary
    assert "Excluded as diverged: none" in (tmp_path / "csv" / "summary.md").read_text()
