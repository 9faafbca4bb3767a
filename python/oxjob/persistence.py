"""``dump`` and ``load``: oxjob's container, joblib's format, plain pickle, standard streams.

``dump`` writes oxjob's container (``_io/container.py``: pickle protocol 5, arrays as
checksummed, page-aligned sections), optionally inside a standard compressed
stream (``_io/streams.py``), or joblib's format (``_io/joblib_write.py``). ``load``
tells the format by content and reads all of them, plus plain pickle files and every
format ``joblib.dump`` has written (``_io/joblib_read.py``); joblib is never imported.
With ``trusted=...`` only listed globals are rebuilt (``_io/safe.py``). See
``docs/persistence.md``.
"""

from __future__ import annotations

import os
from typing import IO, Any, Literal, Union

from . import _engine
from ._io import streams as _streams
from ._io.atomic import write_atomically
from ._io.safe import LoadLimitError, Policy, UnsafeLoadError
from .compressors import STREAM_COMPRESSORS, resolve

__all__ = ["LoadLimitError", "UnsafeLoadError", "dump", "load"]

_MMAP_MODES = (None, "r", "r+", "w+", "c")
_FORMATS = ("oxjob", "joblib")


#: ``compress`` as joblib documents it: a level 0-9, True (level 3), a codec name, or
#: ``(codec, level)``.
Compress = Union[bool, int, str, tuple[str, int]]


def dump(
    value: Any,
    filename: str | os.PathLike[str] | IO[bytes],
    compress: Compress = 0,
    protocol: int | None = None,
    format: Literal["oxjob", "joblib"] = "oxjob",
) -> list[str] | None:
    """Persist a Python object to one file, fast for large numpy arrays.

    Same signature and semantics as :func:`joblib.dump`, plus ``format``. A file
    name is written to a temporary name beside the target and renamed once
    complete, so a partial file never appears under ``filename``.

    Parameters
    ----------
    value : any Python object
        The object to store; numpy arrays inside it are written without copies.
    filename : str, pathlib.Path or file object
        Where to write. An extension ``.gz``, ``.z``, ``.bz2``, ``.xz``, ``.lzma``
        or ``.lz4`` makes the file that standard stream (``gunzip`` and the like
        open it); ``.zst`` picks zstd inside oxjob's container. A ``(name, level)``
        tuple in ``compress`` wins over the extension.
    compress : bool, int 0-9, str or (str, int), default=0
        ``0``/``False``: no compression (arrays can then be memory-mapped by
        ``load``). ``True`` or an int level: zstd in oxjob's container, on every
        core. ``'gzip'``, ``'zlib'``, ``'bz2'``, ``'xz'``, ``'lzma'``, ``'lz4'``:
        that standard stream around the file, except for a ``.oxjob`` file name,
        where ``'gzip'``, ``'zlib'`` and ``'lz4'`` compress the container's chunks
        in Rust. Compressors added by :func:`register_compressor` wrap the file.
    protocol : int, optional
        Pickle protocol; the default is the highest (joblib's default for
        ``format='joblib'``). Below 5, arrays are pickled inside the stream.
    format : {'oxjob', 'joblib'}, default='oxjob'
        ``'joblib'`` writes joblib's own format, which ``joblib.load`` (and
        ``oxjob.load``) read: for rollback and mixed deployments. zstd is then not
        available and ``compress=True`` or a level means zlib, as in joblib.

    Returns
    -------
    list of str or None
        ``[filename]`` when a file name was given, ``None`` for a file object.

    Raises
    ------
    ValueError
        For an unknown codec or format, a level outside 0-9, or a ``filename`` that
        is neither a path nor a writable file object.

    Examples
    --------
    >>> import numpy as np, oxjob
    >>> oxjob.dump({"weights": np.ones((1000, 1000))}, "/tmp/model.oxjob", compress=3)
    ['/tmp/model.oxjob']
    >>> oxjob.load("/tmp/model.oxjob")["weights"].sum()
    np.float64(1000000.0)
    >>> oxjob.dump([1, 2], "/tmp/for-joblib.pkl", format="joblib")
    ['/tmp/for-joblib.pkl']
    """
    if isinstance(filename, os.PathLike):
        filename = os.fspath(filename)
    is_filename = isinstance(filename, str)
    if not is_filename and not hasattr(filename, "write"):
        raise ValueError(
            "Second argument should be a filename or a file-like object, "
            f"{filename} (type {type(filename)}) was given."
        )
    if format not in _FORMATS:
        raise ValueError(f"format must be one of {list(_FORMATS)}, got {format!r}")
    if format == "joblib" and compress not in (0, False) and not isinstance(compress, tuple):
        if not isinstance(compress, str):  # joblib's default method
            compress = ("zlib", _streams.DEFAULT_LEVELS["zlib"] if compress is True else compress)
    kind, method, level = resolve(filename if is_filename else None, compress)
    if format == "joblib" and kind == "engine":
        raise ValueError(f"format='joblib' cannot use {method!r}: joblib has no such codec")
    if method == "lz4" and kind == "stream":
        _streams._lz4()  # joblib's error when lz4 is missing, before any file is made

    def write(out: Any) -> None:
        if kind == "stream":
            with _streams.open_writer(method, out, level) as inner:
                _write_payload(value, inner, format, protocol, True)
        elif kind == "wrapper":
            with STREAM_COMPRESSORS[method].compressor_file(out, level or None) as inner:
                _write_payload(value, inner, format, protocol, True)
        else:
            _write_payload(value, out, format, protocol, False, method, level)

    if not isinstance(filename, str):  # (is_filename)
        write(filename)
        return None
    if format == "oxjob" and kind in ("raw", "engine"):
        _engine.write_file(filename, _parts(value, protocol, method), method, level)
    else:
        _write_atomically(filename, write)
    return [filename]


