"""The task engine shared by ``Parallel`` calls and the joblib backend: one per
settings (workers, ``mmap_mode``, ``max_nbytes``, idle timeout), replaced when the
settings change, stopped at interpreter exit and forgotten in a forked child."""

from __future__ import annotations

import atexit
import os
import threading

from .._units import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_NBYTES
from .calls import Call
from .engine import TaskEngine
from .processes import ProcessPool

__all__ = ["running_engine", "shared_call", "shared_engine", "shutdown_shared"]

_SHARED: TaskEngine | None = None
_RETIRED: list[TaskEngine] = []  # replaced while calls were still open on them
_SHARED_LOCK = threading.Lock()


def running_engine() -> TaskEngine | None:
    """The engine ``Parallel``'s process calls share now, if one is running (for
    diagnostics and tests: its workers' pids, its process pool)."""
    return _SHARED


def shared_engine(
    n_workers: int,
    mmap_mode: str = "c",
    max_nbytes: int = DEFAULT_MAX_NBYTES,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
) -> TaskEngine:
    """The engine reused across ``Parallel`` calls with these settings.

    An engine with other settings is replaced; one that still has open calls is
    stopped only when its last call closes.
    """
    global _SHARED
    with _SHARED_LOCK:
        return _current(n_workers, mmap_mode, max_nbytes, idle_timeout)


def _current(n_workers, mmap_mode, max_nbytes, idle_timeout) -> TaskEngine:
    global _SHARED
    key = ProcessPool.key_for(n_workers, mmap_mode, max_nbytes, idle_timeout)
    if _SHARED is not None and _SHARED.pool.key != key:
        old, _SHARED = _SHARED, None
        with old.lock:
            busy = old.open_calls > 0
        if busy:
            _RETIRED.append(old)
        else:
            old.stop(1.0)
    if _SHARED is None:
        _SHARED = TaskEngine(n_workers, mmap_mode, max_nbytes, idle_timeout, forget_when_idle=True)
    return _SHARED


def shared_call(
    n_workers: int,
    mmap_mode: str = "c",
    max_nbytes: int = DEFAULT_MAX_NBYTES,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    cache_inputs: bool = True,
) -> Call:
    """Open a call on the shared engine (atomically: it cannot be replaced between
    being found and the call being opened)."""
    with _SHARED_LOCK:
        for old in list(_RETIRED):
            with old.lock:
                done = old.open_calls == 0
            if done:
                _RETIRED.remove(old)
                old.stop(1.0)
        engine = _current(n_workers, mmap_mode, max_nbytes, idle_timeout)
        return engine.open_call(cache_inputs=cache_inputs)


def shutdown_shared() -> None:
    """Stop the shared engine's workers (also run at interpreter exit)."""
    global _SHARED
    with _SHARED_LOCK:
        engines = [e for e in [_SHARED, *_RETIRED] if e is not None]
        _SHARED = None
        _RETIRED.clear()
    for engine in engines:
        if not engine.forked():
            engine.stop(1.0)


atexit.register(shutdown_shared)


def _forget_parent_engine() -> None:
    """In a child made by ``os.fork()``: the shared engine is the parent's, and the
    threads that drive it were not copied. The child starts its own when it needs
    one; the parent's workers are never used or stopped from the child."""
    global _SHARED, _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()
    _SHARED = None
    _RETIRED.clear()


os.register_at_fork(after_in_child=_forget_parent_engine)
