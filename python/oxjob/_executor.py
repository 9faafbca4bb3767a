"""``ProcessPoolExecutor``: ``concurrent.futures``' API on oxjob's engine.

As the stdlib's: work submitted and never waited for still runs before the interpreter
exits (an exit hook joins every executor), a submit after that hook is refused, and an
executor dropped without ``shutdown()`` stops its workers once its work is done.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
import weakref
from typing import Any, Callable, Iterable, Iterator

from ._workers.engine import CALLS, STARMAP
from ._workers.outcomes import EXECUTOR
from ._workers.pool_engine import default_processes, open_pool
from ._workers.worker_start import LoggedInitializer
from .exceptions import BrokenProcessPool

__all__ = ["ProcessPoolExecutor"]

_global_shutdown = False
_EXECUTORS: weakref.WeakSet = weakref.WeakSet()


def _python_exit() -> None:
    """Run before non-daemon threads are joined, as concurrent.futures' own hook: no
    more submits, and every executor finishes its pending work."""
    global _global_shutdown
    _global_shutdown = True
    for executor in list(_EXECUTORS):
        executor._join_at_exit()


try:
    threading._register_atexit(_python_exit)  # type: ignore[attr-defined]
except RuntimeError:  # imported while the interpreter is already exiting
    pass


def _check_max_tasks(max_tasks_per_child: Any, mp_context: Any) -> None:
    if max_tasks_per_child is None:
        return
    if not isinstance(max_tasks_per_child, int):
        raise TypeError("max_tasks_per_child must be an integer")
    if max_tasks_per_child <= 0:
        raise ValueError("max_tasks_per_child must be >= 1")
    if mp_context is not None and mp_context.get_start_method(allow_none=False) == "fork":
        # The stdlib refuses it (cpython#90622); our workers never fork, but a program
        # written for oxjob must also run on the stdlib.
        raise ValueError(
            "max_tasks_per_child is incompatible with the 'fork' multiprocessing start "
            "method; supply a different mp_context."
        )


class ProcessPoolExecutor(concurrent.futures.Executor):
    """``concurrent.futures.ProcessPoolExecutor`` on oxjob's engine.

    Parameters
    ----------
    max_workers : int, optional
        Number of workers (default: ``os.cpu_count()``).
    mp_context : object, optional
        Accepted for compatibility (workers are always fresh interpreters); a ``fork``
        context with ``max_tasks_per_child`` raises ``ValueError``, as the stdlib does.
    initializer : callable, optional
    initargs : tuple, default=()
        ``multiprocessing`` queues, locks, events and values may be given, as with the
        ``spawn`` start method.
    max_tasks_per_child : int, optional
        Replace a worker after this many tasks.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable | None = None,
        initargs: tuple = (),
        *,
        max_tasks_per_child: int | None = None,
    ) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        _check_max_tasks(max_tasks_per_child, mp_context)
        self._max_workers = default_processes(max_workers)
        if initializer is not None:
            initializer = LoggedInitializer(initializer)
        self._engine, self._call = open_pool(
            self._max_workers, initializer, initargs, max_tasks_per_child, EXECUTOR, mp_context
        )
        self._shutdown = False
        self._lock = threading.Lock()
        self._futures: dict[int, concurrent.futures.Future] = {}
        self._ids = itertools.count()
        # Dropped without shutdown(): the workers stop once the pending work is done.
        self._finalizer = weakref.finalize(self, self._engine.retire, True)
        self._finalizer.atexit = False
        _EXECUTORS.add(self)

    def _check_open(self) -> None:
        if self._engine.broken is not None:
            raise BrokenProcessPool(self._engine.broken)
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if _global_shutdown:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Schedule ``fn(*args, **kwargs)``; returns a :class:`concurrent.futures.Future`."""
        futures = self._futures  # the callback must not hold the executor alive
        with self._lock:
            self._check_open()
            future: concurrent.futures.Future = concurrent.futures.Future()
            key = next(self._ids)
            futures[key] = future

        def done(ok: bool, value: Any) -> None:
            futures.pop(key, None)
            if ok:
                future.set_result(value[0])
            else:
                future.set_exception(value)

        try:
            on_dispatch = future.set_running_or_notify_cancel
            self._call.submit(fn, CALLS, [(args, kwargs)], done, on_dispatch)
        except BaseException:
            futures.pop(key, None)
            raise
        return future

    def map(
        self, fn: Callable, *iterables: Iterable, timeout: float | None = None, chunksize: int = 1
    ) -> Iterator:
        """Like the built-in ``map``, on the workers; ``chunksize`` items per task."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        items = list(zip(*iterables))
        futures = []
        for start in range(0, len(items), chunksize):
            chunk = items[start : start + chunksize]
            future: concurrent.futures.Future = concurrent.futures.Future()
            with self._lock:
                self._check_open()

            def done(ok: bool, value: Any, future=future) -> None:
                future.set_result(value) if ok else future.set_exception(value)

            self._call.submit(fn, STARMAP, chunk, done, future.set_running_or_notify_cancel)
            futures.append(future)
        del items
        return _chain_results(futures, timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; optionally cancel queued ones and wait for the rest."""
        with self._lock:
            self._shutdown = True
        self._finalizer.detach()
        _EXECUTORS.discard(self)
        if self._engine.forked():
            return  # the workers are the parent's
        if cancel_futures:
            # Futures not finished yet are cancelled (a running task's result is dropped).
            self._call.drop_pending()
            for future in list(self._futures.values()):
                future.cancel()
        if wait:
            self._engine.wait_idle()
            self._engine.stop(grace=1.0)
        else:
            self._engine.retire(True)  # the dispatcher stops once the work is done

    def _join_at_exit(self) -> None:
        if not self._engine.forked():
            self._engine.wait_idle()
            self._engine.stop(grace=1.0)


def _chain_results(futures: list, timeout: float | None) -> Iterator:
    """Each chunk's results in turn; a chunk is let go of once yielded (a map over large
    results holds one of them at a time, not all it has produced)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    futures.reverse()
    try:
        while futures:
            future = futures.pop()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                results = future.result(left)
            except concurrent.futures.TimeoutError:
                raise concurrent.futures.TimeoutError() from None
            finally:
                del future
            results.reverse()
            while results:
                yield results.pop()
    finally:
        for future in futures:
            future.cancel()
