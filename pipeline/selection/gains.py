"""An interval on every gain: how much lower one grouping's total test loss is than a
reference's at one budget (reference total minus grouping total: positive is a gain), with a
95 % interval (docs/intervals.md).

- Several seeds: the seeds are paired. Each seed's total is summed over the tasks with the
  networks that serve them held fixed; the per-seed differences get a Student t interval.
- One seed: a paired bootstrap over the test rows. Every resample draws the test rows with
  replacement, the same rows for both groupings (one multinomial count matrix for every
  comparison of a method); a task's loss is the mean over its labelled resampled rows from the
  network that serves it, the total the sum over tasks. Reads the per-sample test losses
  (TEST_LOSSES, pipeline/sample_losses.py) of the serving networks only.

Vectorised: each serving network's per-task resampled loss sums are one product of the
(resamples x rows) count matrix with its (rows x tasks) loss matrix, computed once per network
and shared by every comparison that uses it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..schema import TEST_LOSSES, check_file
from .candidates import Candidates
from .scoring import Scored

CONFIDENCE = 0.95
RESAMPLES = 2000
BOOTSTRAP_SEED = 0
# Resamples per block of the count matrix: bounds its memory (resamples x test rows) for any
# number of test rows.
BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class Served:
    """One grouping as an interval needs it: per task, the network serving it on test and that
    test loss (the objective's unit); per seed, the total with those networks held fixed."""

    method: str
    budget: float
    tasks: tuple[str, ...]
    networks: tuple[str, ...]
    test: np.ndarray  # (T,)
    seed_totals: dict[int, float]

    @property
    def total(self) -> float:
        return float(self.test.sum())


def served(s: Scored) -> Served | str:
    """``s`` as a :class:`Served` grouping, or why it has none."""
    if not s.ok:
        return f"{s.outcome.method} is {s.outcome.status}"
    if s.outcome.random is not None:
        return "random is a mean over many draws, not one grouping"
    if s.test_estimated:
        return f"{s.outcome.method} serves a task by an estimated (untrained) network"
    cand = s.cand
    tasks = np.arange(len(cand.tasks))
    per_seed = cand.test_seeds[s.test_net, tasks, :]  # (T, S)
    seed_totals = {
        int(seed): float(per_seed[:, k].sum())
        for k, seed in enumerate(cand.seeds)
        if np.isfinite(per_seed[:, k]).all()
    }
    return Served(
        method=s.outcome.method,
        budget=float(s.outcome.budget),
        tasks=tuple(cand.tasks),
        networks=tuple(cand.networks[n] for n in s.test_net),
        test=np.asarray(s.test, dtype=float),
        seed_totals=seed_totals,
    )


@dataclass(frozen=True)
class Gain:
    """The reference's total test loss minus the grouping's (positive: the grouping's is lower),
    with its interval (``how``)."""

    difference: float
    low: float | None
    high: float | None
    n_seeds: int
    how: str  # seeds_t | bootstrap | none: <why>
    resamples: int | None = None

    @property
    def distinguishable(self) -> bool | None:
        """Does the interval exclude zero? None without an interval."""
        if self.low is None or self.high is None:
            return None
        return bool(self.low > 0 or self.high < 0)


def seed_interval(a: Served, b: Served, confidence: float = CONFIDENCE) -> Gain:
    """Paired over the seeds both have: mean per-seed difference, Student t interval."""
    from scipy import stats

    seeds = sorted(set(a.seed_totals) & set(b.seed_totals))
    d = np.array([b.seed_totals[s] - a.seed_totals[s] for s in seeds])
    if d.size < 2:
        raise ValueError(f"seed_interval: {d.size} paired seed(s); needs at least 2")
    mean = float(d.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return Gain(mean, mean - half, mean + half, int(d.size), "seeds_t")


class SampleLosses:
    """Per-sample test losses of one seed's networks, read on demand from their TEST_LOSSES
    files (``files``: network name -> path; only the files a comparison needs are opened),
    and their resampled loss sums under one seeded set of bootstrap resamples.

    ``test_rows``: the dataset rows of the test split, which every resample draws from."""

    def __init__(
        self,
        files: dict[str, str | os.PathLike],
        test_rows: np.ndarray,
        resamples: int = RESAMPLES,
        seed: int = BOOTSTRAP_SEED,
    ) -> None:
        self.files = files
        self.rows = np.sort(np.asarray(test_rows, dtype=np.int64))
        self.resamples = int(resamples)
        rng = np.random.default_rng(seed)
        n = self.rows.size
        # Counts of each test row in each resample: the one draw every comparison shares.
        self.counts = rng.multinomial(n, np.full(n, 1.0 / n), size=self.resamples).astype(
            np.float64
        )
        self._networks: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        self._sums: dict[tuple[str, str], np.ndarray] = {}
        self._den: dict[str, np.ndarray] = {}
        self._means: dict[tuple[str, str], float] = {}

    def _network(self, network: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """task -> (positions among the test rows, loss, weight) of one network's file."""
        if network not in self._networks:
            path = self.files.get(network)
            if path is None or not Path(path).exists():
                raise FileNotFoundError(
                    f"no per-sample test losses for network {network!r}"
                    + (f" ({path} is missing)" if path is not None else "")
                )
            check_file(path, TEST_LOSSES)
            table = pq.read_table(path, columns=["row", "task", "loss", "weight"])
            names, codes = np.unique(
                table["task"].to_numpy(zero_copy_only=False), return_inverse=True
            )
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
            rows = table["row"].to_numpy().astype(np.int64)[order]
            pos = np.searchsorted(self.rows, rows).clip(0, max(0, self.rows.size - 1))
            if rows.size and (self.rows.size == 0 or (self.rows[pos] != rows).any()):
                raise ValueError(f"{path}: rows outside the test split")
            loss = table["loss"].to_numpy().astype(np.float64)[order]
            weight = table["weight"].to_numpy().astype(np.float64)[order]
            per_task = {
                str(task): (pos[lo:hi], loss[lo:hi], weight[lo:hi])
                for task, lo, hi in zip(names, bounds[:-1], bounds[1:])
            }
            self._networks[network] = per_task
        return self._networks[network]

    def _resampled(self, values: Iterable[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """(resamples, k): the count matrix times k columns given as (positions, values)."""
        columns = list(values)
        dense = np.zeros((self.rows.size, len(columns)))
        for j, (pos, val) in enumerate(columns):
            dense[pos, j] = val
        out = np.empty((self.resamples, len(columns)))
        block = max(1, BLOCK_CELLS // max(1, self.rows.size))
        for i in range(0, self.resamples, block):
            out[i : i + block] = self.counts[i : i + block] @ dense
        return out

    def full_mean(self, network: str, task: str) -> float:
        """The task's loss from ``network`` on the whole test set (its weighted mean)."""
        if (network, task) not in self._means:
            _, loss, weight = self._task(network, task)
            total = weight.sum()
            self._means[(network, task)] = (
                float((loss * weight).sum() / total) if total else float("nan")
            )
        return self._means[(network, task)]

    def _task(self, network: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        per_task = self._network(network)
        if task not in per_task:
            raise KeyError(f"network {network!r} has no per-sample test loss for task {task!r}")
        return per_task[task]

    def _resample_network(self, network: str) -> None:
        """Every task of ``network``: its resampled weighted loss sums and labelled weights, in
        one product."""
        per_task = self._network(network)
        names = list(per_task)
        columns = [(per_task[t][0], per_task[t][1] * per_task[t][2]) for t in names]
        columns += [(per_task[t][0], per_task[t][2]) for t in names]
        block = self._resampled(columns)
        for j, t in enumerate(names):
            self._sums[(network, t)] = block[:, j]
            self._den.setdefault(t, block[:, len(names) + j])

    def sums(self, network: str, task: str) -> np.ndarray:
        """(resamples,) each resample's weighted loss sum of ``task`` from ``network``; every
        task of the network is resampled in one product, once."""
        if (network, task) not in self._sums:
            self._task(network, task)  # raises, naming both, if it has none
            self._resample_network(network)
        return self._sums[(network, task)]

    def labelled(self, network: str, task: str) -> np.ndarray:
        """(resamples,) each resample's labelled weight of ``task`` (the labels are the data's,
        the same in every network)."""
        if task not in self._den:
            self.sums(network, task)
        return self._den[task]


def bootstrap_interval(
    a: Served, b: Served, samples: SampleLosses, confidence: float = CONFIDENCE
) -> Gain:
    """Paired bootstrap over the test rows of one seed (see the module's docstring)."""
    point = b.total - a.total
    index = {t: i for i, t in enumerate(b.tasks)}
    if set(index) != set(a.tasks):
        raise ValueError(f"{a.method} and {b.method} cover different tasks")
    # The tasks the two serve by different networks; the others add exactly 0 everywhere.
    differ = [
        (t, index[task])
        for t, task in enumerate(a.tasks)
        if a.networks[t] != b.networks[index[task]]
    ]
    diffs = np.zeros(samples.resamples)
    if differ:
        sums, factors = [], []
        for served_by, test, pick in ((a, a.test, 0), (b, b.test, 1)):
            columns, scale = [], np.empty(len(differ))
            for j, pair in enumerate(differ):
                net, task, i = (
                    served_by.networks[pair[pick]],
                    served_by.tasks[pair[pick]],
                    pair[pick],
                )
                raw = samples.full_mean(net, task)
                # The recorded loss in the objective's unit over the per-sample mean: 1 up to
                # float32 rounding for 'sum', the task's fixed normaliser for 'normalised'.
                scale[j] = test[i] / raw if raw else 1.0
                columns.append(samples.sums(net, task))
            sums.append(np.stack(columns, axis=1))
            factors.append(scale)
        den = np.stack([samples.labelled(a.networks[t], a.tasks[t]) for t, _ in differ], axis=1)
        full = np.array([b.test[k] - a.test[t] for t, k in differ])
        with np.errstate(invalid="ignore", divide="ignore"):
            d = (sums[1] * factors[1] - sums[0] * factors[0]) / den
        # A resample without a labelled row of a task: that task's full-sample difference.
        diffs = np.where(den > 0, d, full).sum(axis=1)
    tail = (1 - confidence) / 2
    # Percentile interval; with the full sample's counts the statistic is ``point`` itself.
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return Gain(float(point), float(low), float(high), 1, "bootstrap", samples.resamples)


def compare(
    a: Served,
    b: Served,
    samples: Callable[[], SampleLosses | str] | None = None,
    confidence: float = CONFIDENCE,
) -> Gain:
    """``b``'s total test loss minus ``a``'s (``a``'s gain over ``b``) with its interval: paired
    seeds where both have two or more, else a bootstrap over ``samples()`` (the per-sample
    losses of the one seed, or why there are none)."""
    paired = set(a.seed_totals) & set(b.seed_totals)
    if len(paired) >= 2:
        return seed_interval(a, b, confidence)
    point = b.total - a.total
    source = samples() if samples is not None else "no per-sample test losses given"
    if isinstance(source, str):
        return Gain(float(point), None, None, len(paired), f"none: {source}")
    try:
        return bootstrap_interval(a, b, source, confidence)
    except (FileNotFoundError, KeyError, ValueError) as err:
        return Gain(float(point), None, None, len(paired), f"none: {err}")


# The answers an interval is given for, and what each is compared against (where present).
SUBJECTS = ("optimal", "esa", "hoa", "control")
REFERENCES = ("all_in_one", "control", "independent", "independent_mix", "random")


def sample_files(
    manifest: pd.DataFrame, architecture: str, weighting: str, seed: int, results: Path
) -> dict:
    """network -> its TEST_LOSSES file, for one method and seed of the collected manifest
    (``results``/networks.parquet, whose paths are relative to the workflow's directory)."""
    from ..sample_losses import samples_file

    mine = manifest[
        (manifest["architecture"] == architecture)
        & (manifest["weighting"] == weighting)
        & (manifest["seed"] == seed)
    ]
    return {n: samples_file(f, results) for n, f in zip(mine["network"], mine["file"])}


class SampleSource:
    """Where one method's per-sample losses come from: the collected manifest and the split.
    Nothing is read until a one-seed comparison asks."""

    def __init__(
        self,
        networks_path: str | os.PathLike | None,
        split_path: str | os.PathLike | None,
        epoch: str = "final",
        resamples: int = RESAMPLES,
        seed: int = BOOTSTRAP_SEED,
    ) -> None:
        self.networks_path, self.split_path, self.epoch = networks_path, split_path, epoch
        self.resamples, self.seed = resamples, seed
        self._manifest: pd.DataFrame | None = None
        self._test_rows: np.ndarray | None = None
        self._built: dict[tuple, SampleLosses | str] = {}

    def for_method(self, cand: Candidates) -> Callable[[], SampleLosses | str]:
        def build() -> SampleLosses | str:
            key = (cand.architecture, cand.weighting)
            if key not in self._built:
                self._built[key] = self._build(cand)
            return self._built[key]

        return build

    def _build(self, cand: Candidates) -> SampleLosses | str:
        if self.networks_path is None or self.split_path is None:
            return "no per-sample test losses with these results (external or CLI input)"
        if self.epoch != "final":
            return (
                f"per-sample test losses are recorded at the final epoch; selection.epoch is "
                f"{self.epoch!r}"
            )
        if len(cand.seeds) != 1:
            return f"{len(cand.seeds)} seeds"
        if self._manifest is None:
            self._manifest = pq.read_table(
                self.networks_path, columns=["file", "network", "architecture", "weighting", "seed"]
            ).to_pandas()
            split = pq.read_table(self.split_path, columns=["row", "split"])
            self._test_rows = split.filter(pc.equal(split["split"], "test"))["row"].to_numpy()
        results = Path(self.networks_path).parent
        files = sample_files(
            self._manifest, cand.architecture, cand.weighting, cand.seeds[0], results
        )
        return SampleLosses(files, self._test_rows, self.resamples, self.seed)


def gains_frame(
    results: list[tuple[Candidates, list[Scored]]],
    settings,
    source: SampleSource | None = None,
) -> pd.DataFrame:
    """The GAINS table: every answer in SUBJECTS against every reference in REFERENCES, per
    budget, where both were solved."""
    from ..schema import GAINS

    rows = []
    for cand, scored in results:
        by = {(s.outcome.method, s.outcome.budget): s for s in scored}
        methods = {m for m, _ in by}
        samples = source.for_method(cand) if source is not None else None
        for budget in settings.budgets:
            for subject in (m for m in SUBJECTS if (m, budget) in by):
                a = served(by[subject, budget])
                if isinstance(a, str):
                    continue  # nothing to compare (infeasible, or a HOA estimate)
                for reference in (m for m in REFERENCES if m in methods and m != subject):
                    ref = by.get((reference, budget))
                    if ref is None:
                        continue
                    b = served(ref)
                    if isinstance(b, str):
                        total = ref.test_total if ref.ok else float("nan")
                        gain = Gain(total - a.total, None, None, 0, f"none: {b}")
                    else:
                        gain = compare(a, b, samples)
                    rows.append({
                        "architecture": cand.architecture, "weighting": cand.weighting,
                        "objective": settings.objective, "epoch": settings.epoch,
                        "budget": float(budget), "method": subject, "against": reference,
                        "difference": gain.difference, "low": gain.low, "high": gain.high,
                        "n_seeds": gain.n_seeds, "how": gain.how, "resamples": gain.resamples,
                    })  # fmt: skip
    return pd.DataFrame(rows, columns=GAINS.names)
