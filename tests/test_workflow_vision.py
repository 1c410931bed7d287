"""Dense tasks and your own trunk through the real workflow (issue #15): a trunk module in the
working directory, an arrays dataset of 16x16 images, every network trained and solved."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from vision_helpers import TASKS, write_images, write_trunk_module

from workflow import network_files, snakemake, values

pytestmark = pytest.mark.slow


def _write_config(workdir: Path, strategy: str, trunk: str = "my_trunks:conv") -> None:
    config = {
        "dataset": {"name": "arrays", "path": "images.npz", "targets": TASKS},
        "sweep": {"strategy": strategy, "orders": [1], "sizes": ["full", "half"],
                  "tag": {"every": 2}},
        "model": {"trunk": trunk, "head_hidden": [4]},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.01},
        "selection": {"budgets": [1, 2, 3]},
    }  # fmt: skip
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def test_user_trunk_sweep_trains_costs_and_solves(tmp_path: Path) -> None:
    write_images(tmp_path / "images.npz")
    write_trunk_module(tmp_path)  # found in the working directory, not on PYTHONPATH
    _write_config(tmp_path, "exhaustive")
    snakemake(tmp_path)
    files = network_files(tmp_path)
    assert len(files) == 7  # 3 singles at full and half size, the all-in-one network
    frames = [pq.read_table(tmp_path / "results" / "runs" / f).to_pandas() for f in files]
    nets = pd.concat(frames)
    nets["members"] = nets.tasks.map("+".join)
    cost = nets.groupby(["members", "size"]).cost.first()
    singles = [cost[(t, "full")] for t in TASKS]
    assert singles == pytest.approx([1.0] * 3, rel=0.05)  # the heads differ a little
    assert cost[("depth+seg+normals", "full")] > max(singles)
    assert cost[("depth", "half")] == pytest.approx(0.5, abs=0.05)
    final = nets[(nets.epoch == 2) & (nets.split == "test")]
    assert set(final.metric) == {"loss", "mae", "miou", "angular_error"}
    assert final[final.metric != "task_weight"].value.notna().all()
    assert (tmp_path / "results" / "groupings.parquet").exists()
    # Same config and seed: a forced rerun of one network reproduces its metrics exactly.
    one = next(f for f in files if f.endswith("full/depth.parquet"))
    before = values(tmp_path / "results" / "runs" / one)
    snakemake(tmp_path, "--forcerun", "train", "--until", f"results/runs/{one}")
    assert values(tmp_path / "results" / "runs" / one) == before


def test_tag_strategy_over_a_user_conv_trunk(tmp_path: Path) -> None:
    write_images(tmp_path / "images.npz")
    write_trunk_module(tmp_path)
    _write_config(tmp_path, "tag", "my_trunks:deep")
    snakemake(tmp_path)
    affinity = list((tmp_path / "results" / "affinity").rglob("*.parquet"))
    assert affinity and pq.read_table(affinity[0]).num_rows > 0
    assert (tmp_path / "results" / "groupings.parquet").exists()


def test_conv_sweep_on_scenes_end_to_end(tmp_path: Path) -> None:
    """The built-in conv trunk on rendered scenes: 3 dense tasks, 16x16, 2 epochs, two
    weightings; the half-size trunk costs about half."""
    config = {
        "dataset": {"name": "scenes", "images": 100, "size": 16,
                    "tasks": ["segmentation", "depth", "normals"]},
        "sweep": {"orders": [1], "sizes": ["full", "half"],
                  "methods": [{"architecture": "hard_sharing", "weighting": "equal"},
                              {"architecture": "hard_sharing", "weighting": "gradnorm"}]},
        "model": {"trunk": "conv", "hidden": [8, 16]},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.005},
        "selection": {"budgets": [1, 2]},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(tmp_path, env={"TASKGROUP_CACHE": str(tmp_path / "cache")})
    files = network_files(tmp_path)
    assert len(files) == 14  # (3 singles x 2 sizes + all-in-one) x 2 weightings
    nets = pd.concat(pq.read_table(tmp_path / "results" / "runs" / f).to_pandas() for f in files)
    half = nets[(nets["size"] == "half") & (nets.n_tasks == 1)].cost
    assert half.between(0.4, 0.6).all()
    final = nets[(nets.epoch == 2) & (nets.split == "val") & (nets.metric != "task_weight")]
    assert final.value.notna().all() and set(final.weighting) == {"equal", "gradnorm"}
    assert (tmp_path / "results" / "groupings.parquet").exists()
