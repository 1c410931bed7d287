"""Estimation quality against ground truth on Tox21 (issue 19 item 4): how well does each
estimating strategy's estimate rank what the exhaustive sweep measures?

Truth: the exhaustive Tox21 sweep (``sweep.orders: [1, 2, 3]``, ``sizes: [full]``, seeds 0, 1,
2, default training), run with the real Snakemake into ``--truth`` (its ``results/runs``
files). The gain of task j in the network {i, j} is ``(L_j({j}) - L_j({i, j})) / L_j({j})``
with final-epoch validation losses, mean over the 3 seeds (132 ordered pairs); triples the same
way where they were trained (every cell measured is used).

Estimators, each computed here in-process with the workflow's own code on the workflow's
network specs (so the all-in-one network is the sweep's, seed for seed):

* ``gradtag``: :mod:`pipeline.affinity.gradtag`, the all-in-one network trained once (seed 0)
  with :class:`GradTagRecorder` taking the statistics at the end of epochs ``--meta-epochs``;
  every pair's and triple's member losses estimated; estimated gain of j with i: the same
  formula on the estimated losses (j's estimate alone as the single).
* ``tag``: TAG's lookahead (:class:`pipeline.affinity.lookahead.AffinityRecorder`) on the
  all-in-one network (seed 0) at the workflow's defaults (every 5, lookahead lr = training lr)
  and at diagnostic variants; Z(i -> j), epoch means weighted by steps (as the workflow's
  ``mean_affinity``).
* ``sampled``: the workflow's default subsets (:func:`pipeline.strategies.sampled_subsets`,
  k = 4) trained (seed 0); estimated gain of j with i: mean over subsets holding both of j's
  relative loss drop against its single network (seed 0's single, as the strategy has).
* ``pairs`` (HOA): pairs are trained, so its pair "estimate" is seed 0's measured pair gain
  (the seeds' own agreement, a ceiling); its estimate proper is each triple member's loss as
  the mean of its two pairs' losses (Standley's HOA), scored against the measured triples.

Reported: Spearman of estimated against measured gain, over all ordered pairs and the mean
within one target's 11 partners; the relative error |estimated - measured| / measured of each
estimated subset loss where the estimator gives a loss (gradtag, HOA); the compute as % of one
seed of the exhaustive sweep (summed in-process training seconds of the sweep's networks,
from their metrics files).

    PYTHONPATH=. nice -n 19 .venv/bin/python bench/bench_estimation.py \
        --truth /work/gt/tox21_3seeds --cache bench/out/estimation [--stages gradtag tag sampled]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

CPU = torch.device("cpu")
RIDGES = (0.01, 0.1, 1.0, 10.0, 100.0)


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                     if ln.startswith("Model name"))  # fmt: skip
    except Exception:  # noqa: BLE001
        model = platform.processor()
    return f"{model}, {os.cpu_count()} vCPUs"


def load(epochs: int = 10):
    from pipeline.config import resolve_config
    from pipeline.datasets import load_dataset
    from pipeline.split import make_split

    config = resolve_config({"dataset": {"name": "tox21"}, "training": {"epochs": epochs},
                             "sweep": {"sizes": ["full"]}}, check_data=False)  # fmt: skip
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    return config, data, labels


def all_in_one_trainer(config, data, labels, seed: int):
    from pipeline.sweep import network_spec
    from pipeline.training import Trainer

    spec = network_spec(config, tuple(config["dataset"]["tasks"]), "full", seed)
    return Trainer(data, labels, spec, CPU)


# ---- stages: each writes its estimates under --cache ----------------------------------------
def stage_gradtag(args, cache: Path) -> None:
    from pipeline.affinity.gradtag import GradTagRecorder, estimate_subset_losses

    config, data, labels = load()
    tasks = tuple(config["dataset"]["tasks"])
    subsets = [(t,) for t in tasks] + list(combinations(tasks, 2)) + list(combinations(tasks, 3))
    rows = []
    for seed in args.seeds:
        trainer = all_in_one_trainer(config, data, labels, seed)
        plain_started = time.perf_counter()
        trainer.fit()
        plain = time.perf_counter() - plain_started
        trainer = all_in_one_trainer(config, data, labels, seed)
        for dim in args.dims:
            recorder = GradTagRecorder(trainer, args.meta_epochs, dim=dim, seed=seed)
            trainer.observer = recorder
            started = time.perf_counter()
            trainer.fit()
            total = time.perf_counter() - started
            for epoch, stats in recorder.statistics.items():
                for ridge in RIDGES:
                    t0 = time.perf_counter()
                    frame = estimate_subset_losses(stats, subsets, ridge)
                    solve = time.perf_counter() - t0
                    frame["members"] = [subsets[i] for i in frame["subset"]]
                    rows.append(frame.assign(
                        seed=seed, dim=dim, meta_epoch=epoch, ridge=ridge,
                        statistics_s=stats.seconds, solve_s=solve, plain_training_s=plain,
                        training_with_recorder_s=total, load=os.getloadavg()[0]))  # fmt: skip
            print(f"gradtag seed {seed} d {dim}: plain {plain:.1f}s, with recorder {total:.1f}s",
                  flush=True)  # fmt: skip
    out = pd.concat(rows, ignore_index=True)
    out["members"] = out["members"].map(list)
    out.to_parquet(cache / "gradtag.parquet")


def stage_tag(args, cache: Path) -> None:
    """TAG's affinity at the default settings and diagnostic variants, per epoch."""
    from pipeline.affinity.lookahead import AffinityRecorder

    config, data, labels = load()
    variants = [v for v in (("default", 5, None), ("lr_x100", 5, 100.0), ("every1", 1, None))
                if v[0] in args.tag_variants]  # fmt: skip
    frames = []
    for name, every, factor in variants:
        trainer = all_in_one_trainer(config, data, labels, 0)
        lr = None if factor is None else trainer.lr * factor
        recorder = AffinityRecorder(trainer, every, lr)
        trainer.observer = recorder
        started = time.perf_counter()
        trainer.fit()
        table = recorder.table("bench").to_pandas()
        frames.append(table.assign(variant=name, seconds=time.perf_counter() - started,
                                   lookahead_s=recorder.seconds))  # fmt: skip
        print(f"tag {name}: {time.perf_counter() - started:.1f}s", flush=True)
    pd.concat(frames, ignore_index=True).to_parquet(cache / "tag.parquet")


