"""The workflow with packed training (training.pack: auto, the default) against one network per
job (off): every network keeps its own job and files, the metrics are equal, and switching the
setting retrains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow import network_files, snakemake, values, write_config

pytestmark = pytest.mark.slow


def test_packed_sweep_equals_unpacked_and_switching_retrains_nothing(tmp_path: Path) -> None:
    packed, alone = tmp_path / "auto", tmp_path / "off"
    packed.mkdir()
    alone.mkdir()
    write_config(packed)  # auto is the default
    write_config(alone, {"training": {"pack": "off"}})
    snakemake(packed)
    snakemake(alone)

    files = network_files(packed)
    assert files.keys() == network_files(alone).keys() and len(files) == 15
    runs = Path("results") / "runs"
    for name in files:
        assert values(packed / runs / name) == values(alone / runs / name), name
    logs = sorted((packed / "results" / "logs" / "train").rglob("*.log"))
    assert len(logs) == 15
    assert all("in a pack of" in log.read_text() for log in logs)
    assert not any("in a pack" in log.read_text() for log in (alone / "results").rglob("*.log"))

    # training.pack is no part of any network's spec: switching it plans no training.
    write_config(packed, {"training": {"pack": "off"}})
    dry = snakemake(packed, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    write_config(alone, {"training": {"pack": 3}})
    dry = snakemake(alone, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
