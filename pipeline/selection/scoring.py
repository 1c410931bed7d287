"""Scoring a choice of networks: every task by its best chosen network (Standley's scoring),
on the table the choice was made on and on test. The one place this is computed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .candidates import Candidates
    from .solving import Outcome


def best(table: np.ndarray, chosen: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per task: least loss over ``chosen`` rows of ``table`` (NaN: none has the task) and
    which row (-1: none)."""
    idx = np.asarray(chosen, dtype=int)
    sub = np.where(np.isnan(table[idx]), np.inf, table[idx])
    arg = np.argmin(sub, axis=0)
    least = sub[arg, np.arange(sub.shape[1])]
    found = np.isfinite(least)
    return np.where(found, least, np.nan), np.where(found, idx[arg], -1)


def total(table: np.ndarray, chosen: Sequence[int]) -> float:
    """Sum over tasks of the least loss among the chosen networks."""
    return float(best(np.asarray(table, dtype=float), chosen)[0].sum())


@dataclass(frozen=True)
class Scored:
    """An outcome scored per task on its selection table and on test."""

    outcome: Outcome
    cand: Candidates
    val: np.ndarray  # (T,)
    val_net: np.ndarray  # (T,) network index or -1
    test: np.ndarray
    test_net: np.ndarray
    seed_totals: np.ndarray  # (S,)

    @property
    def ok(self) -> bool:
        return self.outcome.status == "ok"

    @property
    def test_estimated(self) -> bool:
        """Is any task's test loss a HOA estimate (a chosen task set never trained)?"""
        nets = self.test_net[self.test_net >= 0]
        return bool(nets.size) and not bool(self.cand.trained[nets].all())

    @property
    def test_total(self) -> float:
        """Sum of the measured test losses; NaN when any is an estimate, so that no total mixes
        estimated and measured losses (``sweep.strategy: pairs`` trains what HOA picks)."""
        if not self.ok or self.test_estimated:
            return float("nan")
        return float(self.test.sum())

    @property
    def test_std(self) -> float:
        if self.test_estimated:
            return float("nan")
        finite = self.seed_totals[np.isfinite(self.seed_totals)]
        return float(finite.std(ddof=1)) if finite.size >= 2 else float("nan")

    def groups(self, listed: int | None = None) -> list[str]:
        """The chosen networks' task sets, as '{a, b}' strings (estimated ones starred); with
        ``listed``, a larger set shows that many tasks and a count of the rest."""
        if not self.ok or self.outcome.random is not None:
            return []
        out = []
        for n in self.outcome.chosen:
            members = [t for t, m in zip(self.cand.tasks, self.cand.members[n]) if m]
            tasks = ", ".join(members[:listed])
            if listed is not None and len(members) > listed:
                tasks += f", … +{len(members) - listed} of {len(members)} tasks"
            size = self.cand.size[n]
            star = "" if self.cand.trained[n] else "*"
            out.append(f"{{{tasks}}}{'' if size in (None, 'full') else '@' + size}{star}")
        return out


def score(outcome: Outcome, cand: Candidates) -> Scored:
    """Score ``outcome``: each task by its best chosen network, on selection and on test."""
    n_task, n_seed = len(cand.tasks), len(cand.seeds)
    empty = np.full(n_task, np.nan)
    none = np.full(n_task, -1)
    if outcome.status != "ok":
        return Scored(outcome, cand, empty, none, empty, none, np.full(n_seed, np.nan))
    if outcome.random is not None:
        return Scored(
            outcome, cand, empty, none, outcome.random.per_task, none, np.full(n_seed, np.nan)
        )
    used = outcome.cand
    val, val_net = best(outcome.selection, outcome.chosen)
    test, test_net = best(used.test, outcome.chosen)
    seeds = np.array(
        [best(used.test_seeds[:, :, s], outcome.chosen)[0].sum() for s in range(n_seed)]
    )
    return Scored(outcome, used, val, val_net, test, test_net, seeds)