def stage_sampled(args, cache: Path) -> None:
    from pipeline.strategies import sampled_subsets
    from pipeline.sweep import network_spec
    from pipeline.training import train_network

    config, data, labels = load()
    tasks = list(config["dataset"]["tasks"])
    subsets = sampled_subsets(tasks, config["sweep"])
    rows = []
    for subset in subsets:
        spec = network_spec(config, tuple(subset), "full", 0)
        started = time.perf_counter()
        table = train_network(data, labels, spec, CPU).to_pandas()
        seconds = time.perf_counter() - started
        final = table[(table["split"] == "val") & (table["metric"] == "loss")
                      & (table["epoch"] == table["epochs"])]  # fmt: skip
        for task, value in zip(final["task"], final["value"]):
            rows.append({"members": list(subset), "task": task, "loss": value,
                         "seconds": seconds})  # fmt: skip
    print(f"sampled: {len(subsets)} subsets", flush=True)
    pd.DataFrame(rows).to_parquet(cache / "sampled.parquet")


def stage_toxcast(args, cache: Path) -> None:
    """Grad-TAG's cost at 617 tasks: one epoch of the all-in-one training (the meta
    initialisation at the default epoch 1), the gradient statistics, and every pair's estimate
    (190,026 pairs), against the plain training's epochs; peak resident memory of this process
    after each step (ru_maxrss)."""
    import resource

    from pipeline.affinity.gradtag import estimate_subset_losses, estimation_subsets
    from pipeline.config import resolve_config
    from pipeline.datasets import load_dataset
    from pipeline.split import make_split
    from pipeline.sweep import network_spec
    from pipeline.training import Trainer

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    config = resolve_config({"dataset": {"name": "toxcast"}, "training": {"epochs": 1}},
                            check_data=False)  # fmt: skip
    data = load_dataset(config["dataset"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    tasks = tuple(config["dataset"]["tasks"])
    spec = network_spec(config, tasks, "full", 0)
    rows = {"tasks": len(tasks), "load_start": os.getloadavg()[0], "peak_mb_loaded": peak_mb()}
    trainer = Trainer(data, labels, spec, CPU)
    started = time.perf_counter()
    trainer.fit()
    rows["one_epoch_training_s"] = time.perf_counter() - started
    rows["peak_mb_after_training"] = peak_mb()
    from pipeline.affinity.gradtag import gradient_statistics

    stats = gradient_statistics(trainer.model, trainer, dim=args.dims[0], seed=0)
    rows["statistics_s"] = stats.seconds
    rows["peak_mb_after_statistics"] = peak_mb()
    subsets = estimation_subsets(tasks)
    started = time.perf_counter()
    losses = estimate_subset_losses(stats, subsets, 1.0)
    rows["pairs"] = len(subsets)
    rows["pair_estimates_s"] = time.perf_counter() - started
    rows["peak_mb_after_estimates"] = peak_mb()
    rows["finite_estimates"] = bool(np.isfinite(losses["loss"]).all())
    rows["dim"] = args.dims[0]
    rows["load_end"] = os.getloadavg()[0]
    print(json.dumps(rows), flush=True)
    (cache / "toxcast.json").write_text(json.dumps(rows, indent=1))


def stage_planted(args, cache: Path) -> None:
    """ARI of gradtag's grouping at the planted number of groups on the planted synthetic
    scenarios of bench/bench_sampled_defaults.py (same data, network and training; seed s is the
    split, training and projection seed), theta* at epochs 1 and 5, ridges 1 and 10."""
    import sys

    from sklearn.metrics import adjusted_rand_score

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_sampled_defaults import base_config

    from pipeline.affinity import candidate_groups
    from pipeline.affinity.gradtag import all_pairs, gradtag_affinity, meta_statistics
    from pipeline.datasets import load_dataset
    from pipeline.split import make_split
    from pipeline.sweep import network_spec

    rows = []
    for scenario in args.scenarios:
        for seed in args.planted_seeds:
            config = base_config(scenario, seed, 5)
            data = load_dataset(config["dataset"])
            labels = make_split(data.n_rows, config["split"]["fractions"], seed)
            tasks = tuple(config["dataset"]["tasks"])
            spec = network_spec(config, tasks, "full", seed)
            planted = [data.true_groups[t] for t in tasks]
            for epoch in (1, 5):
                started = time.perf_counter()
                stats = meta_statistics(data, labels, spec, epoch, 128, seed, CPU)
                seconds = time.perf_counter() - started
                for ridge in (1.0, 10.0):
                    affinity = gradtag_affinity(stats, all_pairs(tasks), ridge)
                    (grouping,) = candidate_groups(affinity, [len(set(planted))])
                    ari = adjusted_rand_score(planted, grouping.labels())
                    rows.append({"scenario": scenario, "seed": seed, "epoch": epoch,
                                 "ridge": ridge, "ari": ari, "seconds": seconds})  # fmt: skip
                    print(rows[-1], flush=True)
    pd.DataFrame(rows).to_parquet(cache / "planted.parquet")


# ---- truth -----------------------------------------------------------------------------------
def truth_losses(truth: Path) -> pd.DataFrame:
    """Final-epoch validation loss of every (network, member, seed) of the exhaustive sweep,
    and each network's training seconds."""
    import duckdb

    files = str(truth / "results" / "runs" / "*" / "seed*" / "full" / "*.parquet")
    return duckdb.sql(
        f"""
        SELECT tasks, n_tasks, seed, task, value AS loss, wall_time_s
        FROM read_parquet('{files}')
        WHERE split = 'val' AND metric = 'loss' AND epoch = epochs AND status = 'ok'
        """
    ).df()


def truth_tables(truth: Path):
    frame = truth_losses(truth)
    frame["members"] = frame["tasks"].map(lambda t: tuple(sorted(t)))
    single = frame[frame["n_tasks"] == 1].set_index(["task", "seed"])["loss"]
    frame["single"] = [single.get((t, s), np.nan) for t, s in zip(frame["task"], frame["seed"])]
    frame["gain"] = (frame["single"] - frame["loss"]) / frame["single"]
    seconds = frame.groupby(["members", "seed"])["wall_time_s"].max()
    return frame, seconds


def pair_truth(frame: pd.DataFrame) -> pd.DataFrame:
    """(source i, target j) -> gain of j in {i, j} per seed and mean over seeds."""
    pairs = frame[frame["n_tasks"] == 2].copy()
    pairs["source"] = [next(m for m in ms if m != t) for ms, t in
                       zip(pairs["members"], pairs["task"])]  # fmt: skip
    table = pairs.pivot_table(index=["source", "task"], columns="seed", values="gain")
    table["mean"] = table.mean(axis=1)
    return table.rename_axis(index=["source", "target"])


def rank_scores(estimate: pd.Series, measured: pd.Series) -> tuple[float, float]:
    """Spearman over all (source, target) cells, and the mean within targets."""
    both = pd.concat([estimate.rename("e"), measured.rename("m")], axis=1).dropna()
    if len(both) < 3:
        return float("nan"), float("nan")
    overall = spearmanr(both["e"], both["m"])[0]
    within = [spearmanr(g["e"], g["m"])[0] for _, g in both.groupby(level="target")
              if len(g) > 2]  # fmt: skip
    return float(overall), float(np.nanmean(within))


def estimated_pair_gains(losses: pd.DataFrame) -> pd.Series:
    """From estimated member losses of singles and pairs (columns members, task, loss): the
    estimated gain of target j with source i, relative to j's estimate alone."""
    single = losses[losses["members"].map(len) == 1].set_index("task")["loss"]
    pairs = losses[losses["members"].map(len) == 2]
    source = [next(m for m in ms if m != t) for ms, t in zip(pairs["members"], pairs["task"])]
    gain = (pairs["task"].map(single).to_numpy() - pairs["loss"].to_numpy()) / pairs["task"].map(
        single
    ).to_numpy()
    return pd.Series(
        gain, index=pd.MultiIndex.from_arrays([source, pairs["task"]], names=["source", "target"])
    )


def order_times(seconds: pd.Series) -> dict[int, float]:
    """Mean training seconds of one network of each task count (wall_time_s; a packed member
    records its share of the pack's time), over every trained network and seed."""
    frame = seconds.reset_index()
    frame["order"] = frame["members"].map(len)
    return frame.groupby("order")["wall_time_s"].mean().to_dict()


def report(args, cache: Path) -> str:
    """Compute is in units of the exhaustive sweep of one seed, 12 singles + 66 pairs + 220
    triples + the all-in-one network, each costed at the mean measured time of its task count;
    an in-process estimation's extra cost is converted through the ratio of its time to an
    in-process plain all-in-one training."""
    frame, seconds = truth_tables(Path(args.truth))
    seeds = sorted(frame["seed"].unique())
    truth = pair_truth(frame)
    pair_seeds = [s for s in seeds if s in truth.columns]
    t = order_times(seconds)
    n = 12
    t3 = t.get(3, t[2] * 1.2)
    sweep_s = n * t[1] + 66 * t[2] + 220 * t3 + t[n]
    singles = n * t[1]

    def pct(extra_units: float) -> str:
        return f"{100 * (singles + t[n] + extra_units * t[n]) / sweep_s:.1f} %"

    complete = truth.drop(columns="mean").notna().all(axis=1).sum()
    times = ", ".join(f"{k}: {v:.2f} s" for k, v in sorted(t.items()))
    lines = [
        f"machine: {machine()}; load average at report {os.getloadavg()[0]:.1f}",
        f"truth: {len(truth)} ordered pairs with a measured gain ({complete} in every seed "
        f"of {pair_seeds}); mean network time by task count {times}"
        f"{'' if 3 in t else ' (triples not measured: 1.2 x pairs assumed)'}",
        "",
    ]  # fmt: skip
    lines.append("Seed agreement (Spearman of one seed's pair gains against another's):")
    for a, b in combinations(pair_seeds, 2):
        o, w = rank_scores(truth[a], truth[b])
        lines.append(f"- seeds {a} vs {b}: overall {o:+.2f}, within targets {w:+.2f}")
    lines += ["", "| estimator | setting | Spearman overall | Spearman within targets | "
              "rel. error of subset losses | compute (% of exhaustive, 1 seed) |",
              "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    o, w = rank_scores(truth[pair_seeds[0]], truth["mean"])
    pairs_pct = f"{100 * (singles + 66 * t[2] + t[n]) / sweep_s:.1f} %"
    lines.append(f"| pairs (measured, seed {pair_seeds[0]} vs the mean) | pair gains | "
                 f"{o:+.2f} | {w:+.2f} | — | {pairs_pct} |")  # fmt: skip
    if (frame["n_tasks"] == 3).any():
        hoa_err, hoa_rho = hoa_scores(frame)
        lines.append(f"| pairs / HOA | triples from pairs ({(frame['n_tasks'] == 3).sum()} "
                     f"triple cells) | {hoa_rho:+.2f} (triple gains) | — | "
                     f"{100 * hoa_err:.1f} % | {pairs_pct} |")  # fmt: skip
    if (cache / "tag.parquet").exists():
        tag = pd.read_parquet(cache / "tag.parquet")
        for variant, part in tag.groupby("variant", sort=False):
            part = part[np.isfinite(part["value"]) & (part["steps"] > 0)]
            grouped = part.groupby(["source", "target"])
            weighted = (part["value"] * part["steps"]).groupby(
                [part["source"], part["target"]]).sum() / grouped["steps"].sum()  # fmt: skip
            weighted = weighted[weighted.index.get_level_values(0)
                                != weighted.index.get_level_values(1)]  # fmt: skip
            weighted.index.names = ["source", "target"]
            o, w = rank_scores(weighted, truth["mean"])
            overhead = part["lookahead_s"].iloc[0] / (
                part["seconds"].iloc[0] - part["lookahead_s"].iloc[0])  # fmt: skip
            lines.append(f"| tag | {variant}, all epochs | {o:+.2f} | {w:+.2f} | — | "
                         f"{pct(overhead)} |")  # fmt: skip
            for epoch, ep in part.groupby("epoch"):
                z = ep.set_index(["source", "target"])["value"]
                z = z[z.index.get_level_values(0) != z.index.get_level_values(1)]
                eo, ew = rank_scores(z, truth["mean"])
                lines.append(f"| tag | {variant}, epoch {epoch} only | {eo:+.2f} | {ew:+.2f} "
                             "| — | — |")  # fmt: skip
    if (cache / "sampled.parquet").exists():
        sampled = pd.read_parquet(cache / "sampled.parquet")
        single = frame[(frame["n_tasks"] == 1) & (frame["seed"] == 0)].set_index("task")["loss"]
        sampled["gain"] = (sampled["task"].map(single) - sampled["loss"]) / sampled["task"].map(
            single)  # fmt: skip
        cells: dict = {}
        for members, task, gain in zip(sampled["members"], sampled["task"], sampled["gain"]):
            for source in members:
                if source != task:
                    cells.setdefault((source, task), []).append(gain)
        est = pd.Series({k: np.mean(v) for k, v in cells.items()})
        est.index.names = ["source", "target"]
        o, w = rank_scores(est, truth["mean"])
        m = sampled["members"].map(tuple).nunique()
        lines.append(f"| sampled | {m} subsets of 4 (seed 0) | {o:+.2f} | {w:+.2f} | — | "
                     f"{100 * (singles + t[n] + m * t.get(4, t3)) / sweep_s:.1f} % |")  # fmt: skip
    if (cache / "gradtag.parquet").exists():
        lines += gradtag_rows(pd.read_parquet(cache / "gradtag.parquet"), frame, truth, pct)
    return "\n".join(lines)


def hoa_scores(frame: pd.DataFrame) -> tuple[float, float]:
    """Standley's HOA on the 3-seed mean losses: a triple member's loss as the mean of its
    two pairs' losses; relative error against the measured triple, and Spearman of the
    implied gains."""
    mean = frame.groupby(["members", "task"])["loss"].mean()
    single = frame[frame["n_tasks"] == 1].groupby("task")["loss"].mean()
    errors, est, meas = [], [], []
    for (members, task), loss in mean.items():
        if len(members) != 3:
            continue
        others = [m for m in members if m != task]
        pairs = [mean[(tuple(sorted((task, o))), task)] for o in others]
        hoa = float(np.mean(pairs))
        errors.append(abs(hoa - loss) / loss)
        est.append((single[task] - hoa) / single[task])
        meas.append((single[task] - loss) / single[task])
    return float(np.mean(errors)), float(spearmanr(est, meas)[0])


def gradtag_rows(est, frame, truth, pct) -> list[str]:
    """One row per (d, meta epoch, ridge): Spearman of the estimated pair gains (seed 0's
    all-in-one network), the mean relative error of every estimated pair and triple member
    loss against the measured one (mean over seeds), and the compute: the estimation job
    (training to the meta epoch + statistics + every subset's solve) in units of a plain
    in-process all-in-one training."""
    lines = []
    measured = frame.groupby(["members", "task"])["loss"].mean()
    for (dim, epoch, ridge), part in est.groupby(["dim", "meta_epoch", "ridge"]):
        p = part[part["seed"] == part["seed"].min()]
        p = p.assign(members=p["members"].map(lambda m: tuple(sorted(m))))
        gains = estimated_pair_gains(p)
        rel = [abs(loss - measured[(m, task)]) / measured[(m, task)]
               for m, task, loss in zip(p["members"], p["task"], p["loss"])
               if len(m) > 1 and (m, task) in measured.index]  # fmt: skip
        o, w = rank_scores(gains, truth["mean"])
        plain = p["plain_training_s"].iloc[0]
        units = epoch / 10 + (p["statistics_s"].iloc[0] + p["solve_s"].iloc[0]) / plain
        lines.append(
            f"| gradtag | d {dim}, theta* at epoch {epoch}, ridge {ridge:g} | {o:+.2f} | "
            f"{w:+.2f} | {100 * np.mean(rel):.1f} % ({len(rel)} cells) | {pct(units)} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--truth", default="/work/gt/tox21_3seeds")
    parser.add_argument("--cache", default="bench/out/estimation")
    parser.add_argument("--stages", nargs="*", default=["gradtag", "tag", "sampled"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--dims", nargs="+", type=int, default=[128])
    parser.add_argument("--meta-epochs", nargs="+", type=int, default=[1, 2, 3, 5, 10])
    parser.add_argument("--tag-variants", nargs="+", default=["default", "lr_x100"])
    parser.add_argument("--scenarios", nargs="+",
                        default=["synthetic12", "synthetic12x3", "synthetic30"])  # fmt: skip
    parser.add_argument("--planted-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    for stage in args.stages:
        stages = {"gradtag": stage_gradtag, "tag": stage_tag, "sampled": stage_sampled,
                  "toxcast": stage_toxcast, "planted": stage_planted}  # fmt: skip
        stages[stage](args, cache)
    if args.report:
        text = report(args, cache)
        print(text)
        (cache / "report.md").write_text(text + "\n")
    (cache / "args.json").write_text(json.dumps(vars(args)))


if __name__ == "__main__":
    main()
