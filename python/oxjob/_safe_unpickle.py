"""The pickle opcode interpreter of safe loads (``load(trusted=...)``) and ``inspect``.

Python's ``Unpickler`` calls whatever a stream names once ``find_class`` lets a name
through: ``REDUCE`` calls it with the file's arguments, ``NEWOBJ`` runs its
``__new__``, ``BUILD`` runs ``__setstate__`` or ``setattr`` on whatever is on the
stack, a class object included. Hooks cannot tell these uses apart, so safe loads
interpret the opcodes here instead (as PyTorch's ``weights_only`` loader does):
globals resolve through :class:`~oxjob._safe.Policy`, and each of ``REDUCE``,
``NEWOBJ`` and ``BUILD`` asks ``_safe_rules`` what it may do with that object.
Every opcode costs O(1) plus the bytes it reads, and every byte read is charged to
a budget, so memory and time stay proportional to the file.
"""

from __future__ import annotations

import codecs
import pickle
from struct import unpack
from typing import Any

from . import _safe_rules as rules
from ._safe import Policy, refuse
from .exceptions import CorruptFileError, LoadLimitError, UnsafeLoadError

_CHUNK = 1 << 20
# Longest decimal text an INT, LONG or FLOAT opcode may hold: int() of text is
# quadratic (Python 3.11 caps it at 4300 digits by default, older ones do not).
MAX_DIGITS = 4300
# Nesting of tuples: hashing a tuple recurses in C without a depth check.
MAX_TUPLE_DEPTH = 200


class SafeUnpickler:
    """Reads one pickle stream from ``file`` under ``policy``, running none of its code.

    ``record=True`` is ``inspect``'s mode: a global that would need ``trusted``
    becomes an inert :class:`rules.Opaque` and is only recorded.
    """

    def __init__(
        self,
        file: Any,
        policy: Policy,
        *,
        what: str,
        max_bytes: int,
        buffers: Any = None,
        record: bool = False,
        context: Any = None,
    ) -> None:
        self.file = file
        self._read_raw = file.read
        self._readline_raw = file.readline
        self.policy = policy
        self.what = what
        self.max_bytes = max_bytes
        self.used = 0
        self.work = 0
        self.given_buffers = list(buffers) if buffers is not None else []
        self.buffers = iter(self.given_buffers) if buffers is not None else None
        self.record = record
        self.context = context  # joblib's reading options (dirname, native)
        self.seen: dict[str, bool] = {}
        self.memo: dict[int, Any] = {}
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.state = rules.LoadState(self)
        self.proto = 0
        self.offset = 0
        self.value: Any = None

    # -- budgets -------------------------------------------------------------------
    def charge(self, nbytes: int, what: str = "data") -> None:
        """Count ``nbytes`` of memory against ``max_bytes``, before allocating it."""
        self.used += nbytes
        if self.used > self.max_bytes:
            raise LoadLimitError(
                f"{self.what}: the file asks for more than max_bytes={self.max_bytes} bytes "
                f"of {what} (at least {self.used}); pass a larger max_bytes= to load() if "
                "you expect a file this large"
            )

    def charge_work(self, units: int) -> None:
        """Count work that is not reading (hashing keys): bounded by the stream's size."""
        self.work += units
        if self.work > self.max_bytes + 64 * self.offset + (1 << 20):
            raise LoadLimitError(
                f"{self.what}: the stream asks for more work (hashing, comparing) than its "
                f"size allows ({self.work} units for {self.offset} bytes); refusing it"
            )

    def read(self, n: int, what: str = "data") -> bytes:
        if n < 0:
            raise CorruptFileError(f"{self.what}: negative length in the pickle stream")
        self.charge(n, what)
        if n <= _CHUNK:
            data = self._read_raw(n)
        else:  # a hostile length costs only what the file holds
            parts, left = [], n
            while left:
                part = self._read_raw(min(left, _CHUNK))
                if not part:
                    break
                parts.append(part)
                left -= len(part)
            data = b"".join(parts)
        if len(data) != n:
            raise CorruptFileError(f"{self.what}: the pickle stream is truncated")
        self.offset += n
        return data

    def readline(self, limit: int = MAX_DIGITS) -> bytes:
        """One text argument; numbers and names may not be longer than ``limit``."""
        parts, size = [], 0
        while True:
            part = self._readline_raw(min(limit + 2 - size, _CHUNK))
            size += len(part)
            self.charge(len(part), "text")
            parts.append(part)
            if not part or part.endswith(b"\n") or size > limit + 1:
                break
        line = b"".join(parts)
        if size > limit + 1:
            raise LoadLimitError(
                f"{self.what}: a number or name in a text opcode is longer than {limit} "
                "characters (converting longer text takes time that grows faster than it)"
            )
        if not line.endswith(b"\n"):
            raise CorruptFileError(f"{self.what}: the pickle stream is truncated")
        self.offset += size
        return line[:-1]

    # -- the loop --------------------------------------------------------------------
    def load(self) -> Any:
        dispatch = _DISPATCH
        read = self._read_raw
        try:
            while True:
                key = read(1)
                if not key:
                    raise self._bad_start("Ran out of input", "the pickle stream is truncated")
                self.offset += 1
                op = dispatch.get(key[0])
                if op is None:
                    raise self._bad_start(
                        f"invalid load key, {key!r}.",
                        f"invalid load key, {key!r} (not a pickle opcode this loader accepts)",
                    )
                if op(self) is _STOP:
                    value = self.stack.pop()
                    self.state.finish()
                    return value
        except (UnsafeLoadError, CorruptFileError, MemoryError):
            raise
        except RecursionError:
            raise CorruptFileError(f"{self.what}: the pickle stream nests too deeply") from None
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptFileError(
                f"{self.what}: invalid pickle stream near byte {self.offset}: {exc}"
            ) from exc

    def _bad_start(self, first: str, later: str) -> CorruptFileError:
        if self.offset <= 1:  # not a pickle at all: the message plain loads give
            return CorruptFileError(
                f"{self.what}: not an oxjob, joblib or pickle file (bad magic, then {first})"
            )
        return CorruptFileError(f"{self.what}: {later}")

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def global_(self, module: str, name: str) -> Any:
        return self.state.find_global(module, name)


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


