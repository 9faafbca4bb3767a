"""Backend classes, their registry, CPU counting and the settings' thread-local.

Users import these names from :mod:`oxjob.backends`, which re-exports them (so
files and pickles naming ``oxjob.backends.X`` still load). This module imports
only the floor (``_units``, ``_worker_env``) when it loads, so ``_config`` and
``_resolve`` build on it without an import circle.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from typing import Any, Callable, Iterator

from .._units import DEFAULT_IDLE_TIMEOUT
from .._worker_env import inherited_nesting_level

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
    """0 in the main process, 1 inside a worker of a Parallel call, and so on (a
    thread of the threading backend holds its level: its caller's plus one)."""
    return _thread_local_nesting() or inherited_nesting_level()


_local = threading.local()


def _thread_local_nesting() -> int:
    return getattr(_local, "nesting", 0)


def set_thread_nesting_level(level: int) -> None:
    """This thread runs batches of a call at nesting level ``level`` (the threading
    backend's threads: their caller's level plus one)."""
    _local.nesting = level


@contextlib.contextmanager
def thread_nested(levels: int) -> Iterator[None]:
    """This thread's nesting level raised by ``levels`` while the block runs (a batch
    a cluster worker's thread runs for a call ``levels - 1`` deep)."""
    saved = _thread_local_nesting()
    _local.nesting = saved + levels
    try:
        yield
    finally:
        _local.nesting = saved


# ---- backends -------------------------------------------------------------------------


class ParallelBackendBase:
    """Base of every backend; subclass it to plug a scheduler into ``Parallel``.

    A custom backend implements :meth:`effective_n_jobs` and
    ``apply_async(func, callback=None)``: run ``func()`` (a batch of calls returning
    a list of results) somewhere, call ``callback(result)`` when it finishes, and
    return an object whose ``get(timeout=None)`` returns that result or raises.

    Parameters
    ----------
    nesting_level : int, optional
        How deep in nested ``Parallel`` calls this backend runs (0: the caller).
    inner_max_num_threads : int, optional
        Thread limit for native libraries in the workers, for backends whose
        ``supports_inner_max_num_threads`` is true.
    **backend_kwargs
        Kept as ``backend_kwargs``.

    Attributes
    ----------
    default_n_jobs : int
        Workers when neither ``Parallel`` nor :class:`parallel_config` says (1).
    supports_timeout, supports_sharedmem, supports_return_generator : bool
    supports_inner_max_num_threads, uses_threads : bool
    nesting_level : int or None
    """

    default_n_jobs = 1
    supports_timeout = False
    supports_sharedmem = False
    supports_return_generator = True
    supports_inner_max_num_threads = False
    uses_threads = False
    # Class-level too, as joblib's: subclasses that skip ``__init__`` still have them.
    nesting_level: int | None = None
    inner_max_num_threads: int | None = None
    parallel: Any = None

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        **backend_kwargs: Any,
    ) -> None:
        self.nesting_level = nesting_level
        self.inner_max_num_threads = inner_max_num_threads
        self.backend_kwargs = backend_kwargs
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

    @contextlib.contextmanager
    def retrieval_context(self) -> Iterator[None]:
        """Context ``Parallel`` holds while it waits for this backend's results.

        Does nothing by default; a backend with a fixed number of workers that may
        run nested calls can override it (to lend a worker meanwhile, say).
        """
        yield

    @staticmethod
    def in_main_thread() -> bool:
        """Whether the caller is the main thread (processes are not started below
        other threads of a Parallel call)."""
        # typeshed omits the private class; ``is threading.main_thread()`` would differ in a
        # child forked from another thread (CPython makes that thread its main one).
        return isinstance(threading.current_thread(), threading._MainThread)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SequentialBackend(ParallelBackendBase):
    """Run every task in the caller, one after the other."""

    supports_sharedmem = True
    uses_threads = True

    def effective_n_jobs(self, n_jobs: int) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        return 1


class ThreadingBackend(ParallelBackendBase):
    """Run batches on threads of this process: for code that releases the GIL."""

    supports_timeout = True
    supports_sharedmem = True
    uses_threads = True


def _in_daemon_process() -> bool:
    import multiprocessing

    return multiprocessing.current_process().daemon


def _DAEMON_MESSAGE() -> str:
    worker = sys.modules.get("distributed.worker")
    try:
        in_dask = worker is not None and worker.get_worker() is not None
    except ValueError:
        in_dask = False
    if in_dask:
        return (
            "Inside a Dask worker with daemon=True, setting n_jobs=1.\n"
            "Possible work-arounds:\n"
            "- dask.config.set({'distributed.worker.daemon': False})\n"
            "- set the environment variable DASK_DISTRIBUTED__WORKER__DAEMON=False\n"
            "before creating your Dask cluster."
        )
    return "Process-backed parallel loops cannot be called in a multiprocessing, setting n_jobs=1"


class ProcessBackend(ParallelBackendBase):
    """oxjob's process engine: fresh worker interpreters driven from Rust."""

    supports_timeout = True
    supports_inner_max_num_threads = True

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        idle_worker_timeout: float = DEFAULT_IDLE_TIMEOUT,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__(nesting_level, inner_max_num_threads, **backend_kwargs)
        self.idle_worker_timeout = idle_worker_timeout

    def effective_n_jobs(self, n_jobs: int) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if _thread_local_nesting() >= 1 or (
            (self.nesting_level or 0) >= 1 and not self.in_main_thread()
        ):
            if n_jobs != 1:
                warnings.warn(
                    "Process-backed parallel loops cannot be nested below threads, "
                    "setting n_jobs=1",
                    stacklevel=3,
                )
            return 1
        if (self.nesting_level or 0) >= 1 or nesting_level() >= 1:
            return 1  # inside a worker process: do not oversubscribe
        if n_jobs != 1 and _in_daemon_process():
            # As joblib: a daemonic process (a Dask worker, a multiprocessing worker)
            # shares its machine with its siblings; starting a pool there oversubscribes.
            warnings.warn(_DAEMON_MESSAGE(), stacklevel=3)
            return 1
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

        return getattr(importlib.import_module(module, "oxjob"), name)(*args, **kwargs)

    return factory


DEFAULT_BACKEND = "loky"
DEFAULT_THREAD_BACKEND = "threading"
# The backend used when none is given. Its one owner: ``oxjob.parallel.DEFAULT_BACKEND``
# (joblib's place for it, which code sets and restores) reads and writes it here.
_default_backend = [DEFAULT_BACKEND]


def default_backend() -> str:
    """The name of the backend used when none is given."""
    return _default_backend[0]


def set_default_backend(name: str) -> None:
    """Use backend ``name`` when none is given (``oxjob.parallel.DEFAULT_BACKEND = name``)."""
    _default_backend[0] = name


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
        set_default_backend(name)


def effective_n_jobs(n_jobs: int | None = -1) -> int:
    """The number of workers ``n_jobs`` stands for, as joblib computes it.

    ``None`` means 1 (or the value set by :class:`parallel_config`); negative values
    count from the number of CPUs: -1 is all of them, -2 all but one.
    """
    if n_jobs is None:
        # Deferred: _config builds on this module.
        from .config import get_config

        n_jobs = get_config().get("n_jobs") or 1
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 in Parallel has no meaning")
    if isinstance(n_jobs, float):
        n_jobs = int(n_jobs)
    if n_jobs < 0:
        return max(cpu_count() + 1 + n_jobs, 1)
    return n_jobs
