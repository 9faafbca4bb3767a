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

from ._engine import Segment
from ._protocol import (
    BATCH,
    DEFAULT_MAX_NBYTES,
    FUNCTION,
    INIT,
    READY,
    RELEASED,
    RESULT,
    FunctionTable,
    dumps,
    dumps_auto,
    loads,
)
from .exceptions import RemoteTraceback, TerminatedWorkerError, TimeoutError

__all__ = ["AsyncResult", "Pool", "ProcessPoolExecutor"]

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"
_NEVER = 10.0**9  # idle timeout of pool workers: they live until the pool ends


# How a task's arguments are laid out (the worker's BATCH forms, see _worker.py).
MAP, STARMAP, CALLS = "map", "starmap", "calls"


_QUEUED_WORK = 0.002  # seconds of work queued on each worker
_MAX_DEPTH = 16
_BURST = 64  # events handled per wake-up of the dispatcher, at most
_SPARE_SECONDS = 1.0  # idle time after which spare input segments are freed


#: How many ``os.fork()`` calls separate this process from the first one: a pool
#: made in another generation belongs to an ancestor (no ``getpid`` system call per task).
_fork_generation = 0


def _count_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_count_fork)


def _finish(task: _Task, ok: bool, value: Any) -> None:
    """Deliver a task's outcome. A user callback that raises is reported on stderr,
    as a thread's uncaught exception is: it must not stop the dispatcher thread, or
    every later task of the pool would wait for ever."""
    try:
        task.done(ok, value)
    except Exception:  # noqa: BLE001
        sys.excepthook(*sys.exc_info())


class _Task:
    __slots__ = ("id", "func", "form", "arguments", "done", "start", "segments")

    def __init__(self, task_id, func, form, arguments, done, start):
        self.id = task_id
        self.func = func
        self.form = form
        self.arguments = arguments
        self.done = done
        self.start = start
        self.segments: list = []  # input segments lent to the worker


