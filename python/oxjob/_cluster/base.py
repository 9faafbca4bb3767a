"""What the Dask and Ray backends share: large arguments sent once, batches run in
cluster workers, outcomes handed to ``Parallel``, timeouts.

``Parallel`` talks to these backends through ``apply_async(func, callback)``, where
``func`` is a ``GuardedBatch`` holding the batch (a ``BatchedCalls``, both in
``_parallel/batches.py``).
The backends take the batch's calls out of it, so that large arguments can be
replaced by references to data already on the cluster (``shared_args.SharedArgs``)
and the batch can run in a worker through :func:`run_batch`.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
import traceback
from typing import Any, Callable, Protocol

from .._backends.base import thread_nested
from ..exceptions import RemoteTraceback, TimeoutError

#: Where an exception raised in a cluster worker carries its formatted traceback.
_TB_ATTR = "_oxjob_remote_traceback"


def batched_calls_of(func: Callable) -> list | None:
    """The ``(func, args, kwargs)`` calls of the batch ``func`` runs, or None when
    ``func`` is not ``Parallel``'s ``GuardedBatch`` (then it is sent as it is).

    joblib's ``Parallel`` under an oxjob ``parallel_config(backend="dask")`` hands its
    batches over as a ``GuardedBatch`` of joblib's ``BatchedCalls`` too
    (``OxjobBridgeBackend``): their calls are read the same way, and joblib's batch
    object (which holds its backend and this process's client) is never sent.
    """
    from .._parallel.batches import GuardedBatch

    return func.calls.items if isinstance(func, GuardedBatch) else None


#: What every ``Parallel`` passes to ``configure`` (as joblib's does): settings of the
#: local engine, not options of a cluster task.
_PARALLEL_SETTINGS = ("max_nbytes", "temp_folder", "mmap_mode", "prefer", "require", "verbose")


def call_options(backend_args: dict) -> dict:
    """The options a ``Parallel(backend=..., **options)`` call gave its backend."""
    return {k: v for k, v in backend_args.items() if k not in _PARALLEL_SETTINGS}


class _ClusterBackend(Protocol):
    """What :class:`PerCallOptions` needs of the backend it is mixed into."""

    nesting_level: int | None
    _options: dict[str, Any]
    parallel: Any

    def __init__(self, nesting_level: int | None = None, **options: Any) -> None: ...
    def effective_n_jobs(self, n_jobs: int) -> int: ...
    def _start_call(self, parallel: Any, n_workers: int) -> None: ...


class PerCallOptions:
    """``configure`` of the cluster backends: the options a ``Parallel(backend=...,
    **options)`` call gives replace the backend's own for that call; then the call's
    bookkeeping starts (``_start_call``, the backend's)."""

    def configure(
        self: _ClusterBackend, n_jobs: int = 1, parallel: Any = None, **backend_args: Any
    ) -> int:
        backend_args = call_options(backend_args)
        if backend_args:
            options = {**self._options, **backend_args}
            type(self).__init__(self, self.nesting_level, **options)
        self.parallel = parallel
        n_workers = self.effective_n_jobs(n_jobs)
        self._start_call(parallel, n_workers)
        return n_workers


class Slot:
    """Stands for the ``index``-th reference passed to :func:`run_batch`."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple:
        return Slot, (self.index,)


def run_batch(calls: list, level: int, *values: Any) -> tuple[list, float]:
    """Run a batch in a cluster worker; returns its results and compute seconds.

    ``values`` are the batch's large arguments, resolved by the scheduler (Dask
    futures, Ray object refs); ``calls`` refer to them through :class:`Slot`. Nested
    ``Parallel`` calls see nesting level ``level + 1``: threads, then sequential, and
    never a local process pool inside a cluster worker. Arrays among ``values`` are
    shared by the worker's tasks, so they are given read-only. An exception is re-raised
    with its traceback text attached (replaced by a ``RuntimeError`` carrying it when
    it cannot be pickled).
    """
    if values:
        values = tuple(_read_only(v) for v in values)
    try:
        with thread_nested(level + 1):
            start = time.perf_counter()
            results = []
            for func, args, kwargs in calls:
                if values:
                    args = [values[a.index] if type(a) is Slot else a for a in args]
                    kwargs = {
                        k: values[v.index] if type(v) is Slot else v for k, v in kwargs.items()
                    }
                results.append(func(*args, **kwargs))
            return results, time.perf_counter() - start
    except BaseException as exc:  # noqa: BLE001 - a task's failure, whatever it is, goes back to the caller
        failure = _sendable(exc)
    raise failure  # outside the except block: no unpicklable __context__ attached


def _numpy() -> Any:
    import sys

    return sys.modules.get("numpy")  # an array argument means numpy is imported already


def _read_only(value: Any) -> Any:
    """A read-only view of an array the worker shares between tasks: a task writing
    into it gets an error rather than changing the next task's input."""
    np = _numpy()
    if np is not None and isinstance(value, np.ndarray) and value.flags.writeable:
        value = value.view()
        value.flags.writeable = False
    return value


def _sendable(exc: BaseException) -> BaseException:
    """``exc``, or a ``RuntimeError`` naming it when it cannot be pickled; with its
    traceback text attached and its chain cut where a link cannot be pickled."""
    import cloudpickle

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        cloudpickle.loads(cloudpickle.dumps(exc))
    except Exception:  # noqa: BLE001 - pickling an exception can raise anything
        exc = RuntimeError(f"{type(exc).__name__}: {exc} (the exception could not be pickled)")
    link: BaseException | None = exc
    while link is not None:  # the chain travels too (dask pickles it with tblib)
        for name in ("__cause__", "__context__"):
            linked = getattr(link, name)
            if linked is not None:
                try:
                    cloudpickle.dumps(linked)
                except Exception:  # noqa: BLE001 - pickling can raise anything
                    setattr(link, name, None)
        link = link.__cause__ or link.__context__
    setattr(exc, _TB_ATTR, f"{tb}(in process {os.getpid()})")
    return exc


def with_remote_traceback(exc: BaseException) -> BaseException:
    """``exc`` with the worker's traceback as ``__cause__``, as the process engine does."""
    tb = getattr(exc, _TB_ATTR, None)
    if tb is not None:
        exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


# ---- outcomes and deadlines ----------------------------------------------------------------


class Job:
    """What ``apply_async`` returns: ``get()`` gives ``(ok, value, seconds)``."""

    __slots__ = ("callback", "outcome", "done", "started", "handle")

    def __init__(self, callback: Callable | None, handle: Any = None) -> None:
        self.callback = callback
        self.outcome: tuple | None = None
        self.done = threading.Event()
        self.started: float | None = None
        self.handle = handle

    def finish(self, outcome: tuple) -> bool:
        """Record the first outcome and tell ``Parallel``; later ones are ignored."""
        if self.done.is_set():
            return False
        self.outcome = outcome
        self.done.set()
        if self.callback is not None:
            self.callback(outcome)
        return True

    def get(self, timeout: float | None = None) -> tuple:
        if not self.done.wait(timeout):
            raise TimeoutError("the batch has not finished")
        assert self.outcome is not None  # finish() sets it before ``done``
        return self.outcome


class Deadlines:
    """Fails a batch that has run longer than ``timeout`` seconds.

    A cluster does not say when a queued batch starts, so a batch's clock starts when
    fewer than ``n_workers`` batches submitted before it are still running (the
    scheduler runs a call's batches about in submission order).
    """

    def __init__(self, timeout: float, n_workers: int) -> None:
        self.timeout = timeout
        self.n_workers = max(1, n_workers)
        self.jobs: collections.OrderedDict = collections.OrderedDict()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True, name="oxjob-deadlines")
        self.thread.start()

    def add(self, job: Job) -> None:
        with self.lock:
            self.jobs[id(job)] = job

    def _watch(self) -> None:
        tick = min(0.05, self.timeout / 4)
        while not self.stopped.wait(tick):
            now = time.monotonic()
            late = []
            with self.lock:
                for key in [k for k, job in self.jobs.items() if job.done.is_set()]:
                    del self.jobs[key]
                for job in itertools.islice(self.jobs.values(), self.n_workers):
                    if job.started is None:
                        job.started = now
                    elif now - job.started >= self.timeout:
                        late.append(job)
            for job in late:
                job.finish(
                    (
                        False,
                        TimeoutError(
                            f"A task has failed to return in less than {self.timeout} seconds"
                        ),
                        0.0,
                    )
                )

    def stop(self) -> None:
        self.stopped.set()
