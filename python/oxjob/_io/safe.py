"""Which names a safe load (``load(trusted=...)``) may resolve, and how far it trusts them.

A name reaches the loader through ``GLOBAL``/``STACK_GLOBAL``. It is checked as a
string first, so a refused name is never imported: ``__main__``, test modules and
dunder attributes never resolve, whatever the list says. Then, by decreasing
trust:

- an entry listed **exactly** (``'pkg.mod.func'`` or a class) may be called with the
  file's arguments, and its instances get their state through the class's own
  ``__setstate__``: the caller vouched for that code;
- a class under a listed **prefix** (``'sklearn'``) may only be *rebuilt*: created
  without running its constructor (``object.__new__``), then given its state (its
  ``__setstate__`` if it has one, else its ``__dict__``); a function under a prefix
  may be held as a value, never called by the file;
- the reviewed default rules (``safe_builtins``, ``safe_numpy``) make containers,
  scalars, numpy arrays, dtypes, random generators, masked arrays and scipy sparse
  matrices from validated arguments, never from the file's choice of code.

The opcodes themselves are run by :mod:`oxjob._io.safe_unpickle`. Plain ``load``
(``trusted=None``) uses :class:`FastUnpickler`, the C unpickler.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Iterable
from typing import Any

from ..exceptions import LoadLimitError, UnsafeLoadError
from .old_paths import current, current_module

__all__ = ["LoadLimitError", "UnsafeLoadError"]

# A safe load's memory budget when the caller gives no max_bytes: the stored size
# times the worst expansion its codec allows (bytes read, then an array's copy: 2 for
# raw), never below a floor that small files may use.
BUDGET_FLOOR = 256 << 20
WORST_RATIO = {"raw": 2, "gzip": 1032, "zlib": 1032, "lz4": 256, "bz2": 1 << 13, "xz": 1 << 13}
WORST_RATIO["lzma"] = WORST_RATIO["xz"]


def budget(policy: Policy, stored: int | None, codec: str | None) -> int:
    """What a safe load of ``stored`` bytes under ``codec`` may allocate."""
    if policy.max_bytes is not None:
        return policy.max_bytes
    if stored is None:
        return BUDGET_FLOOR
    return max(BUDGET_FLOOR, stored * WORST_RATIO.get(codec or "raw", 1032))


# Module parts never imported by a safe load: a script run as ``__main__`` executes
# its top level on import, and test modules import test-only code paths.
_NEVER_MODULES = ("__main__", "__mp_main__", "test", "tests", "testing", "conftest")


def refuse(message: str) -> UnsafeLoadError:
    return UnsafeLoadError(message)


def _entry_name(entry: Any) -> str:
    if isinstance(entry, str):
        if not entry or entry.startswith(".") or entry.endswith(".") or ".." in entry:
            raise ValueError(f"trusted entry {entry!r} is not a module or qualified name")
        # A path copied from an older version's advice names the module where it was.
        return current_module(entry)
    module, qualname = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    if isinstance(entry, types.ModuleType):
        return entry.__name__
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    raise TypeError(
        "trusted must list module names, qualified names ('pkg.mod.Class') or classes, "
        f"got {entry!r}"
    )


def python3_name(module: str, name: str) -> tuple[str, str]:
    """Python 2's names, as pickle's ``fix_imports`` maps them (``__builtin__.complex``)."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def check_name(module: str, name: str) -> None:
    """Refuse, as strings, the names no list can allow."""
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts) or not all(
        p.isidentifier() for p in name.split(".")
    ):
        raise refuse(f"refusing to load {module!r}.{name!r}: not a valid module and name")
    for part in parts:
        low = part.lower()
        if low in _NEVER_MODULES or low.startswith(("test_", "_test")) or low.endswith("_test"):
            raise refuse(
                f"refusing to load '{module}.{name}': a safe load never imports a "
                f"'{part}' module (a script or test module runs code on import)"
            )
    for part in name.split("."):
        if part.startswith("__") and part.endswith("__"):
            raise refuse(
                f"refusing to load '{module}.{name}': dunder attributes ('{part}') are "
                "never resolved by a safe load"
            )


def resolve(module: str, name: str) -> Any:
    """Import ``module`` (the name was allowed before) and walk ``name``'s parts."""
    import importlib

    try:
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise UnsafeLoadError(f"cannot resolve '{module}.{name}': {exc}") from exc
    return found


class Policy:
    """The caller's ``trusted`` list: exact names and module prefixes."""

    def __init__(self, trusted: Iterable[Any]) -> None:
        if isinstance(trusted, (str, bytes)) or not isinstance(trusted, Iterable):
            raise TypeError(
                "trusted must be None or a list of module names, qualified names or "
                f"classes, got {trusted!r}"
            )
        self.entries = frozenset(_entry_name(entry) for entry in trusted)
        self.max_bytes: int | None = None

    def listed(self, qualified: str) -> bool:
        """Whether ``qualified`` is listed exactly."""
        return qualified in self.entries

    def under(self, module: str) -> bool:
        """Whether ``module`` is under a listed prefix."""
        return any(module == e or module.startswith(e + ".") for e in self.entries)

    def trusts(self, qualified: str) -> bool:
        """Whether a default rule that needs ``qualified`` (or its package) applies."""
        module = qualified.rsplit(".", 1)[0]
        return self.listed(qualified) or self.under(module)


def refused(module: str, name: str) -> UnsafeLoadError:
    """The error for a name outside the list, with advice that works when followed."""
    return UnsafeLoadError(
        f"refusing to load '{module}.{name}': it is not in trusted. If this file comes "
        f"from a source you trust, pass trusted=[..., '{module}.{name}'] (or, for a "
        f"class, the module prefix '{module.split('.')[0]}') to allow it; see "
        "docs/persistence.md for what that trusts."
    )


def not_callable(qualified: str, why: str) -> UnsafeLoadError:
    return UnsafeLoadError(
        f"refusing to call '{qualified}' with the file's arguments: {why}. List it "
        f"exactly, trusted=[..., '{qualified}'], if you trust its code with any arguments."
    )


class JoblibStream(Exception):
    """The C unpickler met a joblib array record: the pure-Python reader takes over."""


class FastUnpickler(pickle.Unpickler):
    """The C unpickler of plain loads (``trusted=None``), with joblib record detection."""

    def find_class(self, module: str, name: str) -> Any:
        from .joblib_read import joblib_record

        module, name = current(module, name)
        if joblib_record(module, name) is not None:
            raise JoblibStream(f"the stream names joblib's array record {module}.{name}")
        return super().find_class(module, name)
