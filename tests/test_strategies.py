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
    sweep = {**SWEEP, "strategy": "auto", "auto_max_tasks": 5}
    assert resolve_strategy(sweep, 5) == "exhaustive"
    assert resolve_strategy(sweep, 6) == "tag"
    assert build_strategy(sweep, TASKS).name == "tag"
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
        resolve_config({"dataset": {"name": "tox21"},
                        "sweep": {"strategy": "tag", "tag": {"evry": 2}}}, check_data=False)  # fmt: skip
    assert "sweep.tag" in str(err.value) and "evry" in str(err.value)


def test_a_strategy_that_estimates_nothing_refuses_to_decide() -> None:
    exhaustive = build_strategy({**SWEEP, "strategy": "exhaustive"})
    assert not exhaustive.estimates and exhaustive.estimation is None
    with pytest.raises(NotImplementedError, match="exhaustive"):
        exhaustive.decide([], [], TASKS, {})
