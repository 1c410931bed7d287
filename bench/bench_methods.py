"""Tox21: the all-in-one 12-task network trained with each multi-task method vs. single-task
networks (issue #5).

Trains, in process (no Snakemake), with the default config's hyper-parameters (config.yaml):

* the 12 full-size single-task networks (hard sharing, equal weighting: one task, no sharing);
* the all-in-one 12-task network per method: hard_sharing x {equal, uncertainty, dwa,
  gradnorm}, mtan x equal, adashare x equal (and, as a diagnostic, adashare without its
  sparsity term).

Reports, per method, the mean over the 12 tasks of the final-epoch test loss and test ROC-AUC
(mean over seeds), the network's cost (multiply-adds relative to its architecture's full-size
single-task network; the 12 singles together cost 12) and the training seconds, as a markdown
table printed and written to bench/RESULTS_methods.md.

Usage: python bench/bench_methods.py [--seeds 0 1 2] [--configfile config.yaml] [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from pipeline.config import resolve_config
from pipeline.datasets import load_dataset
from pipeline.split import make_split
from pipeline.sweep import network_spec
from pipeline.training import resolve_device, train_network

REPO = Path(__file__).resolve().parent.parent
METHODS = [
    ("hard_sharing", "equal"),
    ("hard_sharing", "uncertainty"),
    ("hard_sharing", "dwa"),
    ("hard_sharing", "gradnorm"),
    ("mtan", "equal"),
    ("adashare", "equal"),
]


def final_test(table: pd.DataFrame) -> pd.DataFrame:
    last = table[(table.split == "test") & (table.epoch == table.epoch.max())]
    return last[last.metric.isin(["loss", "roc_auc"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", default=str(REPO / "config.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "RESULTS_methods.md"))
    args = parser.parse_args()

    torch.set_num_threads(1)
    raw = yaml.safe_load(Path(args.configfile).read_text())
    raw["dataset"] = {"name": "tox21"}
    config = resolve_config(raw, check_data=False)
    data = load_dataset(config["dataset"])
    tasks = tuple(config["dataset"]["tasks"])
    labels = make_split(data.n_rows, config["split"]["fractions"], config["split"]["seed"])
    device = resolve_device()

    rows, policies = [], []
    runs = [
        (
            "single-task networks (hard_sharing, equal)",
            "hard_sharing",
            "equal",
            [(t,) for t in tasks],
        )
    ]
    runs += [(f"all-in-one, {a} x {w}", a, w, [tasks]) for a, w in METHODS]
    # A diagnostic: AdaShare without its sparsity term (does the policy search keep blocks?).
    runs.append(("all-in-one, adashare x equal, sparsity_weight 0", "adashare", "equal", [tasks]))
    for seed in args.seeds:
        for label, arch, weighting, networks in runs:
            started = time.perf_counter()
            results, cost = [], 0.0
            run_config = config
            if "sparsity_weight 0" in label:
                training = {**config["training"]}
                training["adashare"] = {**training["adashare"], "sparsity_weight": 0.0}
                run_config = {**config, "training": training}
            for net in networks:
                spec = network_spec(run_config, net, "full", seed, arch, weighting)
                table = train_network(data, labels, spec, device).to_pandas()
                results.append(final_test(table))
                cost += float(table.cost.iloc[0])
                if label.endswith("adashare x equal"):
                    fixed = table[table.metric.str.startswith("policy_block_") & (table.epoch > 0)]
                    policies.append(fixed[fixed.epoch == fixed.epoch.max()])
            seconds = time.perf_counter() - started
            final = pd.concat(results)
            mean = final.groupby("metric").value.mean()
            rows.append(
                {
                    "method": label,
                    "seed": seed,
                    "test_loss": mean["loss"],
                    "test_roc_auc": mean["roc_auc"],
                    "cost": cost,
                    "seconds": seconds,
                }
            )
            print(
                f"seed {seed} {label}: loss {mean['loss']:.4f} auc {mean['roc_auc']:.4f} "
                f"cost {cost:.2f} {seconds:.1f}s",
                flush=True,
            )

    df = pd.DataFrame(rows)
    summary = df.groupby("method", sort=False).agg(
        test_loss=("test_loss", "mean"), loss_sd=("test_loss", "std"),
        test_roc_auc=("test_roc_auc", "mean"), auc_sd=("test_roc_auc", "std"),
        cost=("cost", "mean"), seconds=("seconds", "mean"),
    )  # fmt: skip
    single = summary.iloc[0]
    lines = [
        (
            f"Tox21, 12 tasks, config.yaml defaults ({config['training']['epochs']} epochs, "
            f"hidden {config['model']['hidden']}, lr {config['training']['lr']}), final-epoch "
            f"test split, mean over the 12 tasks; seeds {args.seeds}; device {device}."
        ),
        "",
        (
            "| method | mean test loss | Δ loss vs singles | mean test ROC-AUC "
            "| Δ AUC vs singles | cost | train s |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for method, r in summary.iterrows():
        sd = "" if np.isnan(r.loss_sd) else f" ± {r.loss_sd:.4f}"
        sd_auc = "" if np.isnan(r.auc_sd) else f" ± {r.auc_sd:.4f}"
        lines.append(
            f"| {method} | {r.test_loss:.4f}{sd} | {r.test_loss - single.test_loss:+.4f} "
            f"| {r.test_roc_auc:.4f}{sd_auc} | {r.test_roc_auc - single.test_roc_auc:+.4f} "
            f"| {r.cost:.2f} | {r.seconds:.1f} |"
        )
    if policies:
        policy = pd.concat(policies).groupby("metric").value.mean()
        lines += [
            "",
            "AdaShare's fixed policy (fraction of the 12 tasks executing each block): "
            + ", ".join(f"{k} = {v:.2f}" for k, v in policy.items()),
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
