"""``Pool`` and ``ProcessPoolExecutor`` on oxjob's process engine.

``oxjob.Pool`` has ``multiprocessing.Pool``'s API and ``oxjob.ProcessPoolExecutor``
``concurrent.futures``' one; both run on the Rust engine behind ``Parallel``: fresh
worker interpreters, large objects in shared memory, and no hangs: a worker that
dies fails only the tasks it held (``TerminatedWorkerError``) and is replaced.
See ``docs/pool.md``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from ._calls import MAX_DEPTH, Call, Task
from ._protocol import DEFAULT_MAX_NBYTES
from ._tasks import CALLS, MAP, STARMAP, TaskEngine
from .exceptions import TimeoutError

__all__ = ["AsyncResult", "Pool", "ProcessPoolExecutor"]

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"
_NEVER = 10.0**9  # idle timeout of pool workers: they live until the pool ends
_MAX_DEPTH = MAX_DEPTH


def _open(processes, initializer, initargs, max_tasks_per_child) -> tuple[TaskEngine, Call]:
    """A pool's own engine (its workers live as long as the pool) and its call."""
    engine = TaskEngine(
        processes,
        "c",
        DEFAULT_MAX_NBYTES,
        _NEVER,
        initializer=initializer,
        initargs=initargs,
        max_tasks_per_child=max_tasks_per_child,
    )
    return engine, engine.open_call(cache_inputs=False)


def _fail_unfinished(tasks: list[Task], message: str) -> None:
    for task in tasks:
        done, task.done = task.done, None
        if done is not None:
            try:
                done(False, ValueError(message))
            except Exception:  # noqa: BLE001 - a user callback: report, go on
                sys.excepthook(*sys.exc_info())


def _default_processes(processes: int | None) -> int:
    if processes is None:
        return os.cpu_count() or 1
    if processes < 1:
        raise ValueError("Number of processes must be at least 1")
    return processes


class AsyncResult:
    """The result of ``apply_async``/``map_async``, as in ``multiprocessing.pool``."""

    def __init__(self, callback: Callable | None, error_callback: Callable | None) -> None:
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success = False
        self._value: Any = None

    def ready(self) -> bool:
        """Whether the call has completed."""
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether the call completed without raising; ValueError if not ready."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is available or ``timeout`` seconds pass."""
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; raises the call's exception, or ``multiprocessing.TimeoutError``."""
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, ok: bool, value: Any) -> None:
        self._success, self._value = ok, value
        try:
            if ok and self._callback is not None:
                self._callback(value)
            elif not ok and self._error_callback is not None:
                self._error_callback(value)
        finally:
            self._event.set()


ApplyResult = AsyncResult


class MapResult(AsyncResult):
    """The result of ``map_async``/``starmap_async``: chunks gathered in order."""

    def __init__(self, n_chunks: int, length: int, callback, error_callback) -> None:
        super().__init__(callback, error_callback)
        self._chunks: list = [None] * n_chunks
        self._left = n_chunks
        if n_chunks == 0:
            self._set(True, [])

    def _set_chunk(self, index: int, ok: bool, value: Any) -> None:
        if self.ready():
            return
        if not ok:
            self._set(False, value)
            return
        self._chunks[index] = value
        self._left -= 1
        if self._left == 0:
            self._set(True, list(itertools.chain.from_iterable(self._chunks)))


