"""Parallel backends, their registry, ``parallel_config`` and CPU counting.

``'loky'``, ``'multiprocessing'`` and ``'processes'`` all name oxjob's process
engine (fresh worker interpreters driven from Rust); ``'threading'`` runs batches
on a thread pool; ``'sequential'`` runs them in the caller. A
:class:`ParallelBackendBase` subclass with ``apply_async(func, callback)`` can be
registered with :func:`register_parallel_backend`.
"""

from __future__ import annotations

from typing import Callable

# Every name this module offered before its body moved to _backends/base.py: the
# backend API, and the private names other modules read (re-exported, hence F401).
from ._backends.base import (  # noqa: F401
    _DAEMON_MESSAGE,
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_THREAD_BACKEND,
    ParallelBackendBase,
    ProcessBackend,
    SequentialBackend,
    ThreadingBackend,
    _cgroup_cpu_limit,
    _cluster_backend,
    _default_backend,
    _in_daemon_process,
    _local,
    _physical_cores,
    _thread_local_nesting,
    cpu_count,
    effective_n_jobs,
    nesting_level,
    register_parallel_backend,
)
from ._backends.config import (
    EXTERNAL_BACKENDS,
    get_config,
    parallel_backend,
    parallel_config,
)
from ._backends.resolve import resolve_backend

__all__ = [
    "ParallelBackendBase",
    "SequentialBackend",
    "ThreadingBackend",
    "ProcessBackend",
    "cpu_count",
    "effective_n_jobs",
    "parallel_config",
    "parallel_backend",
    "register_parallel_backend",
    "EXTERNAL_BACKENDS",
    "get_config",
    "resolve_backend",
]


def _registers(name: str, module: str, cls: str) -> Callable[[], None]:
    # As joblib's EXTERNAL_BACKENDS: the name joins BACKENDS when first asked for, so
    # listing BACKENDS never needs a cluster (or its packages).
    def register() -> None:
        BACKENDS.setdefault(name, _cluster_backend(module, cls))

    return register


EXTERNAL_BACKENDS.update(
    dask=_registers("dask", "._cluster.dask", "DaskDistributedBackend"),
    ray=_registers("ray", "._cluster.ray", "RayBackend"),
)
