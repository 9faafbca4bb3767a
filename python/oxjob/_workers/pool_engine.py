"""A pool's own task engine: ``Pool`` and ``ProcessPoolExecutor`` each open one (its
workers live as long as the pool), with one call whose failures take the exception
types of the front end (see outcomes.py). The engine ``Parallel`` calls share is in
shared_engine.py."""

from __future__ import annotations

import os
from typing import Any, Callable

from .._units import DEFAULT_MAX_NBYTES
from .calls import Call
from .engine import TaskEngine
from .outcomes import EXECUTOR

__all__ = ["default_processes", "open_pool"]

#: Idle timeout of a pool's workers: they live until the pool ends.
NEVER = 10.0**9


def default_processes(processes: int | None) -> int:
    """The number of workers of a pool asked for ``processes`` (None: one per CPU)."""
    if processes is None:
        return os.cpu_count() or 1
    if processes < 1:
        raise ValueError("Number of processes must be at least 1")
    return processes


def open_pool(
    processes: int,
    initializer: Callable | None,
    initargs: tuple,
    max_tasks_per_child: int | None,
    style: str,
    context: Any = None,
) -> tuple[TaskEngine, Call]:
    """A pool's own engine and its call. With ``style`` EXECUTOR a worker's death
    breaks the pool (``concurrent.futures``' rule); a ``spawn`` ``context`` gets fresh
    interpreters, not forks of the warm template."""
    from .template import fresh_interpreters

    with fresh_interpreters(context):
        engine = TaskEngine(
            processes,
            "c",
            DEFAULT_MAX_NBYTES,
            NEVER,
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_child=max_tasks_per_child,
            break_when_a_worker_dies=style == EXECUTOR,
        )
    return engine, engine.open_call(cache_inputs=False, style=style)
