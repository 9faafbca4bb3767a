"""A joblib backend on oxjob's engine, so code that calls joblib (scikit-learn's
``n_jobs=``, ...) runs on oxjob's workers.

``import oxjob`` registers it with joblib under the name ``"oxjob"`` (see
``_joblib/hook.py``); ``joblib.parallel_config(backend="oxjob")`` turns it on for a
block and :func:`use_as_joblib_default` for the whole program. See
``docs/joblib-backend.md``.

joblib drives the backend (``configure``, ``submit``, ``retrieve_result_callback``,
auto batching, ``abort_everything``, timeouts); each ``Parallel`` call is one call of
the shared task engine (``oxjob._workers.shared_engine``), which runs joblib's ``BatchedCalls`` in
reused worker processes and moves large arrays in shared memory both ways.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
    ThreadingBackend,
)

from ._joblib.jobs import _BatchCaller, _Job
from ._units import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_NBYTES

__all__ = ["OxjobBackend", "use_as_joblib_default"]

#: Default ``max_nbytes`` of the engine: arrays from this size travel in shared memory.


class OxjobBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's backend interface on oxjob's process engine.

    Registered with joblib as ``"oxjob"`` by ``import oxjob``. Batches run in oxjob's
    reused worker interpreters; arrays of at least ``max_nbytes`` bytes travel in
    shared memory both ways. ``require="sharedmem"`` runs on joblib's threading backend
    instead, and ``prefer="threads"`` too when oxjob is only joblib's default (joblib's
    rule: a backend the user named keeps the call); ``n_jobs=1`` runs in the caller.

    Parameters
    ----------
    nesting_level : int, optional
        Set by joblib: 0 in the main process, 1 inside a worker or a thread of a
        parallel call.
    inner_max_num_threads : int, optional
        Limit of the native thread pools (BLAS, OpenMP) in each worker. By default
        they get ``cpu_count() // n_jobs`` threads, as with loky.
    idle_worker_timeout : float, default=300
        Seconds after which idle workers exit.
    initializer, initargs : optional
        ``initializer(*initargs)`` runs in each worker before its first batch of a
        call (joblib 1.5+'s ``Parallel``/``parallel_config`` parameters).
    **backend_kwargs
        Kept as joblib's backends keep them.
    """

    supports_retrieve_callback = True
    supports_inner_max_num_threads = True
    supports_sharedmem = False
    uses_threads = False

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        idle_worker_timeout: float = DEFAULT_IDLE_TIMEOUT,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__(
            nesting_level=nesting_level,
            inner_max_num_threads=inner_max_num_threads,
            **backend_kwargs,
        )
        self.idle_worker_timeout = idle_worker_timeout
        self._engine: Any = None
        self._call: Any = None
        # (n_jobs, mmap_mode, max_nbytes, idle timeout) of the engine, set by configure().
        self._engine_key: tuple[int, str, int, float] | None = None
        self._caller: _BatchCaller | None = None
        self._caller_key: tuple | None = None
        self._n_jobs = 1

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """The number of workers ``n_jobs`` means here (1 when nested)."""
        from .backends import cpu_count, nesting_level

        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if (self.nesting_level or 0) >= 1 or nesting_level() >= 1:
            # Inside a worker or a thread of a parallel call: more processes would
            # oversubscribe the machine (joblib's nested calls default to threads).
            if n_jobs != 1:
                warnings.warn(
                    "Oxjob-backed parallel loops cannot be nested inside a worker or "
                    "a thread of another parallel loop, setting n_jobs=1",
                    stacklevel=3,
                )
            return 1
        if n_jobs < 0:
            return max(cpu_count() + 1 + n_jobs, 1)
        return int(n_jobs)

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: str | None = None,
        require: str | None = None,
        idle_worker_timeout: float | None = None,
        **backend_kwargs: Any,
    ) -> int:
        """Get the shared engine's workers ready; returns the number of workers."""
        if require == "sharedmem":
            # The caller's functions need shared memory. (``prefer="threads"`` is only
            # a hint: as with loky, a backend the user named keeps the call. When oxjob
            # is only joblib's default, joblib already gave such calls to threads.)
            raise FallbackToBackend(ThreadingBackend(nesting_level=self.nesting_level))
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        options = {**self.backend_kwargs, **backend_kwargs}
        if "timeout" in options:
            raise ValueError(
                "The 'timeout' parameter is not supported by the OxjobBackend. "
                "Please use the `idle_worker_timeout` parameter instead."
            )
        if idle_worker_timeout is None:
            idle_worker_timeout = self.idle_worker_timeout
        mmap_mode, max_nbytes = _transport(options.get("mmap_mode"), options.get("max_nbytes"))
        initializer, initargs = options.get("initializer"), options.get("initargs") or ()
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be a callable, got {initializer!r}")
        caller = (initializer, tuple(initargs), self.inner_max_num_threads)
        if self._caller is None or self._caller_key != caller:
            # A new batch caller is set up again in each worker (its initializer runs once
            # per worker); the same settings keep the one the workers have.
            self._caller, self._caller_key = _BatchCaller(*caller), caller
        from ._workers.shared_engine import shared_engine

        self._engine_key = (n_jobs, mmap_mode, max_nbytes, idle_worker_timeout)
        self._engine = shared_engine(*self._engine_key)
        self._n_jobs = n_jobs
        self.parallel = parallel
        return n_jobs

    def start_call(self) -> None:
        """Open the engine call that this ``Parallel`` call's batches belong to."""
        from ._workers.shared_engine import shared_call

        # joblib configures a backend before it starts a call on it.
        assert self._engine_key is not None, "start_call() before configure()"
        # Atomically: the shared engine cannot be replaced between finding and opening.
        self._call = shared_call(*self._engine_key, cache_inputs=True)
        self._engine = self._call.engine

    def stop_call(self) -> None:
        """Close the engine call."""
        call, self._call = self._call, None
        if call is not None:
            call.close()

    def submit(self, func: Callable[[], list], callback: Callable | None = None) -> _Job:
        """Run one batch (joblib's ``BatchedCalls``) in a worker."""
        if self._call is None:
            self.start_call()
        job = _Job(callback)
        try:
            self._call.submit(self._caller, "map", [func], job._done)
        except Exception as exc:  # noqa: BLE001 - reported as the batch's outcome
            # joblib has registered the batch already: raising here (possibly on the
            # callback thread) would leave the call waiting for it for ever.
            job._done(False, exc)
        return job

    apply_async = submit  # the name joblib 1.3 and 1.4 call

    def retrieve_result_callback(self, out: _Job) -> list:
        """The batch's results, or its exception raised."""
        return out.result()

    def retrieve_result(self, out: _Job, timeout: float | None = None) -> list:
        """Wait for a batch's results (joblib's path for backends without callbacks)."""
        return out.result(timeout)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Drop the call's queued batches and kill the workers running its batches.

        Only this call's tasks go: other calls on the same engine go on, and killed
        workers are replaced. The next ``Parallel`` call opens a new engine call.
        """
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
            call.close()

    def terminate(self) -> None:
        """End of a ``Parallel`` call: the workers stay for the next one."""
        self.reset_batch_stats()

    def worker_pids(self) -> list[int]:
        """Process ids of the engine's workers (empty before ``configure``)."""
        return [] if self._engine is None else list(self._engine.pids())


