"""Reader for the per-network loss tables Standley et al. (ICML 2020) published, into the external
long format (docs/external-results.md), so the paper's curves are a test of this solver.

File layout (tests/data/standley2020/README.md): tab-separated, five columns = five tasks, an
empty field = no output for that task. Line 1 holds the five half-size single-task networks (cost
0.5 each); every later line is one full-size network (cost 1) whose task set is its non-empty
columns. Networks are matched across files by task set and size, never by line number: the
setting-4 ESA file lacks one pair.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# Which file is selection / test / ESA per setting (the authors' main.cpp, do_setting()).
SETTINGS: dict[int, tuple[str, str, str]] = {
    1: ("results.txt", "results_test.txt", "results_20.txt"),
    2: ("results_large.txt", "results_large_test.txt", "results_large_20.txt"),
    3: ("results_small_data.txt", "results_small_data_test.txt", "results_small_data_at4.txt"),
    4: ("results_alt.txt", "results_alt_test.txt", "results_alt_20.txt"),
}
TASKS_SDNKT = ["s", "d", "n", "k", "t"]
# Setting 4's task identity is not documented upstream: keep the columns anonymous.
TASKS_ANON = ["col1", "col2", "col3", "col4", "col5"]


def read_table(path: str | Path, tasks: list[str]) -> pd.DataFrame:
    """One file -> rows (network, tasks, size, cost, task, loss)."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(tasks):
            raise ValueError(f"{path}:{number}: {len(fields)} fields, expected {len(tasks)}")
        present = [(tasks[i], float(f)) for i, f in enumerate(fields) if f.strip()]
        if number == 1:
            # Five different networks on one line: the half-size singles.
            for task, value in present:
                rows.append((f"{task}@half", [task], "half", 0.5, task, value))
        else:
            members = [task for task, _ in present]
            name = "+".join(members) + "@full"
            rows += [(name, members, "full", 1.0, task, value) for task, value in present]
    return pd.DataFrame(rows, columns=["network", "tasks", "size", "cost", "task", "loss"])


def read_setting(directory: str | Path, setting: int) -> pd.DataFrame:
    """One setting's three files as one external long-format table (early_loss NaN where the
    ESA file lacks the network)."""
    val_file, test_file, esa_file = SETTINGS[setting]
    tasks = TASKS_ANON if setting == 4 else TASKS_SDNKT
    directory = Path(directory)
    val = read_table(directory / val_file, tasks).rename(columns={"loss": "val_loss"})
    test = read_table(directory / test_file, tasks)[["network", "task", "loss"]]
    early = read_table(directory / esa_file, tasks)[["network", "task", "loss"]]
    out = val.merge(
        test.rename(columns={"loss": "test_loss"}),
        on=["network", "task"],
        how="left",
        validate="one_to_one",
    )
    out = out.merge(
        early.rename(columns={"loss": "early_loss"}),
        on=["network", "task"],
        how="left",
        validate="one_to_one",
    )
    if out["test_loss"].isna().any():
        missing = sorted(out.loc[out["test_loss"].isna(), "network"].unique())
        raise ValueError(f"setting {setting}: networks without test losses: {missing}")
    return out[["network", "tasks", "size", "cost", "task", "val_loss", "test_loss", "early_loss"]]
