"""The worker process: ``python -m oxjob._workers.worker``, started by the engine.

It reads frames from descriptor 3, runs batches of calls, and sends results back.
It exits when told to, when its socket closes, when it has been idle for
``OXJOB_IDLE_TIMEOUT`` seconds, or (from a Rust watchdog thread) when its parent dies.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
import traceback
import weakref
from typing import Any


def _send_error(
    channel: Any, tag: int, exc: BaseException, index: int | tuple[str, list[str]]
) -> None:
    from .protocol import ERROR, dumps

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        body, segments, n_shared = dumps((exc, tb, index), None)
    except Exception:  # noqa: BLE001 - pickling an exception can raise anything
        try:
            # A copy of the same type often pickles when the original does not (a
            # RecursionError caught after a deep recursion fails to pickle itself).
            copy = type(exc)(*exc.args)
            body, segments, n_shared = dumps((copy, tb, index), None)
        except Exception:  # noqa: BLE001 - rebuilding or pickling it can raise anything
            fallback = RuntimeError(
                f"{type(exc).__name__}: {exc} (the exception could not be pickled)"
            )
            body, segments, n_shared = dumps((fallback, tb, index), None)
    channel.send(ERROR, tag, body, segments, n_shared)


class _BatchFailed(Exception):
    def __init__(self, exc: BaseException, index: int) -> None:
        self.exc, self.index = exc, index


def _reprs(results: list) -> list:
    """What a result that could not be pickled is reported as (MaybeEncodingError)."""
    reprs = []
    for result in results:
        try:
            reprs.append(repr(result))
        except Exception:  # noqa: BLE001
            reprs.append(object.__repr__(result))
    return reprs


def _run_batch(functions: dict, body, buffers: list, shared: list) -> tuple[list, float]:
    """Unpickle and run one batch. Its arguments die with this frame, which lets the
    caller tell whether anything still holds the batch's input segments."""
    from .outcomes import UNPICKLING
    from .protocol import loads

    index: Any = UNPICKLING  # the caller tells a task it could not rebuild apart
    try:
        calls = loads(body, buffers, shared)
        index = -1
        start = time.perf_counter()
        if isinstance(calls, tuple):  # one function, positional arguments only
            func_id, arguments, *single = calls
            if single:  # map: one argument per call, not a tuple of them
                results = list(map(functions[func_id], arguments))
            else:
                results = list(itertools.starmap(functions[func_id], arguments))
        else:
            results = []
            for index, (func_id, args, kwargs) in enumerate(calls):  # noqa: B007
                results.append(functions[func_id](*args, **kwargs))
        return results, time.perf_counter() - start
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
        raise _BatchFailed(exc, index) from None


class _Unloadable:
    """Stands for a task function the worker could not unpickle (its module is not
    importable here, say): calling it raises that error, so the tasks fail with it
    instead of the worker dying."""

    def __init__(self, exc: Exception) -> None:
        name = getattr(exc, "name", None)
        where = f" (module {name!r})" if isinstance(exc, ImportError) and name else ""
        exc.add_note(
            f"oxjob: the task's function could not be loaded in the worker process{where}; "
            "it must be importable there (the worker's sys.path is the caller's)."
        )
        self.exc = exc

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise self.exc.with_traceback(None)