def _parts(value: Any, protocol: int | None, codec: str) -> list[Any]:
    from ._io.container import INBAND_COMPRESSED, INBAND_RAW, pickle_parts

    return pickle_parts(value, protocol, INBAND_RAW if codec == "raw" else INBAND_COMPRESSED)


def _write_payload(
    value: Any,
    out: Any,
    format: str,
    protocol: Any,
    compressed: bool,
    method: str = "raw",
    level: int = 0,
) -> None:
    if format == "joblib":
        from ._io.joblib_write import dump_joblib

        dump_joblib(value, out, protocol, compressed)
        return
    _engine.write_stream(out.write, _parts(value, protocol, method), method, level)


def _write_atomically(filename: str, write: Any) -> None:
    # An unpredictable temporary name, created exclusively: see ``_io/atomic.py``.
    write_atomically(filename, write)


def load(
    filename: str | os.PathLike[str] | IO[bytes],
    mmap_mode: Literal["r+", "r", "w+", "c"] | None = None,
    ensure_native_byte_order: Any = "auto",
    trusted: Any = None,
    max_bytes: int | None = None,
) -> Any:
    """Reconstruct a Python object from a file written by :func:`dump`, joblib or pickle.

    Same signature and semantics as :func:`joblib.load`, plus ``trusted``. The
    format is told by content, never by name: oxjob's container (every chunk's
    checksum verified), any file ``joblib.dump`` writes (raw or in a zlib, gzip,
    bz2, lzma, xz or lz4 stream, and joblib < 0.10's files with ``.npy`` files
    beside them), oxjob's container inside such a stream, and plain pickle files.

    .. warning:: Without ``trusted``, ``load`` runs pickle, which runs whatever
       code the file asks for, as ``joblib.load`` and ``pickle.load`` do. Load
       files from elsewhere with ``trusted=[...]``.

    Parameters
    ----------
    filename : str, pathlib.Path or file object
        The file to read. A file object (a file, ``BytesIO``, socket or pipe) is
        read from its current position (from its start if that position is its
        end, as after a ``dump`` into it), exactly up to the end of the object.
    mmap_mode : {None, 'r', 'r+', 'w+', 'c'}, optional
        For an uncompressed file given by name, return every array (small ones
        too) as a :class:`numpy.memmap` of the file: ``'r'`` read-only,
        ``'r+'``/``'w+'`` writes go to the file, ``'c'`` copy-on-write. O(1)
        whatever the size; mapped data is not checksummed. Ignored, with joblib's
        warnings, for compressed files and in-memory or compressed file objects.
    ensure_native_byte_order : bool or 'auto', default='auto'
        Convert arrays stored in non-native byte order to native order. ``'auto'``
        means True without ``mmap_mode`` and False with it; True with
        ``mmap_mode`` is an error.
    trusted : list of str or classes, optional
        Safe mode. ``None`` (default): unpickle as pickle does. A list (possibly
        empty): the file is read by oxjob's own opcode interpreter, which runs none
        of its code. Builtin containers and scalars, numpy arrays, dtypes and
        scalars, random generators, masked arrays and scipy sparse matrices are
        always rebuilt, from validated arguments. A module prefix (``'sklearn'``)
        lets the classes of its modules be *rebuilt* (created without their
        constructor, then given their state); a qualified name (``'pkg.mod.func'``)
        or a class listed exactly may also be *called* with the file's arguments.
        Anything else raises :class:`~oxjob.exceptions.UnsafeLoadError` before it
        is imported. See docs/persistence.md for what each entry trusts.
    max_bytes : int, optional
        Safe mode only: the most memory the file may ask for (strings, bytes,
        arrays). Default: the file's size times its codec's worst expansion
        ratio, and at least 256 MiB. Over it,
        :class:`~oxjob.exceptions.LoadLimitError` is raised.

    Returns
    -------
    object
        The stored object.

    Raises
    ------
    CorruptFileError
        For a truncated or damaged file, or one that is no pickle at all.
    UnsafeLoadError
        With ``trusted``, for a global or an operation that is not allowed.
    LoadLimitError
        With ``trusted``, when the file asks for more than ``max_bytes`` or for
        work out of proportion to its size (a subclass of ``UnsafeLoadError``).

    Examples
    --------
    >>> import numpy as np, oxjob
    >>> oxjob.dump(np.arange(10**6), "/tmp/big.oxjob")
    ['/tmp/big.oxjob']
    >>> big = oxjob.load("/tmp/big.oxjob", mmap_mode="r")
    >>> type(big).__name__, big[-1]
    ('memmap', np.int64(999999))
    >>> oxjob.load("/tmp/big.oxjob", trusted=[])[:3]
    array([0, 1, 2])
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
    if max_bytes is not None:
        if trusted is None:
            raise ValueError("max_bytes bounds safe loads only: pass trusted=[...] with it")
        if type(max_bytes) is not int or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    policy = None if trusted is None else Policy(trusted)
    if policy is not None:
        policy.max_bytes = max_bytes
    from ._io.load import load_fileobj, load_path

    if hasattr(filename, "read"):
        return load_fileobj(filename, mmap_mode, native, policy)
    return load_path(os.fspath(filename), mmap_mode, native, policy)