# -- scalars -------------------------------------------------------------------------
@_op(pickle.NONE)
def _none(u: SafeUnpickler) -> None:
    u.stack.append(None)


@_op(pickle.NEWTRUE)
def _true(u: SafeUnpickler) -> None:
    u.stack.append(True)


@_op(pickle.NEWFALSE)
def _false(u: SafeUnpickler) -> None:
    u.stack.append(False)


@_op(pickle.INT)
def _int(u: SafeUnpickler) -> None:
    data = u.readline()
    if data == b"00":
        u.stack.append(False)
    elif data == b"01":
        u.stack.append(True)
    else:
        u.stack.append(int(data, 0) if data[:2] in (b"0x", b"0X") else int(data))


@_op(pickle.LONG)
def _long(u: SafeUnpickler) -> None:
    data = u.readline()
    u.stack.append(int(data[:-1] if data.endswith(b"L") else data))


@_op(pickle.BININT)
def _binint(u: SafeUnpickler) -> None:
    u.stack.append(unpack("<i", u.read(4))[0])


@_op(pickle.BININT1)
def _binint1(u: SafeUnpickler) -> None:
    u.stack.append(u.read(1)[0])


@_op(pickle.BININT2)
def _binint2(u: SafeUnpickler) -> None:
    u.stack.append(unpack("<H", u.read(2))[0])


@_op(pickle.LONG1)
def _long1(u: SafeUnpickler) -> None:
    u.stack.append(int.from_bytes(u.read(u.read(1)[0]), "little", signed=True))


@_op(pickle.LONG4)
def _long4(u: SafeUnpickler) -> None:
    n = unpack("<i", u.read(4))[0]
    u.stack.append(int.from_bytes(u.read(n), "little", signed=True))


@_op(pickle.FLOAT)
def _float(u: SafeUnpickler) -> None:
    u.stack.append(float(u.readline()))


@_op(pickle.BINFLOAT)
def _binfloat(u: SafeUnpickler) -> None:
    u.stack.append(unpack(">d", u.read(8))[0])