class IMapIterator:
    """Results of ``imap``/``imap_unordered``.

    The input is read lazily: only as many chunks are submitted beyond the ones the
    consumer has taken as the workers can have queued (``Call.depth``: ~2 ms of
    work each, at least two chunks), so an endless or huge input never fills memory,
    and tiny tasks still stream without waiting for round trips.
    """

    def __init__(self, call: Call, func, chunks: Iterator, ordered: bool):
        self._call = call
        self._func = func
        self._chunks = chunks
        self._ordered = ordered
        self._cond = threading.Condition(threading.Lock())
        self._ready: dict[int, tuple[bool, Any]] = {}
        self._arrived: collections.deque = collections.deque()
        self._items: collections.deque = collections.deque()
        self._next_index = 0
        self._submitted = 0
        self._taken = 0
        self._done_feeding = False
        self._feed()

    def _feed(self) -> None:
        # Only the consumer's thread reads the input iterator.
        ahead = self._call.engine.n * (self._call.depth + 1)
        while not self._done_feeding and self._submitted - self._taken < ahead:
            index = self._submitted
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._done_feeding = True
                return
            except Exception as exc:  # noqa: BLE001 - the input failed: report it in order
                self._done_feeding = True
                self._submitted += 1
                self._deliver(index, False, exc)
                return
            self._submitted += 1
            self._call.submit(
                self._func, MAP, chunk, lambda ok, value, i=index: self._deliver(i, ok, value)
            )

    def _deliver(self, index: int, ok: bool, value: Any) -> None:
        with self._cond:
            if self._ordered:
                self._ready[index] = (ok, value)
            else:
                self._arrived.append((ok, value))
            self._cond.notify_all()

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """The next result; ``multiprocessing.TimeoutError`` after ``timeout`` seconds."""
        while not self._items:
            with self._cond:
                while True:
                    outcome = self._take()
                    if outcome is not None:
                        break
                    if self._done_feeding and self._taken == self._submitted:
                        raise StopIteration
                    if not self._cond.wait(timeout):
                        raise TimeoutError
            self._taken += 1
            self._feed()
            ok, value = outcome
            if not ok:
                raise value
            self._items.extend(value)
        return self._items.popleft()

    __next__ = next

    def _take(self) -> tuple[bool, Any] | None:
        if self._ordered:
            outcome = self._ready.pop(self._next_index, None)
            if outcome is not None:
                self._next_index += 1
            return outcome
        return self._arrived.popleft() if self._arrived else None


def _chunks_of(items: Iterable, size: int) -> Iterator[list]:
    if isinstance(items, (list, tuple, range)):
        for start in range(0, len(items), size):
            yield list(items[start : start + size])
        return
    iterator = iter(items)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


class Pool:
    """``multiprocessing.Pool`` on oxjob's engine.

    Parameters
    ----------
    processes : int, optional
        Number of workers (default: ``os.cpu_count()``).
    initializer : callable, optional
        Run as ``initializer(*initargs)`` once in every worker, replacements included.
    initargs : tuple, default=()
    maxtasksperchild : int, optional
        Replace a worker after it has completed this many tasks (chunks).
    context : object, optional
        Accepted for compatibility; workers are always fresh interpreters.

    Examples
    --------
    >>> from oxjob import Pool
    >>> with Pool(2) as pool:
    ...     pool.map(abs, [-1, -2, 3])
    [1, 2, 3]
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable | None = None,
        initargs: tuple = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
    ) -> None:
        processes = _default_processes(processes)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        self._processes = processes
        self._state = _RUN
        self._engine, self._call = _open(processes, initializer, initargs, maxtasksperchild)

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def __repr__(self) -> str:
        name = f"{type(self).__module__}.{type(self).__qualname__}"
        return f"<{name} state={self._state} pool_size={self._processes}>"

    # ---- single calls ------------------------------------------------------------------

    def apply_async(
        self,
        func: Callable,
        args: tuple = (),
        kwds: dict | None = None,
        callback: Callable | None = None,
        error_callback: Callable | None = None,
    ) -> AsyncResult:
        """Run ``func(*args, **kwds)`` in a worker; returns an :class:`AsyncResult`."""
        self._check_running()
        result = AsyncResult(callback, error_callback)
        self._call.submit(
            func,
            CALLS,
            [(tuple(args), dict(kwds or {}))],
            lambda ok, value: result._set(ok, value[0] if ok else value),
        )
        return result

    def apply(self, func: Callable, args: tuple = (), kwds: dict | None = None) -> Any:
        """Run ``func(*args, **kwds)`` in a worker and return its result."""
        return self.apply_async(func, args, kwds).get()

    # ---- maps --------------------------------------------------------------------------

    def _map_async(self, func, iterable, chunksize, star, callback, error_callback) -> MapResult:
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(iterable), self._processes * 4)
            if extra:
                chunksize += 1
        if len(iterable) == 0:
            chunksize = 0
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        chunks = list(_chunks_of(iterable, chunksize)) if chunksize else []
        result = MapResult(len(chunks), len(iterable), callback, error_callback)
        for index, chunk in enumerate(chunks):
            self._call.submit(
                func,
                STARMAP if star else MAP,
                chunk,
                lambda ok, value, i=index: result._set_chunk(i, ok, value),
            )
        return result

    def map(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """``[func(x) for x in iterable]`` on the workers, in order."""
        return self._map_async(func, iterable, chunksize, False, None, None).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """Asynchronous :meth:`map`; returns an :class:`AsyncResult`."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        """``[func(*args) for args in iterable]`` on the workers, in order."""
        return self._map_async(func, iterable, chunksize, True, None, None).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """Asynchronous :meth:`starmap`; returns an :class:`AsyncResult`."""
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        """Lazy, ordered :meth:`map`: reads only a few chunks of input ahead."""
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        chunks = _chunks_of(iterable, chunksize)
        return IMapIterator(self._call, func, chunks, True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1):
        """Like :meth:`imap`, in completion order."""
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        chunks = _chunks_of(iterable, chunksize)
        return IMapIterator(self._call, func, chunks, False)

    # ---- ending ------------------------------------------------------------------------

    def close(self) -> None:
        """Accept no more tasks; workers exit once the queued ones are done (see join)."""
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self) -> None:
        """Stop the workers now; unfinished tasks fail."""
        if self._state == _TERMINATE:
            return
        self._state = _TERMINATE
        if self._engine.forked():
            return  # the workers are the parent's; its locks may be held by lost threads
        _fail_unfinished(self._engine.stop(grace=0.0), "Pool terminated before the task finished")

    def join(self) -> None:
        """Wait for the workers to finish; call :meth:`close` or :meth:`terminate` first."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        if self._state == _CLOSE:
            self._engine.wait_idle()
            self._engine.stop(grace=1.0)
            self._state = _TERMINATE

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __del__(self) -> None:
        if getattr(self, "_state", _TERMINATE) != _TERMINATE and hasattr(self, "_engine"):
            try:
                self.terminate()
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


