"""Parallel backends, their registry, ``parallel_config`` and CPU counting.

``'loky'``, ``'multiprocessing'`` and ``'processes'`` all name oxjob's process
engine (fresh worker interpreters driven from Rust); ``'threading'`` runs batches
on a thread pool; ``'sequential'`` runs them in the caller. A
:class:`ParallelBackendBase` subclass with ``apply_async(func, callback)`` can be
registered with :func:`register_parallel_backend`.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

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
]


# ---- CPU counting ---------------------------------------------------------------------


def _cgroup_cpu_limit() -> float | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:  # cgroup v2
            quota, period = f.read().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def _physical_cores() -> int | None:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    cores, physical = set(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or None


def cpu_count(only_physical_cores: bool = False) -> int:
    """Number of CPUs this process can use.

    Honours CPU affinity (``taskset``) and cgroup CPU quotas (containers), like
    joblib's (loky's) ``cpu_count``.

    Parameters
    ----------
    only_physical_cores : bool, default=False
        Count physical cores, not hyper-threads, when that can be determined.

    Returns
    -------
    int
        At least 1.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, int(limit + 0.999)))
    if only_physical_cores:
        physical = _physical_cores()
        if physical:
            count = min(count, physical)
    return max(1, count)


def nesting_level() -> int:
    """0 in the main process, 1 inside a worker of a Parallel call, and so on."""
    return int(os.environ.get("OXJOB_NESTING_LEVEL", "0")) + _thread_local_nesting()


_local = threading.local()


def _thread_local_nesting() -> int:
    return getattr(_local, "nesting", 0)


# ---- backends -------------------------------------------------------------------------


class ParallelBackendBase:
    """Base of every backend; subclass it to plug a scheduler into ``Parallel``.

    A custom backend implements :meth:`effective_n_jobs` and
    ``apply_async(func, callback=None)``: run ``func()`` (a batch of calls returning
    a list of results) somewhere, call ``callback(result)`` when it finishes, and
    return an object whose ``get(timeout=None)`` returns that result or raises.

    Attributes
    ----------
    default_n_jobs : int
    supports_timeout, supports_sharedmem, supports_return_generator : bool
    nesting_level : int or None
    """

    default_n_jobs = 1
    supports_timeout = False
    supports_sharedmem = False
    supports_return_generator = True
    supports_inner_max_num_threads = False

    def __init__(self, nesting_level: int | None = None, **kwargs: Any) -> None:
        self.nesting_level = nesting_level
        self.parallel = None

    def effective_n_jobs(self, n_jobs: int) -> int:
        """The number of workers ``n_jobs`` means for this backend."""
        return effective_n_jobs(n_jobs)

    def configure(self, n_jobs: int = 1, parallel: Any = None, **backend_args: Any) -> int:
        """Prepare for a call; returns the effective number of workers."""
        self.parallel = parallel
        return self.effective_n_jobs(n_jobs)

    def terminate(self) -> None:
        """Release resources after a call (outside a ``with Parallel`` block)."""

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel what runs after an error."""

    def get_nested_backend(self) -> tuple[ParallelBackendBase, int | None]:
        """Backend for Parallel calls made inside this backend's workers."""
        level = (self.nesting_level or 0) + 1
        if level > 1:
            return SequentialBackend(nesting_level=level), None
        return ThreadingBackend(nesting_level=level), None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SequentialBackend(ParallelBackendBase):
    """Run every task in the caller, one after the other."""

    supports_sharedmem = True

    def effective_n_jobs(self, n_jobs: int) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        return 1


class ThreadingBackend(ParallelBackendBase):
    """Run batches on threads of this process: for code that releases the GIL."""

    supports_timeout = True
    supports_sharedmem = True
    default_n_jobs = -1


