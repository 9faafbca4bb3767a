"""TEMPORARY SHIM of the shared task engine, for the joblib backend's branch only.

The lead is replacing oxjob's process engine with one task engine that every front
end submits to (``oxjob._tasks``). Until it lands, this file gives its API over the
existing ``oxjob.pool._TaskEngine``, so that ``oxjob.joblib_backend`` can be written
and tested against it. It holds no logic the backend needs; the real module replaces
it when the branch is merged. ``mmap_mode``, ``max_nbytes`` and ``idle_timeout`` are
accepted and ignored here (``_TaskEngine`` has fixed ones).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from .pool import _TaskEngine

_engines: dict[tuple, _Engine] = {}
_lock = threading.Lock()


def shared_engine(
    n_workers: int, mmap_mode: str = "c", max_nbytes: int = 1 << 20, idle_timeout: float = 300
) -> _Engine:
    """The engine with ``n_workers`` workers, reused across calls (shim)."""
    key = (n_workers, mmap_mode, max_nbytes, idle_timeout)
    with _lock:
        engine = _engines.get(key)
        if engine is None or engine.tasks.forked():
            for old in _engines.values():
                if not old.tasks.forked():
                    old.tasks.stop(1.0)
            _engines.clear()
            engine = _engines[key] = _Engine(_TaskEngine(n_workers, None, (), None))
        return engine


class _Engine:
    def __init__(self, tasks: _TaskEngine) -> None:
        self.tasks = tasks

    def open_call(self) -> _Call:
        return _Call(self.tasks)

    def pids(self) -> list[int]:
        return self.tasks.pids()


class _Done:
    """A task's ``done``, marked with its call so that ``cancel`` can find the task."""

    __slots__ = ("call", "done")

    def __init__(self, call: _Call, done: Callable) -> None:
        self.call, self.done = call, done

    def __call__(self, ok: bool, value: Any) -> None:
        self.done(ok, value)


class _Call:
    def __init__(self, tasks: _TaskEngine) -> None:
        self.tasks = tasks
        self.cancelled = False

    def submit(self, func: Callable, form: str, arguments: list, done: Callable) -> None:
        self.tasks.submit(func, form, arguments, _Done(self, done), lambda: not self.cancelled)

    def cancel(self) -> None:
        tasks = self.tasks
        with tasks.lock:
            self.cancelled = True
            tasks.pending = type(tasks.pending)(
                t for t in tasks.pending if getattr(t.done, "call", None) is not self
            )
            for worker, queue in enumerate(tasks.inflight):
                if queue and getattr(queue[0].done, "call", None) is self:
                    # Killed and replaced at once, as _TaskEngine does on an exit
                    # event (whose late arrival it then ignores): the next submit
                    # must not reach the dead worker.
                    tasks.engine.kill(worker)
                    queue.popleft()
                    others = [t for t in queue if getattr(t.done, "call", None) is not self]
                    tasks.pending.extendleft(reversed(others))
                    queue.clear()
                    tasks.pool.respawn(worker)
                    tasks._started(worker)
            tasks._dispatch()

    def close(self) -> None:
        pass
