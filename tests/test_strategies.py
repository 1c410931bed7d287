"""The strategy registry (pipeline/strategies/): one source of truth, agreeing with the schema;
bad names and options refused naming the key; each strategy's first stage counted as built."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, load_schema, resolve_config
from pipeline.strategies import (
    ESTIMATION_KINDS,
    STRATEGIES,
    build_strategy,
    resolve_strategy,
)

TASKS = [f"t{i}" for i in range(6)]
SWEEP = {"orders": [1, 2, 3], "sizes": ["full", "half"], "all_in_one": False,
         "sampled": {"size": 3, "subsets": None, "cover_pairs": True, "seed": 0},
         "tag": {"every": 5, "lookahead_lr": None}}  # fmt: skip


def test_the_schema_lists_exactly_the_registered_strategies() -> None:
    enum = load_schema()["properties"]["sweep"]["properties"]["strategy"]["enum"]
    assert set(enum) == {"auto", *STRATEGIES}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_each_strategy_counts_its_first_stage_as_built(name: str) -> None:
    strategy = build_strategy({**SWEEP, "strategy": name})
    assert strategy.estimation in ESTIMATION_KINDS
    nets = strategy.first_stage(TASKS)
    assert strategy.count_first_stage(len(TASKS)) == len(nets)
    assert len({(n.size, n.stem) for n in nets}) == len(nets)
    # Every strategy trains every single at every size (the baselines need them).
    assert {(n.tasks, n.size) for n in nets if len(n.tasks) == 1} == {
        ((t,), s) for t in TASKS for s in ("full", "half")
    }
    if strategy.needs_all_in_one:
        assert any(n.tasks == tuple(TASKS) for n in nets)


def test_auto_resolves_in_one_place_by_the_number_of_tasks() -> None:
    sweep = {**SWEEP, "strategy": "auto", "auto_max_tasks": 5, "auto_max_sampled_tasks": 8}
    assert resolve_strategy(sweep, 5) == "exhaustive"
    assert resolve_strategy(sweep, 6) == "sampled"
    assert resolve_strategy(sweep, 8) == "sampled"
    assert resolve_strategy(sweep, 9) == "gradtag"
    assert build_strategy(sweep, 9).name == "gradtag"
    # A sweep without a strategy is auto too (the schema's default).
    assert build_strategy({k: v for k, v in SWEEP.items()}, 3).name == "exhaustive"


def test_unknown_strategy_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="sweep.strategy: unknown 'greedy'"):
        build_strategy({**SWEEP, "strategy": "greedy"})
    with pytest.raises(ConfigError, match="sweep.strategy"):
        resolve_config({"dataset": {"name": "tox21"}, "sweep": {"strategy": "greedy"}},
                       check_data=False)  # fmt: skip


def test_unknown_strategy_option_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        sweep = {"strategy": "tag", "tag": {"evry": 2}}
        resolve_config({"dataset": {"name": "tox21"}, "sweep": sweep}, check_data=False)
    assert "sweep.tag" in str(err.value) and "evry" in str(err.value)


def test_a_strategy_that_estimates_nothing_refuses_to_decide() -> None:
    exhaustive = build_strategy({**SWEEP, "strategy": "exhaustive"})
    assert not exhaustive.estimates and exhaustive.estimation is None
    with pytest.raises(NotImplementedError, match="exhaustive"):
        exhaustive.decide([], [], TASKS, {})


def test_controls_match_the_decided_sizes_and_are_drawn_deterministically() -> None:
    from pipeline.strategies.controls import draw_controls
    from pipeline.sweep import Network

    tasks = [f"t{i}" for i in range(30)]
    decided = [{"tasks": tasks[:5], "size": "full"}, {"tasks": tasks[5:7], "size": "full"},
               {"tasks": tasks, "size": "full"}]  # fmt: skip
    first_stage = {Network(tuple(tasks), "full").name}  # the all-in-one: no control for it
    controls = draw_controls(decided, tasks, first_stage, seed=3)
    assert [len(c["tasks"]) for c in controls] == [5, 2]
    assert [c["matches"] for c in controls] == [tasks[:5], tasks[5:7]]
    assert controls == draw_controls(decided, tasks, first_stage, seed=3)
    assert controls != draw_controls(decided, tasks, first_stage, seed=4)
    # Task sets in the dataset's order, none a decided group, none shared.
    for c in controls:
        assert c["tasks"] == sorted(c["tasks"], key=tasks.index)
        assert c["tasks"] not in (tasks[:5], tasks[5:7]) and not c["shared"]


def test_a_control_repeats_a_decided_group_only_when_no_other_set_exists() -> None:
    from pipeline.strategies.controls import draw_controls

    tasks = ["a", "b", "c"]
    decided = [{"tasks": ["a", "b"], "size": "full"}, {"tasks": ["b", "c"], "size": "full"},
               {"tasks": ["a", "c"], "size": "full"}]  # fmt: skip
    controls = draw_controls(decided, tasks, set(), seed=0)
    assert len(controls) == 3 and all(c["shared"] for c in controls)


def test_the_estimate_picture_stays_legible_at_617_tasks(tmp_path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    from pipeline.strategies.picture import grouping_order, plot_matrices

    tasks = [f"assay_{i:03d}" for i in range(617)]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 32, len(tasks))
    grouping = {"n_groups_used": 32, "max_groups": 32,
                "serving_group": {t: int(g) for t, g in zip(tasks, labels)}}  # fmt: skip
    order, blocks = grouping_order(tasks, [grouping], None)
    assert sorted(order) == list(range(617)) and len(blocks) == len(set(labels.tolist()))
    # Each block holds exactly one group's tasks, larger groups first.
    sizes = [stop - start for start, stop in blocks]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == 617
    for start, stop in blocks:
        assert len({int(labels[i]) for i in order[start:stop]}) == 1
    matrix = rng.normal(0, 5e-6, (617, 617)) * 1e6
    path = tmp_path / "matrix.png"
    plot_matrices([("estimate (tag)", matrix, "ppm")], tasks, order, blocks, path, "617 tasks")
    height, width = mpimg.imread(path).shape[:2]
    assert width <= 1000 and height <= 1000  # one figure, not one row per task


def test_without_a_grouping_the_order_is_a_clustering() -> None:
    import numpy as np

    from pipeline.strategies.picture import grouping_order

    tasks = list("abcdef")
    matrix = np.full((6, 6), -1.0)
    for group in ([0, 3, 5], [1, 2, 4]):
        for i in group:
            for j in group:
                matrix[i, j] = 1.0
    order, blocks = grouping_order(tasks, None, matrix)
    assert not blocks
    halves = {frozenset(order[:3]), frozenset(order[3:])}
    assert halves == {frozenset({0, 3, 5}), frozenset({1, 2, 4})}


def _candidates(networks: dict[str, list[float]], tasks: list[str]):
    """Candidates over ``tasks`` from {network name: per-task loss (NaN: not a member)}."""
    import numpy as np

    from pipeline.selection.candidates import Candidates

    names = list(networks)
    loss = np.array([networks[n] for n in names], dtype=float)
    return Candidates(
        architecture="hard_sharing", weighting="equal", tasks=tasks, networks=names,
        size=["full"] * len(names), cost=np.ones(len(names)), members=np.isfinite(loss),
        val=loss, test=loss + 0.01, early=loss, test_seeds=(loss + 0.01)[:, :, None],
        seeds=[0], trained=np.ones(len(names), dtype=bool),
    )  # fmt: skip


def test_a_diverged_control_is_recorded_and_never_fatal(tmp_path) -> None:
    import json

    from pipeline.selection import controls
    from pipeline.selection.scoring import score
    from pipeline.selection.solving import Settings, solve_candidates

    nan = float("nan")
    tasks = ["a", "b", "c"]
    # The control b+c diverged: the metrics have no candidate row for it (excluded.sql).
    cand = _candidates({"a@full": [1.0, nan, nan], "b@full": [nan, 1.0, nan],
                        "c@full": [nan, nan, 1.0], "a+b+c@full": [0.9, 0.9, 0.9],
                        "a+b@full": [0.5, 0.5, nan]}, tasks)  # fmt: skip
    path = tmp_path / "hard_sharing-equal.json"
    path.write_text(json.dumps({
        "strategy": "tag", "method": "hard_sharing-equal", "tasks": tasks,
        "networks": [{"tasks": ["a", "b"], "size": "full", "first_stage": False},
                     {"tasks": tasks, "size": "full", "first_stage": True}],
        "controls": [{"tasks": ["b", "c"], "size": "full", "matches": ["a", "b"],
                      "shared": False}],
    }))  # fmt: skip
    pools = controls.read_pools([path])[("hard_sharing", "equal")]
    assert pools.decided == {"a+b@full"} and pools.controls == {"b+c@full"}
    mine, control = controls.split(cand, pools)
    assert "a+b@full" in mine.networks and "a+b@full" not in control.networks
    settings = Settings(budgets=(1.0, 2.0, 3.0))
    outcomes = solve_candidates(mine, settings) + controls.control_outcomes(control, settings)
    scored = [score(o, mine) for o in outcomes]
    table = controls.comparison(scored)
    assert list(table["budget"]) == [1.0, 2.0, 3.0]
    # Budget 2: the strategy's {a, b} + c's single beats the all-in-one; the control has only
    # the singles and the all-in-one network left, so it earns nothing over it.
    row = table.set_index("budget").loc[2.0]
    assert row.strategy_total < row.all_in_one_total == row.control_total
    assert row.share_earned == 1.0
    text = controls.section(pools, control, scored)
    assert "Diverged or missing, so left out of the control's pool: 1 (`b+c@full`)" in text
    assert "| 2 |" in text and "100 %" in text


def test_no_group_beyond_the_first_stage_still_gives_control_rows(tmp_path) -> None:
    import json

    from pipeline.selection import controls
    from pipeline.selection.scoring import score
    from pipeline.selection.solving import Settings, solve_candidates

    nan = float("nan")
    tasks = ["a", "b"]
    cand = _candidates({"a@full": [1.0, nan], "b@full": [nan, 1.0],
                        "a+b@full": [0.9, 0.9]}, tasks)  # fmt: skip
    path = tmp_path / "hard_sharing-equal.json"
    path.write_text(json.dumps({
        "strategy": "tag", "method": "hard_sharing-equal", "tasks": tasks,
        "networks": [{"tasks": tasks, "size": "full", "first_stage": True}], "controls": [],
    }))  # fmt: skip
    pools = controls.read_pools([path])[("hard_sharing", "equal")]
    mine, control = controls.split(cand, pools)
    assert mine.networks == control.networks == cand.networks
    settings = Settings(budgets=(1.0, 2.0))
    outcomes = solve_candidates(mine, settings) + controls.control_outcomes(control, settings)
    table = controls.comparison([score(o, mine) for o in outcomes])
    assert list(table["budget"]) == [1.0, 2.0]
    assert (table["control_total"] == table["strategy_total"]).all()
    assert "no control to train" in controls.section(
        pools, control, [score(o, mine) for o in outcomes]
    )


def test_a_new_decided_group_keeps_the_earlier_controls() -> None:
    from pipeline.strategies.controls import draw_controls

    tasks = [f"t{i}" for i in range(20)]
    decided = [{"tasks": tasks[:4], "size": "full"}, {"tasks": tasks[4:6], "size": "full"}]
    before = draw_controls(decided, tasks, set(), seed=0)
    after = draw_controls([{"tasks": tasks[10:13], "size": "full"}, *decided], tasks, set(), 0)
    assert after[1:] == before and len(after[0]["tasks"]) == 3


def test_auto_falls_back_to_tag_where_gradtag_does_not_apply() -> None:
    # auto's choice above auto_max_sampled_tasks is gradtag; MTAN has no linear-head trunk it
    # can linearise, so what validate accepts (auto) must still run: tag, with a warning.
    warned: list[str] = []
    config = {
        "dataset": {"name": "tox21"},
        "model": {"architecture": "mtan"},
        "sweep": {"strategy": "auto", "auto_max_tasks": 2, "auto_max_sampled_tasks": 3},
    }
    resolved = resolve_config(config, check_data=False, warn=warned.append)
    assert resolved["sweep"]["strategy"] == "tag"
    assert any("gradtag does not apply" in w and "model.architecture" in w for w in warned)
    # Asked for by name, gradtag is refused naming the key instead.
    config["sweep"]["strategy"] = "gradtag"
    with pytest.raises(ConfigError, match="model.architecture"):
        resolve_config(config, check_data=False)
