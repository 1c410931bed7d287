"""A random control whose training raises is recorded and never fatal to the answer; a decided
group's error stays fatal (issue 19). Through the real Snakemake: the tests start it through a
launcher that makes chosen trainings raise in their ``Trainer`` (the default profile runs
trainings as threads of the Snakemake process, so the fault lands in the real jobs, packed or
not)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.sweep import Network
from workflow import snakemake_with_fault, write_config

pytestmark = pytest.mark.slow

TAG = {"sweep": {"orders": [1, 2], "all_in_one": True, "sizes": ["full"], "seeds": [0],
                 "strategy": "tag", "tag": {"every": 1}},
       "selection": {"budgets": [1, 2, 3]}}  # fmt: skip
GROUPS = Path("results/groups/hard_sharing-equal.json")

FAULT = """
import json
from pathlib import Path

from pipeline.training import Trainer

WHICH = {which!r}  # whose trainings raise: "controls" or "decided"
init = Trainer.__init__


def fault(self, data, labels, spec, *args, **kwargs):
    groups = Path("results/groups/hard_sharing-equal.json")
    if groups.exists():
        entries = json.loads(groups.read_text(encoding="utf-8"))
        controls = {{tuple(e["tasks"]) for e in entries.get("controls") or []}}
        decided = {{tuple(e["tasks"]) for e in entries["networks"]}}
        hit = controls - decided if WHICH == "controls" else decided - controls
        # Not the first stage's networks (the all-in-one is a decided group too).
        if tuple(spec["tasks"]) in hit and len(spec["tasks"]) < len(data.task_names):
            raise RuntimeError("injected fault: " + "+".join(spec["tasks"]))
    init(self, data, labels, spec, *args, **kwargs)


Trainer.__init__ = fault
"""


def _run(workdir: Path, which: str) -> subprocess.CompletedProcess:
    return snakemake_with_fault(workdir, FAULT.format(which=which))


def test_a_control_that_raises_is_recorded_and_the_answer_stands(tmp_path: Path) -> None:
    write_config(tmp_path, TAG)
    proc = _run(tmp_path, "controls")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    groups = json.loads((tmp_path / GROUPS).read_text(encoding="utf-8"))
    decided = {tuple(e["tasks"]) for e in groups["networks"]}
    controls = [tuple(e["tasks"]) for e in groups["controls"]]
    failed = {Network(c, "full").name for c in controls if c not in decided}
    assert failed, "no control-only network was drawn: the test shows nothing"

    metrics = pq.read_table(tmp_path / "results/metrics.parquet").to_pandas()
    status = metrics.groupby("network")["status"].agg(set)
    assert {n for n, s in status.items() if s == {"failed"}} == failed
    assert (status.drop(list(failed)) == {"ok"}).all()
    rows = metrics[metrics.network.isin(failed)]
    assert rows.value.isna().all() and set(rows.epoch) == {0}

    # The answer: every budget solved for the strategy and for the control, whose pool keeps
    # the singles, the all-in-one and the first stage but not the failed controls.
    groupings = pq.read_table(tmp_path / "results/groupings.parquet").to_pandas()
    for method in ("optimal", "control"):
        chosen = groupings[groupings.selection_method == method]
        assert set(chosen.budget) == {1.0, 2.0, 3.0} and (chosen.status == "ok").all(), method
        assert not {n for ns in chosen.networks for n in ns} & failed
    summary = (tmp_path / "results/summary.md").read_text(encoding="utf-8")
    assert "Excluded as diverged or failed" in summary and "failed, a control" in summary
    for network in failed:
        assert f"`{network}`" in summary
    logs = [p.read_text() for p in (tmp_path / "results/logs/train").rglob("*.log")]
    recorded = [log for log in logs if "recorded as status 'failed'" in log]
    assert len(recorded) == len(failed)
    assert all("RuntimeError: injected fault" in log for log in recorded)

    # Recorded means done: a rerun has nothing to do.
    again = _run(tmp_path, "controls")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_a_decided_group_that_raises_still_stops_the_run(tmp_path: Path) -> None:
    write_config(tmp_path, TAG)
    proc = _run(tmp_path, "decided")
    assert proc.returncode != 0
    assert "injected fault" in proc.stdout + proc.stderr
    assert not (tmp_path / "results/groupings.parquet").exists()
    # Nothing of the failed trainings looks complete.
    metrics = list((tmp_path / "results/runs").rglob("*.parquet"))
    groups = json.loads((tmp_path / GROUPS).read_text(encoding="utf-8"))
    controls = {tuple(e["tasks"]) for e in groups.get("controls") or []}
    raised = [
        Network(tuple(e["tasks"]), "full")
        for e in groups["networks"]
        if tuple(e["tasks"]) not in controls and len(e["tasks"]) < 4
    ]
    assert raised
    assert not {p.stem for p in metrics} & {n.stem for n in raised}