# -- strings and bytes -------------------------------------------------------------------
def _decode_string(u: SafeUnpickler, data: bytes) -> Any:
    # Python 2 str: pickle's default encoding="ASCII".
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        from ._joblib_read import _PY2_MESSAGE

        raise ValueError(_PY2_MESSAGE) from exc


_TEXT = 1 << 62  # strings are bounded by max_bytes only


@_op(pickle.STRING)
def _string(u: SafeUnpickler) -> None:
    data = u.readline(_TEXT)
    if len(data) < 2 or data[0] != data[-1] or data[0] not in b"\"'":
        raise CorruptFileError(f"{u.what}: the STRING opcode argument must be quoted")
    u.stack.append(_decode_string(u, codecs.escape_decode(data[1:-1])[0]))


@_op(pickle.BINSTRING)
def _binstring(u: SafeUnpickler) -> None:
    n = unpack("<i", u.read(4))[0]
    u.stack.append(_decode_string(u, u.read(n)))


@_op(pickle.SHORT_BINSTRING)
def _short_binstring(u: SafeUnpickler) -> None:
    u.stack.append(_decode_string(u, u.read(u.read(1)[0])))


@_op(pickle.BINBYTES)
def _binbytes(u: SafeUnpickler) -> None:
    u.stack.append(u.read(unpack("<I", u.read(4))[0]))


@_op(pickle.SHORT_BINBYTES)
def _short_binbytes(u: SafeUnpickler) -> None:
    u.stack.append(u.read(u.read(1)[0]))


@_op(pickle.BINBYTES8)
def _binbytes8(u: SafeUnpickler) -> None:
    u.stack.append(u.read(unpack("<Q", u.read(8))[0]))


@_op(pickle.BYTEARRAY8)
def _bytearray8(u: SafeUnpickler) -> None:
    n = unpack("<Q", u.read(8))[0]
    u.stack.append(bytearray(u.read(n)))


@_op(pickle.UNICODE)
def _unicode(u: SafeUnpickler) -> None:
    u.stack.append(u.readline(_TEXT).decode("raw-unicode-escape"))


@_op(pickle.BINUNICODE)
def _binunicode(u: SafeUnpickler) -> None:
    u.stack.append(str(u.read(unpack("<I", u.read(4))[0]), "utf-8", "surrogatepass"))


@_op(pickle.BINUNICODE8)
def _binunicode8(u: SafeUnpickler) -> None:
    u.stack.append(str(u.read(unpack("<Q", u.read(8))[0]), "utf-8", "surrogatepass"))


@_op(pickle.SHORT_BINUNICODE)
def _short_binunicode(u: SafeUnpickler) -> None:
    u.stack.append(str(u.read(u.read(1)[0]), "utf-8", "surrogatepass"))


@_op(pickle.NEXT_BUFFER)
def _next_buffer(u: SafeUnpickler) -> None:
    if u.buffers is None:
        raise CorruptFileError(f"{u.what}: the stream asks for an out-of-band buffer it lacks")
    try:
        buffer = next(u.buffers)
    except StopIteration:
        raise CorruptFileError(f"{u.what}: not enough out-of-band buffers") from None
    u.stack.append(buffer)


@_op(pickle.READONLY_BUFFER)
def _readonly_buffer(u: SafeUnpickler) -> None:
    buffer = u.stack[-1]
    if not isinstance(buffer, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise CorruptFileError(f"{u.what}: READONLY_BUFFER on a {type(buffer).__name__}")
    with memoryview(buffer) as view:
        if not view.readonly:
            u.stack[-1] = view.toreadonly()


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


def load_stream(
    file: Any,
    policy: Policy,
    what: str,
    *,
    stored: int | None = None,
    codec: str | None = None,
    buffers: Any = None,
    context: Any = None,
    record: bool = False,
) -> SafeUnpickler:
    """Run a safe load of one stream; the unpickler (with ``value`` and ``seen``)."""
    from ._safe import budget

    unpickler = SafeUnpickler(
        file,
        policy,
        what=what,
        max_bytes=budget(policy, stored, codec),
        buffers=buffers,
        record=record,
        context=context,
    )
    unpickler.value = unpickler.load()
    return unpickler
