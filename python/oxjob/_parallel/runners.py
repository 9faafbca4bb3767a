"""The runners ``Parallel`` dispatches batches through: one per call, one kind per
backend. :class:`Runner` is their interface (``Parallel._run`` calls nothing else);
:class:`SequentialRunner` runs batches in the caller, :class:`ThreadRunner` on
threads, :class:`ProcessRunner` on the task engine's worker processes and
:class:`BackendRunner` through a registered backend's ``apply_async``."""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from typing import Any, Protocol

from .. import _engine
from .._backends.base import nesting_level, set_thread_nesting_level
from .batches import BatchedCalls, GuardedBatch

__all__ = [
    "BackendRunner",
    "ProcessRunner",
    "Runner",
    "SequentialRunner",
    "ThreadRunner",
]

#: What a runner reports per finished batch: ``(batch_id, ok, results or exception,
#: seconds it computed)``.
Outcome = tuple[int, bool, Any, float]


class Runner(Protocol):
    """How ``Parallel`` runs one call's batches, whatever the backend.

    ``Parallel`` submits while :meth:`capacity` allows, then waits for outcomes; it
    kills the worker of a batch past its timeout and cancels the rest on the first
    error. A runner never raises a batch's exception: it reports it as an outcome.
    """

    @property
    def one_task_per_batch(self) -> bool:
        """Whether batching tasks would cost more than it saves (auto batching then
        sends one task per batch)."""
        ...

    def capacity(self) -> int:
        """How many more batches can be submitted now without waiting."""
        ...

    def submit(self, batch_id: int, tasks: list) -> None:
        """Run ``tasks`` (``(func, args, kwargs)`` triples) as batch ``batch_id``."""
        ...

    def wait(self, timeout: float | None) -> list[Outcome]:
        """Outcomes of finished batches, waiting up to ``timeout`` for the first;
        [] on timeout."""
        ...

    def running(self) -> list[tuple[int, float]]:
        """``(batch_id, time.monotonic() when it started)`` of the batches being
        computed now (for timeouts; [] where that cannot be known)."""
        ...

    def kill_worker_of(self, batch_id: int) -> None:
        """Stop the batch past its timeout, if the backend can (threads cannot)."""
        ...

    def cancel(self) -> None:
        """Drop the call's batches not started and stop those running, if it can."""
        ...

    def close(self) -> None:
        """The call is over: give back what it holds."""
        ...


class SequentialRunner:
    """Runs each batch when submitted; outcomes wait in a queue."""

    one_task_per_batch = False

    def __init__(self) -> None:
        self.done: collections.deque = collections.deque()

    def capacity(self) -> int:
        return 1 if not self.done else 0

    def submit(self, batch_id: int, tasks: list) -> None:
        start = time.perf_counter()
        results = BatchedCalls(tasks)()
        self.done.append((batch_id, True, results, time.perf_counter() - start))

    def wait(self, timeout: float | None) -> list:
        out = list(self.done)
        self.done.clear()
        return out

    def running(self) -> list:
        return []

    def kill_worker_of(self, batch_id: int) -> None:
        pass

    def cancel(self) -> None:
        self.done.clear()

    def close(self) -> None:
        pass


class ThreadPool:
    """Threads kept for reuse: each takes batches from a queue and reports outcomes.
    They are started as batches wait for one, up to ``n_threads``: ``n_jobs=10**9``
    costs the threads its batches need, not a billion."""

    def __init__(self, n_threads: int, level: int) -> None:
        self.n_threads = n_threads
        self.level = level
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.outstanding = 0  # batches put and not finished

    def put(self, item: tuple) -> None:
        with self.lock:
            self.outstanding += 1
            if self.outstanding > len(self.threads) and len(self.threads) < self.n_threads:
                self._start_thread()
        self.inbox.put(item)

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=self._work, args=(self.level,), daemon=True, name=f"oxjob-{len(self.threads)}"
        )
        try:
            thread.start()
        except RuntimeError as exc:  # the system's thread limit: run on the threads we have
            if not self.threads:
                self.outstanding -= 1
                raise RuntimeError(
                    f"backend='threading' could not start a thread (n_jobs={self.n_threads}): {exc}"
                ) from exc
            return
        self.threads.append(thread)

    def _work(self, level: int) -> None:
        set_thread_nesting_level(level)
        while True:
            item = self.inbox.get()
            if item is None:
                return
            try:
                self._run(*item)
            finally:
                with self.lock:
                    self.outstanding -= 1
            del item  # an idle thread must not keep the last batch's arguments alive

    @staticmethod
    def _run(runner: ThreadRunner, batch_id: int, tasks: list) -> None:
        if runner.cancelled:
            return
        runner.started[batch_id] = time.monotonic()
        start = time.perf_counter()
        outcome: Outcome
        try:
            results = BatchedCalls(tasks)()
            outcome = (batch_id, True, results, time.perf_counter() - start)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            outcome = (batch_id, False, exc, 0.0)
        runner.started.pop(batch_id, None)
        runner.outbox.put(outcome)

    def shutdown(self) -> None:
        for _ in self.threads:
            self.inbox.put(None)


_thread_pools: dict[tuple[int, int], ThreadPool] = {}
_thread_pools_lock = threading.Lock()


def _forget_parent_thread_pools() -> None:
    """In a child made by ``os.fork()``: the pools' threads were not copied."""
    global _thread_pools_lock
    _thread_pools_lock = threading.Lock()
    _thread_pools.clear()


os.register_at_fork(after_in_child=_forget_parent_thread_pools)


