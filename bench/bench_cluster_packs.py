"""Packed training on clusters (issue 21 item 2): cluster jobs submitted and wall time of one
sweep on Dask and SLURM, with and without group jobs, against a local unpacked run.

    python bench/bench_cluster_packs.py --out bench/RESULTS_cluster_packs.md
    python bench/bench_cluster_packs.py --runs local-off,dask,dask-groups

The sweep: the first 6 Tox21 tasks, singles and pairs (21 networks), full size, 3 epochs.
Every run's metrics table (without wall-time/device columns) is compared with the local
`pack: off` run, so a backend that packs but changes results cannot pass. The machine is
shared and loaded: the 1-minute load average is recorded next to every wall time; compare the
job counts (exact) before the times (noisy).

SLURM runs need root; the script starts scripts/slurm-local.sh if SLURM is not up and stops
it afterwards. Raw numbers go to bench/out/cluster_packs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from backends.helpers import (  # noqa: E402
    count_trainings,
    pack_sizes,
    slurm_local,
    slurm_unavailable,
    sweep,
    sweep_values,
)

PROFILES = REPO / "profiles"
TASKS = ["NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD"]
SWEEP = {
    "dataset": {"name": "tox21", "tasks": TASKS},
    "sweep": {"orders": [1, 2], "all_in_one": False, "sizes": ["full"]},
    "model": {"hidden": [128, 128]},
    "training": {"epochs": 3, "batch_size": 256, "lr": 0.0005},
    "selection": {"budgets": [1, 2, 3], "controls": False},
}
GROUPS = ["--groups", "train=trainbatch", "--group-components", "trainbatch=16"]
DASK = [
    "--workflow-profile", str(PROFILES / "dask"), "--jobs", "2", "--dask-workers", "2",
]  # fmt: skip
DASK_SLURM = [
    "--workflow-profile", str(PROFILES / "dask"), "--jobs", "4", "--dask-cluster", "slurm",
    "--dask-slurm-jobs", "1", "--dask-slurm-cores", "2", "--dask-slurm-processes", "1",
    "--dask-slurm-memory", "6GB", "--dask-slurm-walltime", "00:30:00",
    "--dask-slurm-interface", "lo",
]  # fmt: skip
RUNS: dict[str, tuple[str, list[str], dict]] = {
    "local-off": ("local, 2 threads, pack: off (reference)", ["--cores", "2"], {"pack": "off"}),
    "local-auto": ("local, 2 threads, pack: auto", ["--cores", "2"], {}),
    "dask": ("Dask LocalCluster (2 workers), no groups", DASK, {}),
    "dask-groups": ("Dask LocalCluster (2 workers), groups of 16", [*DASK, *GROUPS], {}),
    "dask-groups-off": (
        "Dask LocalCluster (2 workers), groups of 16, pack: off",
        [*DASK, *GROUPS],
        {"pack": "off"},
    ),
    "slurm-groups": (
        "SLURM plugin, profiles/slurm-local (groups of 8; group process threaded, packs)",
        ["--workflow-profile", str(PROFILES / "slurm-local")],
        {},
    ),
    "slurm-groups-off": (
        "SLURM plugin, profiles/slurm-local (groups of 8), pack: off (members are processes)",
        ["--workflow-profile", str(PROFILES / "slurm-local")],
        {"pack": "off"},
    ),
    "dask-slurm-groups": ("Dask workers as 1 SLURM job, groups of 16", [*DASK_SLURM, *GROUPS], {}),
}


def _training_submissions(output: str) -> int:
    # Group members are logged indented under "Group job ..."; a lone job's "rule train:" is not.
    return output.count("Group job trainbatch") + len(re.findall(r"(?m)^rule train:", output))


def run_one(name: str, reference: list | None) -> tuple[dict, list]:
    label, args, training = RUNS[name]
    overrides = {**SWEEP, "training": {**SWEEP["training"], **training}}
    workdir = Path(tempfile.mkdtemp(prefix=f"clusterpacks-{name}-"))
    load_before = os.getloadavg()[0]
    run = sweep(workdir, *args, overrides=overrides, timeout=1800)
    load_after = os.getloadavg()[0]
    ok = run.proc.returncode == 0
    values = sweep_values(workdir) if ok else []
    sizes = pack_sizes(workdir)
    row = {
        "run": name,
        "label": label,
        "ok": ok,
        "wall_s": round(run.seconds, 1),
        "load_1min": [round(load_before, 2), round(load_after, 2)],
        "trainings": count_trainings(workdir),
        "training_submissions": _training_submissions(run.output),
        "slurm_jobs": len(set(re.findall(r"submitted with SLURM jobid (\d+)", run.output))),
        "largest_pack": max(sizes, default=0),
        "equal_to_reference": (values == reference) if reference is not None else None,
    }
    if not ok:
        row["tail"] = run.output[-2000:]
    print(json.dumps(row), flush=True)
    return row, values


def render(rows: list[dict]) -> str:
    lines = [
        "| run | trainings | training jobs submitted | SLURM jobs | largest pack | wall (s) "
        "| load (1 min, before/after) | metrics = local pack: off |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['trainings']} "
            f"| {'-' if r['run'].startswith('local') else r['training_submissions']} "
            f"| {r['slurm_jobs'] or '-'} | {r['largest_pack']} | {r['wall_s']} "
            f"| {r['load_1min'][0]} / {r['load_1min'][1]} "
            f"| {'reference' if r['equal_to_reference'] is None else r['equal_to_reference']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    names = ["local-off", *[n for n in args.runs.split(",") if n != "local-off"]]
    needs_slurm = any("slurm" in n for n in names)
    started_slurm = False
    if needs_slurm:
        why = slurm_unavailable()
        if why is not None:
            sys.exit(f"SLURM runs requested but: {why}")
        if os.system("sinfo -h >/dev/null 2>&1") != 0:
            up = slurm_local("up")
            if up.returncode != 0:
                sys.exit(up.stderr)
            started_slurm = True
    rows, reference = [], None
    try:
        for name in names:
            row, values = run_one(name, reference)
            if name == "local-off":
                reference = values
            rows.append(row)
    finally:
        if started_slurm:
            slurm_local("down")
    out_json = REPO / "bench" / "out" / "cluster_packs.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(rows, indent=1))
    table = render(rows)
    print(table)
    if args.out:
        machine = f"{platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}"
        args.out.write_text(
            "# Packed training on clusters (bench/bench_cluster_packs.py)\n\n"
            f"Machine: {machine}; shared with other jobs (load recorded per run).\n\n"
            f"Sweep: Tox21 tasks {', '.join(TASKS)}; singles + pairs (21 networks), full size, "
            "3 epochs, hidden [128, 128].\n\n" + table + "\n"
        )


if __name__ == "__main__":
    main()
