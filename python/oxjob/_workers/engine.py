"""The task engine: the one place that sends work to worker processes and routes
what comes back to whoever submitted it.

``Parallel`` (through :class:`oxjob._parallel.runners.ProcessRunner`), ``Pool``,
``ProcessPoolExecutor`` and the joblib backend are thin front ends: each opens a
:class:`Call` on a :class:`TaskEngine` and submits tasks to it. A task is one
function over a list of arguments; its outcome (the list of results, or the
exception) is handed to the task's ``done`` callback, on the engine's dispatcher
thread. Many calls may be in flight on one engine at once, from any threads or
interleaved as generators in one thread: tasks carry engine-wide ids, so a result
can only reach the call that sent it, and cancelling a call touches only its own
tasks (a worker is killed only if it is running one of them).

See docs/engine.md for the flow from ``delayed`` to the worker and back.
"""

from __future__ import annotations

import collections
import itertools
import os
import sys
import threading
import time
from typing import Any, Callable

from .._units import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_NBYTES
from ..exceptions import BrokenProcessPool, TerminatedWorkerError
from .calls import QUEUED_WORK, Call, Task
from .functions import FunctionTable
from .outcomes import OXJOB, pickling_error, remote_error, unpickling_failed
from .processes import ProcessPool, describe_exit
from .protocol import (
    BATCH,
    END_CALL,
    ERROR,
    FUNCTION,
    INIT,
    READY,
    RELEASED,
    RESULT,
    SHUTDOWN,
    dumps_auto,
)
from .protocol import loads as _loads
from .segments import InputSegments
from .worker_start import dumps_for_start

__all__ = ["Call", "Task", "TaskEngine"]

# How a task's arguments are laid out (the worker's BATCH forms, see worker.py).
MAP, STARMAP, CALLS, TASKS = "map", "starmap", "calls", "tasks"

_BURST = 64  # events handled per wake-up of the dispatcher, at most
_SPARE_SECONDS = 1.0  # idle time after which spare input segments are freed
_OVERDUE_SLACK = 0.0005  # seconds a task may run past twice its expected time
# Bytes of frames a busy worker may have waiting in its socket. A worker reads its next
# frame only when its running task ends; more than its socket holds (~200 KiB) would
# leave the caller waiting there, holding the engine, for as long as that task runs.
_UNREAD_BYTES = 128 << 10


#: How many ``os.fork()`` calls separate this process from the first one: an engine
#: made in another generation belongs to an ancestor (no ``getpid`` per task).
_fork_generation = 0


def _count_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_count_fork)


def _deliver(task: Task, ok: bool, value: Any) -> None:
    """Hand a task's outcome to its submitter. A callback that raises is reported on
    stderr, as a thread's uncaught exception is: it must not stop the dispatcher,
    or every later task of every call would wait for ever."""
    done, task.done = task.done, None
    if done is None or task.call.cancelled:
        return
    try:
        done(ok, value)
    except BaseException:  # noqa: BLE001 - even a SystemExit from a user's callback
        sys.excepthook(*sys.exc_info())


