"""oxjob's own container: pickling into its sections and unpickling out of them.

The value is pickled with protocol 5. An array of 4 KiB or more leaves the stream
as an out-of-band buffer (a section of its own, page-aligned when uncompressed).
In an uncompressed container the smaller arrays share one more section, the
*arena*, 64-byte aligned inside it, so that ``load(mmap_mode=...)`` maps every
array of the file, small ones too, as joblib does.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from contextvars import ContextVar
from typing import Any, Literal

from .. import _engine
from ..exceptions import CorruptFileError
from .safe import FastUnpickler, JoblibStream, Policy

MAGIC = b"\x93OXJOB\r\n"
# Buffers smaller than this do not get a section of their own: section headers and
# page alignment would cost more than they save.
INBAND_RAW = 4096
INBAND_COMPRESSED = 64 * 1024
_ARENA_ALIGN = 64


class LoadContext:
    """What the rebuild functions need to know about the load in progress."""

    __slots__ = ("base", "size", "mmap", "filename", "mode", "native", "sections")

    def __init__(self, native: bool) -> None:
        self.sections: list[Any] = []
        self.base = 0  # address of the file mapping, when mapped
        self.size = 0
        self.mmap: Any = None
        self.filename: str | None = None
        self.mode: str | None = None
        self.native = native


#: The array layouts the writer records (a C or Fortran contiguous copy).
_Order = Literal["C", "F"]

_LOAD_CONTEXT: ContextVar[LoadContext | None] = ContextVar("oxjob_load", default=None)


def _address(np: Any, buffer: Any) -> int:
    return np.frombuffer(buffer, dtype=np.uint8).ctypes.data if len(memoryview(buffer)) else 0


def rebuild_array(buffer: Any, dtype: Any, shape: tuple, order: _Order, offset: int = 0) -> Any:
    """Unpickle a numpy array from its (possibly out-of-band) bytes without copying."""
    import numpy as np

    context = _LOAD_CONTEXT.get()
    if context is not None and context.mmap is not None:
        start = _address(np, buffer) - context.base
        if 0 <= start <= context.size:
            # A memmap made over the file's one mapping, with the fields np.memmap sets
            # (its stub has no ``_mmap`` and no None filename): typed as what it is to us.
            mapped: Any = np.ndarray.__new__(
                np.memmap, shape, dtype=dtype, buffer=context.mmap, offset=start + offset,
                order=order,
            )  # fmt: skip
            mapped._mmap, mapped.filename = context.mmap, context.filename
            mapped.offset, mapped.mode = start + offset, context.mode
            return mapped
    array = np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset, order=order)
    if context is not None and context.native and not dtype.isnative:
        swapped = array.byteswap(inplace=array.flags.writeable)
        array = swapped.view(dtype.newbyteorder("="))
    return array


def rebuild_small(buffer: Any, offset: int, dtype: Any, shape: tuple, order: _Order) -> Any:
    """An array whose bytes are at ``offset`` in the arena section."""
    return rebuild_array(buffer, dtype, shape, order, offset)


def rebuild_indexed(index: int, offset: int, dtype: Any, shape: tuple, order: _Order) -> Any:
    """An array in section ``index + 1`` (protocols below 5 have no out-of-band buffers)."""
    context = _LOAD_CONTEXT.get()
    if context is None or not 0 <= index < len(context.sections):
        raise CorruptFileError(f"array section {index + 1} is missing")
    return rebuild_array(context.sections[index], dtype, shape, order, offset)


def arena(buffer: Any) -> Any:
    """The arena's buffer (a record of its own, so the stream refers to it once)."""
    return buffer


class _Arena:
    def __init__(self) -> None:
        self.data = bytearray()
        self.token = pickle.PickleBuffer(bytearray())

    def add(self, flat: Any) -> int:
        offset = -len(self.data) % _ARENA_ALIGN + len(self.data)
        self.data.extend(bytes(offset - len(self.data)))
        self.data.extend(flat)
        return offset

    def __reduce__(self) -> Any:
        return arena, (self.token,)


