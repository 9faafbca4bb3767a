"""The functions of an engine's tasks in flight, pickled once and known by a small id,
so that a batch names its function instead of carrying it.

A function is known by its pickled bytes, not by its identity: ``model.predict`` is a
new bound-method object at every lookup, and 10,000 ``submit(model.predict, i)`` must
not keep 10,000 copies of the model. An entry lives while a task that needs it has not
finished; then the caller and the workers forget it (the newest few small ones are kept
a little longer, so a stream of tiny tasks does not send its function again each time).
"""

from __future__ import annotations

import collections
import itertools
import types
from typing import Any

from .protocol import dumps_auto
from .template import note_sent

#: Functions no task needs any more are kept while their pickles total at most this
#: (the newest first): a module-level function or a small closure, not a model.
_KEEP_BYTES = 64 << 10

# Objects whose pickle cannot change while they live are also found by identity (no
# pickling at each task): functions and builtins. A bound method is new at each lookup.
_BY_IDENTITY = (types.FunctionType, types.BuiltinFunctionType, type)


class FunctionTable:
    """Function ids for tasks: :meth:`acquire` when a task is made ready, :meth:`release`
    when it finishes; the ids released for good are returned to be forgotten."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._by_bytes: dict[bytes, int] = {}
        self._payload: dict[int, bytes] = {}
        self._users: dict[int, int] = {}
        # id(func) -> (func, function id): holding func keeps its id() from being reused.
        self._by_object: dict[int, tuple[Any, int]] = {}
        self._objects: dict[int, list[int]] = {}  # function id -> id()s naming it
        self._idle: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._idle_bytes = 0

    def __len__(self) -> int:
        return len(self._payload)

    def acquire(self, func: Any) -> tuple[int, bytes]:
        """``(id, pickled function)`` for a task about to be sent; pickles it (by
        reference when it can be imported in a worker, by value otherwise) and keeps
        the known entry with the same bytes, if any."""
        known = self._by_object.get(id(func))
        if known is not None and known[0] is func:
            func_id = known[1]
        else:
            body = bytes(dumps_auto(func, None)[0])
            same = self._by_bytes.get(body)
            if same is None:
                note_sent(func)  # its module: for the template (see template.py)
                same = next(self._ids)
                self._by_bytes[body] = same
                self._payload[same] = body
                self._users[same] = 0
                self._objects[same] = []
            func_id = same
            if isinstance(func, _BY_IDENTITY):
                self._by_object[id(func)] = (func, func_id)
                self._objects[func_id].append(id(func))
        if func_id in self._idle:
            del self._idle[func_id]
            self._idle_bytes -= len(self._payload[func_id])
        self._users[func_id] += 1
        return func_id, self._payload[func_id]

    def release(self, func_ids: tuple) -> list[int]:
        """Tasks using ``func_ids`` finished; returns the ids now forgotten."""
        forgotten: list[int] = []
        for func_id in func_ids:
            users = self._users.get(func_id)
            if users is None:
                continue
            self._users[func_id] = users - 1
            if users == 1:
                self._idle[func_id] = None
                self._idle_bytes += len(self._payload[func_id])
        while self._idle and self._idle_bytes > _KEEP_BYTES:
            func_id, _ = self._idle.popitem(last=False)
            self._drop(func_id)
            forgotten.append(func_id)
        return forgotten

    def _drop(self, func_id: int) -> None:
        body = self._payload.pop(func_id)
        self._idle_bytes -= len(body)
        del self._by_bytes[body], self._users[func_id]
        for object_id in self._objects.pop(func_id):
            known = self._by_object.get(object_id)
            if known is not None and known[1] == func_id:
                del self._by_object[object_id]
