"""The safe loader's opcodes that push scalars, strings and bytes.

Every length in the stream is read through the unpickler's budgeted ``read``, so a
length claiming more than the file holds costs nothing; numbers written as text are
bounded in length (converting text to an int takes time that grows faster than it).
"""

from __future__ import annotations

import codecs
import pickle
from struct import unpack
from typing import TYPE_CHECKING, Any

from ..exceptions import CorruptFileError
from .safe_opcodes import _op

if TYPE_CHECKING:
    from .safe_unpickle import SafeUnpickler


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
        from .joblib_read import _PY2_MESSAGE

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
