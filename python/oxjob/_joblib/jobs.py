"""The pieces of the joblib backend that run around each batch: the batch caller the
engine calls in the workers, the future-like job joblib holds, and the thread that
runs joblib's completion callbacks. No joblib import here: the workers unpickle the
batch caller before anything else of a call.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable


class _BatchCaller:
    """The function the engine runs on each batch (joblib's ``BatchedCalls``).

    The batch travels as this function's argument, not as the function itself:
    arguments go through the engine's shared-memory transport and are dropped after
    the task, while functions are kept for the call. The batch caller carries what every
    batch of a call needs in its worker, set up before the worker's first batch: the
    caller's ``multiprocessing`` authkey (so that ``Manager`` proxies and queues
    passed to tasks connect, as from loky's workers), joblib's ``initializer`` and
    ``initargs``, and the ``inner_max_num_threads`` limit.
    """

    def __init__(self, initializer: Callable | None, initargs: tuple, threads: int | None):
        import multiprocessing

        self.authkey = bytes(multiprocessing.current_process().authkey)
        self.setup = None
        if initializer is not None:
            import cloudpickle

            # Unpickled by the first batch, not with the batch caller: a failure to
            # unpickle initargs is then that batch's error, not a dead worker.
            self.setup = cloudpickle.dumps((initializer, tuple(initargs)))
        self.threads = threads
        self.ready = False

    def __getstate__(self) -> tuple:
        return self.authkey, self.setup, self.threads

    def __setstate__(self, state: tuple) -> None:
        import multiprocessing

        self.authkey, self.setup, self.threads = state
        # Now, before the batches are unpickled: they may hold Manager proxies.
        multiprocessing.current_process().authkey = self.authkey
        self.ready = False  # each worker's copy sets itself up once

    def __call__(self, batch: Callable[[], list]) -> list:
        if not self.ready:
            if self.setup is not None:
                import pickle

                initializer, initargs = pickle.loads(self.setup)
                initializer(*initargs)
            self.ready = True
        if self.threads is None:
            return batch()
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads):
            return batch()


class _Callbacks:
    """The thread that runs joblib's completion callbacks.

    The engine reports outcomes on its dispatcher thread, possibly holding its own
    lock, while joblib's callback takes the ``Parallel`` call's lock and submits the
    next batch. The main thread does the opposite (takes the call's lock, then
    submits). Running the callbacks here, as loky runs them on its own thread, keeps
    the two lock orders from meeting.
    """

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="oxjob-joblib", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            callback, job = self.inbox.get()
            try:
                callback(job)
            except Exception:  # noqa: BLE001 - a bug must not stop later calls' callbacks
                import sys

                sys.excepthook(*sys.exc_info())
            del callback, job


_callbacks: list[_Callbacks] = []
_callbacks_lock = threading.Lock()


def _callback_thread() -> _Callbacks:
    with _callbacks_lock:
        if not _callbacks:
            _callbacks.append(_Callbacks())
        return _callbacks[0]


def _forget_callback_thread() -> None:
    # A child of os.fork() has no copy of the thread: it starts its own when needed.
    global _callbacks_lock
    _callbacks_lock = threading.Lock()
    _callbacks.clear()


os.register_at_fork(after_in_child=_forget_callback_thread)


class _Job:
    """The future-like object ``submit`` returns: one batch's outcome."""

    __slots__ = ("_callback", "_event", "_ok", "_value")

    def __init__(self, callback: Callable | None) -> None:
        self._callback = callback
        self._event = threading.Event()
        self._ok = False
        self._value: Any = None

    def _done(self, ok: bool, value: Any) -> None:
        self._ok, self._value = ok, value
        self._event.set()
        if self._callback is not None:
            callback, self._callback = self._callback, None
            _callback_thread().inbox.put((callback, self))

    def result(self, timeout: float | None = None) -> list:
        """The batch's list of results; raises the batch's exception."""
        if not self._event.wait(timeout):
            from ..exceptions import TimeoutError

            raise TimeoutError
        if not self._ok:
            raise self._value
        return self._value[0]

    get = result  # as multiprocessing's AsyncResult, for joblib's retrieve_result
