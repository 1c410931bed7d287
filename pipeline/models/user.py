"""Your own trunk, named in the config: ``model.trunk: "package.module:factory"``.

The contract (docs/models.md): ``factory(input_shape, width)`` returns an ``nn.Module`` mapping
a batch ``(batch, *input_shape)`` to ``(batch, features)`` (vector tasks only) or
``(batch, channels, H, W)`` (dense tasks; vector tasks then read it through global average
pooling). ``width`` is 1.0 for full-size networks and the size's fraction (0.5) for half-size
ones. taskgroup adds one head per task, counts the network's cost with
``torch.utils.flop_counter`` and trains it like a built-in trunk.

Determinism: the factory may initialise its weights with torch's global RNG (every nn layer
does); it runs inside ``torch.random.fork_rng`` seeded from the network's own generator, so the
same config and seed give the same weights, and nothing outside the call sees the RNG move.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable

import torch
from torch import nn

from .layers import flop_macs

BUILTIN_TRUNKS = ("mlp", "conv")


class TrunkError(ValueError):
    """A configured trunk cannot be used; the message names it and what was expected."""


def is_user_trunk(name: str) -> bool:
    return name not in BUILTIN_TRUNKS


def trunk_source_hash(name: str) -> str:
    """A hash of the file that defines ``name``'s module: part of the networks' specs, so
    editing your trunk retrains the networks built on it (as a rule's code change would).
    Found without importing it (its dependencies may be slow to import)."""
    module_name = name.partition(":")[0]
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        # A top-level module is looked up on the path itself, not in sys.modules: the file
        # the next import would read is the one whose content counts.
        spec = (
            importlib.util.find_spec(module_name)
            if "." in module_name
            else importlib.machinery.PathFinder.find_spec(module_name, sys.path)
        )
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise TrunkError(
            f"model.trunk {name!r}: cannot find module {module_name!r} (searched the working "
            "directory and PYTHONPATH)"
        )
    stat = os.stat(spec.origin)
    return _file_hash(spec.origin, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    # Keyed by the file's stat: one read per process for a sweep's thousands of specs.
    with open(path, "rb") as source:
        return hashlib.sha256(source.read()).hexdigest()[:16]


def load_factory(name: str) -> Callable[..., nn.Module]:
    """The callable ``module:attribute`` names, importable from the working directory or
    PYTHONPATH."""
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise TrunkError(f"model.trunk {name!r}: expected mlp, conv or 'package.module:factory'")
    # Snakemake's job processes and `taskgroup` alike: the working directory is searched.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any failure while importing the user's code
        raise TrunkError(
            f"model.trunk {name!r}: cannot import module {module_name!r} (searched the working "
            f"directory and PYTHONPATH): {type(err).__name__}: {err}"
        ) from None
    factory = module
    for part in attribute.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise TrunkError(f"model.trunk {name!r}: module {module_name!r} has no {attribute!r}")
    if not callable(factory):
        raise TrunkError(f"model.trunk {name!r}: {attribute!r} is not callable")
    return factory


class UserTrunk(nn.Module):
    """A user's factory's module, with what the heads and the cost model need: ``out_shape``
    (per sample), ``out_features`` (features or channels), ``spatial`` and ``macs()``."""

    def __init__(
        self,
        name: str,
        input_shape: tuple[int, ...],
        width: float,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        self.name, self.input_shape, self.width = name, tuple(input_shape), float(width)
        factory = load_factory(name)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                module = factory(self.input_shape, self.width)
            except Exception as err:
                raise TrunkError(
                    f"model.trunk {name!r}: factory(input_shape={self.input_shape}, "
                    f"width={self.width}) failed: {type(err).__name__}: {err}"
                ) from None
        if not isinstance(module, nn.Module):
            raise TrunkError(
                f"model.trunk {name!r}: the factory returned {type(module).__name__}, "
                "expected a torch.nn.Module"
            )
        if not any(p.requires_grad for p in module.parameters()):
            raise TrunkError(f"model.trunk {name!r}: the module has no trainable parameters")
        self.body = module
        self.out_shape = self._probe()
        if len(self.out_shape) not in (1, 3):
            got = ", ".join(map(str, self.out_shape))
            raise TrunkError(
                f"model.trunk {name!r}: output of shape (batch, {got})"
                f" for input (batch, {', '.join(map(str, self.input_shape))}); expected "
                "(batch, features) or (batch, channels, H, W)"
            )
        self.spatial = len(self.out_shape) == 3
        self.out_features = int(self.out_shape[0])

    def _probe(self) -> tuple[int, ...]:
        was_training = self.body.training
        self.body.eval()
        try:
            with torch.no_grad():
                out = self.body(torch.zeros(2, *self.input_shape))
        except Exception as err:
            raise TrunkError(
                f"model.trunk {self.name!r}: forward on a batch of shape "
                f"(2, {', '.join(map(str, self.input_shape))}) failed: {type(err).__name__}: {err}"
            ) from None
        finally:
            self.body.train(was_training)
        if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != 2:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TrunkError(
                f"model.trunk {self.name!r}: returned {got} for a batch of 2; expected a tensor "
                "(batch, features) or (batch, channels, H, W)"
            )
        return tuple(int(d) for d in out.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    @property
    def staged(self) -> bool:
        """Whether the module exposes its stages (``forward_stages``: MTAN attends them)."""
        return callable(getattr(self.body, "forward_stages", None))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The module's own ``forward_stages(x)``: each stage's output, in order."""
        return list(self.body.forward_stages(x))

    def macs(self) -> int:
        return flop_macs(self.body, self.input_shape)