class ProcessBackend(ParallelBackendBase):
    """oxjob's process engine: fresh worker interpreters driven from Rust."""

    supports_timeout = True
    default_n_jobs = -1

    def __init__(
        self, nesting_level: int | None = None, idle_worker_timeout: float = 300, **kwargs: Any
    ) -> None:
        super().__init__(nesting_level=nesting_level)
        self.idle_worker_timeout = idle_worker_timeout

    def effective_n_jobs(self, n_jobs: int) -> int:
        if (self.nesting_level or 0) >= 1 or nesting_level() >= 1:
            return 1  # inside a worker: do not oversubscribe
        return effective_n_jobs(n_jobs)


#: Backends known by name.
BACKENDS: dict[str, Callable[..., ParallelBackendBase]] = {
    "loky": ProcessBackend,
    "multiprocessing": ProcessBackend,
    "processes": ProcessBackend,
    "threading": ThreadingBackend,
    "sequential": SequentialBackend,
}


def _cluster_backend(module: str, name: str) -> Callable[..., ParallelBackendBase]:
    # Imported on first use: ``import oxjob`` must not import dask or ray.
    def factory(*args: Any, **kwargs: Any) -> ParallelBackendBase:
        import importlib

        return getattr(importlib.import_module(module, __package__), name)(*args, **kwargs)

    return factory


BACKENDS.update(
    dask=_cluster_backend("._dask", "DaskBackend"), ray=_cluster_backend("._ray", "RayBackend")
)
DEFAULT_BACKEND = "loky"
DEFAULT_THREAD_BACKEND = "threading"
_default_backend = [DEFAULT_BACKEND]


def register_parallel_backend(
    name: str, factory: Callable[..., ParallelBackendBase], make_default: bool = False
) -> None:
    """Make a backend available as ``Parallel(backend=name)``.

    Parameters
    ----------
    name : str
    factory : callable
        Returns a :class:`ParallelBackendBase` (usually the class itself).
    make_default : bool, default=False
        Use it when no backend is given.
    """
    BACKENDS[name] = factory
    if make_default:
        _default_backend[0] = name


def effective_n_jobs(n_jobs: int | None = -1) -> int:
    """The number of workers ``n_jobs`` stands for, as joblib computes it.

    ``None`` means 1 (or the value set by :class:`parallel_config`); negative values
    count from the number of CPUs: -1 is all of them, -2 all but one.
    """
    if n_jobs is None:
        n_jobs = get_config().get("n_jobs") or 1
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 in Parallel has no meaning")
    if isinstance(n_jobs, float):
        n_jobs = int(n_jobs)
    if n_jobs < 0:
        return max(cpu_count() + 1 + n_jobs, 1)
    return n_jobs


# ---- parallel_config ------------------------------------------------------------------

_NOT_SET = object()


def get_config() -> dict:
    """The settings of the innermost active :class:`parallel_config` (a copy)."""
    return dict(getattr(_local, "config", {}))


