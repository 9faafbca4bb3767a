"""The opcodes of the safe loader's interpreter (:mod:`oxjob._io.safe_unpickle`).

Each handler does what Python's pickle does for that opcode, except that every read
is counted against the load's budget and everything that runs code (``REDUCE``,
``NEWOBJ``, ``BUILD``, container filling, globals) goes through
:class:`~oxjob._io.safe_rules.LoadState`. Opcodes that name objects outside the file
(``PERSID``, ``EXT*``) or call classes with the file's arguments (``INST``, ``OBJ``)
are refused.
"""

from __future__ import annotations

import pickle
from struct import unpack
from typing import TYPE_CHECKING, Any

from ..exceptions import CorruptFileError
from .safe import refuse

if TYPE_CHECKING:
    from .safe_unpickle import SafeUnpickler

_STOP = object()
_DISPATCH: dict[int, Any] = {}


def _op(code: bytes) -> Any:
    def register(func: Any) -> Any:
        _DISPATCH[code[0]] = func
        return func

    return register


@_op(pickle.PROTO)
def _proto(u: SafeUnpickler) -> None:
    u.proto = u.read(1)[0]
    if u.proto > pickle.HIGHEST_PROTOCOL:
        raise CorruptFileError(f"{u.what}: unsupported pickle protocol: {u.proto}")


@_op(pickle.FRAME)
def _frame(u: SafeUnpickler) -> None:
    u.read(8)  # frames only group opcodes: read straight through them


@_op(pickle.STOP)
def _stop(u: SafeUnpickler) -> Any:
    if len(u.stack) != 1 or u.metastack:
        raise CorruptFileError(f"{u.what}: the pickle stream ends with a wrong stack")
    return _STOP


@_op(pickle.MARK)
def _mark(u: SafeUnpickler) -> None:
    u.metastack.append(u.stack)
    u.stack = []


@_op(pickle.POP)
def _pop(u: SafeUnpickler) -> None:
    if u.stack:
        u.stack.pop()
    else:
        u.pop_mark()


@_op(pickle.POP_MARK)
def _pop_mark(u: SafeUnpickler) -> None:
    u.pop_mark()


@_op(pickle.DUP)
def _dup(u: SafeUnpickler) -> None:
    u.stack.append(u.stack[-1])


# -- containers ------------------------------------------------------------------------------
def _tuple(u: SafeUnpickler, items: tuple) -> None:
    u.stack.append(u.state.new_tuple(items))


@_op(pickle.EMPTY_TUPLE)
def _empty_tuple(u: SafeUnpickler) -> None:
    u.stack.append(())


@_op(pickle.TUPLE)
def _tuple_n(u: SafeUnpickler) -> None:
    _tuple(u, tuple(u.pop_mark()))


@_op(pickle.TUPLE1)
def _tuple1(u: SafeUnpickler) -> None:
    _tuple(u, (u.stack.pop(),))


@_op(pickle.TUPLE2)
def _tuple2(u: SafeUnpickler) -> None:
    b, a = u.stack.pop(), u.stack.pop()
    _tuple(u, (a, b))


@_op(pickle.TUPLE3)
def _tuple3(u: SafeUnpickler) -> None:
    c, b, a = u.stack.pop(), u.stack.pop(), u.stack.pop()
    _tuple(u, (a, b, c))


@_op(pickle.EMPTY_LIST)
def _empty_list(u: SafeUnpickler) -> None:
    u.stack.append([])


@_op(pickle.LIST)
def _list(u: SafeUnpickler) -> None:
    items = u.pop_mark()
    u.stack.append(items)


@_op(pickle.EMPTY_DICT)
def _empty_dict(u: SafeUnpickler) -> None:
    u.stack.append({})


@_op(pickle.DICT)
def _dict(u: SafeUnpickler) -> None:
    items = u.pop_mark()
    if len(items) % 2:
        raise CorruptFileError(f"{u.what}: odd number of items for DICT")
    target: dict = {}
    u.state.set_items(target, items)
    u.stack.append(target)


@_op(pickle.EMPTY_SET)
def _empty_set(u: SafeUnpickler) -> None:
    u.stack.append(set())


@_op(pickle.FROZENSET)
def _frozenset(u: SafeUnpickler) -> None:
    items = u.pop_mark()
    u.state.charge_keys(items)
    u.stack.append(frozenset(items))


@_op(pickle.ADDITEMS)
def _additems(u: SafeUnpickler) -> None:
    items = u.pop_mark()
    u.state.add_items(u.stack[-1], items)


@_op(pickle.APPEND)
def _append(u: SafeUnpickler) -> None:
    value = u.stack.pop()
    u.state.append(u.stack[-1], [value])


@_op(pickle.APPENDS)
def _appends(u: SafeUnpickler) -> None:
    items = u.pop_mark()
    u.state.append(u.stack[-1], items)


