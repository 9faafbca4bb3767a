"""``dump`` and ``load``: pickle protocol 5 in oxjob's container format.

The value is pickled with protocol 5; every numpy array (and any other object
that yields out-of-band buffers) above a small size leaves the pickle stream as
a buffer. The engine writes the stream and the buffers as sections of a
container: chunked, optionally compressed on several threads, checksummed, and,
when uncompressed, aligned to 4 KiB so that ``load(mmap_mode=...)`` maps them
straight from the file. See ``docs/persistence.md``.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import warnings
from contextvars import ContextVar
from typing import Any

from . import _engine
from .compressors import DEFAULT_CODEC, ENGINE_CODECS, STREAM_COMPRESSORS, all_names
from .exceptions import CorruptFileError

__all__ = ["dump", "load"]

MAGIC = b"\x93OXJOB\r\n"
_MMAP_MODES = (None, "r", "r+", "w+", "c")
# Buffers smaller than this stay inside the pickle stream: section headers and
# page alignment would cost more than they save.
_INBAND_RAW = 4096
_INBAND_COMPRESSED = 64 * 1024


def _resolve_compression(filename: Any, compress: Any) -> tuple[str, int]:
    """Return ``(name, level)`` for a ``dump`` call, as joblib decides it."""
    method = DEFAULT_CODEC
    if compress is True:
        level = None
    elif isinstance(compress, tuple):
        if len(compress) != 2:
            raise ValueError(
                "Compress argument tuple should contain exactly 2 elements: "
                f"(compress method, compress level), you passed {compress}"
            )
        method, level = compress
    elif isinstance(compress, str):
        method, level = compress, None
    else:
        level = compress
    if level is not None and level is not False and level not in range(10):
        raise ValueError(
            f'Non valid compress level given: "{level}". Possible values are {list(range(10))}.'
        )
    if method not in ENGINE_CODECS and method not in STREAM_COMPRESSORS:
        raise ValueError(
            f'Non valid compression method given: "{method}". Possible values are {all_names()}.'
        )
    if isinstance(filename, str) and not isinstance(compress, tuple):
        # A known extension picks the codec unless a (method, level) was explicit.
        for name, extension in _extensions().items():
            if filename.endswith(extension):
                method = name
                if level == 0:
                    level = None
                break
    if level is False or level == 0:
        return "raw", 0
    if method in STREAM_COMPRESSORS:
        return method, 0 if level is None or level is True else int(level)  # 0: its default
    if level is None or level is True:
        level = ENGINE_CODECS[method][1]
    return method, int(level)


def _extensions() -> dict[str, str]:
    found = {name: ext for name, (ext, _) in ENGINE_CODECS.items()}
    found.update({name: c.extension for name, c in STREAM_COMPRESSORS.items() if c.extension})
    return found


def _rebuild_array(buffer: Any, dtype: Any, shape: tuple, order: str) -> Any:
    """Unpickle a numpy array from its (possibly out-of-band) bytes without copying."""
    import numpy as np

    context = _LOAD_CONTEXT.get()
    offset = context.mapped.get(id(buffer)) if context else None
    if offset is not None:
        array = np.ndarray.__new__(np.memmap, shape, dtype=dtype, buffer=buffer, order=order)
        array._mmap = context.mmap
        array.filename = context.filename
        array.offset = offset
        array.mode = context.mode
        return array
    array = np.ndarray(shape, dtype=dtype, buffer=buffer, order=order)
    if context is not None and context.native and not dtype.isnative:
        swapped = array.byteswap(inplace=array.flags.writeable)
        array = swapped.view(dtype.newbyteorder("="))
    return array


class _Pickler(pickle.Pickler):
    """Sends numpy arrays as one flat byte buffer each (any dtype, C or F order)."""

    def reducer_override(self, obj: Any) -> Any:
        np = sys.modules.get("numpy")
        if np is None or type(obj) not in (np.ndarray, np.memmap):
            return NotImplemented
        if obj.dtype.hasobject or obj.dtype.itemsize == 0:
            return NotImplemented
        if obj.flags.c_contiguous:
            order = "C"
        elif obj.flags.f_contiguous:
            order = "F"
        else:
            return NotImplemented  # numpy pickles a copy in-band
        flat = obj.ravel(order="K").view(np.uint8)
        return _rebuild_array, (pickle.PickleBuffer(flat), obj.dtype, obj.shape, order)


def _pickle_parts(value: Any, protocol: int | None, inband_below: int) -> list[Any]:
    protocol = pickle.HIGHEST_PROTOCOL if protocol is None else protocol
    buffers: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if raw.nbytes < inband_below:
            return True  # keep in the stream
        buffers.append(raw)
        return False

    stream = io.BytesIO()
    callback = out_of_band if protocol >= 5 else None
    _Pickler(stream, protocol=protocol, buffer_callback=callback).dump(value)
    return [stream.getbuffer(), *buffers]


def dump(value: Any, filename: Any, compress: Any = 0, protocol: int | None = None) -> Any:
    """Persist a Python object to one file, fast for large numpy arrays.

    Same signature and semantics as :func:`joblib.dump`. The file is written to a
    temporary name beside the target and renamed once complete, so a partial file
    never appears under ``filename``.

    Parameters
    ----------
    value : any Python object
        The object to store; numpy arrays inside it are written without copies.
    filename : str, pathlib.Path or file object
        Where to write. A file name's extension (``.zst``, ``.lz4``, ``.z``,
        ``.gz``, ``.bz2``, ``.xz``, ``.lzma``) selects that codec unless
        ``compress`` is a ``(name, level)`` tuple.
    compress : bool, int 0-9, str or (str, int), default=0
        ``0``/``False``: no compression (arrays can then be memory-mapped by
        ``load``). ``True`` or an int level: zstd. A codec name, or a
        ``(name, level)`` tuple, picks the codec: ``'zstd'``, ``'lz4'``,
        ``'zlib'``, ``'gzip'`` run in Rust on several threads; ``'bz2'``,
        ``'lzma'``, ``'xz'`` and compressors added by
        :func:`register_compressor` wrap the whole file.
    protocol : int, optional
        Pickle protocol; the default is the highest. Below 5, arrays are pickled
        inside the stream (slower, and never memory-mapped).

    Returns
    -------
    list of str or None
        ``[filename]`` when a file name was given, ``None`` for a file object.

    Raises
    ------
    ValueError
        For an unknown codec, a level outside 0-9, or a ``filename`` that is
        neither a path nor a writable file object.

    Examples
    --------
    >>> import numpy as np, oxjob
    >>> oxjob.dump({"weights": np.ones((1000, 1000))}, "/tmp/model.oxjob", compress=3)
    ['/tmp/model.oxjob']
    >>> oxjob.load("/tmp/model.oxjob")["weights"].sum()
    np.float64(1000000.0)
    """
    if isinstance(filename, os.PathLike):
        filename = os.fspath(filename)
    is_filename = isinstance(filename, str)
    if not is_filename and not hasattr(filename, "write"):
        raise ValueError(
            "Second argument should be a filename or a file-like object, "
            f"{filename} (type {type(filename)}) was given."
        )
    method, level = _resolve_compression(filename if is_filename else None, compress)
    inband = _INBAND_RAW if method == "raw" else _INBAND_COMPRESSED
    parts = _pickle_parts(value, protocol, inband)
    if method in STREAM_COMPRESSORS:
        _dump_stream_compressed(parts, filename, method, level)
    elif is_filename:
        _engine.write_file(filename, parts, method, level)
    else:
        _engine.write_stream(filename.write, parts, method, level)
    return [filename] if is_filename else None


def _dump_stream_compressed(parts: list[Any], filename: Any, method: str, level: int) -> None:
    compressor = STREAM_COMPRESSORS[method]
    if not isinstance(filename, str):
        with compressor.compressor_file(filename, compresslevel=level or None) as out:
            _engine.write_stream(out.write, parts, "raw", 0)
        return
    directory, base = os.path.split(os.path.abspath(filename))
    temp = os.path.join(directory, f".{base}.{os.getpid()}.oxjob-tmp")
    try:
        with open(temp, "wb") as raw, compressor.compressor_file(raw, level or None) as out:
            _engine.write_stream(out.write, parts, "raw", 0)
        os.replace(temp, filename)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


class _LoadContext:
    __slots__ = ("mapped", "mmap", "filename", "mode", "native")

    def __init__(self, native: bool) -> None:
        self.mapped: dict[int, int] = {}
        self.mmap: Any = None
        self.filename: str | None = None
        self.mode: str | None = None
        self.native = native


_LOAD_CONTEXT: ContextVar[_LoadContext | None] = ContextVar("oxjob_load", default=None)


def _unpickle(stream: Any, buffers: list[Any], context: _LoadContext, what: str) -> Any:
    token = _LOAD_CONTEXT.set(context)
    try:
        return pickle.loads(stream, buffers=buffers)
    except pickle.UnpicklingError as exc:
        raise CorruptFileError(f"{what}: the pickle stream is invalid: {exc}") from exc
    finally:
        _LOAD_CONTEXT.reset(token)


def load(
    filename: Any, mmap_mode: str | None = None, ensure_native_byte_order: Any = "auto"
) -> Any:
    """Reconstruct a Python object from a file written by :func:`dump`.

    Same signature and semantics as :func:`joblib.load`. Every chunk's checksum
    is verified; a truncated, corrupted or foreign file raises
    :class:`~oxjob.exceptions.CorruptFileError`.

    .. warning:: ``load`` runs pickle: load only files you trust, as with
       ``joblib.load`` and ``pickle.load``.

    Parameters
    ----------
    filename : str, pathlib.Path or file object
        The file to read. A file object is read from its current position, and
        left just after the object.
    mmap_mode : {None, 'r', 'r+', 'w+', 'c'}, optional
        For an uncompressed file given by name, return its arrays as
        :class:`numpy.memmap` views of the file instead of reading them: ``'r'``
        read-only, ``'r+'``/``'w+'`` writes go to the file, ``'c'`` copy-on-write.
        Mapping is O(1) whatever the size; mapped buffers are not checksummed
        (that would read them). Ignored, with a warning, for compressed files and
        file objects, as joblib does. Arrays under 4 KiB are always read.
    ensure_native_byte_order : bool or 'auto', default='auto'
        Convert arrays stored in non-native byte order to native order. ``'auto'``
        means True without ``mmap_mode`` and False with it; True with
        ``mmap_mode`` is an error.

    Returns
    -------
    object
        The stored object.

    Examples
    --------
    >>> import numpy as np, oxjob
    >>> oxjob.dump(np.arange(10**6), "/tmp/big.oxjob")
    ['/tmp/big.oxjob']
    >>> big = oxjob.load("/tmp/big.oxjob", mmap_mode="r")
    >>> type(big).__name__, big[-1]
    ('memmap', np.int64(999999))
    """
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be one of {list(_MMAP_MODES)}, got {mmap_mode!r}")
    if ensure_native_byte_order not in ("auto", True, False):
        raise ValueError(
            "ensure_native_byte_order must be True, False or 'auto', "
            f"got {ensure_native_byte_order!r}"
        )
    if ensure_native_byte_order is True and mmap_mode is not None:
        raise ValueError(
            "Native byte ordering can only be enforced if 'mmap_mode' parameter is set to "
            f"None, but got 'mmap_mode={mmap_mode}' instead."
        )
    native = ensure_native_byte_order is True or (
        ensure_native_byte_order == "auto" and mmap_mode is None
    )
    if hasattr(filename, "read"):
        if mmap_mode is not None:
            warnings.warn(
                f'"{filename!r}" is not a raw file, mmap_mode "{mmap_mode}" flag will be ignored.',
                stacklevel=2,
            )
        return _load_fileobj(filename, _LoadContext(native), "<file object>")
    path = os.fspath(filename)
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
        if head != MAGIC:
            compressor = _stream_compressor_for(head)
            if compressor is None:
                raise CorruptFileError(f"{path}: not an oxjob file (bad magic)")
            if mmap_mode is not None:
                _warn_compressed(mmap_mode, path)
            f.seek(0)
            with compressor.decompressor_file(f) as inner:
                return _load_fileobj(inner, _LoadContext(native), path)
    if mmap_mode is not None:
        return _load_mapped(path, mmap_mode)
    parts = _engine.read_file(path)
    return _unpickle(parts[0], parts[1:], _LoadContext(native), path)


def _warn_compressed(mmap_mode: str, path: str) -> None:
    warnings.warn(
        f'mmap_mode "{mmap_mode}" is not compatible with compressed file {path}. '
        f'"{mmap_mode}" flag will be ignored.',
        stacklevel=3,
    )


def _stream_compressor_for(head: bytes) -> Any:
    for compressor in STREAM_COMPRESSORS.values():
        if compressor.prefix and head.startswith(compressor.prefix):
            return compressor
    return None


def _load_fileobj(fileobj: Any, context: _LoadContext, what: str) -> Any:
    start = fileobj.tell() if _seekable(fileobj) else None
    data = fileobj.read()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"the file object's read() returned {type(data).__name__}, not bytes")
    if not data.startswith(MAGIC):
        compressor = _stream_compressor_for(bytes(data[: len(MAGIC)]))
        if compressor is None:
            raise CorruptFileError(f"{what}: not an oxjob file (bad magic)")
        with compressor.decompressor_file(io.BytesIO(data)) as inner:
            return _load_fileobj(inner, context, what)
    parts, end = _engine.read_bytes(data)
    if start is not None and end < len(data):
        fileobj.seek(start + end)
    return _unpickle(parts[0], parts[1:], context, what)


def _seekable(fileobj: Any) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _load_mapped(path: str, mmap_mode: str) -> Any:
    import mmap

    stream, buffers, _ = _engine.layout_file(path)
    if any(codec != "raw" for codec, _, _ in buffers):
        _warn_compressed(mmap_mode, path)
        parts = _engine.read_file(path)
        return _unpickle(parts[0], parts[1:], _LoadContext(native=False), path)
    mode = "r+" if mmap_mode == "w+" else mmap_mode
    if mode == "r+":
        # Writes through the map would break the data checksums of later loads.
        _engine.mark_unverified(path)
    access = {"r": mmap.ACCESS_READ, "r+": mmap.ACCESS_WRITE, "c": mmap.ACCESS_COPY}[mode]
    with open(path, "r+b" if mode == "r+" else "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=access)
    whole = memoryview(mapping)
    views = [whole[offset : offset + length] for _, offset, length in buffers]
    context = _LoadContext(native=False)
    context.mapped = {id(view): offset for view, (_, offset, _) in zip(views, buffers)}
    context.mmap, context.filename, context.mode = mapping, os.path.abspath(path), mode
    return _unpickle(stream, views, context, path)
