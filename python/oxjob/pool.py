"""``Pool`` and ``ProcessPoolExecutor`` on oxjob's process engine.

``oxjob.Pool`` has ``multiprocessing.Pool``'s API and ``oxjob.ProcessPoolExecutor``
``concurrent.futures``' one; both run on the Rust engine behind ``Parallel``: fresh
worker interpreters, large objects in shared memory, and no hangs: a worker that
dies fails only the tasks it held (``TerminatedWorkerError``) and is replaced.
See ``docs/pool.md``.
"""

from __future__ import annotations

import atexit
import collections
import functools
import itertools
import sys
import threading
import warnings
import weakref
from typing import Any, Callable, Iterable, Iterator

from ._workers.calls import MAX_DEPTH, Call, Task
from ._workers.engine import CALLS, MAP, STARMAP
from ._workers.outcomes import POOL
from ._workers.pool_engine import default_processes, open_pool
from .exceptions import TimeoutError

__all__ = ["AsyncResult", "Pool"]

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"
_MAX_DEPTH = MAX_DEPTH


# Engines of the pools not terminated yet: stopped at interpreter exit, while threads
# still run (multiprocessing terminates its pools there too), never later: a daemon
# thread waited for during finalization never answers.
_LIVE_ENGINES: weakref.WeakSet = weakref.WeakSet()


def _stop_live_engines() -> None:
    for engine in list(_LIVE_ENGINES):
        if not engine.forked():
            _fail_unfinished(engine.stop(grace=0.0), "Pool terminated at interpreter exit")


atexit.register(_stop_live_engines)


def _fail_unfinished(tasks: list[Task], message: str) -> None:
    for task in tasks:
        done, task.done = task.done, None
        if done is not None:
            try:
                done(False, ValueError(message))
            except Exception:  # noqa: BLE001 - a user callback: report, go on
                sys.excepthook(*sys.exc_info())


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
        ahead = self._call.n_workers * (self._call.depth + 1)
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
            self._call.submit(self._func, MAP, chunk, functools.partial(self._deliver, index))

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
        processes = default_processes(processes)
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        self._processes = processes
        self._state = _RUN
        self._engine, self._call = open_pool(
            processes, initializer, initargs, maxtasksperchild, POOL, context
        )
        _LIVE_ENGINES.add(self._engine)
        # A pool dropped without terminate() stops its workers (without waiting: the
        # collection may happen in any thread), as multiprocessing's does.
        self._finalizer = weakref.finalize(self, self._engine.retire, False)
        self._finalizer.atexit = False

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
                functools.partial(result._set_chunk, index),
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
        self._finalizer.detach()
        if self._engine.forked():
            return  # the workers are the parent's; its locks may be held by lost threads
        _LIVE_ENGINES.discard(self._engine)
        _fail_unfinished(self._engine.stop(grace=0.0), "Pool terminated before the task finished")

    def join(self) -> None:
        """Wait for the workers to finish; call :meth:`close` or :meth:`terminate` first."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        if self._state == _CLOSE:
            self._engine.wait_idle()
            self._finalizer.detach()
            _LIVE_ENGINES.discard(self._engine)
            self._engine.stop(grace=1.0)
            self._state = _TERMINATE

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __del__(self, _warn=warnings.warn) -> None:
        # As multiprocessing's: a warning only; the finalizer stops the workers.
        if getattr(self, "_state", None) == _RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)


def __getattr__(name: str) -> Any:
    if name == "ProcessPoolExecutor":  # in its own module; named here as before
        from ._executor import ProcessPoolExecutor

        return ProcessPoolExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
