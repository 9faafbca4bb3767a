"""The caller's side of the process engine: a reusable set of worker processes and
the per-call runner that ships functions and batches to them.

Workers are fresh interpreters (``python -m oxjob._worker``) started by the Rust
engine; they are kept between calls and replaced when they die or idle out.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import pickle
import signal
import sys
import threading
import time
from typing import Any

from . import _engine
from ._protocol import (
    BATCH,
    END_CALL,
    ERROR,
    FUNCTION,
    READY,
    RELEASED,
    RESULT,
    FunctionTable,
    dumps,
    dumps_auto,
    loads,
)
from .exceptions import RemoteTraceback, TerminatedWorkerError

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: Batches queued per worker: one running, one waiting, so workers never starve.
_QUEUE_DEPTH = 2


def _describe_exit(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"SIG{sig}"
        return f"{name}(-{sig})"
    return f"EXIT({code})"


class ProcessPool:
    """Worker processes kept for reuse across calls."""

    def __init__(self, n_workers: int, mmap_mode: str, max_nbytes: int, idle_timeout: float):
        from ._mainscript import worker_env
        from .backends import cpu_count, nesting_level

        self.n_workers = n_workers
        self.key = (n_workers, mmap_mode, max_nbytes, idle_timeout)
        threads = str(max(cpu_count() // n_workers, 1))
        env = {var: os.environ.get(var, threads) for var in _THREAD_VARS}
        env.update(
            OXJOB_PARENT_PID=str(os.getpid()),
            OXJOB_SYS_PATH=json.dumps([p for p in sys.path if isinstance(p, str)]),
            OXJOB_MMAP_MODE=mmap_mode,
            OXJOB_MAX_NBYTES=str(max_nbytes),
            OXJOB_IDLE_TIMEOUT=str(idle_timeout),
            OXJOB_NESTING_LEVEL=str(nesting_level() + 1),
        )
        self.extra_env = worker_env(n_workers)  # the caller's script, authkey, thread limits
        env.update(self.extra_env)
        self.max_nbytes = max_nbytes
        self.engine = _engine.Engine(
            sys.executable, ["-m", "oxjob._worker"], sorted(env.items()), n_workers
        )
        self.generations = [self.engine.generation(w) for w in range(n_workers)]
        self.dead: set[int] = set()

    def respawn(self, worker: int) -> None:
        self.generations[worker] = self.engine.spawn(worker)
        self.dead.discard(worker)

    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        return [self.engine.pid(w) for w in range(self.n_workers)]

    def shutdown(self, grace: float = 1.0) -> None:
        self.engine.shutdown(grace)


_POOL: ProcessPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool(n_workers: int, mmap_mode: str, max_nbytes: int, idle_timeout: float) -> ProcessPool:
    """The reusable pool for this configuration (a new one if it changed)."""
    global _POOL
    with _POOL_LOCK:
        key = (n_workers, mmap_mode, max_nbytes, idle_timeout)
        if _POOL is not None and _POOL.key != key:
            _POOL.shutdown()
            _POOL = None
        if _POOL is None:
            _POOL = ProcessPool(n_workers, mmap_mode, max_nbytes, idle_timeout)
        return _POOL


def shutdown_pool() -> None:
    """Stop the reusable workers (also run at interpreter exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown()
            _POOL = None


atexit.register(shutdown_pool)


def _forget_parent_pool() -> None:
    """In a child made by ``os.fork()``: the reusable workers are the parent's, and the
    threads that drive them were not copied. The child starts its own when it needs
    them; the engine never stops or uses the parent's from the child."""
    global _POOL, _POOL_LOCK
    _POOL_LOCK = threading.Lock()
    _POOL = None


os.register_at_fork(after_in_child=_forget_parent_pool)


def _raise_picklable_error(tasks: list, exc: Exception) -> None:
    """Re-raise a pickling failure naming the task that caused it."""
    for index, (func, args, kwargs) in enumerate(tasks):
        try:
            dumps((args, kwargs), None, by_value=True)
        except Exception as task_exc:  # noqa: BLE001
            name = getattr(func, "__qualname__", repr(func))
            raise pickle.PicklingError(
                f"Could not pickle the task to send it to the workers: argument of task "
                f"{index} of its batch ({name}) cannot be pickled: {task_exc!r}"
            ) from task_exc
    raise pickle.PicklingError(f"Could not pickle the batch of tasks: {exc!r}") from exc


class ProcessCall:
    """One Parallel call on a :class:`ProcessPool`: ships work, collects outcomes."""

    def __init__(self, pool: ProcessPool):
        self.pool = pool
        self.engine = pool.engine
        for worker in list(pool.dead):
            pool.respawn(worker)
        self.n_workers = pool.n_workers
        self.functions = FunctionTable()
        self.sent: list[set[int]] = [set() for _ in range(self.n_workers)]
        self.inflight: list[collections.deque] = [
            collections.deque() for _ in range(self.n_workers)
        ]
        self.started: dict[int, float] = {}
        # Segments of this call's large arguments, by (address, size) of their memory;
        # holding the buffer keeps the address from being reused during the call.
        self.segments: dict[tuple[int, int], tuple[Any, memoryview]] = {}
        # Refilling a segment costs a plain copy; a new one also costs allocating its
        # pages (~4x more). A segment can be refilled with another argument of its
        # size once no batch carrying it is in flight and every worker that received
        # it has said it no longer maps it (RELEASED). Until then it stays cached, so
        # an argument sent to many tasks is still copied once.
        self.users: dict[tuple[int, int], int] = {}  # batches in flight carrying it
        self.pinned: set[tuple[int, int]] = set()  # a worker may still map it
        self.reusable: dict[int, dict[tuple[int, int], None]] = {}  # by size, oldest first
        self.batch_keys: dict[int, set] = {}
        self.released: set[int] = set()
        self._carried: list = []  # segment keys of the batch being pickled

    # ---- dispatch ---------------------------------------------------------------------

    def initialize(self, initializer: Any, initargs: tuple) -> None:
        """Run ``initializer(*initargs)`` in every worker before its first batch."""
        from ._protocol import INIT

        body, segments, n_shared = dumps((initializer, tuple(initargs)), None, by_value=True)
        for worker in range(self.n_workers):
            self.engine.send(worker, INIT, 0, body, segments, n_shared)

    def capacity(self) -> int:
        return sum(_QUEUE_DEPTH - len(q) for q in self.inflight)

    def _pick_worker(self) -> int:
        return min(range(self.n_workers), key=lambda w: len(self.inflight[w]))

    def _segment_for(self, raw: memoryview) -> Any:
        """A segment holding ``raw``: copied once per call, however many tasks use it."""
        key = _engine.buffer_address(raw)
        self._carried.append(key)
        known = self.segments.get(key)
        if known is not None:
            self.reusable.get(raw.nbytes, {}).pop(key, None)
            return known[0]
        candidates = self.reusable.get(raw.nbytes)
        if candidates:
            old_key = next(iter(candidates))
            del candidates[old_key]
            segment, _ = self.segments.pop(old_key)
            segment.refill(raw)
        else:
            segment = _engine.Segment.from_buffer(raw)
        self.segments[key] = (segment, raw)
        return segment

    def _segments_returned(self, batch_id: int) -> None:
        released = batch_id in self.released
        self.released.discard(batch_id)
        for key in self.batch_keys.pop(batch_id, ()):
            self.users[key] -= 1
            if not released:
                self.pinned.add(key)
            if self.users[key] == 0 and key not in self.pinned and key in self.segments:
                self.reusable.setdefault(key[1], {})[key] = None

    def submit(self, batch_id: int, tasks: list) -> None:
        worker = self._pick_worker()
        if worker in self.pool.dead:
            self.pool.respawn(worker)
            self.sent[worker].clear()
        uniform = _engine.uniform_calls(tasks)
        if uniform is not None:
            first, arguments, single = uniform
            distinct = [first]
        else:
            distinct = list({id(f): f for f, _, _ in tasks}.values())
        ids = {}
        for func in distinct:
            func_id, payload = self.functions.id_of(func)
            ids[id(func)] = func_id
            if func_id not in self.sent[worker]:
                self.engine.send(worker, FUNCTION, func_id, payload, [])
                self.sent[worker].add(func_id)
        if uniform is not None:
            # One function, positional arguments only (the common case): the
            # function id once and the arguments as one sequence; the worker maps
            # the function over single arguments, star-maps it over tuples.
            calls: Any = (
                (ids[id(first)], arguments, True) if single else (ids[id(first)], arguments)
            )
        else:
            calls = [(ids[id(f)], a, k) for f, a, k in tasks]
        self._carried = []
        try:
            body, segments, n_shared = dumps_auto(calls, self.pool.max_nbytes, self._segment_for)
        except Exception as exc:  # noqa: BLE001
            _raise_picklable_error(tasks, exc)
        if self._carried:
            keys = self.batch_keys[batch_id] = set(self._carried)
            for key in keys:
                self.users[key] = self.users.get(key, 0) + 1
        self.engine.send(worker, BATCH, batch_id, body, segments, n_shared)
        if not self.inflight[worker]:
            self.started[batch_id] = time.monotonic()
        self.inflight[worker].append(batch_id)

    # ---- completion -------------------------------------------------------------------

    def running(self) -> list[tuple[int, float]]:
        """``(batch_id, started)`` of the batches being computed now."""
        return [(q[0], self.started[q[0]]) for q in self.inflight if q and q[0] in self.started]

    def _finish(self, worker: int, batch_id: int) -> None:
        queue = self.inflight[worker]
        if queue and queue[0] == batch_id:
            queue.popleft()
        elif batch_id in queue:
            queue.remove(batch_id)
        self.started.pop(batch_id, None)
        if queue:
            self.started.setdefault(queue[0], time.monotonic())

    def wait(self, timeout: float | None) -> list[tuple[int, bool, Any, float]]:
        """Outcomes ``(batch_id, ok, results_or_exception, duration)``; [] on timeout."""
        event = self.engine.next_event(timeout)
        if event is None:
            return []
        if event[0] == "exit":
            _, worker, generation, code, sig = event
            if generation != self.pool.generations[worker]:
                return []  # a worker we already replaced
            self.pool.dead.add(worker)
            self.sent[worker].clear()
            if not self.inflight[worker]:
                return []  # idle worker that timed out: replaced on the next submit
            raise TerminatedWorkerError(
                "A worker process managed by the executor was unexpectedly terminated. "
                "This could be caused by a segmentation fault while calling the function "
                "or by an excessive memory usage causing the Operating System to kill the "
                f"worker.\n\nThe exit codes of the workers are {{{_describe_exit(code, sig)}}}"
            )
        _, worker, generation, kind, tag, body, buffers, shared = event
        if generation != self.pool.generations[worker] or kind == READY:
            return []
        if kind == RELEASED:
            self.released.add(tag)
            return []
        if kind == RESULT:
            duration, results = loads(body, buffers, shared)
            self._finish(worker, tag)
            self._segments_returned(tag)
            return [(tag, True, results, duration)]
        if kind == ERROR:
            exc, tb, _ = loads(body, buffers, shared)
            self._finish(worker, tag)
            self._segments_returned(tag)
            exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
            return [(tag, False, exc, 0.0)]
        return []

    # ---- end of call ------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop every batch in flight: their workers are killed and replaced."""
        for worker, queue in enumerate(self.inflight):
            if queue:
                self.engine.kill(worker)
                self.pool.dead.add(worker)
                queue.clear()
        self.started.clear()
        self.close()

    def kill_worker_of(self, batch_id: int) -> None:
        for worker, queue in enumerate(self.inflight):
            if batch_id in queue:
                self.engine.kill(worker)
                self.pool.dead.add(worker)
                queue.clear()

    def close(self) -> None:
        self.segments.clear()
        self.reusable.clear()
        for worker in range(self.n_workers):
            if worker not in self.pool.dead and self.sent[worker]:
                try:
                    self.engine.send(worker, END_CALL, 0, b"", [])
                except OSError:
                    self.pool.dead.add(worker)
        for worker in list(self.pool.dead):
            self.pool.respawn(worker)