class TaskEngine:
    """Worker processes plus a dispatcher thread: tasks in, outcomes out.

    Parameters
    ----------
    processes : int
    mmap_mode : str
        How workers map large inputs (``'c'``, ``'r'``, ...).
    max_nbytes : int
        Buffers from this size travel in shared memory.
    idle_timeout : float
        Seconds after which an idle worker exits (it is restarted when needed).
    initializer, initargs
        Run in every worker when it starts, replacements included.
    max_tasks_per_child : int, optional
        Replace a worker after it has completed this many tasks.
    forget_when_idle : bool
        When the last open call closes, workers drop the functions they were sent
        (a shared engine, whose calls come and go); a pool keeps them.
    break_when_a_worker_dies : bool
        A worker that dies breaks the engine: every unfinished task fails with
        ``BrokenProcessPool`` and new ones are refused (``concurrent.futures``' rule).
        Otherwise only the tasks it held fail and it is replaced (joblib's and
        ``multiprocessing.Pool``'s workers are replaced too).
    """

    def __init__(
        self,
        processes: int,
        mmap_mode: str = "c",
        max_nbytes: int = DEFAULT_MAX_NBYTES,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        initializer: Callable | None = None,
        initargs: tuple = (),
        max_tasks_per_child: int | None = None,
        forget_when_idle: bool = False,
        break_when_a_worker_dies: bool = False,
    ) -> None:
        # The initializer is pickled anew for every worker start (its descriptors can
        # be fetched once each, see worker_start.py); the first pickle, made before any
        # worker starts so that the constructor raises its error, goes to the first one.
        self.init = None if initializer is None else (initializer, tuple(initargs))
        self.init_frame = None if self.init is None else dumps_for_start(*self.init)
        self.pool = ProcessPool(processes, mmap_mode, max_nbytes, idle_timeout)
        self.n = processes
        self.max_nbytes = max_nbytes
        self.max_tasks = max_tasks_per_child
        self.forget_when_idle = forget_when_idle
        self.owner = os.getpid()
        self.fork_generation = _fork_generation
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.pending: collections.deque[Task] = collections.deque()
        self.inflight: list[collections.deque[Task]] = [
            collections.deque() for _ in range(processes)
        ]
        self.sent: list[set] = [set() for _ in range(processes)]
        self.completed = [0] * processes
        self.unread = [0] * processes  # bytes sent to each worker behind its running task
        self.dying: set[int] = set()  # a send failed: its exit event is on the way
        # Told to exit after max_tasks_per_child tasks: replaced once it has exited (as
        # the stdlib's, it exits on its own, so its atexit work, a multiprocessing
        # queue's flush for one, is done).
        self.retired: set[int] = set()
        self.killed: dict[int, int] = {}  # worker -> id of the task we killed it for
        self.functions = FunctionTable()
        self.open_calls = 0
        # Large inputs' segments: spares (refilling one costs a plain copy, a new one
        # also costs allocating and zeroing its pages, ~5x) and, where workers cannot
        # write through to an input ('c', 'r'), recent calls' inputs by content
        # (hashing 100 MB costs ~3 ms, filling a segment 30-90 ms).
        self.segments = InputSegments(processes, reuse_content=mmap_mode in ("c", "r"))
        self.ids = itertools.count(1)
        for worker in range(processes):
            self._started(worker)
        self.stopping = False
        self.stopped = False
        self.retiring: bool | None = None  # None, or stop when idle (True) / now (False)
        self.broken: str | None = None  # why the engine can take no more tasks
        self.break_when_a_worker_dies = break_when_a_worker_dies
        self.thread = threading.Thread(target=self._run, name="oxjob-engine", daemon=True)
        self.thread.start()

    # ---- calls -----------------------------------------------------------------------

    # The engine's API: what a Call (the front ends' handle) calls. Everything else
    # here is the dispatcher's own.

    def open_call(self, cache_inputs: bool = False, style: str = OXJOB) -> Call:
        """A new :class:`Call`: the identity its tasks carry (see :class:`Call` for
        ``cache_inputs`` and ``style``)."""
        self._check_owner()
        with self.lock:
            # A broken engine stops itself; a call opened after that (a failing
            # initializer can break it before a pool's constructor opened its call)
            # reports the break when it submits, as the standard library's executor does.
            if self.stopping and self.broken is None:
                raise RuntimeError("This engine has been shut down")
            self.open_calls += 1
        return Call(self, cache_inputs, style)

    def _check_owner(self) -> None:
        if self.forked():
            raise RuntimeError(
                f"This pool was created by process {self.owner}; this process is a fork "
                "of it, without the pool's threads: create a new pool here"
            )

    def submit(self, call, func, form, arguments, done, on_dispatch=None) -> Task:
        """Queue a task of ``call`` (see :meth:`Call.submit`)."""
        self._check_owner()
        with self.lock:
            if self.broken is not None:
                raise BrokenProcessPool(self.broken)
            if self.stopping:
                raise RuntimeError("This engine has been shut down")
            task = Task(next(self.ids), call, func, form, arguments, done, on_dispatch)
            call.live += 1
            self.pending.append(task)
            self._dispatch()
        return task

    def initialize_workers(self, initializer: Callable, initargs: tuple) -> None:
        """Run ``initializer(*initargs)`` in every worker before its next task."""
        with self.lock:
            for worker in range(self.n):
                if worker in self.pool.dead:
                    self._respawn(worker)
                body, segments, n_shared = dumps_for_start(initializer, initargs)
                self._send(worker, INIT, 0, body, segments, n_shared)

    def close_call(self, call: Call) -> None:
        """End ``call``: its input segments go back to the engine (see segments.py)."""
        with self.lock:
            if call.closed:
                return
            call.closed = True
            self.open_calls -= 1
            self.segments.close(call.inputs)
            if self.open_calls == 0 and self.forget_when_idle and not self.stopping:
                self._forget_functions()

    def _forget_functions(self) -> None:
        """Workers drop the functions (and spare result segments) of finished calls."""
        for worker in range(self.n):
            if self.sent[worker] and worker not in self.pool.dead:
                self._send(worker, END_CALL, 0, b"", [])
            self.sent[worker] = set()
        self.functions = FunctionTable()
        for task in itertools.chain(self.pending, *self.inflight):
            task.func_ids = ()  # their ids belong to the table just dropped

    # ---- dispatch --------------------------------------------------------------------

    def _started(self, worker: int) -> None:
        self.sent[worker] = set()
        self.completed[worker] = 0
        if self.init is not None:
            frame, self.init_frame = self.init_frame, None
            body, segments, n_shared = frame or dumps_for_start(*self.init)
            self._send(worker, INIT, 0, body, segments, n_shared)

    def _respawn(self, worker: int) -> None:
        self.pool.respawn(worker)
        self.dying.discard(worker)
        self.retired.discard(worker)
        self.killed.pop(worker, None)
        self._started(worker)

    def _send(self, worker: int, kind: int, tag: int, body, segments, n_shared=0) -> bool:
        """Send a frame; a worker that has died meanwhile (EPIPE, ECONNRESET) is left
        to its exit event, which reports the death as a death."""
        if worker in self.dying:
            return False
        try:
            self.pool.supervisor.send(worker, kind, tag, body, segments, n_shared)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.dying.add(worker)
            return False
        except OSError:
            if worker in self.pool.dead:
                return False
            raise

    def _pick_worker(self, task: Task) -> int | None:
        """An idle worker, else the one with the least work left among those with room
        for the task's call; None to keep the task for a worker that becomes free."""
        depth = task.call.depth
        room = []
        for worker, queue in enumerate(self.inflight):
            queued = len(queue)
            if queued < depth and worker not in self.dying:
                if queued == 0:
                    return worker
                room.append(worker)
        if not room:
            return None  # the common case under load: decided without the clock
        best, best_left = None, 0.0
        now = time.monotonic()
        expected = task.expected()
        for worker in room:
            queue = self.inflight[worker]
            queued = len(queue)
            # The running task's time left; one already past twice its expected time is
            # expected to run about as long again as it has (it is not a short one).
            head = queue[0]
            head_expected = head.expected()
            elapsed = now - head.started if head.started is not None else 0.0
            if elapsed > 2 * head_expected + _OVERDUE_SLACK:
                left = elapsed
            else:
                left = max(head_expected - elapsed, 0.0)
            left += (queued - 1) * expected
            if left > QUEUED_WORK + expected and task.call.measured:
                continue  # it would wait behind a long task: keep it for a free worker
            if best is None or left < best_left:
                best, best_left = worker, left
        return best

    def _dispatch(self) -> None:
        while self.pending:
            task = self.pending[0]
            worker = self._pick_worker(task)
            if worker is None:
                return
            self.pending.popleft()
            if task.call.cancelled:
                self._drop_frames(task)
                continue
            if task.on_dispatch is not None:
                if not task.on_dispatch():
                    self._finished(task)
                    continue
                task.on_dispatch = None  # once: a task re-dispatched after a death is running
            if worker in self.pool.dead:
                self._respawn(worker)
            frames = task.frames or self._prepare(task)
            if frames is None:
                continue
            func_ids, body, segments, n_shared = frames
            queue = self.inflight[worker]
            sent = self.sent[worker]
            size = 0
            if queue:
                # Behind a running task, it waits in the worker's socket, which holds
                # only so much: past that, keep it for the next worker with nothing to run.
                size = len(body)
                for func_id, payload in func_ids:
                    if func_id not in sent:
                        size += len(payload)
                if self.unread[worker] + size > _UNREAD_BYTES:
                    task.frames = frames
                    self.pending.appendleft(task)
                    return
            task.frames = None
            for func_id, payload in func_ids:
                if func_id not in sent:
                    self._send(worker, FUNCTION, func_id, payload, [])
                    sent.add(func_id)
            if not self._send(worker, BATCH, task.id, body, segments, n_shared):
                # It died before this task reached it: the task goes to another worker,
                # the death is reported by its exit event to the task it was running.
                self.segments.unkeep(task)
                self.pending.appendleft(task)
                continue
            if queue:
                task.unread = size
                self.unread[worker] += size
            else:
                task.started = time.monotonic()
            queue.append(task)

    def _prepare(self, task: Task) -> tuple | None:
        """Pickle the task's calls (large buffers into segments): its frames, or None
        if it cannot be pickled (its outcome is then the error)."""
        try:
            prep_start = time.perf_counter()
            func_ids, calls = self._calls_of(task)
            call = task.call
            call.inputs.carried = []
            body, segments, n_shared = dumps_auto(calls, self.max_nbytes, call.segment_for)
            call.note_prep(time.perf_counter() - prep_start)
        except Exception as exc:  # noqa: BLE001 - reported on the task's result
            self._finished(task)
            _deliver(task, False, pickling_error(task.call.style, _calls_list(task), exc))
            return None
        task.segments = segments[: len(segments) - n_shared]
        self.segments.carry(task)
        return func_ids, body, segments, n_shared

    def _drop_frames(self, task: Task) -> None:
        """A task made ready but never sent lets go of its input segments."""
        if task.frames is not None:
            task.frames = None
            self.segments.unkeep(task)

    def _next_started(self, worker: int, task: Task) -> None:
        """``task`` left the worker's queue; the next one, if any, is now running."""
        queue = self.inflight[worker]
        queue.remove(task)
        self.unread[worker] -= task.unread
        task.unread = 0
        if queue and queue[0].started is None:
            head = queue[0]
            head.started = time.monotonic()
            self.unread[worker] -= head.unread  # the worker has read its frame
            head.unread = 0

    def _calls_of(self, task: Task) -> tuple[list, Any]:
        """The function ids the task needs and its calls in the worker's BATCH form;
        the task holds them (see _finished) until it finishes."""
        self._release_functions(task)  # made ready again (its worker died)
        if task.form == TASKS:
            ids, needed = {}, []
            for func, _, _ in task.arguments:
                if id(func) not in ids:
                    func_id, payload = self.functions.acquire(func)
                    task.func_ids += (func_id,)
                    ids[id(func)] = func_id
                    needed.append((func_id, payload))
            return needed, [(ids[id(f)], a, k) for f, a, k in task.arguments]
        func_id, payload = self.functions.acquire(task.func)
        task.func_ids = (func_id,)
        if task.form == CALLS:
            calls: Any = [(func_id, a, k) for a, k in task.arguments]
        elif task.form == STARMAP:
            calls = (func_id, task.arguments)
        else:
            calls = (func_id, task.arguments, True)
        return [(func_id, payload)], calls

    # ---- outcomes --------------------------------------------------------------------

    def _run(self) -> None:
        quiet_since = None
        while not self.stopping:
            if self.retiring is not None and (not self.retiring or self.idle()):
                self._retire_now()
                return
            try:
                event = self.pool.supervisor.next_event(0.1)
            except MemoryError as exc:  # a result that could not be received
                with self.lock:
                    self._frame_failed(exc)
                    self.changed.notify_all()
                continue
            except Exception:  # noqa: BLE001 - e.g. a signal check in a dying interpreter
                continue
            if event is None:
                # Spare segments hold memory: give it back once the engine is idle.
                with self.lock:
                    if not self.segments.holding() or not self.idle():
                        quiet_since = None
                    elif quiet_since is None:
                        quiet_since = time.monotonic()
                    else:
                        self.segments.idle_for(time.monotonic() - quiet_since, _SPARE_SECONDS)
                continue
            with self.lock:
                # With it, whatever else has arrived: one wake-up for a burst of results.
                try:
                    burst = [event, *self.pool.supervisor.ready_events(_BURST)]
                except MemoryError as exc:
                    burst = [event]
                    self._frame_failed(exc)
                for ready in burst:
                    try:
                        self._handle(ready)
                    except BaseException as exc:  # noqa: BLE001 - never leave callers waiting
                        self._break(exc)
                self.changed.notify_all()
                del burst
            # Events hold their results' buffers: keep none while waiting for more.
            del event, ready

    def _handle(self, event: tuple) -> None:
        if event[0] == "exit":
            _, worker, generation, code, sig = event
            if generation != self.pool.generations[worker] or self.stopping:
                return
            if worker in self.retired:
                self.retired.discard(worker)
                self.pool.dead.add(worker)
                self.sent[worker] = set()
                self._respawn(worker)
                self._dispatch()
                return
            self._worker_died(worker, code, sig)
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
            task.released = True
            return
        self._next_started(worker, task)
        self.segments.returned(task)
        self._finished(task)
        try:
            if kind == RESULT:
                if buffers:
                    task.call.large_results = True
                task.duration, results = _loads(body, buffers, shared)
                task.call.record(task)
                outcome: tuple[bool, Any] = (True, results)
            else:  # ERROR
                exc, tb, where = _loads(body, buffers, shared)
                single = task.form == CALLS and len(task.arguments) == 1
                outcome = (False, remote_error(task.call.style, exc, tb, where, single))
        except BaseException as exc:  # noqa: BLE001 - a class the caller cannot import, a
            # SystemExit raised by a __reduce__...: only this task fails
            outcome = (False, unpickling_failed(task.call.style, exc))
        del body, buffers, shared
        _deliver(task, *outcome)
        self.completed[worker] += 1
        if self.max_tasks and self.completed[worker] >= self.max_tasks and not queue:
            # Retired after max_tasks_per_child tasks: it takes no more; its exit event
            # brings its replacement.
            if self._send(worker, SHUTDOWN, 0, b"", []):
                self.retired.add(worker)
                self.dying.add(worker)
        self._dispatch()

    def _frame_failed(self, exc: MemoryError) -> None:
        """A frame whose memory could not be had (the engine dropped it, the worker
        lives on): the task it answered fails with the MemoryError."""
        worker, tag = getattr(exc, "worker", None), getattr(exc, "tag", None)
        if worker is None or getattr(exc, "generation", None) != self.pool.generations[worker]:
            return
        queue = self.inflight[worker]
        task = next((t for t in queue if t.id == tag), None)
        if task is None or getattr(exc, "kind", None) not in (RESULT, ERROR):
            return
        self._next_started(worker, task)
        task.released = False  # unknown: never refill its inputs
        self.segments.returned(task)
        self._finished(task)
        _deliver(task, False, exc)
        self._dispatch()

    def _worker_died(self, worker: int, code: int | None, sig: int | None) -> None:
        """A worker runs its queue in order: only the first task can have been running;
        the ones behind it go to another worker. If we killed it (a cancelled call, a
        timeout), the task it was killed for is the only one lost."""
        self.pool.dead.add(worker)
        self.dying.discard(worker)
        self.sent[worker] = set()
        victim = self.killed.pop(worker, None)
        queue = self.inflight[worker]
        lost = [t for t in queue if t.id == victim] if victim is not None else list(queue)[:1]
        again = [t for t in queue if t not in lost and not t.call.cancelled]
        for task in queue:
            if task in lost or task.call.cancelled:
                self._finished(task)
        queue.clear()
        self.unread[worker] = 0
        for task in reversed(again):
            task.started, task.unread = None, 0
            task.released = False
            self.segments.unkeep(task)
            self.pending.appendleft(task)
        for task in lost:
            self.segments.returned(task)
            if self.break_when_a_worker_dies:
                self.pending.appendleft(task)  # failed below with every other task
                continue
            _deliver(
                task,
                False,
                TerminatedWorkerError(
                    "A worker process managed by the executor was unexpectedly terminated. "
                    "This could be caused by a segmentation fault while calling the "
                    "function or by an excessive memory usage causing the Operating System "
                    f"to kill the worker.\n\nThe exit codes of the workers are "
                    f"{{{describe_exit(code, sig)}}}"
                ),
            )
        if self.break_when_a_worker_dies and self.broken is None and not self.stopping:
            self._fail_all(
                "A child process terminated abruptly, the process pool is not usable anymore",
                "A process in the process pool was terminated abruptly while the future was "
                "running or pending.",
            )

    def _finished(self, task: Task) -> None:
        task.call.live -= 1
        self._release_functions(task)

    def _release_functions(self, task: Task) -> None:
        """The task no longer needs its functions: those no other task needs are
        forgotten here and by the workers that were sent them."""
        if not task.func_ids:
            return
        forgotten = self.functions.release(task.func_ids)
        task.func_ids = ()
        for func_id in forgotten:
            for worker, sent in enumerate(self.sent):
                if func_id in sent:
                    sent.discard(func_id)
                    if worker not in self.pool.dead:
                        self._send(worker, FUNCTION, func_id, b"", [])  # empty: forget it

    # ---- cancelling ------------------------------------------------------------------

    def running(self, call: Call) -> list[Task]:
        """``call``'s tasks that are being computed now."""
        with self.lock:
            return [q[0] for q in self.inflight if q and q[0].call is call and q[0].started]

    def kill(self, task: Task) -> None:
        """Kill the worker running ``task`` (a timeout); it is replaced."""
        with self.lock:
            for worker, queue in enumerate(self.inflight):
                if queue and queue[0] is task:
                    self.killed[worker] = task.id
                    self.pool.supervisor.kill(worker)

    def drop_pending(self, call: Call) -> list[Task]:
        """Drop ``call``'s tasks that no worker has started; returns them."""
        with self.lock:
            dropped = [t for t in self.pending if t.call is call]
            self.pending = collections.deque(t for t in self.pending if t.call is not call)
            for task in dropped:
                self._drop_frames(task)
                self._finished(task)
            return dropped

    def cancel(self, call: Call) -> list[Task]:
        """Drop ``call``'s queued tasks and kill the workers running its tasks (see
        :meth:`Call.cancel`); returns its unfinished tasks."""
        with self.lock:
            call.cancelled = True
            unfinished = self.drop_pending(call)
            for worker, queue in enumerate(self.inflight):
                unfinished.extend(t for t in queue if t.call is call)
                if queue and queue[0].call is call and worker not in self.killed:
                    self.killed[worker] = queue[0].id
                    self.pool.supervisor.kill(worker)
            return unfinished

    # ---- ending ----------------------------------------------------------------------

    def forked(self) -> bool:
        """Whether this is a copy of the engine in a child made by ``os.fork()``."""
        return _fork_generation != self.fork_generation

    def idle(self) -> bool:
        return not self.pending and not any(self.inflight)

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self.lock:
            return self.changed.wait_for(self.idle, timeout)

    def pids(self) -> list[int | None]:
        """Process ids of the current workers (``None`` for an empty slot)."""
        return self.pool.pids()

    def retire(self, wait: bool) -> None:
        """Stop, from the dispatcher thread, once idle (``wait``) or at once; returns at
        once. For finalizers: they may run in any thread, the dispatcher's included, at
        any point (a garbage collection), so they must not wait or take the lock."""
        self.retiring = wait
        self.pool.supervisor.wake()  # a channel send: neither waits nor takes a lock

    def _retire_now(self) -> None:
        unfinished = self.stop(0.0 if self.retiring is False else 1.0)
        for task in unfinished:
            _deliver(task, False, RuntimeError("The pool was stopped before the task finished"))

    def _break(self, exc: BaseException) -> None:
        """Handling a frame failed in a way no task accounts for: report it, and fail
        every task of this engine (only this one) with BrokenProcessPool, as the
        stdlib's executor does when its manager thread meets an error."""
        sys.excepthook(type(exc), exc, exc.__traceback__)
        why = (
            "A process pool's dispatcher met an unexpected error (reported above); "
            "the pool is not usable anymore"
        )
        self._fail_all(why, why)

    def _fail_all(self, why: str, task_message: str) -> None:
        """Break the engine: refuse new tasks (``why``) and fail every unfinished one."""
        self.broken = why
        broken = BrokenProcessPool(task_message)
        tasks = list(self.pending)
        self.pending.clear()
        for queue in self.inflight:
            tasks.extend(queue)
            queue.clear()
        for task in tasks:
            _deliver(task, False, broken)
        self.retiring = False

    def stop(self, grace: float) -> list[Task]:
        """Stop the dispatcher and the workers; returns the tasks left unfinished.
        Stopping again returns at once; during interpreter finalization the dispatcher
        (a daemon thread, frozen then) is not waited for."""
        with self.lock:
            if self.stopped:
                return []
            self.stopped = True
            self.stopping = True
        # The dispatcher may be waiting for an event: end the wait now rather than at
        # its timeout (what closing a short-lived pool would otherwise cost).
        self.pool.supervisor.wake()
        if threading.current_thread() is not self.thread and not sys.is_finalizing():
            self.thread.join()
        with self.lock:
            unfinished = list(self.pending)
            self.pending.clear()
            for queue in self.inflight:
                unfinished.extend(queue)
                queue.clear()
            self.segments.clear()
        self.pool.shutdown(grace)
        return unfinished


def _calls_list(task: Task) -> list:
    """The task's calls as ``(func, args, kwargs)``."""
    if task.form == TASKS:
        return list(task.arguments)
    if task.form == CALLS:
        return [(task.func, a, k) for a, k in task.arguments]
    if task.form == STARMAP:
        return [(task.func, a, {}) for a in task.arguments]
    return [(task.func, (a,), {}) for a in task.arguments]