def _thread_pool(n_threads: int) -> ThreadPool:
    level = nesting_level() + 1
    with _thread_pools_lock:
        pool = _thread_pools.get((n_threads, level))
        if pool is None:
            pool = _thread_pools[(n_threads, level)] = ThreadPool(n_threads, level)
        return pool


class ThreadRunner:
    """Runs batches on threads of this process, shared by calls (the threading backend)."""

    one_task_per_batch = False

    def __init__(self, n_threads: int) -> None:
        self.pool = _thread_pool(n_threads)
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.started: dict[int, float] = {}
        self.in_flight = 0
        self.limit = 2 * n_threads
        self.cancelled = False

    def capacity(self) -> int:
        return self.limit - self.in_flight

    def submit(self, batch_id: int, tasks: list) -> None:
        self.in_flight += 1
        self.pool.put((self, batch_id, tasks))

    def wait(self, timeout: float | None) -> list:
        try:
            outcomes = [self.outbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                outcomes.append(self.outbox.get_nowait())
            except queue.Empty:
                break
        self.in_flight -= len(outcomes)
        return outcomes

    def running(self) -> list:
        return list(self.started.items())

    def kill_worker_of(self, batch_id: int) -> None:
        pass  # threads cannot be killed; the batch finishes in the background

    def cancel(self) -> None:
        self.cancelled = True

    def close(self) -> None:
        pass


class BackendRunner:
    """Drives a user backend through ``apply_async(func, callback)``."""

    one_task_per_batch = False

    def __init__(self, backend: Any, n_jobs: int) -> None:
        # A ParallelBackendBase subclass with joblib's apply_async(func, callback),
        # which the base class does not declare.
        self.backend = backend
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.jobs: dict[int, Any] = {}
        self.limit = 2 * max(n_jobs, 1)

    def capacity(self) -> int:
        return self.limit - len(self.jobs)

    def submit(self, batch_id: int, tasks: list) -> None:
        self.jobs[batch_id] = self.backend.apply_async(
            GuardedBatch(BatchedCalls(tasks)), callback=lambda _result, b=batch_id: self.done.put(b)
        )

    def wait(self, timeout: float | None) -> list:
        try:
            batch_id = self.done.get(timeout=timeout)
        except queue.Empty:
            return []
        job = self.jobs.pop(batch_id)
        ok, value, duration = job.get() if hasattr(job, "get") else job.result()
        return [(batch_id, ok, value, duration)]

    def running(self) -> list:
        return []

    def kill_worker_of(self, batch_id: int) -> None:
        pass

    def cancel(self) -> None:
        self.backend.abort_everything(ensure_ready=False)

    def close(self) -> None:
        pass


class ProcessRunner:
    """One ``Parallel`` call on the shared task engine (the process backends): a
    :class:`Runner` over a :class:`~oxjob._workers.calls.Call`, which is all of the
    engine it uses."""

    def __init__(
        self,
        n_workers: int,
        mmap_mode: str,
        max_nbytes: int,
        idle_timeout: float,
        initializer: Any = None,
        initargs: tuple = (),
    ) -> None:
        from .._workers.shared_engine import shared_call

        self.call = shared_call(n_workers, mmap_mode, max_nbytes, idle_timeout)
        self.outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self.tasks: dict[int, Any] = {}  # batch id -> engine task
        if initializer is not None:
            self.call.initialize(initializer, initargs)

    def capacity(self) -> int:
        return max(0, self.call.capacity() - len(self.tasks))

    @property
    def one_task_per_batch(self) -> bool:
        """Whether batching the call's tasks would cost more than it saves: when making
        a task ready (hashing or copying its large inputs) is slow, or its result is
        large (a batch's results all wait for the slowest, each in its own segment)."""
        return self.call.slow_prep or self.call.large_results

    def submit(self, batch_id: int, tasks: list) -> None:
        from .._workers.engine import MAP, STARMAP, TASKS

        put = self.outcomes.put
        uniform = _engine.uniform_calls(tasks)
        func: Any
        arguments: Any  # a list, or the sequence uniform_calls made
        if uniform is not None:
            # One function, positional arguments only (the common case): the function
            # once and the arguments as one sequence.
            func, arguments, single = uniform
            form = MAP if single else STARMAP
        else:
            func, arguments, form = None, tasks, TASKS
        self.tasks[batch_id] = self.call.submit(
            func, form, arguments, lambda ok, value: put((batch_id, ok, value))
        )

    def wait(self, timeout: float | None) -> list[Outcome]:
        """Outcomes ``(batch_id, ok, results_or_exception, duration)``; [] on timeout."""
        try:
            first = self.outcomes.get(timeout=timeout)
        except queue.Empty:
            return []
        outcomes = [first]
        while not self.outcomes.empty():
            outcomes.append(self.outcomes.get_nowait())
        return [(bid, ok, value, self.tasks.pop(bid).duration) for bid, ok, value in outcomes]

    def running(self) -> list[tuple[int, float]]:
        """``(batch_id, started)`` of this call's batches being computed now."""
        ids = {task.id: bid for bid, task in self.tasks.items()}
        return [
            (ids[t.id], t.started)
            for t in self.call.running()
            if t.id in ids and t.started is not None  # running() gives started ones only
        ]

    def kill_worker_of(self, batch_id: int) -> None:
        task = self.tasks.get(batch_id)
        if task is not None:
            self.call.kill(task)

    def cancel(self) -> None:
        self.call.cancel()
        self.close()
        # Results that arrived meanwhile are nobody's: free their memory now.
        self.tasks.clear()
        while not self.outcomes.empty():
            self.outcomes.get_nowait()

    def close(self) -> None:
        self.call.close()
