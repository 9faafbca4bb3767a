"""Frame kinds and the pickling used between the caller and its workers.

Both sides use these helpers, so the rules live in one place: pickle protocol 5;
out-of-band buffers of at least ``max_nbytes`` leave the stream and travel as
memfd segments (one copy, into the segment); arrays of :mod:`oxjob.shared` travel
as their segment's descriptor plus offset, shape and strides (no copy at all), and
are mapped shared on the other side, so writes are seen by both processes.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import threading
import weakref
from typing import Any, Callable, cast

from .._engine import Segment
from .mainscript import reduce_main

_MAIN_NAMES = ("__main__", "__mp_main__")

# Frame kinds; their meaning is documented on oxjob_core::workers::frame::Kind.
FUNCTION, BATCH, RESULT, ERROR, END_CALL, SHUTDOWN, READY, INIT, RELEASED, SPARES, FORGET = range(
    1, 12
)

_receiving = threading.local()


def segment_of(array: Any) -> Segment | None:
    """The shared segment an array's memory belongs to, if any."""
    base = array.base
    while base is not None:
        if isinstance(base, Segment):
            return base
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return None


def _segment_at(index: int) -> Segment:
    """Unpickled in place of a shared segment: the index-th one of the frame."""
    return _receiving.shared[index]


def _rebuild_shared(segment: Segment, offset: int, shape: tuple, strides: tuple, dtype: Any) -> Any:
    import numpy as np

    # numpy's stub lists concrete buffer classes; a Segment exports the buffer protocol and
    # stays the array's base (segment_of finds it there), so it is passed as it is.
    buffer = cast(Any, segment)  # older numpy stubs accept no plain buffer-protocol object
    return np.ndarray(shape, dtype=dtype, buffer=buffer, offset=offset, strides=strides)


def _backing_memmap(np: Any, array: Any) -> Any:
    """The ``np.memmap`` whose mapping of a file ``array``'s memory belongs to, if any:
    the array in ``array``'s base chain whose own base is the ``mmap.mmap``."""
    import mmap

    node = array
    while node is not None:
        base = getattr(node, "base", None)
        if isinstance(base, mmap.mmap):
            return node if isinstance(node, np.memmap) else None
        node = base
    return None


def _reduce_memmap(np: Any, obj: Any) -> Any:
    """A memmap (or a view of one) as the region of its file, or None to copy it.

    The receiver maps the same file region (path, offset, dtype, shape, strides,
    mode), as joblib does: writes through ``r+``/``w+`` land in the file and the
    sender sees them; nothing is copied."""
    if type(obj) not in (np.ndarray, np.memmap) or obj.size == 0 or obj.dtype.hasobject:
        return None
    mapped = _backing_memmap(np, obj)
    if mapped is None or not isinstance(mapped.filename, str) or mapped.mode not in _ACCESS:
        return None
    start = obj.__array_interface__["data"][0] - mapped.__array_interface__["data"][0]
    start += mapped.offset  # the file offset of obj's first element
    low = start + sum(min(0, (n - 1) * s) for n, s in zip(obj.shape, obj.strides))
    high = start + sum(max(0, (n - 1) * s) for n, s in zip(obj.shape, obj.strides))
    region = (os.path.abspath(mapped.filename), low, high + obj.itemsize - low, mapped.mode)
    layout = (obj.shape, obj.strides, obj.dtype, start - low, obj.flags.writeable)
    return _rebuild_memmap, (region, layout, type(obj) is np.memmap)


#: np.memmap's modes and how the receiver maps the file (``w+`` must not truncate it).
_ACCESS = {"r": ("rb", "ACCESS_READ"), "c": ("rb", "ACCESS_COPY")}
_ACCESS.update({"r+": ("r+b", "ACCESS_WRITE"), "w+": ("r+b", "ACCESS_WRITE")})


def _rebuild_memmap(region: tuple, layout: tuple, as_memmap: bool) -> Any:
    import numpy as np

    path, offset, length, mode = region
    shape, strides, dtype, first, writeable = layout
    mapping, start = _file_map(path, offset, length, mode)
    kind = np.memmap if as_memmap else np.ndarray
    # An ndarray or a memmap whose fields are set by hand below (np.memmap's stub has no
    # ``_mmap``): typed as what it is to us.
    out: Any = np.ndarray.__new__(
        kind, shape, dtype=dtype, buffer=mapping, offset=start + first, strides=strides
    )
    if as_memmap:  # what np.memmap itself sets, so that flush() and views work
        out._mmap, out.filename, out.mode = mapping, path, "r+" if mode == "w+" else mode
        out.offset = offset + first
    if not writeable:
        out.flags.writeable = False
    return out


#: Shared maps of whole files while arrays use them (weak: a deleted file's space is
#: not held once its arrays are gone), found again while the file is the same (device,
#: inode, size, mtime): the tasks of a batch map a file once, as they would a segment.
_file_maps: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_file_maps_lock = threading.Lock()
#: A worker keeps its maps between batches too (mapping anew costs the page faults
#: again), until the call ends or it idles: see :func:`keep_file_maps`.
_kept_maps: list | None = None


def keep_file_maps(keep: bool) -> None:
    """Whether file maps outlive the arrays made on them (in workers, between the
    batches of a call); ``False`` lets go of those kept so far."""
    global _kept_maps
    with _file_maps_lock:
        _kept_maps = [] if keep else None