class parallel_config:
    """Set defaults for the ``Parallel`` calls made inside a ``with`` block.

    Same parameters and semantics as :class:`joblib.parallel_config`; settings are
    local to the thread. Arguments given to ``Parallel`` itself win.

    Parameters
    ----------
    backend : str or ParallelBackendBase, optional
    n_jobs : int, optional
    verbose : int, optional
    temp_folder, max_nbytes, mmap_mode, prefer, require : optional
        As in :class:`oxjob.Parallel`.
    inner_max_num_threads : int, optional
        Thread limit for native libraries in the workers.
    **backend_params
        Passed to the backend's constructor.

    Examples
    --------
    >>> from oxjob import Parallel, delayed, parallel_config
    >>> with parallel_config(backend="threading", n_jobs=2):
    ...     Parallel()(delayed(abs)(-i) for i in range(3))
    [0, 1, 2]
    """

    def __init__(
        self,
        backend: Any = _NOT_SET,
        *,
        n_jobs: Any = _NOT_SET,
        verbose: Any = _NOT_SET,
        temp_folder: Any = _NOT_SET,
        max_nbytes: Any = _NOT_SET,
        mmap_mode: Any = _NOT_SET,
        prefer: Any = _NOT_SET,
        require: Any = _NOT_SET,
        inner_max_num_threads: Any = _NOT_SET,
        initializer: Any = _NOT_SET,
        initargs: Any = _NOT_SET,
        **backend_params: Any,
    ) -> None:
        given = {
            "backend": backend,
            "n_jobs": n_jobs,
            "verbose": verbose,
            "temp_folder": temp_folder,
            "max_nbytes": max_nbytes,
            "mmap_mode": mmap_mode,
            "prefer": prefer,
            "require": require,
            "inner_max_num_threads": inner_max_num_threads,
            "initializer": initializer,
            "initargs": initargs,
        }
        if prefer not in (_NOT_SET, None, "processes", "threads"):
            raise ValueError(
                f"prefer={prefer!r} is not a valid backend hint, expected one of "
                "['processes', 'threads', None]"
            )
        if require not in (_NOT_SET, None, "sharedmem"):
            raise ValueError(
                f"require={require!r} is not a valid backend constraint, expected "
                "one of ['sharedmem', None]"
            )
        if isinstance(backend, str) and backend not in BACKENDS:
            raise ValueError(f"Invalid backend: {backend}, expected one of {sorted(BACKENDS)}")
        self._old = getattr(_local, "config", {})
        self._new = {**self._old, **{k: v for k, v in given.items() if v is not _NOT_SET}}
        if backend_params:
            self._new["backend_params"] = backend_params
        _local.config = self._new

    def __enter__(self) -> parallel_config:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.unregister()

    def unregister(self) -> None:
        """Restore the previous settings."""
        _local.config = self._old


class parallel_backend(parallel_config):
    """Older name of :class:`parallel_config`, with the backend as first argument.

    Parameters
    ----------
    backend : str or ParallelBackendBase
    n_jobs : int, default=-1
    inner_max_num_threads : int, optional
    **backend_params
    """

    def __init__(
        self,
        backend: Any,
        n_jobs: int = -1,
        inner_max_num_threads: int | None = None,
        **backend_params: Any,
    ) -> None:
        super().__init__(
            backend,
            n_jobs=n_jobs,
            inner_max_num_threads=inner_max_num_threads
            if inner_max_num_threads is not None
            else _NOT_SET,
            **backend_params,
        )

    def __enter__(self) -> tuple[ParallelBackendBase, int]:
        backend = self._new.get("backend")
        if isinstance(backend, str):
            backend = BACKENDS[backend]()
        return backend, self._new.get("n_jobs")


def resolve_backend(backend: Any, prefer: Any, require: Any, config: dict) -> ParallelBackendBase:
    """The backend a Parallel call uses, following joblib's precedence rules."""
    if backend is None:
        backend = config.get("backend")
    if prefer is None:
        prefer = config.get("prefer")
    if require is None:
        require = config.get("require")
    level = nesting_level()
    if isinstance(backend, ParallelBackendBase):
        chosen = backend
        if chosen.nesting_level is None:
            chosen.nesting_level = level
    elif backend is None:
        if level >= 1:
            # Nested call in a worker: threads, then sequential (as joblib does).
            name = "threading" if level == 1 else "sequential"
        elif require == "sharedmem" or prefer == "threads":
            name = DEFAULT_THREAD_BACKEND
        else:
            name = _default_backend[0]
        chosen = BACKENDS[name](nesting_level=level, **config.get("backend_params", {}))
    else:
        if backend not in BACKENDS:
            raise ValueError(f"Invalid backend: {backend}, expected one of {sorted(BACKENDS)}")
        chosen = BACKENDS[backend](nesting_level=level, **config.get("backend_params", {}))
    if require == "sharedmem" and not chosen.supports_sharedmem:
        if backend is None or isinstance(backend, str) and config.get("backend") == backend:
            chosen = ThreadingBackend(nesting_level=level)
        else:
            raise ValueError(f"Backend {chosen} does not support shared memory")
    return chosen
