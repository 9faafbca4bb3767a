"""The two records of the task engine: a :class:`Call` (one submitter's stream of
tasks, with what the engine learns about them) and a :class:`Task` (one unit of work).
The engine that runs them is :class:`oxjob._workers.engine.TaskEngine`."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, Callable

from .outcomes import OXJOB
from .segments import CallInputs

if TYPE_CHECKING:
    from .engine import TaskEngine

QUEUED_WORK = 0.002  # seconds of work queued on each worker, beyond the running task
MAX_DEPTH = 16
_SLOW_PREP = 0.0005  # seconds to make a task ready past which one is kept queued ahead


class Task:
    """One unit of work: ``func`` over ``arguments``, in one of the BATCH forms."""

    __slots__ = (
        "id",
        "call",
        "func",
        "form",
        "arguments",
        "done",
        "on_dispatch",
        "segments",
        "keys",
        "released",
        "started",
        "duration",
        "frames",
        "unread",
        "func_ids",
    )

    def __init__(self, task_id, call, func, form, arguments, done, on_dispatch) -> None:
        self.id = task_id
        self.call = call
        self.func = func
        self.form = form
        self.arguments = arguments
        self.done = done  # done(ok, value): its outcome, on the dispatcher thread
        # on_dispatch() -> bool: run once, when it goes to a worker (False: dropped).
        self.on_dispatch = on_dispatch
        self.segments: list = []  # input segments lent to the worker
        self.keys: tuple = ()  # their keys in the call's segment cache
        self.released = False  # the worker said it maps none of them any more
        self.started: float | None = None  # time.monotonic() when it reached the head of its worker
        self.duration = 0.0
        # Its BATCH frame, made and waiting for a worker that can take it at once.
        self.frames: tuple | None = None
        self.unread = 0  # bytes of its frames still in the worker's socket, at most
        self.func_ids: tuple = ()  # the engine's function ids it holds (see functions.py)

    def expected(self) -> float:
        """Seconds this task should take, from its call's recent tasks."""
        return self.call.item_seconds * max(len(self.arguments), 1)


class Call:
    """One submitter's stream of tasks on an engine: a ``Parallel`` call, a ``Pool``.

    Parameters
    ----------
    engine : TaskEngine
    cache_inputs : bool
        Keep the segment of every large input for the whole call, so an argument
        given to many tasks is copied once (``Parallel``); otherwise a task's input
        segments become spares as soon as its worker lets go of them (``Pool``).
    style : str
        Which front end's exception types its failures take (see outcomes.py).

    Its methods are the engine's API for front ends: they call the engine's public
    methods, and front ends call nothing else of the engine.
    """

    def __init__(self, engine: TaskEngine, cache_inputs: bool, style: str = OXJOB) -> None:
        self.engine = engine
        self.style = style
        self.cancelled = False
        self.closed = False
        self.live = 0  # tasks submitted and not finished
        # Tasks a worker may hold, the running one included: those queued behind it
        # hide the round trip; see record(). One until this call's tasks are known to
        # be short, so no task waits behind a slow one while another worker is free.
        self.depth = 1
        self.item_seconds = QUEUED_WORK
        self.measured = False  # item_seconds comes from a finished task
        # Seconds the caller spends making a task ready to send (pickling, and hashing
        # or copying its large inputs): while it does, a worker with nothing queued idles.
        self.prep_seconds = 0.0
        self.large_results = False  # a result came back in shared memory
        # Its large inputs' segments, and the pickler's hook that fills them.
        self.inputs = CallInputs(cache_inputs)
        self.segment_for = functools.partial(engine.segments.segment_for, self.inputs)

    def submit(
        self,
        func: Callable | None,
        form: str,
        arguments: list,
        done: Callable[[bool, Any], None],
        on_dispatch: Callable[[], bool] | None = None,
    ) -> Task:
        """Queue ``func`` over ``arguments``: single arguments (``"map"``), argument
        tuples (``"starmap"``), ``(args, kwargs)`` pairs (``"calls"``), or
        ``(func, args, kwargs)`` triples with ``func=None`` (``"tasks"``).
        ``done(ok, value)`` receives the list of results or the exception, on the
        dispatcher thread. ``on_dispatch()``, if given, runs when the task goes to a
        worker; the task is dropped if it returns False."""
        return self.engine.submit(self, func, form, arguments, done, on_dispatch)

    def initialize(self, initializer: Callable, initargs: tuple) -> None:
        """Run ``initializer(*initargs)`` in every worker before its next task."""
        self.engine.initialize_workers(initializer, initargs)

    @property
    def n_workers(self) -> int:
        """The engine's number of workers."""
        return self.engine.n

    def capacity(self) -> int:
        """How many tasks this call can have in flight without any waiting."""
        return self.engine.n * self.depth

    def running(self) -> list[Task]:
        """This call's tasks that are being computed now."""
        return self.engine.running(self)

    def kill(self, task: Task) -> None:
        """Kill the worker running ``task`` (a timeout); it is replaced."""
        self.engine.kill(task)

    def cancel(self) -> list[Task]:
        """Drop this call's queued tasks and kill the workers running its tasks;
        other calls' tasks on those workers run elsewhere. Returns the tasks that
        had not finished (their ``done`` is never called)."""
        return self.engine.cancel(self)

    def drop_pending(self) -> list[Task]:
        """Drop this call's tasks that no worker has started; returns them."""
        return self.engine.drop_pending(self)

    def close(self) -> None:
        """End the call: what it cached is given back to the engine."""
        self.engine.close_call(self)

    def record(self, task: Task) -> None:
        """Learn from a finished task how much work to queue on each worker: about
        QUEUED_WORK seconds, so tiny tasks stream without waiting for round trips
        and long ones stay balanced."""
        per_item = task.duration / max(len(task.arguments), 1)
        if not self.measured:
            self.item_seconds, self.measured = per_item, True
        else:
            self.item_seconds = 0.8 * self.item_seconds + 0.2 * per_item
        if not self.engine.max_tasks:
            expected = max(self.item_seconds * max(len(task.arguments), 1), 1e-7)
            depth = int(QUEUED_WORK / expected)
            if self.slow_prep:
                # Keep the next tasks queued while the caller makes the one after ready.
                depth = max(depth, 1 + math.ceil(self.prep_seconds / expected))
            self.depth = max(1, min(MAX_DEPTH, depth))

    @property
    def slow_prep(self) -> bool:
        return self.prep_seconds >= _SLOW_PREP

    def note_prep(self, seconds: float) -> None:
        old = self.prep_seconds
        self.prep_seconds = 0.8 * old + 0.2 * seconds if old else seconds