class _Spares:
    """Result segments the caller is done with (SPARES frames, sent with batches): a
    result buffer of the same size is copied into one of them, which costs less than
    a new segment. At most _MAX_SPARES are kept, and none once the worker is idle.

    The channel keeps each spare mapped, writable, after it leaves as a result: when
    the caller hands it back, refilling it is a memcpy into pages already mapped. A
    spare let go of here is let go of there too."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.by_size: dict[int, list] = {}

    def keep(self, segments: list) -> None:
        for segment in segments:
            segment.map_for_refills()
            self.by_size.setdefault(segment.nbytes, []).append(segment)
        dropped = []
        while sum(map(len, self.by_size.values())) > _MAX_SPARES:  # drop the oldest
            size = next(size for size, kept in self.by_size.items() if kept)
            dropped.append(self.by_size[size].pop(0))
        if dropped:
            self.channel.forget_segments(dropped)

    def clear(self) -> None:
        dropped = [segment for kept in self.by_size.values() for segment in kept]
        self.by_size.clear()
        if dropped:
            self.channel.forget_segments(dropped)

    def fill(self, raw: memoryview) -> Any:
        from .._engine import Segment

        kept = self.by_size.get(raw.nbytes)
        if not kept:
            return Segment.from_buffer(raw)
        segment = kept.pop()
        segment.refill(raw)
        return segment


_MAX_SPARES = 4
_SPARE_SECONDS = 1.0  # spares are freed after this long without a frame


def main() -> int:
    from .. import _engine
    from .._worker_env import read_worker_environment
    from .outcomes import RESULT as RESULT_FAILED
    from .protocol import (
        BATCH,
        END_CALL,
        FUNCTION,
        INIT,
        READY,
        RELEASED,
        RESULT,
        SHUTDOWN,
        SPARES,
        dumps_auto,
        holds_file_maps,
        keep_file_maps,
        loads,
    )

    settings = read_worker_environment()
    _engine.watch_parent(settings.parent_pid)
    from .mainscript import adopt_caller_state

    adopt_caller_state()
    for entry in settings.sys_path:
        if entry not in sys.path:
            sys.path.append(entry)
    channel = _engine.WorkerChannel(3, settings.mmap_mode)
    idle_timeout = settings.idle_timeout
    max_nbytes = settings.max_nbytes
    functions: dict = {}
    spares = _Spares(channel)
    keep_file_maps(True)  # memmap arguments' files: mapped once per call, not per batch
    channel.send(READY, os.getpid(), b"", [])
    while True:
        # Spare result segments, and the shared segments of tasks (kept mapped between
        # batches: mapping them anew costs their page faults again).
        holding = any(spares.by_size.values()) or channel.keeps_segments() or holds_file_maps()
        try:
            message = channel.recv(min(idle_timeout, _SPARE_SECONDS) if holding else idle_timeout)
        except (EOFError, ConnectionResetError):
            # The caller closed its end (a reset: it closed with our READY unread, as a
            # caller does when it exits with workers it kept for its next pool).
            return 0
        except MemoryError as exc:
            # A frame whose segments could not be mapped: the channel dropped it and
            # stays usable. A batch fails with the MemoryError; the worker lives on.
            if getattr(exc, "kind", None) == BATCH:
                # The channel sets ``kind`` and ``tag`` on it (see oxjob-py's workers.rs).
                _send_error(channel, exc.tag, exc, -1)  # type: ignore[attr-defined]
                continue
            raise
        if message is None:
            if holding:
                spares.clear()  # idle: give their memory back
                channel.let_go_of_segments()
                keep_file_maps(True)
                continue
            return 0  # idle for too long: the caller starts a new worker when needed
        kind, tag, body, buffers, shared = message
        del message
        if kind == BATCH:
            inputs = [weakref.ref(buffer) for buffer in buffers]
            try:
                results, duration = _run_batch(functions, body, buffers, shared)
                del body, buffers, shared
                outcome = (duration, results)
                try:
                    out, segments, n_shared = dumps_auto(outcome, max_nbytes, spares.fill)
                except BaseException as exc:  # noqa: BLE001 - the result cannot travel
                    _send_error(channel, tag, exc, (RESULT_FAILED, _reprs(results)))
                    continue
                del results, outcome
                if inputs and all(ref() is None for ref in inputs):
                    channel.send(RELEASED, tag, b"", [])  # the caller may refill them
                channel.send(RESULT, tag, out, segments, n_shared)
                del out, segments  # the caller has them now: hold no memory of theirs
            except _BatchFailed as failed:
                _send_error(channel, tag, failed.exc, failed.index)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
                _send_error(channel, tag, exc, -1)
        elif kind == SPARES:
            spares.keep(shared)
        elif kind == FUNCTION and not body:
            functions.pop(tag, None)  # no pending task needs it any more
        elif kind == FUNCTION:
            try:
                functions[tag] = loads(body, buffers, shared)
            except Exception as exc:  # noqa: BLE001 - reported by the tasks that call it
                functions[tag] = _Unloadable(exc)
        elif kind == END_CALL:
            functions.clear()
            spares.clear()
            keep_file_maps(True)
        elif kind == INIT:
            initializer, initargs = loads(body, buffers, shared)
            if initializer is not None:
                initializer(*initargs)
        elif kind == SHUTDOWN:
            return 0


if __name__ == "__main__":
    sys.exit(main())