class _TaskEngine:
    """Workers plus a dispatcher thread: tasks (chunks of calls) in, outcomes out."""

    def __init__(
        self,
        processes: int,
        initializer: Callable | None,
        initargs: tuple,
        max_tasks_per_child: int | None,
    ) -> None:
        from ._process_pool import ProcessPool

        self.pool = ProcessPool(processes, "c", DEFAULT_MAX_NBYTES, _NEVER)
        self.engine = self.pool.engine
        self.owner = os.getpid()
        self.fork_generation = _fork_generation
        self.n = processes
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.pending: collections.deque = collections.deque()
        self.inflight: list[collections.deque] = [collections.deque() for _ in range(processes)]
        self.sent: list[set] = [set() for _ in range(processes)]
        self.completed = [0] * processes
        self.functions = FunctionTable()
        self.max_tasks = max_tasks_per_child
        # Tasks queued on a worker beyond the running one hide the round trip; see
        # _queue_depth. One at a time when workers retire: none is queued on a
        # worker about to be replaced.
        self.depth = 1 if max_tasks_per_child else 2
        self.mean_duration = _QUEUED_WORK
        # Input segments the workers have let go of, by size: refilling one costs a
        # plain copy, a new one also costs allocating and zeroing its pages (~5x).
        self.spare: dict[int, list] = {}
        self.ids = itertools.count()
        self.init = None
        if initializer is not None:
            self.init = dumps((initializer, tuple(initargs)), None, by_value=True)
        for worker in range(processes):
            self._started(worker)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="oxjob-pool", daemon=True)
        self.thread.start()

    # ---- submitting ------------------------------------------------------------------

    def submit(
        self,
        func: Callable,
        form: str,
        arguments: list,
        done: Callable[[bool, Any], None],
        start: Callable[[], bool] | None = None,
    ) -> None:
        """Queue one task: ``func`` over ``arguments``, which are single arguments
        (``MAP``), argument tuples (``STARMAP``) or ``(args, kwargs)`` pairs
        (``CALLS``). ``done(ok, value)`` receives the list of results or the
        exception. ``start()``, if given, runs when the task goes to a worker; the
        task is dropped if it returns False."""
        if self.forked():
            raise RuntimeError(
                f"This pool was created by process {self.owner}; this process is a fork "
                "of it, without the pool's threads: create a new pool here"
            )
        with self.lock:
            self.pending.append(_Task(next(self.ids), func, form, arguments, done, start))
            self._dispatch()

    def _started(self, worker: int) -> None:
        self.sent[worker] = set()
        self.completed[worker] = 0
        if self.init is not None:
            body, segments, n_shared = self.init
            self.engine.send(worker, INIT, 0, body, segments, n_shared)

    def _dispatch(self) -> None:
        while self.pending:
            worker = min(range(self.n), key=lambda w: len(self.inflight[w]))
            if len(self.inflight[worker]) >= self.depth:
                return
            task = self.pending.popleft()
            if task.start is not None:
                if not task.start():
                    continue
                task.start = None  # once: a task re-dispatched after a death is running already
            try:
                func_id, payload = self.functions.id_of(task.func)
                if task.form == CALLS:
                    calls: Any = [(func_id, a, k) for a, k in task.arguments]
                elif task.form == STARMAP:
                    calls = (func_id, task.arguments)
                else:
                    calls = (func_id, task.arguments, MAP)
                body, segments, n_shared = dumps_auto(calls, DEFAULT_MAX_NBYTES, self._segment_for)
                task.segments = segments[: len(segments) - n_shared]
            except Exception as exc:  # noqa: BLE001 - reported on the task's result
                _finish(task, False, exc)
                continue
            if func_id not in self.sent[worker]:
                self.engine.send(worker, FUNCTION, func_id, payload, [])
                self.sent[worker].add(func_id)
            self.engine.send(worker, BATCH, task.id, body, segments, n_shared)
            self.inflight[worker].append(task)

    # ---- outcomes --------------------------------------------------------------------

    def _run(self) -> None:
        quiet_since = None
        while not self.stopping:
            event = self.engine.next_event(0.1)
            if event is None:
                # Spare segments hold memory: give it back once the pool is idle.
                with self.lock:
                    if not self.spare or not self.idle():
                        quiet_since = None
                    elif quiet_since is None:
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since > _SPARE_SECONDS:
                        self.spare.clear()
                continue
            with self.lock:
                # With it, whatever else has arrived: one wake-up for a burst of results.
                for ready in [event, *self.engine.ready_events(_BURST)]:
                    try:
                        self._handle(ready)
                    except Exception:  # noqa: BLE001 - a bug must not leave callers waiting
                        sys.excepthook(*sys.exc_info())
                self.changed.notify_all()
            # Events hold their results' buffers: keep none while waiting for more.
            del event, ready

    def _handle(self, event: tuple) -> None:
        if event[0] == "exit":
            _, worker, generation, code, sig = event
            if generation != self.pool.generations[worker] or self.stopping:
                return
            from ._process_pool import _describe_exit

            # A worker runs its queue in order: only the first task can have been
            # running; the ones behind it never started and go to another worker.
            queue = self.inflight[worker]
            lost = [queue.popleft()] if queue else []
            self.pending.extendleft(reversed(queue))
            queue.clear()
            self.pool.respawn(worker)
            self._started(worker)
            for task in lost:
                _finish(
                    task,
                    False,
                    TerminatedWorkerError(
                        "A worker process managed by the pool was unexpectedly terminated "
                        f"while running this task. The exit code of the worker is "
                        f"{{{_describe_exit(code, sig)}}}"
                    ),
                )
            self._dispatch()
            return
        _, worker, generation, kind, tag, body, buffers, shared = event
        if generation != self.pool.generations[worker] or kind == READY:
            return
        queue = self.inflight[worker]
        task = next((t for t in queue if t.id == tag), None)
        if task is None:
            return
        if kind == RELEASED:
            self._keep_spare(task.segments)
            return
        queue.remove(task)
        task.segments = []
        try:
            if kind == RESULT:
                duration, results = loads(body, buffers, shared)
                self._queue_depth(duration)
                outcome: tuple[bool, Any] = (True, results)
            else:  # ERROR
                exc, tb, _ = loads(body, buffers, shared)
                exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
                outcome = (False, exc)
        except Exception as exc:  # noqa: BLE001 - e.g. a result class the caller cannot import
            outcome = (False, exc)
        _finish(task, *outcome)
        self.completed[worker] += 1
        if self.max_tasks and self.completed[worker] >= self.max_tasks and not queue:
            self.pool.respawn(worker)  # retired after max_tasks_per_child tasks
            self._started(worker)
        self._dispatch()

    def _segment_for(self, raw: memoryview) -> Any:
        spares = self.spare.get(raw.nbytes)
        if spares:
            segment = spares.pop()
            segment.refill(raw)
            return segment
        return Segment.from_buffer(raw)

    def _keep_spare(self, segments: list) -> None:
        # Two per worker: enough for a steady stream of same-sized large inputs
        # (queued two deep), and the memory they hold stays bounded.
        room = 2 * self.n - sum(len(s) for s in self.spare.values())
        for segment in segments[: max(room, 0)]:
            self.spare.setdefault(segment.nbytes, []).append(segment)

    def _queue_depth(self, duration: float) -> None:
        # Queue about _QUEUED_WORK seconds of work per worker: tiny tasks then
        # stream without waiting for round trips, long ones stay balanced.
        if self.max_tasks:
            return
        self.mean_duration = 0.8 * self.mean_duration + 0.2 * duration
        self.depth = max(2, min(_MAX_DEPTH, int(_QUEUED_WORK / max(self.mean_duration, 1e-7))))

    # ---- ending ----------------------------------------------------------------------

    def forked(self) -> bool:
        """Whether this is a copy of the engine in a child made by ``os.fork()``."""
        return _fork_generation != self.fork_generation

    def idle(self) -> bool:
        return not self.pending and not any(self.inflight)

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self.lock:
            return self.changed.wait_for(self.idle, timeout)

    def pids(self) -> list[int]:
        return self.pool.pids()

    def cancel_pending(self) -> list[_Task]:
        with self.lock:
            tasks = list(self.pending)
            self.pending.clear()
            return tasks

    def stop(self, grace: float) -> None:
        with self.lock:
            self.stopping = True
        self.thread.join()
        self.spare.clear()
        self.pool.shutdown(grace)


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
    consumer has taken as the workers can have queued (``_TaskEngine.depth``: ~2 ms of
    work each, at least two chunks), so an endless or huge input never fills memory,
    and tiny tasks still stream without waiting for round trips.
    """

    def __init__(self, engine: _TaskEngine, func, chunks: Iterator, ordered: bool):
        self._engine = engine
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
        ahead = self._engine.n * (self._engine.depth + 1)
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
            self._engine.submit(
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
        self._engine = _TaskEngine(processes, initializer, initargs, maxtasksperchild)

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
        self._engine.submit(
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
            self._engine.submit(
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
        return IMapIterator(self._engine, func, chunks, True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1):
        """Like :meth:`imap`, in completion order."""
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        chunks = _chunks_of(iterable, chunksize)
        return IMapIterator(self._engine, func, chunks, False)

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
        for task in self._engine.cancel_pending():
            _finish(task, False, ValueError("Pool terminated before the task ran"))
        self._engine.stop(grace=0.0)
        with self._engine.lock:
            lost = [task for queue in self._engine.inflight for task in queue]
            for queue in self._engine.inflight:
                queue.clear()
        for task in lost:
            _finish(task, False, ValueError("Pool terminated while the task ran"))

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
        self._engine = _TaskEngine(self._max_workers, initializer, initargs, max_tasks_per_child)
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

        self._engine.submit(fn, CALLS, [(args, kwargs)], done, future.set_running_or_notify_cancel)
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

            self._engine.submit(fn, STARMAP, chunk, done, future.set_running_or_notify_cancel)
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
            self._engine.cancel_pending()
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
