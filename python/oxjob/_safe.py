"""What ``load(trusted=...)`` lets a pickle stream rebuild, and ``inspect``'s recorder.

A pickle stream runs code only through the globals it asks for (``GLOBAL`` and
``STACK_GLOBAL`` opcodes, resolved by ``find_class``): every callable that
``REDUCE``, ``NEWOBJ`` or ``BUILD`` invokes comes from there. Refusing every
global outside an allowlist, before it is imported, therefore stops a hostile
file before any of its code runs.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Iterable
from typing import Any

from .exceptions import UnsafeLoadError

__all__ = ["UnsafeLoadError"]


#: Always rebuilt in safe mode: containers, scalars, numpy arrays and dtypes, and
#: oxjob's own array records. None of these runs code chosen by the file.
SAFE_GLOBALS: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        "dict list set frozenset tuple bytes bytearray str int float complex bool "
        "slice range object".split()
    ),
    "copyreg": frozenset({"_reconstructor"}),
    "_codecs": frozenset({"encode"}),
    "collections": frozenset({"OrderedDict", "deque", "Counter", "defaultdict"}),
    "datetime": frozenset({"datetime", "date", "time", "timedelta", "timezone"}),
    "decimal": frozenset({"Decimal"}),
    "fractions": frozenset({"Fraction"}),
    "numpy": frozenset({"ndarray", "dtype", "matrix"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "oxjob.persistence": frozenset({"_rebuild_array"}),
    "oxjob._oxjob_format": frozenset(
        {"rebuild_array", "rebuild_small", "rebuild_indexed", "arena"}
    ),
}


def _is_safe(module: str, name: str) -> bool:
    if name in SAFE_GLOBALS.get(module, ()):
        return True
    # numpy's dtype classes (numpy.dtypes.Float64DType ...) only describe dtypes.
    return module == "numpy.dtypes" and name.endswith("DType") and name.isidentifier()


def _entry_name(entry: Any) -> str:
    if isinstance(entry, str):
        if not entry or entry.startswith(".") or entry.endswith("."):
            raise ValueError(f"trusted entry {entry!r} is not a module or qualified name")
        return entry
    module, qualname = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    if isinstance(entry, types.ModuleType):
        return entry.__name__
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    raise TypeError(
        "trusted must list module names, qualified names ('pkg.mod.Class') or classes, "
        f"got {entry!r}"
    )


def _refused(module: str, name: str) -> UnsafeLoadError:
    return UnsafeLoadError(
        f"refusing to load '{module}.{name}': it is not in trusted. If this file comes "
        f"from a source you trust, pass trusted=[..., '{module}.{name}'] (or the module "
        f"prefix '{module.split('.')[0]}') to allow it; its code will then run."
    )


class Policy:
    """The globals a safe load may resolve: the safe set plus the caller's list."""

    def __init__(self, trusted: Iterable[Any]) -> None:
        if isinstance(trusted, (str, bytes)) or not isinstance(trusted, Iterable):
            raise TypeError(
                "trusted must be None or a list of module names, qualified names or "
                f"classes, got {trusted!r}"
            )
        self.entries = tuple(_entry_name(entry) for entry in trusted)

    def _listed(self, qualified: str) -> bool:
        return qualified in self.entries

    def _under(self, module: str) -> bool:
        return any(module == e or module.startswith(e + ".") for e in self.entries)

    def allowed(self, module: str, name: str) -> bool:
        return _is_safe(module, name) or self._listed(f"{module}.{name}") or self._under(module)

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        if not self.allowed(module, name) or any(p.startswith("__") for p in name.split(".")):
            raise _refused(module, name)
        found = _resolve(module, name)
        if _is_safe(module, name):
            return found
        if not callable(found) or isinstance(found, types.ModuleType):
            raise _refused(module, name)
        # A listed module may re-export something from elsewhere (``from os import
        # system``): what the name resolves to must be listed itself.
        home = getattr(found, "__module__", None)
        qualname = getattr(found, "__qualname__", None)
        if not isinstance(home, str) or not isinstance(qualname, str):
            raise _refused(module, name)
        if self._listed(f"{home}.{qualname}") or _is_safe(home, qualname):
            return found
        if isinstance(found, type) and self._under(home):
            return found
        if self._under(home):
            raise UnsafeLoadError(
                f"refusing to call '{home}.{qualname}': a module prefix in trusted allows "
                f"classes only; list the function itself, trusted=[..., '{home}.{qualname}'], "
                "to allow it"
            )
        raise _refused(home, qualname)


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Python 2's names, as pickle's ``fix_imports`` maps them (``__builtin__.complex``)."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _resolve(module: str, name: str) -> Any:
    import importlib

    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


class _Stub:
    """Stands for a class ``inspect`` does not rebuild: accepts whatever pickle does."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class Recorder(Policy):
    """Resolves only the safe globals; records every global and stubs the others."""

    def __init__(self) -> None:
        super().__init__(())
        self.seen: dict[str, bool] = {}

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        safe = _is_safe(module, name)
        self.seen.setdefault(f"{module}.{name}", safe)
        if safe:
            return _resolve(module, name)
        return type(name.rsplit(".", 1)[-1], (_Stub,), {"__module__": module})


class JoblibStream(Exception):
    """The C unpickler met a joblib array record: the pure-Python reader takes over."""


class FastUnpickler(pickle.Unpickler):
    """The C unpickler, with ``find_class`` going through a policy and joblib detection."""

    def __init__(self, file: Any, policy: Policy | None, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.policy = policy

    def find_class(self, module: str, name: str) -> Any:
        from ._joblib_read import joblib_record

        if joblib_record(module, name) is not None:
            raise JoblibStream
        if self.policy is not None:
            return self.policy.find_class(module, name)
        return super().find_class(module, name)
