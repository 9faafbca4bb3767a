"""What a worker is given when it starts (``initializer``, ``initargs``), pickled as
``multiprocessing`` pickles a process started with the ``spawn`` method.

So a ``multiprocessing`` ``Queue``, ``Lock``, ``Event``, ``Value``... in ``initargs``,
or held by an ``initializer`` closure, reaches every worker, replacements included, as
with ``spawn``: their ``__getstate__`` allow it only while a process is being started
(``multiprocessing.context.assert_spawning``), semaphores travel by name, and a pipe's
or an arena's descriptor through ``reduction.DupFd``. The stdlib's spawn passes those
descriptors to the new process at its start; our workers are already started by the
Rust supervisor when their ``INIT`` frame arrives, so each descriptor goes through
``multiprocessing.resource_sharer`` (the stdlib's way to hand a descriptor to a running
process: the worker connects back with the caller's ``authkey``, which workers carry).
Objects made by a ``fork`` context cannot be shared so, with spawn as here: the stdlib's
own ``RuntimeError`` says so.
"""

from __future__ import annotations

import collections
from typing import Any

from .protocol import _cloud_pickler, _dump

_pickler: list = []


class _StartingWorker:
    """Stands for the ``Popen`` of a process being started (the spawning popen)."""

    @staticmethod
    def duplicate_for_child(fd: int) -> int:
        return fd

    @staticmethod
    def DupFd(fd: int) -> Any:
        from multiprocessing import resource_sharer

        return resource_sharer.DupFd(fd)  # fetched once, by the worker that unpickles it


def _pickler_class() -> type:
    if not _pickler:
        from multiprocessing.reduction import ForkingPickler

        base = _cloud_pickler()

        class StartPickler(base):  # type: ignore[misc, valid-type]
            # multiprocessing's reducers (connections, arenas, sockets) are not in copyreg
            # (typeshed omits ForkingPickler's private registry, and asks every map of a
            # ChainMap to be mutable: it only ever writes to its first one.)
            dispatch_table = collections.ChainMap(
                ForkingPickler._extra_reducers,  # type: ignore[attr-defined]
                base.dispatch_table,  # type: ignore[arg-type]
            )

        _pickler.append(StartPickler)
    return _pickler[0]


def dumps_for_start(initializer: Any, initargs: tuple) -> tuple[Any, list, int]:
    """Pickle ``(initializer, initargs)`` for one worker's start (by value, as
    :func:`oxjob._workers.protocol.dumps`). A descriptor in it can be fetched once: pickle
    again for every worker."""
    from multiprocessing import context

    # typeshed names the real Popen classes; pickling only calls the two methods it has.
    context.set_spawning_popen(_StartingWorker())  # type: ignore[arg-type]
    try:
        return _dump((initializer, tuple(initargs)), None, _pickler_class(), None)
    finally:
        context.set_spawning_popen(None)


class LoggedInitializer:
    """An executor's ``initializer`` as the standard library's executor runs it in a
    worker: a failure is logged on the ``concurrent.futures`` logger ("Exception in
    initializer:", with its traceback), where the program's logging setup (or a
    handler the initializer installed) sees it, and the worker exits, which breaks the
    executor. ``Pool`` lets the exception end the worker instead, as the stdlib's does."""

    __slots__ = ("initializer",)

    def __init__(self, initializer: Any) -> None:
        self.initializer = initializer

    def __call__(self, *initargs: Any) -> None:
        try:
            self.initializer(*initargs)
        except BaseException:
            import logging

            logging.getLogger("concurrent.futures").critical(
                "Exception in initializer:", exc_info=True
            )
            raise SystemExit(1) from None
