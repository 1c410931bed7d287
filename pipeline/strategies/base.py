"""The interface every sweep strategy implements (registered in ``pipeline/strategies``).

A strategy answers, for the workflow (``rules/estimate.smk``, ``rules/common.smk``):

1. **first stage**: which networks are trained before anything is known
   (:meth:`Strategy.first_stage`, counted without building by :meth:`Strategy.count_first_stage`);
2. **estimate**: how tasks affect each other, made in one of three ways (:attr:`estimation`):

   * ``None``: from the first stage's metrics, inside the ``groups`` checkpoint (pairs, sampled);
   * ``"recorded"``: recorded while the first stage trains the all-in-one network (TAG's
     lookahead): rule ``estimate_affinity`` trains it with :meth:`recording_params`;
   * ``"job"``: an estimation job per training method and seed after the inputs it names
     (:meth:`estimate_inputs`, any first-stage files), running :meth:`estimate` into
     ``results/estimate/<method>/seed<seed>.parquet`` (rule ``estimate``);

3. **decided groups**: from the estimate, the task groups worth training for the budgets
   (:meth:`decide`, run by the ``groups`` checkpoint; written to
   ``results/groups/<method>.json``). They are trained like any network, then the exact
   budgeted solve runs over measured results only.

Options live under ``sweep.<name>`` in the config (schema: ``schemas/config.schema.yaml``, which
fills their defaults and refuses unknown keys, naming them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import combinations
from math import comb

from ..sweep import Network, resolved_sizes

# Where an estimate comes from (Strategy.estimation).
ESTIMATION_KINDS = (None, "recorded", "job")


class Strategy:
    """One way of choosing which networks to train. Subclasses set the class attributes and
    override what differs; the defaults describe a strategy that estimates nothing."""

    name = "base"
    # Does a checkpoint decide more networks at run time, from an estimate?
    estimates = False
    # See the module docstring: None | "recorded" | "job".
    estimation: str | None = None
    # Is the all-in-one network trained whatever sweep.all_in_one says (its training is the
    # estimate's, or its weights are)?
    needs_all_in_one = False
    # What the estimate of a group means, and its unit as printed (estimates.md / .parquet):
    # readable(raw) is the raw estimate in that unit.
    estimate_description = ""
    estimate_unit = "%"

    def __init__(self, sweep: dict) -> None:
        self.sweep = sweep

    @property
    def options(self) -> dict:
        """This strategy's options (``sweep.<name>``), defaults filled by the schema."""
        return dict(self.sweep.get(self.name) or {})

    # ------------------------------------------------------------------------ first stage

    def first_stage_orders(self) -> list[int]:
        """Task-set sizes trained in full before any estimate (singles at every size)."""
        return [1]

    @property
    def trains_pairs(self) -> bool:
        """Does the first stage train every pair (Standley's HOA can estimate from them)?"""
        return 2 in self.first_stage_orders()

    def subsets(self, tasks: Sequence[str]) -> list[tuple[str, ...]]:
        """Further full-size task sets of the first stage (the sampled strategy's subsets)."""
        return []

    def count_subsets(self, n_tasks: int) -> int:
        return 0

    def trains_all_in_one(self) -> bool:
        return self.needs_all_in_one or bool(self.sweep.get("all_in_one", False))

    def first_stage(self, tasks: Sequence[str]) -> list[Network]:
        """Singles at every size, full-size sets of every other order, the subsets, and the
        all-in-one network where asked or needed, without duplicates, in a stable order."""
        tasks = list(tasks)
        nets: list[Network] = []
        for order in self.first_stage_orders():
            for combo in combinations(tasks, order):
                sizes = resolved_sizes(self.sweep) if order == 1 else ["full"]
                nets += [Network(combo, size) for size in sizes]
        if self.trains_all_in_one() and len(tasks) > 1:
            nets.append(Network(tuple(tasks), "full"))
        nets += [Network(subset, "full") for subset in self.subsets(tasks)]
        position = {t: i for i, t in enumerate(tasks)}
        return sorted(
            set(nets), key=lambda n: (len(n.tasks), n.size, [position[t] for t in n.tasks])
        )

    def count_first_stage(self, n_tasks: int) -> int:
        """How many networks :meth:`first_stage` returns, without building them (the check
        against sweep.max_networks must not build 39 million networks to refuse them)."""
        orders = self.first_stage_orders()
        count = sum(
            comb(n_tasks, order) * (len(resolved_sizes(self.sweep)) if order == 1 else 1)
            for order in orders
        )
        if self.trains_all_in_one() and n_tasks > 1 and n_tasks not in orders:
            count += 1
        return count + self.count_subsets(n_tasks)

    def check(self, tasks: Sequence[str]) -> None:
        """Refuse options that cannot run on ``tasks`` (ValueError naming the config key)."""
        too_big = [o for o in self.first_stage_orders() if o > len(tasks)]
        if too_big:
            raise ValueError(
                f"config key sweep.orders: order(s) {too_big} exceed the {len(tasks)} selected "
                "tasks"
            )

    def check_config(self, config: dict, data) -> None:
        """Refuse what this strategy cannot run in the rest of the config (the model, the
        training, the dataset's task types), naming the key; called once at validation."""

    # ------------------------------------------------------------------------ estimate

    def recording_params(self, config: dict) -> dict:
        """estimation "recorded": the settings the all-in-one training records with."""
        raise NotImplementedError(f"sweep.strategy {self.name} records no estimate")

    def estimate_inputs(
        self, method: str, seed: int, network_file: Callable[[Network, int, str], str],
        tasks: Sequence[str],
    ) -> dict[str, list[str]]:  # fmt: skip
        """estimation "job": the named input files of the estimation job of ``method`` and
        ``seed`` (``network_file(network, seed, method)`` names any network's metrics)."""
        raise NotImplementedError(f"sweep.strategy {self.name} runs no estimation job")

    def estimate_params(self, config: dict) -> dict:
        """estimation "job": the job's settings (its Snakemake params: a change reruns it)."""
        return {}

    def estimate(self, input: dict, output: str, params: dict, log: str) -> None:
        """estimation "job": write the estimate of one method and seed to ``output``."""
        raise NotImplementedError(f"sweep.strategy {self.name} runs no estimation job")

    def readable(self, value: float) -> float:
        """A raw estimate in :attr:`estimate_unit` (default: a relative gain, in %)."""
        return 100.0 * value

    def affinity(self, estimates: Sequence[str], metrics: Sequence[str], tasks: Sequence[str]):
        """The task x task estimate (an ``Affinity``: ``matrix[i, j]`` how much task i helps
        task j, raw) for the picture, or None where the strategy has none."""
        return None

    # ------------------------------------------------------------------------ decided groups

    def decide(
        self, estimates: Sequence[str], metrics: Sequence[str], tasks: Sequence[str],
        selection: dict,
    ) -> dict:  # fmt: skip
        """The decided groups: ``{"networks": [{"tasks": [...], "size": "full",
        "estimated_benefit": float | None, ...}, ...], ...}`` from the estimate files (one per
        seed; none when :attr:`estimation` is None) and the first stage's metrics files."""
        raise NotImplementedError(f"sweep.strategy {self.name} decides no groups")