def _transport(mmap_mode: str | None, max_nbytes: int | None) -> tuple[str, int]:
    """The engine's settings for joblib's ``mmap_mode`` and ``max_nbytes``.

    joblib's ``'r'`` (its default) maps inputs read-only, as loky's memmaps are.
    ``'r+'``, ``'w+'``, ``'c'`` and ``None`` all give a worker a private writable
    view: with loky too, a worker's writes land in a temporary copy and never reach
    the caller's array. ``max_nbytes=None`` (no memmapping in joblib) still sends
    large arrays in shared memory: a copy in either case, only faster here.
    """
    if mmap_mode not in (None, "r", "r+", "w+", "c"):
        raise ValueError(
            f"mmap_mode={mmap_mode!r} is not valid, expected one of 'r', 'r+', 'w+', 'c' or None"
        )
    mode = "r" if mmap_mode == "r" else "c"
    if max_nbytes is None:
        return mode, DEFAULT_MAX_NBYTES
    if isinstance(max_nbytes, str):
        from joblib.disk import memstr_to_bytes

        max_nbytes = memstr_to_bytes(max_nbytes)
    if max_nbytes < 0:
        raise ValueError(f"max_nbytes={max_nbytes!r} must be a non-negative number of bytes")
    return mode, int(max_nbytes)


def register(make_default: bool = False) -> None:
    """Register :class:`OxjobBackend` with joblib as ``"oxjob"``."""
    import joblib

    joblib.register_parallel_backend("oxjob", OxjobBackend, make_default=make_default)


def use_as_joblib_default() -> None:
    """Make oxjob joblib's default backend for the whole program.

    Every ``joblib.Parallel`` that names no backend, including scikit-learn's
    ``n_jobs=`` calls, then runs on oxjob's workers; ``prefer="threads"`` and
    ``require="sharedmem"`` still get joblib's threads. Uses joblib's own
    ``register_parallel_backend(..., make_default=True)``. A ``parallel_config``
    block that names another backend still wins inside it.

    Examples
    --------
    >>> import oxjob
    >>> oxjob.use_as_joblib_default()
    >>> import joblib
    >>> joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(3))
    [0, 1, 2]
    >>> joblib.register_parallel_backend("loky", joblib.parallel.LokyBackend, make_default=True)
    """
    register(make_default=True)


register()  # importing this module is enough to make "oxjob" known to joblib
