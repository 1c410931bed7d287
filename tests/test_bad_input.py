"""Bad input to the solve gets a clear error naming the problem, before anything is written."""

from __future__ import annotations

import pytest
from test_selection_external import doc_example

from pipeline.selection import run_external
from pipeline.selection.candidates import MissingTasks
from pipeline.selection.external import ExternalFormatError, check_external, read_external
from pipeline.selection.solver import InfeasibleBudget


@pytest.mark.parametrize("cost", [0.0, -1.0])
def test_non_positive_cost_is_refused(tmp_path, cost) -> None:
    frame = read_external(doc_example(tmp_path))
    frame.loc[frame["network"] == frame["network"].iloc[0], "cost"] = cost
    with pytest.raises(ExternalFormatError, match="cost must be positive"):
        check_external(frame)


def test_a_requested_task_missing_from_external_results_is_named(tmp_path) -> None:
    path = doc_example(tmp_path)
    with pytest.raises(MissingTasks, match=r"task\(s\) \['ghost'\] have no .*network"):
        run_external(path, {"budgets": [1, 2]}, tmp_path / "out", tasks=["s", "d", "ghost"])
    assert not (tmp_path / "out" / "groupings.parquet").exists()


def test_budget_below_cheapest_cover_is_reported(tmp_path) -> None:
    path = doc_example(tmp_path)
    with pytest.raises(InfeasibleBudget, match=r"budget 0\.1 .* below the cheapest cover"):
        run_external(path, {"budgets": [0.1]}, tmp_path / "out")
    assert not (tmp_path / "out" / "groupings.parquet").exists()
