"""Your own trunk, named in the config: ``model.trunk: "package.module:factory"``.

The contract (docs/models.md): ``factory(input_shape, width)`` returns an ``nn.Module`` mapping
a batch ``(batch, *input_shape)`` to ``(batch, features)`` (vector tasks only) or
``(batch, channels, H, W)`` (dense tasks; vector tasks then read it through global average
pooling). ``width`` is 1.0 for full-size networks and the size's fraction (0.5) for half-size
ones. taskgroup adds one head per task, counts the network's cost with
``torch.utils.flop_counter`` and trains it like a built-in trunk.

Inputs: a dense float tensor, always. On 0/1 fingerprint tables the built-in MLP computes its
first layer from a :class:`~.layers.SparseBatch` (the set bits' indices); a module (or its
factory) that sets ``accepts_sparse_batch = True`` is handed that batch too, and must then take
a dense tensor as well (the shape probe and the cost count run on dense zeros).

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

from .layers import SparseBatch, flop_macs

BUILTIN_TRUNKS = ("mlp", "conv")


class TrunkError(ValueError):
    """A configured trunk cannot be used; the message names it and what was expected."""


def is_user_trunk(name: str) -> bool:
    return name not in BUILTIN_TRUNKS


def trunk_source_hash(name: str) -> str:
    """A hash of the code ``name``'s factory runs: part of the networks' specs, so editing your
    trunk retrains the networks built on it (as a rule's code change would), and an unrelated
    addition to its file does not (:func:`factory_source`; the whole file where that cannot be
    told soundly). Found without importing it (its dependencies may be slow to import)."""
    module_name, _, attribute = name.partition(":")
    spec = _module_spec(module_name)
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        raise TrunkError(
            f"model.trunk {name!r}: cannot find module {module_name!r} (searched the working "
            "directory and PYTHONPATH)"
        )
    stat = os.stat(spec.origin)
    return _source_hash(spec.origin, attribute.split(".")[0], stat.st_mtime_ns, stat.st_size)


def _module_spec(module_name: str):
    """Where ``module_name`` is read from: the working directory first (it is put on sys.path
    so the module's own imports find their neighbours), then sys.path. A top-level module is
    looked up on the path itself, not in sys.modules: the file the next import would read is
    the one whose content counts, for the spec's hash and for the code that runs alike."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        if "." in module_name:
            return importlib.util.find_spec(module_name)
        return importlib.machinery.PathFinder.find_spec(module_name, [cwd, *sys.path])
    except (ImportError, ValueError):
        return None


def _import_current(module_name: str):
    """``module_name`` as its file now reads. A long-lived process (a notebook, ``export``
    after other work) keeps the first import in sys.modules; a top-level module whose file
    moved or changed since is executed again, so the trunk built is the one hashed."""
    spec = _module_spec(module_name) if "." not in module_name else None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return importlib.import_module(module_name)
    with open(spec.origin, "rb") as source:
        digest = hashlib.sha256(source.read()).hexdigest()
    module = sys.modules.get(module_name)
    if (
        module is not None
        and getattr(module, "__file__", None) == spec.origin
        and getattr(module, "__taskgroup_source__", digest) == digest
    ):
        return module
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    module.__taskgroup_source__ = digest
    return module


@functools.lru_cache(maxsize=64)
def _source_hash(path: str, factory: str, mtime_ns: int, size: int) -> str:
    # Keyed by the file's stat: one read per process for a sweep's thousands of specs.
    with open(path, "rb") as source:
        content = source.read()
    try:
        scoped = factory_source(content.decode("utf-8"), factory)
    except (UnicodeDecodeError, SyntaxError, ValueError):
        scoped = None
    if scoped is None:  # the whole file, hashed as before scoping existed
        return hashlib.sha256(content).hexdigest()[:16]
    text = f"taskgroup factory source v1\n{factory}\n{scoped}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# Names through which code reaches module-level objects without naming them: with any of these
# in the code a factory runs, what it uses cannot be read off the source (whole-file hash).
_DYNAMIC_NAMES = frozenset(
    {"globals", "vars", "locals", "eval", "exec", "compile", "__import__", "importlib",
     "setattr", "delattr"}
)  # fmt: skip
# ... and attributes: sys.modules[__name__], a function's __globals__, an object's __dict__.
_DYNAMIC_ATTRIBUTES = frozenset({"modules", "__globals__", "__dict__"})
# Hooks that run code of one class when another is defined (anywhere in the file).
_DEFINITION_HOOKS = frozenset({"__init_subclass__", "__set_name__", "__class_getitem__"})


def factory_source(source: str, factory: str) -> str | None:
    """The source of the module-level statements the factory's code can depend on, in file
    order, or None when that cannot be told soundly from the source alone.

    Included: the factory's own definition and, transitively, every module-level statement
    binding a name the included code mentions, plus every statement that runs code when the
    module is imported and so may change what the factory sees: imports (a module may be
    imported for its side effects), decorated definitions (a decorator may register), classes
    with a metaclass or a bare call in their body, assignments whose value calls something,
    and any other top-level statement (loops, ``if``, ``try``, bare calls, item or attribute
    assignments). ``if __name__ == "__main__":`` blocks never run on import and are left out.
    Not included, so editing them does not retrain: other undecorated functions and classes
    and call-free assignments that nothing included mentions. Comments and blank lines
    between included statements are not part of it; inside them they are (the exact lines).
    None (the caller hashes the whole file): the factory is not bound at module level, or the
    included code reaches objects without naming them (:data:`_DYNAMIC_NAMES` such as
    ``globals()``, ``eval``, ``setattr``; ``sys.modules``, ``__globals__``, ``__dict__``), or a
    class in the file hooks the definition of others (``__init_subclass__``, ...)."""
    import ast

    tree = ast.parse(source)
    if any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name in _DEFINITION_HOOKS
        for n in ast.walk(tree)
    ):
        return None
    lines = source.splitlines(keepends=True)
    body = [stmt for stmt in tree.body if not _is_main_guard(stmt)]
    binds: dict[str, list[int]] = {}
    included: set[int] = set()
    for i, stmt in enumerate(body):
        if not _only_defines(stmt):
            included.add(i)
        for bound in _bound_names(stmt):
            binds.setdefault(bound, []).append(i)
    if factory not in binds:
        return None
    included.update(binds[factory])
    pending = sorted(included)
    while pending:
        stmt = body[pending.pop()]
        for mentioned in _mentioned_names(stmt):
            if mentioned in _DYNAMIC_NAMES or mentioned == "getattr(dynamic)":
                return None
            for j in binds.get(mentioned, ()):
                if j not in included:
                    included.add(j)
                    pending.append(j)
    parts = []
    for i in sorted(included):
        stmt = body[i]
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
        parts.append("".join(lines[first - 1 : stmt.end_lineno]))
    return "".join(parts)


def _is_main_guard(stmt) -> bool:
    import ast

    return (
        isinstance(stmt, ast.If)
        and isinstance(stmt.test, ast.Compare)
        and isinstance(stmt.test.left, ast.Name)
        and stmt.test.left.id == "__name__"
        and len(stmt.test.comparators) == 1
        and isinstance(stmt.test.comparators[0], ast.Constant)
        and stmt.test.comparators[0].value == "__main__"
    )


def _calls(node) -> bool:
    import ast

    return any(
        isinstance(n, ast.Call | ast.Await | ast.Yield | ast.YieldFrom | ast.NamedExpr)
        for n in ast.walk(node)
    )


def _only_defines(stmt) -> bool:
    """Whether executing ``stmt`` at import only binds its names (runs no code of consequence
    for other statements): then it is included only when something included mentions it."""
    import ast

    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True  # a docstring
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        defaults = [*stmt.args.defaults, *(d for d in stmt.args.kw_defaults if d is not None)]
        return not stmt.decorator_list and not any(_calls(d) for d in defaults)
    if isinstance(stmt, ast.ClassDef):
        return (
            not stmt.decorator_list
            and not stmt.keywords
            and not any(_calls(base) for base in stmt.bases)
            and not any(isinstance(s, ast.Expr) and _calls(s) for s in stmt.body)
        )
    if isinstance(stmt, ast.Assign):
        plain = all(isinstance(t, ast.Name) for t in stmt.targets)
        return plain and not _calls(stmt.value)
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and (stmt.value is None or not _calls(stmt.value))
    return False  # imports, loops, conditionals, bare calls, item assignments, ...


def _bound_names(stmt) -> set[str]:
    """Module-level names ``stmt`` may bind (any target anywhere in it, to be safe)."""
    import ast

    names: set[str] = set()
    definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    if isinstance(stmt, definition):
        names.add(stmt.name)
        # A function that declares a name global rebinds it when it runs.
        for node in ast.walk(stmt):
            if isinstance(node, ast.Global):
                names.update(node.names)
        return names
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def _mentioned_names(stmt) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in _DYNAMIC_ATTRIBUTES:
            names.add("getattr(dynamic)")  # not an identifier: never a binding
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
    return names


def load_factory(name: str) -> Callable[..., nn.Module]:
    """The callable ``module:attribute`` names, importable from the working directory or
    PYTHONPATH."""
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise TrunkError(f"model.trunk {name!r}: expected mlp, conv or 'package.module:factory'")
    try:
        module = _import_current(module_name)
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
        # The sparse batch is the project's internal type: handed over only when asked for.
        self.accepts_sparse_batch = bool(
            getattr(module, "accepts_sparse_batch", False)
            or getattr(factory, "accepts_sparse_batch", False)
        )
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

    def _input(self, x):
        if isinstance(x, SparseBatch) and not self.accepts_sparse_batch:
            return x.to_dense(self.input_shape[0])
        return x

    def forward(self, x) -> torch.Tensor:
        return self.body(self._input(x))

    @property
    def staged(self) -> bool:
        """Whether the module exposes its stages (``forward_stages``: MTAN attends them)."""
        return callable(getattr(self.body, "forward_stages", None))

    def forward_stages(self, x) -> list[torch.Tensor]:
        """The module's own ``forward_stages(x)``: each stage's output, in order."""
        return list(self.body.forward_stages(self._input(x)))

    def macs(self) -> int:
        return flop_macs(self.body, self.input_shape)