def holds_file_maps() -> bool:
    """Whether some file map is kept only by :func:`keep_file_maps`."""
    return bool(_kept_maps)


def _file_map(path: str, offset: int, length: int, mode: str) -> tuple[Any, int]:
    """A mapping of ``path`` that covers ``length`` bytes from ``offset``, and where
    in the mapping ``offset`` lies."""
    import mmap

    file_mode, access = _ACCESS[mode]
    with open(path, file_mode) as f:
        stat = os.fstat(f.fileno())
        if mode == "c":  # private pages: one task's writes are not the next one's
            aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
            mapping = mmap.mmap(
                f.fileno(), length + offset - aligned, access=mmap.ACCESS_COPY, offset=aligned
            )
            return mapping, offset - aligned
        key = (path, access, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with _file_maps_lock:
            shared = _file_maps.get(key)
            if shared is None:
                shared = mmap.mmap(f.fileno(), stat.st_size, access=getattr(mmap, access))
                _file_maps[key] = shared
                if _kept_maps is not None:
                    _kept_maps.append(shared)
    return shared, offset


class _SharedAware:
    """Pickler mixin: shared arrays and segments become handles, not bytes."""

    shared: list

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is Segment:
            for index, known in enumerate(self.shared):
                if known is obj:
                    return _segment_at, (index,)
            self.shared.append(obj)
            return _segment_at, (len(self.shared) - 1,)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.ndarray):
            segment = segment_of(obj)
            if segment is not None:
                offset = obj.__array_interface__["data"][0] - segment.address
                return _rebuild_shared, (segment, offset, obj.shape, obj.strides, obj.dtype)
            reduced = _reduce_memmap(np, obj)
            if reduced is not None:
                return reduced
        main = reduce_main(obj)  # the caller's script: one module in the worker
        if main is not None:
            return main
        parent = getattr(super(), "reducer_override", None)
        return parent(obj) if parent is not None else NotImplemented


class _Pickler(_SharedAware, pickle.Pickler):
    pass


class _NeedsValue(pickle.PicklingError):
    """An object of ``__main__``: by reference it would not resolve in a worker."""


class _ReferencePickler(_Pickler):
    """The plain (C) pickler, refusing what only pickling by value can send."""

    def reducer_override(self, obj: Any) -> Any:
        reduced = super().reducer_override(obj)
        # What the script's top level does not name (or a session without a script
        # file defines): a worker's ``__main__`` is not the caller's.
        if reduced is NotImplemented and getattr(obj, "__module__", None) in _MAIN_NAMES:
            if isinstance(obj, type) or callable(obj) or reduce_main(type(obj)) is None:
                raise _NeedsValue(obj)  # (an instance of a script's class goes as it is)
        return reduced


def dumps(
    obj: Any,
    max_nbytes: int | None,
    by_value: bool = False,
    segment_for: Callable[[memoryview], Segment] | None = None,
) -> tuple[Any, list, int]:
    """Pickle ``obj``: returns the stream, the segments to send (buffers first, then
    shared segments) and how many of them are shared.

    ``by_value`` uses cloudpickle, which also handles lambdas, closures and
    functions or classes defined in ``__main__``. ``segment_for`` turns a large
    buffer into a segment (default: a fresh copy).
    """
    return _dump(obj, max_nbytes, _cloud_pickler() if by_value else _Pickler, segment_for)


def dumps_auto(
    obj: Any, max_nbytes: int | None, segment_for: Callable[[memoryview], Segment] | None = None
) -> tuple[Any, list, int]:
    """:func:`dumps` with the plain pickler (several times faster) when every
    function and class it meets can be imported by name in a worker, by value
    (cloudpickle) otherwise: lambdas, closures, anything defined in ``__main__``."""
    try:
        return _dump(obj, max_nbytes, _ReferencePickler, segment_for)
    except Exception:  # noqa: BLE001 - retried by value; its error is the one reported
        return dumps(obj, max_nbytes, by_value=True, segment_for=segment_for)


def _dump(
    obj: Any, max_nbytes: int | None, pickler_class: type, segment_for: Callable | None
) -> tuple[Any, list, int]:
    regular: list = []
    make_segment = segment_for or Segment.from_buffer

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if max_nbytes is None or raw.nbytes < max_nbytes:
            return True
        regular.append(make_segment(raw))
        return False

    stream = io.BytesIO()
    pickler = pickler_class(stream, protocol=5, buffer_callback=out_of_band)
    pickler.shared = []
    pickler.dump(obj)
    return stream.getbuffer(), regular + pickler.shared, len(pickler.shared)


_cloud_class: list = []


def _cloud_pickler() -> type[pickle.Pickler]:
    if not _cloud_class:
        import cloudpickle

        class CloudPickler(_SharedAware, cloudpickle.Pickler):
            pass

        _cloud_class.append(CloudPickler)
    return _cloud_class[0]


def loads(body: Any, buffers: list, shared: list) -> Any:
    """Unpickle a stream with its out-of-band buffers and shared segments."""
    previous = getattr(_receiving, "shared", None)
    _receiving.shared = shared
    try:
        return pickle.loads(body, buffers=buffers)
    finally:
        _receiving.shared = previous
