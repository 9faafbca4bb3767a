"""oxjob: joblib's API on a Rust engine.

``import oxjob as joblib`` works: ``Parallel``, ``delayed``, ``parallel_config``,
``Memory``, ``dump``, ``load``, ``hash`` and the rest of joblib's ``__all__``.
Submodules are imported on first use, so ``import oxjob`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Read from the engine (the Cargo workspace version, as in the package metadata) on
# first use: one version source.
__version__: str

if TYPE_CHECKING:
    # What type checkers see for ``from oxjob import X`` and ``oxjob.X``: the real
    # objects. At run time these names resolve lazily through __getattr__ below.
    # (``X as X``: names outside joblib's __all__, still part of oxjob's face.)
    from . import exceptions as exceptions
    from . import shared as shared
    from ._compat import Logger, PrintTime, wrap_non_picklable_objects
    from .backends import (
        ParallelBackendBase,
        cpu_count,
        effective_n_jobs,
        parallel_backend,
        parallel_config,
        register_parallel_backend,
    )
    from .compressors import register_compressor
    from .hashing import hash
    from .joblib_backend import use_as_joblib_default as use_as_joblib_default
    from .memory import MemorizedResult, Memory, expires_after
    from .parallel import Parallel, delayed
    from .persistence import dump, load
    from .pool import Pool as Pool
    from .pool import ProcessPoolExecutor as ProcessPoolExecutor
    from .store import StoreBackendBase, register_store_backend

_LAZY = {
    "Parallel": "parallel",
    "delayed": "parallel",
    "cpu_count": "backends",
    "effective_n_jobs": "backends",
    "parallel_config": "backends",
    "parallel_backend": "backends",
    "register_parallel_backend": "backends",
    "Pool": "pool",
    "ProcessPoolExecutor": "_executor",
    "Memory": "memory",
    "MemorizedResult": "memory",
    "expires_after": "memory",
    "register_store_backend": "store",
    "StoreBackendBase": "store",
    "ParallelBackendBase": "backends",
    "dump": "persistence",
    "load": "persistence",
    "hash": "hashing",
    "register_compressor": "compressors",
    "wrap_non_picklable_objects": "_compat",
    "Logger": "_compat",
    "PrintTime": "_compat",
    # Public submodules, as attributes of the package the way joblib's are
    # (``joblib.parallel.BACKENDS`` in code written for joblib).
    "backends": None,
    "cli": None,
    "compressors": None,
    "exceptions": None,
    "hashing": None,
    "joblib_backend": None,
    "memory": None,
    "numpy_pickle": None,
    "parallel": None,
    "persistence": None,
    "pool": None,
    "shared": None,
    "store": None,
}

__all__ = [
    "Logger",
    "MemorizedResult",
    "Memory",
    "Parallel",
    "ParallelBackendBase",
    "PrintTime",
    "StoreBackendBase",
    "cpu_count",
    "delayed",
    "dump",
    "effective_n_jobs",
    "expires_after",
    "hash",
    "load",
    "parallel_backend",
    "parallel_config",
    "register_compressor",
    "register_parallel_backend",
    "register_store_backend",
    "wrap_non_picklable_objects",
]

# joblib backend "oxjob" (docs/joblib-backend.md): registered with joblib now if joblib
# is imported, else as soon as it is; joblib itself is never imported here.
_LAZY["use_as_joblib_default"] = "joblib_backend"
__all__.append("use_as_joblib_default")
from ._io.old_paths import install as _install_old_paths  # noqa: E402
from ._joblib.hook import watch_joblib as _watch_joblib  # noqa: E402

# Old paths of moved private modules (pickles name them) import the moved module.
_install_old_paths()

_watch_joblib()


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from ._engine import __version__ as version

        globals()[name] = version
        return version
    if name not in _LAZY:
        raise AttributeError(f"module 'oxjob' has no attribute {name!r}")
    module = _LAZY[name]
    if module is None:
        value = importlib.import_module(f"oxjob.{name}")
    else:
        value = getattr(importlib.import_module(f"oxjob.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})
