"""The worker process: ``python -m oxjob._worker``, started by the engine.

It reads frames from descriptor 3, runs batches of calls, and sends results back.
It exits when told to, when its socket closes, when it has been idle for
``OXJOB_IDLE_TIMEOUT`` seconds, or (from a Rust watchdog thread) when its parent dies.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
import traceback
import weakref
from typing import Any


def _send_error(channel, tag: int, exc: BaseException, index: int) -> None:
    from ._protocol import ERROR, dumps

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        body, segments, n_shared = dumps((exc, tb, index), None)
    except Exception:
        fallback = RuntimeError(f"{type(exc).__name__}: {exc} (the exception could not be pickled)")
        body, segments, n_shared = dumps((fallback, tb, index), None)
    channel.send(ERROR, tag, body, segments, n_shared)


class _BatchFailed(Exception):
    def __init__(self, exc: BaseException, index: int) -> None:
        self.exc, self.index = exc, index


_allocator_threshold: list = []  # set once numpy allocates large arrays in shared memory


def _share_large_arrays(threshold: int) -> None:
    """Once numpy is loaded, have it allocate arrays of ``threshold`` bytes or more in
    shared memory: such a result then travels to the caller with no copy at all."""
    if _allocator_threshold or "numpy" not in sys.modules:
        return
    from . import _engine

    try:
        _engine.install_shared_allocator(threshold)
    except Exception:  # noqa: BLE001 - an old numpy: results are copied instead
        pass
    _allocator_threshold.append(threshold)


def _run_batch(
    functions: dict, body, buffers: list, shared: list, threshold: int
) -> tuple[list, float]:
    """Unpickle and run one batch. Its arguments die with this frame, which lets the
    caller tell whether anything still holds the batch's input segments."""
    from ._protocol import loads

    index = -1
    try:
        calls = loads(body, buffers, shared)
        _share_large_arrays(threshold)
        start = time.perf_counter()
        if isinstance(calls, tuple):  # one function, positional arguments only
            func_id, arguments, *single = calls
            if single:  # Pool.map: one argument per call, not a tuple of them
                results = list(map(functions[func_id], arguments))
            else:
                results = list(itertools.starmap(functions[func_id], arguments))
        else:
            results = []
            for index, (func_id, args, kwargs) in enumerate(calls):  # noqa: B007
                results.append(functions[func_id](*args, **kwargs))
        _share_large_arrays(threshold)  # the calls may have imported numpy
        return results, time.perf_counter() - start
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
        raise _BatchFailed(exc, index) from None


def _dumps_results(outcome: tuple, max_nbytes: int) -> tuple[Any, list, int, list]:
    """Pickle a batch's outcome. Buffers that numpy allocated in shared memory are sent
    as they are; the last item lists their addresses."""
    from . import _engine
    from ._protocol import dumps

    sent_in_place: list = []

    def segment_for(raw: memoryview) -> Any:
        segment = _engine.shared_segment_of(raw)
        if segment is None:
            return _engine.Segment.from_buffer(raw)
        sent_in_place.append(_engine.buffer_address(raw)[0])
        return segment

    try:
        return (*dumps(outcome, max_nbytes, segment_for=segment_for), sent_in_place)
    except Exception:  # noqa: BLE001 - retried by value (lambdas, __main__ classes)
        sent_in_place.clear()
        return (*dumps(outcome, max_nbytes, by_value=True, segment_for=segment_for), sent_in_place)


def main() -> int:
    from . import _engine
    from ._protocol import (
        BATCH,
        END_CALL,
        FUNCTION,
        INIT,
        READY,
        RELEASED,
        RESULT,
        SHUTDOWN,
        loads,
    )

    _engine.watch_parent(int(os.environ["OXJOB_PARENT_PID"]))
    for entry in json.loads(os.environ.get("OXJOB_SYS_PATH", "[]")):
        if entry not in sys.path:
            sys.path.append(entry)
    channel = _engine.WorkerChannel(3, os.environ.get("OXJOB_MMAP_MODE", "c"))
    idle_timeout = float(os.environ.get("OXJOB_IDLE_TIMEOUT", "300"))
    max_nbytes = int(os.environ.get("OXJOB_MAX_NBYTES", str(1 << 20)))
    functions: dict = {}
    channel.send(READY, os.getpid(), b"", [])
    while True:
        try:
            message = channel.recv(idle_timeout)
        except EOFError:
            return 0
        if message is None:
            return 0  # idle for too long: the caller starts a new worker when needed
        kind, tag, body, buffers, shared = message
        del message
        if kind == BATCH:
            inputs = [weakref.ref(buffer) for buffer in buffers]
            try:
                results, duration = _run_batch(functions, body, buffers, shared, max_nbytes)
                del body, buffers, shared
                out, segments, n_shared, sent_in_place = _dumps_results(
                    (duration, results), max_nbytes
                )
                del results
                # What the task still holds of its results gets private pages now,
                # before the caller can see (and write to) the shared ones.
                _engine.detach_allocations(sent_in_place)
                if inputs and all(ref() is None for ref in inputs):
                    channel.send(RELEASED, tag, b"", [])  # the caller may refill them
                channel.send(RESULT, tag, out, segments, n_shared)
            except _BatchFailed as failed:
                _send_error(channel, tag, failed.exc, failed.index)
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
                _send_error(channel, tag, exc, -1)
        elif kind == FUNCTION:
            functions[tag] = loads(body, buffers, shared)
        elif kind == END_CALL:
            functions.clear()
        elif kind == INIT:
            initializer, initargs = loads(body, buffers, shared)
            if initializer is not None:
                initializer(*initargs)
        elif kind == SHUTDOWN:
            return 0


if __name__ == "__main__":
    sys.exit(main())