class Pickler(pickle.Pickler):
    """Sends numpy arrays as flat byte buffers (any dtype, C or F order)."""

    def __init__(
        self, *args: Any, arena: _Arena | None = None, sections: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.arena = arena
        # Below protocol 5 arrays are referred to by section number instead.
        self.sections: list[Any] | None = sections
        self.keep: list[Any] = []  # keeps ids stable while pickling

    def reducer_override(self, obj: Any) -> Any:
        np = sys.modules.get("numpy")
        if np is None or type(obj) not in (np.ndarray, np.memmap):
            return NotImplemented
        if obj.dtype.hasobject or (obj.dtype.itemsize == 0 and obj.size):
            return NotImplemented
        if obj.flags.c_contiguous:
            order = "C"
        elif obj.flags.f_contiguous:
            order = "F"
        else:
            obj, order = np.ascontiguousarray(obj), "C"
            self.keep.append(obj)
        flat = obj.ravel(order="K").view(np.uint8) if obj.size else bytearray()
        if self.arena is not None and obj.nbytes < INBAND_RAW:
            offset = self.arena.add(flat)
            if self.sections is not None:  # the arena is section 1
                return rebuild_indexed, (0, offset, obj.dtype, obj.shape, order)
            return rebuild_small, (self.arena, offset, obj.dtype, obj.shape, order)
        if self.sections is not None:
            if obj.nbytes < INBAND_COMPRESSED:
                return NotImplemented  # compressed: small arrays stay in the stream
            self.sections.append(flat)
            return rebuild_indexed, (len(self.sections) - 1, 0, obj.dtype, obj.shape, order)
        return rebuild_array, (pickle.PickleBuffer(flat), obj.dtype, obj.shape, order)


def pickle_parts(value: Any, protocol: int | None, inband_below: int) -> list[Any]:
    """``[stream, buffer, ...]``: the sections of a container holding ``value``."""
    protocol = pickle.HIGHEST_PROTOCOL if protocol is None else protocol
    buffers: list[Any] = []
    small = _Arena() if inband_below <= INBAND_RAW else None
    slot: list[int] = []
    if protocol < 5:
        # No out-of-band buffers: arrays name their section (the arena first), so
        # that they still leave the stream and map.
        sections: list[Any] = [b""] if small is not None else []
        stream = io.BytesIO()
        Pickler(stream, protocol=protocol, arena=small, sections=sections).dump(value)
        if small is not None:
            sections[0] = memoryview(small.data)
        return [stream.getbuffer(), *sections]

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if small is not None and buffer is small.token:
            slot.append(len(buffers))
            buffers.append(None)
            return False
        raw = buffer.raw()
        if raw.nbytes < inband_below:
            return True  # keep in the stream
        buffers.append(raw)
        return False

    stream = io.BytesIO()
    Pickler(stream, protocol=protocol, buffer_callback=out_of_band, arena=small).dump(value)
    if small is not None and slot:
        buffers[slot[0]] = memoryview(small.data)
    return [stream.getbuffer(), *buffers]


def unpickle(
    stream: Any, buffers: list[Any], context: LoadContext, what: str, policy: Policy | None
) -> Any:
    """Rebuild the value of a container's sections."""
    context.sections = buffers
    token = _LOAD_CONTEXT.set(context)
    try:
        if policy is not None:
            from .safe_unpickle import load_stream

            stored = len(memoryview(stream)) + sum(len(memoryview(b)) for b in buffers)
            return load_stream(
                io.BytesIO(stream), policy, what, stored=stored, buffers=buffers
            ).value
        return FastUnpickler(io.BytesIO(stream), buffers=buffers).load()
    except JoblibStream as exc:
        raise CorruptFileError(
            f"{what}: the container's pickle stream is invalid: {exc}, which only joblib's "
            "own format holds"
        ) from None
    except pickle.UnpicklingError as exc:
        if type(exc) is not pickle.UnpicklingError:
            raise
        raise CorruptFileError(f"{what}: the pickle stream is invalid: {exc}") from exc
    finally:
        _LOAD_CONTEXT.reset(token)


def load_mapped(path: str, mmap_mode: str, policy: Policy | None) -> tuple[bool, Any]:
    """``(True, value)`` with every array mapped, or ``(False, None)`` if compressed."""
    import mmap

    import numpy as np

    stream, buffers, _ = _engine.layout_file(path)
    with open(path, "rb") as f:
        f.seek(len(MAGIC) + 24 + 1)  # the pickle section's codec byte (0: raw)
        stream_codec = f.read(1)
    if stream_codec != b"\x00" or any(codec != "raw" for codec, _, _ in buffers):
        return False, None
    mode = "r+" if mmap_mode == "w+" else mmap_mode
    if mode == "r+":
        # Writes through the map would break the data checksums of later loads.
        _engine.mark_unverified(path)
    access = {"r": mmap.ACCESS_READ, "r+": mmap.ACCESS_WRITE, "c": mmap.ACCESS_COPY}[mode]
    with open(path, "r+b" if mode == "r+" else "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=access)
    whole = memoryview(mapping)
    views = [whole[offset : offset + length] for _, offset, length in buffers]
    context = LoadContext(native=False)
    context.base, context.size = np.frombuffer(mapping, dtype=np.uint8).ctypes.data, len(mapping)
    context.mmap, context.filename, context.mode = mapping, os.path.abspath(path), mode
    return True, unpickle(stream, views, context, path, policy)


def looks_like_container(head: bytes) -> bool:
    """Whether a file's first 8 bytes are oxjob's magic, or that magic with a byte or
    two damaged.

    A damaged container must be reported as one (``CorruptFileError``), not read as
    whatever format its damaged first byte happens to name (a pickle opcode asking
    for exabytes, a zlib header). No other format ``load`` reads starts with 6 of
    these 8 bytes.
    """
    if len(head) < len(MAGIC):
        return head.startswith(MAGIC[:1]) and MAGIC.startswith(head)
    return sum(a != b for a, b in zip(head, MAGIC)) <= 2


def _read_exact(fileobj: Any, size: int, what: str) -> bytes:
    """Exactly ``size`` bytes, read in steps that grow with what arrived, so that a
    hostile size costs no more memory than the bytes the stream really holds."""
    parts, left, got = [], size, 0
    while left:
        data = fileobj.read(min(left, max(1 << 20, got)))
        if not data:
            raise CorruptFileError(
                f"{what}: truncated: the stream ended {left} bytes before the container did"
            )
        parts.append(data)
        left -= len(data)
        got += len(data)
    return b"".join(parts)


def read_container_stream(fileobj: Any, what: str) -> tuple[list[Any], bytes]:
    """Read one container from a stream, never past its end marker; return its sections.

    The layout (``crates/oxjob-core/src/container/mod.rs``) says how long each piece
    is, so a socket or pipe is read up to the container's last byte and no further.
    """
    u32 = lambda b, at: int.from_bytes(b[at : at + 4], "little")  # noqa: E731
    u64 = lambda b, at: int.from_bytes(b[at : at + 8], "little")  # noqa: E731
    pieces = [_read_exact(fileobj, 32, what)]
    if not pieces[0].startswith(MAGIC):
        raise CorruptFileError(f"{what}: not an oxjob file (bad magic)")
    # Nothing is allocated from these fields beyond the bytes the stream delivers
    # (see _read_exact); the engine checks them all once the container is read.
    for _ in range(u32(pieces[0], 12)):
        fixed = _read_exact(fileobj, 24, what)
        pieces.append(fixed)
        chunk, raw_len, padding = u32(fixed, 4), u64(fixed, 8), u32(fixed, 16)
        if chunk == 0:
            raise CorruptFileError(f"{what}: chunk size 0 out of range")
        n_chunks = -(-raw_len // chunk)
        if fixed[1] == 0:  # uncompressed: checksum table, header checksum, padding, data
            pieces.append(_read_exact(fileobj, 8 * n_chunks + 8 + padding + raw_len, what))
        else:
            pieces.append(_read_exact(fileobj, 8, what))
            for _ in range(n_chunks):
                record = _read_exact(fileobj, 12, what)
                pieces.append(record)
                pieces.append(_read_exact(fileobj, u32(record, 0), what))
    pieces.append(_read_exact(fileobj, 16, what))
    data = b"".join(pieces)
    parts, _ = _engine.read_bytes(data)
    return parts, data
