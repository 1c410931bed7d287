"""The rerun trigger of a trunk of your own (issue 20 item 6): the spec's ``trunk_source``
covers the code the factory runs (its definition and, transitively, what it mentions, plus
whatever runs at import), not unrelated additions to its file; the whole file where the source
cannot tell (dynamic access)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.models.user import factory_source, trunk_source_hash

BASE = '''"""My trunks."""
import torch
from torch import nn

WIDTH = 16
UNUSED = 3


def helper(c):
    return nn.Linear(c, WIDTH)


class Gated(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.a = helper(n)
        self.g = helper(n)

    def forward(self, x):
        return self.a(x) * torch.sigmoid(self.g(x))


def gated(input_shape, width):
    return Gated(input_shape[0])


def other(input_shape, width):
    return nn.Linear(1, 1)


if __name__ == "__main__":
    print(gated((3,), 1.0))
'''

UNCHANGED = {
    "an unrelated function added": BASE + "\n\ndef added(input_shape, width):\n    return 1\n",
    "a comment at the end": BASE + "\n# tuned\n",
    "another factory edited": BASE.replace("nn.Linear(1, 1)", "nn.Linear(1, 2)"),
    "an unused constant edited": BASE.replace("UNUSED = 3", "UNUSED = 4"),
    "the __main__ block edited": BASE.replace("print(gated((3,), 1.0))", "print(1)"),
}
CHANGED = {
    "the factory edited": BASE.replace("Gated(input_shape[0])", "Gated(input_shape[0] * 1)"),
    "a constant it uses edited": BASE.replace("WIDTH = 16", "WIDTH = 17"),
    "a helper its class calls edited": BASE.replace("(c, WIDTH)", "(c, WIDTH, bias=False)"),
    "its class's method edited": BASE.replace("torch.sigmoid", "torch.tanh"),
    "an import added": BASE.replace("import torch\n", "import torch\nimport numpy\n"),
    "a call run at import added": BASE + "\ntorch.manual_seed(1)\n",
    "a decorated definition added": BASE + "\n@register\ndef x():\n    pass\n",
    "a global it uses rebound": BASE + "\ndef f():\n    global WIDTH\n    WIDTH = 2\n",
}


@pytest.mark.parametrize("what", UNCHANGED)
def test_unrelated_edits_leave_the_factory_source_alone(what: str) -> None:
    assert factory_source(UNCHANGED[what], "gated") == factory_source(BASE, "gated")


@pytest.mark.parametrize("what", CHANGED)
def test_edits_to_what_the_factory_runs_change_its_source(what: str) -> None:
    assert factory_source(CHANGED[what], "gated") != factory_source(BASE, "gated")


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace("Gated(input_shape[0])", "globals()['Gated'](input_shape[0])"),
        lambda s: s.replace("super().__init__()", "super().__init__(); setattr(self, 'w', 1)"),
        lambda s: s.replace("import torch\n", "import sys\nimport torch\n").replace(
            "Gated(input_shape[0])", "sys.modules[__name__].Gated(input_shape[0])"
        ),
        lambda s: s + "\nclass Base:\n    def __init_subclass__(cls):\n        pass\n",
    ],
    ids=["globals", "setattr", "sys.modules", "__init_subclass__"],
)
def test_dynamic_access_falls_back_to_the_whole_file(edit) -> None:
    assert factory_source(edit(BASE), "gated") is None


def test_a_factory_not_defined_in_the_file_falls_back_to_the_whole_file() -> None:
    assert factory_source(BASE, "missing") is None


def test_the_spec_hash_follows_the_factory_not_the_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "trunk_source_mod.py"
    path.write_text(BASE)
    before = trunk_source_hash("trunk_source_mod:gated")
    path.write_text(UNCHANGED["an unrelated function added"])
    os.utime(path, ns=(1, 10**18))  # a new stat, whatever the file system's clock resolution
    assert trunk_source_hash("trunk_source_mod:gated") == before
    path.write_text(CHANGED["a helper its class calls edited"])
    os.utime(path, ns=(1, 2 * 10**18))
    assert trunk_source_hash("trunk_source_mod:gated") != before
    # A file whose factory cannot be scoped keeps the whole-file hash: any edit counts.
    path.write_text(BASE + "\nclass Base:\n    def __init_subclass__(cls):\n        pass\n")
    os.utime(path, ns=(1, 3 * 10**18))
    whole = trunk_source_hash("trunk_source_mod:gated")
    path.write_text(path.read_text() + "\n# tuned\n")
    os.utime(path, ns=(1, 4 * 10**18))
    assert trunk_source_hash("trunk_source_mod:gated") != whole
