"""How a task's failure reaches its submitter: the exception types and messages of
each front end, in one place.

A call has a *style*: ``"oxjob"`` (``Parallel``, the joblib backend: joblib's types),
``"pool"`` (``multiprocessing.Pool``'s) or ``"executor"``
(``concurrent.futures.ProcessPoolExecutor``'s). The engine hands every failure it
meets to the functions here, which make the exception the front end's standard
library counterpart would raise.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

from ..exceptions import BrokenProcessPool, RemoteTraceback

OXJOB, POOL, EXECUTOR = "oxjob", "pool", "executor"

#: The ``where`` of an ERROR frame (see worker.py) when the worker could not unpickle
#: the batch; ``("result", reprs)`` when it could not pickle its results; otherwise the
#: index of the failing call in the batch (-1: unknown).
UNPICKLING = "unpickling"
RESULT = "result"


def _traceback_class(style: str) -> type:
    if style == POOL:
        # typeshed omits it; CPython's multiprocessing.pool defines it.
        from multiprocessing.pool import (  # type: ignore[attr-defined]
            RemoteTraceback as PoolRemoteTraceback,
        )

        return PoolRemoteTraceback
    if style == EXECUTOR:
        from concurrent.futures.process import _RemoteTraceback

        return _RemoteTraceback
    return RemoteTraceback


def remote_traceback(style: str, tb: str) -> Exception:
    """The ``__cause__`` holding a worker's traceback text, of the style's class."""
    return _traceback_class(style)(f'\n"""\n{tb}"""')


def remote_error(style: str, exc: BaseException, tb: str, where: Any, single: bool) -> Any:
    """The exception for an ERROR frame: ``exc`` raised in the worker with traceback
    ``tb`` (text). ``single``: the batch was one ``apply``, not a map chunk."""
    if where == UNPICKLING:
        # A task whose arguments cannot be rebuilt in the worker: the stdlib's executor
        # loses the worker to it (BrokenProcessPool); here the worker lives on.
        broken = BrokenProcessPool(
            "A task has failed to un-serialize. Please ensure that the arguments of "
            "the function are all picklable."
        )
        broken.__cause__ = remote_traceback(style, tb)
        return broken
    if isinstance(where, tuple) and where[0] == RESULT and style == POOL:
        # typeshed omits it; CPython's multiprocessing.pool defines it.
        from multiprocessing.pool import MaybeEncodingError  # type: ignore[attr-defined]

        reprs = where[1]
        value = reprs[0] if single and len(reprs) == 1 else "[" + ", ".join(reprs) + "]"
        error = MaybeEncodingError(exc, "")
        error.value = value
        error.args = (error.exc, value)
        return error
    exc.__cause__ = remote_traceback(style, tb)
    return exc


def unpickling_failed(style: str, exc: BaseException) -> BrokenProcessPool:
    """A result the caller could not unpickle (even a SystemExit raised by it): the
    task fails, the engine and the other tasks go on."""
    broken = BrokenProcessPool(
        "A result has failed to un-serialize. Please ensure that the objects returned "
        "by the function are always picklable."
    )
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    broken.__cause__ = remote_traceback(style, text)
    return broken


def pickling_error(style: str, calls: list, exc: BaseException) -> BaseException:
    """A task that could not be pickled to be sent. ``calls``: its ``(func, args,
    kwargs)``. The stdlib's pools raise the argument's own exception; joblib's style
    names the call it came from."""
    if style != OXJOB:
        if style == EXECUTOR:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            exc.__cause__ = remote_traceback(style, text)
        return exc
    from .protocol import dumps

    for index, (func, args, kwargs) in enumerate(calls):
        try:
            dumps((args, kwargs), None, by_value=True)
        except Exception as task_exc:  # noqa: BLE001
            name = getattr(func, "__qualname__", repr(func))
            error = pickle.PicklingError(
                f"Could not pickle the task to send it to the workers: argument of task "
                f"{index} of its batch ({name}) cannot be pickled: {task_exc!r}"
            )
            error.__cause__ = task_exc
            return error
    return pickle.PicklingError(f"Could not pickle the batch of tasks: {exc!r}")