class ProcessPoolExecutor(concurrent.futures.Executor):
    """``concurrent.futures.ProcessPoolExecutor`` on oxjob's engine.

    Parameters
    ----------
    max_workers : int, optional
        Number of workers (default: ``os.cpu_count()``).
    mp_context : object, optional
        Accepted for compatibility; workers are always fresh interpreters.
    initializer : callable, optional
    initargs : tuple, default=()
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
        if max_tasks_per_child is not None and (
            not isinstance(max_tasks_per_child, int) or max_tasks_per_child < 1
        ):
            raise ValueError("max_tasks_per_child must be >= 1")
        self._max_workers = _default_processes(max_workers)
        self._engine, self._call = _open(
            self._max_workers, initializer, initargs, max_tasks_per_child
        )
        self._shutdown = False
        self._lock = threading.Lock()
        self._futures: dict[int, concurrent.futures.Future] = {}
        self._ids = itertools.count()

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Schedule ``fn(*args, **kwargs)``; returns a :class:`concurrent.futures.Future`."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: concurrent.futures.Future = concurrent.futures.Future()
            key = next(self._ids)
            self._futures[key] = future

        def done(ok: bool, value: Any) -> None:
            self._futures.pop(key, None)
            if ok:
                future.set_result(value[0])
            else:
                future.set_exception(value)

        self._call.submit(fn, CALLS, [(args, kwargs)], done, future.set_running_or_notify_cancel)
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
                if self._shutdown:
                    raise RuntimeError("cannot schedule new futures after shutdown")

            def done(ok: bool, value: Any, future=future) -> None:
                future.set_result(value) if ok else future.set_exception(value)

            self._call.submit(fn, STARMAP, chunk, done, future.set_running_or_notify_cancel)
            futures.append(future)
        return _chain_results(futures, timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting tasks; optionally cancel queued ones and wait for the rest."""
        with self._lock:
            self._shutdown = True
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
            threading.Thread(target=self._finish, daemon=True).start()

    def _finish(self) -> None:
        self._engine.wait_idle()
        self._engine.stop(grace=1.0)


def _chain_results(futures: list, timeout: float | None) -> Iterator:
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for future in futures:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                yield from future.result(left)
            except concurrent.futures.TimeoutError:
                raise concurrent.futures.TimeoutError() from None
    finally:
        for future in futures:
            future.cancel()
