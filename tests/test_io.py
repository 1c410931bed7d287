"""The one atomic-write helper (pipeline/io.py): permissions follow the umask, stale temp files
of a killed earlier write are removed at the next write of the same target."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.io import atomic_write


def _write_under_umask(path: Path, mask: int) -> int:
    # A child process: setting the umask here would race with other tests' threads.
    code = (
        "import os, sys; os.umask(int(sys.argv[2], 8)); from pipeline.io import atomic_write\n"
        "with atomic_write(sys.argv[1]) as tmp: tmp.write_text('x')\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code, str(path), f"{mask:o}"], check=True, cwd=root)
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_results_get_the_permissions_of_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    # mkstemp makes 0600; a shared cluster group must be able to read (002: write) results.
    assert _write_under_umask(tmp_path / "out.parquet", mask) == mode


def test_a_stale_temp_file_of_the_same_target_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".net.parquet.abc123.tmp"
    stale.write_text("half-written by a killed job")
    other = tmp_path / ".other.parquet.abc123.tmp"  # another target's: left alone
    other.write_text("someone else's")
    with atomic_write(tmp_path / "net.parquet") as tmp:
        tmp.write_text("complete")
    assert (tmp_path / "net.parquet").read_text() == "complete"
    assert not stale.exists()
    assert other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.parquet.abc123.tmp",
        "net.parquet",
    ]


def test_a_failed_write_leaves_neither_file_nor_temp(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), atomic_write(tmp_path / "x.parquet") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
