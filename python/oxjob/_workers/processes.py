"""Worker processes, and ``Parallel``'s runner on the task engine.

Workers are fresh interpreters (``python -m oxjob._workers.worker``) started by the Rust
supervisor (``oxjob._engine.Supervisor``); :class:`ProcessPool` is one set of them. The
task engine (:mod:`oxjob._workers.engine`) owns dispatch and routing; :class:`ProcessRunner` is the
thin adapter ``Parallel`` drives.
"""

from __future__ import annotations

import queue
import signal
import sys
from typing import Any

from .. import _engine
from .._worker_env import worker_environment


def describe_exit(code: int | None, sig: int | None) -> str:
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
        from ..backends import nesting_level

        self.n_workers = n_workers
        self.key = self.key_for(n_workers, mmap_mode, max_nbytes, idle_timeout)
        # The caller's script, authkey and thread limits (fixed when workers start).
        self.extra_env = dict(self.key[-1])
        env = dict(self.extra_env)
        env.update(worker_environment(mmap_mode, max_nbytes, idle_timeout, nesting_level() + 1))
        self.max_nbytes = max_nbytes
        from .._worker_env import SYS_PATH
        from .mainscript import WORKER_MODULE
        from .template import template_for

        # Forked from the warm template where one can serve (see template.py).
        template = template_for(dict(self.extra_env, **{SYS_PATH: env[SYS_PATH]}))
        self.supervisor = _engine.Supervisor(
            sys.executable,
            ["-m", WORKER_MODULE],
            sorted(env.items()),
            n_workers,
            template=template,
        )
        self.generations = [self.supervisor.generation(w) for w in range(n_workers)]
        self.dead: set[int] = set()

    @staticmethod
    def key_for(n_workers: int, mmap_mode: str, max_nbytes: int, idle_timeout: float) -> tuple:
        """What workers started now would be set up with: running ones are reused only
        for the same key (thread limits, for one, are fixed at start)."""
        from .mainscript import worker_env

        extra = tuple(sorted(worker_env(n_workers).items()))
        return (n_workers, mmap_mode, max_nbytes, idle_timeout, extra)

    def respawn(self, worker: int) -> None:
        self.generations[worker] = self.supervisor.spawn(worker)
        self.dead.discard(worker)

    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        return [self.supervisor.pid(w) for w in range(self.n_workers)]

    def shutdown(self, grace: float = 1.0) -> None:
        self.supervisor.shutdown(grace)


class ProcessRunner:
    """One ``Parallel`` call on the shared task engine: the runner interface of
    ``Parallel._run`` (capacity, submit, wait, running, kill_worker_of, cancel,
    close) over a :class:`oxjob._workers.calls.Call`."""

    def __init__(
        self,
        n_workers: int,
        mmap_mode: str,
        max_nbytes: int,
        idle_timeout: float,
        initializer: Any = None,
        initargs: tuple = (),
    ) -> None:
        from .shared_engine import shared_call

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
        from .engine import MAP, STARMAP, TASKS

        put = self.outcomes.put
        uniform = _engine.uniform_calls(tasks)
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

    def wait(self, timeout: float | None) -> list[tuple[int, bool, Any, float]]:
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
        return [(ids[t.id], t.started) for t in self.call.running() if t.id in ids]

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