@_op(pickle.SETITEM)
def _setitem(u: SafeUnpickler) -> None:
    value, key = u.stack.pop(), u.stack.pop()
    u.state.set_items(u.stack[-1], [key, value])


@_op(pickle.SETITEMS)
def _setitems(u: SafeUnpickler) -> None:
    items = u.pop_mark()
    if len(items) % 2:
        raise CorruptFileError(f"{u.what}: odd number of items for SETITEMS")
    u.state.set_items(u.stack[-1], items)


# -- memo --------------------------------------------------------------------------------------
def _get(u: SafeUnpickler, index: int) -> None:
    try:
        u.stack.append(u.memo[index])
    except KeyError:
        raise CorruptFileError(f"{u.what}: memo key {index} is not defined") from None


@_op(pickle.GET)
def _get_text(u: SafeUnpickler) -> None:
    _get(u, int(u.readline()))


@_op(pickle.BINGET)
def _binget(u: SafeUnpickler) -> None:
    _get(u, u.read(1)[0])


@_op(pickle.LONG_BINGET)
def _long_binget(u: SafeUnpickler) -> None:
    _get(u, unpack("<I", u.read(4))[0])


def _put(u: SafeUnpickler, index: int) -> None:
    if index < 0:
        raise CorruptFileError(f"{u.what}: negative PUT argument")
    u.memo[index] = u.stack[-1]
    u.state.memoized(index, u.stack[-1])


@_op(pickle.PUT)
def _put_text(u: SafeUnpickler) -> None:
    _put(u, int(u.readline()))


@_op(pickle.BINPUT)
def _binput(u: SafeUnpickler) -> None:
    _put(u, u.read(1)[0])


@_op(pickle.LONG_BINPUT)
def _long_binput(u: SafeUnpickler) -> None:
    _put(u, unpack("<I", u.read(4))[0])


@_op(pickle.MEMOIZE)
def _memoize(u: SafeUnpickler) -> None:
    _put(u, len(u.memo))


# -- globals and what may be done with them ----------------------------------------------------
@_op(pickle.GLOBAL)
def _global(u: SafeUnpickler) -> None:
    module = u.readline().decode("utf-8")
    name = u.readline().decode("utf-8")
    u.stack.append(u.global_(module, name))


@_op(pickle.STACK_GLOBAL)
def _stack_global(u: SafeUnpickler) -> None:
    name, module = u.stack.pop(), u.stack.pop()
    if type(name) is not str or type(module) is not str:
        raise CorruptFileError(f"{u.what}: STACK_GLOBAL requires str")
    u.stack.append(u.global_(module, name))


@_op(pickle.REDUCE)
def _reduce(u: SafeUnpickler) -> None:
    args = u.stack.pop()
    func = u.stack[-1]
    if type(args) is not tuple:
        raise CorruptFileError(f"{u.what}: REDUCE arguments must be a tuple")
    u.stack[-1] = u.state.call(func, args)


@_op(pickle.NEWOBJ)
def _newobj(u: SafeUnpickler) -> None:
    args = u.stack.pop()
    cls = u.stack[-1]
    if type(args) is not tuple:
        raise CorruptFileError(f"{u.what}: NEWOBJ arguments must be a tuple")
    u.stack[-1] = u.state.new(cls, args, {})


@_op(pickle.NEWOBJ_EX)
def _newobj_ex(u: SafeUnpickler) -> None:
    kwargs, args = u.stack.pop(), u.stack.pop()
    cls = u.stack[-1]
    if type(args) is not tuple or type(kwargs) is not dict:
        raise CorruptFileError(f"{u.what}: NEWOBJ_EX arguments must be a tuple and a dict")
    u.stack[-1] = u.state.new(cls, args, kwargs)


@_op(pickle.BUILD)
def _build(u: SafeUnpickler) -> None:
    state = u.stack.pop()
    u.stack[-1] = u.state.build(u.stack[-1], state)


def _refused_op(name: str, why: str) -> Any:
    def refused(u: SafeUnpickler) -> None:
        raise refuse(f"{u.what}: the {name} opcode is refused in safe mode: {why}")

    return refused


for _code, _name, _why in [
    (pickle.PERSID, "PERSID", "persistent ids name objects outside the file"),
    (pickle.BINPERSID, "BINPERSID", "persistent ids name objects outside the file"),
    (pickle.EXT1, "EXT1", "extension codes resolve through a process-wide registry"),
    (pickle.EXT2, "EXT2", "extension codes resolve through a process-wide registry"),
    (pickle.EXT4, "EXT4", "extension codes resolve through a process-wide registry"),
    (pickle.INST, "INST", "it calls a class with the file's arguments"),
    (pickle.OBJ, "OBJ", "it calls a class with the file's arguments"),
]:
    _DISPATCH[_code[0]] = _refused_op(_name, _why)
