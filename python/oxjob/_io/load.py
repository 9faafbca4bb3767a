"""How ``load`` tells a file's format by its first bytes and reads it.

Order of the checks: oxjob's container, joblib < 0.10's ``ZF`` file, a standard
compressed stream (whose content is then an oxjob container or a pickle stream),
and last a pickle stream, plain or in joblib's format. A plain pickle is read by
the C unpickler; at the first joblib array record it hands over to the
pure-Python one, which joblib's format needs, from the start of the stream.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import warnings
from collections.abc import Iterator
from typing import Any

from .. import _engine
from ..compressors import STREAM_COMPRESSORS
from ..exceptions import CorruptFileError
from . import streams
from .container import (
    MAGIC,
    LoadContext,
    load_mapped,
    looks_like_container,
    read_container_stream,
    unpickle,
)
from .joblib_read import load_zfile, unpickle_joblib
from .safe import FastUnpickler, JoblibStream, Policy

_HEAD = 8


def _warn_compressed(mmap_mode: str, path: str) -> None:
    warnings.warn(
        f'mmap_mode "{mmap_mode}" is not compatible with compressed file {path}. '
        f'"{mmap_mode}" flag will be ignored.',
        stacklevel=4,
    )


def _wrapper_for(head: bytes) -> Any:
    for compressor in STREAM_COMPRESSORS.values():
        prefix = compressor.prefix
        if isinstance(prefix, bytes) and prefix and head.startswith(prefix):
            return compressor
    return None


def load_path(path: str, mmap_mode: str | None, native: bool, policy: Policy | None) -> Any:
    """Load the file at ``path``."""
    with open(path, "rb") as f:
        head = f.read(_HEAD)
        f.seek(0)
        if looks_like_container(head):
            f.close()
            return _load_container_path(path, mmap_mode, native, policy)
        if head.startswith(streams.ZFILE_PREFIX):
            if mmap_mode is not None:
                _warn_compressed(mmap_mode, path)
            return load_zfile(path, what=path, native=native, policy=policy)
        stored = os.fstat(f.fileno()).st_size
        name = streams.detect(head)
        wrapper = None if name is not None else _wrapper_for(head)  # built-in streams first
        if name is not None or wrapper is not None:
            if mmap_mode is not None:
                _warn_compressed(mmap_mode, path)
            if wrapper:
                inner = wrapper.decompressor_file(f)
            else:
                assert name is not None  # a wrapper is only looked for when it is None
                inner = streams.open_reader(name, f)
            with inner:
                return _load_decoded(
                    inner, path, native, policy, stored=stored, codec=name or "gzip"
                )
        mapping = _map(path, mmap_mode) if mmap_mode is not None else None
        return _load_pickle(
            f, path, native, policy, filename=path, mmap=mapping, mmap_mode=_mode(mmap_mode),
            stored=stored,
        )  # fmt: skip


def _mode(mmap_mode: str | None) -> str | None:
    return "r+" if mmap_mode == "w+" else mmap_mode


def _map(path: str, mmap_mode: str) -> Any:
    import mmap

    mode = _mode(mmap_mode)
    assert mode is not None  # _mode keeps a mode a str
    access = {"r": mmap.ACCESS_READ, "r+": mmap.ACCESS_WRITE, "c": mmap.ACCESS_COPY}[mode]
    with open(path, "r+b" if mode == "r+" else "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return None
        return mmap.mmap(f.fileno(), 0, access=access)


def _load_container_path(
    path: str, mmap_mode: str | None, native: bool, policy: Policy | None
) -> Any:
    if mmap_mode is not None:
        mapped, value = load_mapped(path, mmap_mode, policy)
        if mapped:
            return value
        _warn_compressed(mmap_mode, path)
        native = False
    parts = _engine.read_file(path)
    return unpickle(parts[0], parts[1:], LoadContext(native), path, policy)


def _load_decoded(
    inner: Any,
    what: str,
    native: bool,
    policy: Policy | None,
    stored: int | None = None,
    codec: str | None = None,
) -> Any:
    """Load what a decompressor yields: an oxjob container or a pickle stream."""
    with _undecodable(what):
        return _load_decoded_stream(inner, what, native, policy, stored, codec)


@contextlib.contextmanager
def _undecodable(what: str) -> Iterator[None]:
    """A compressed stream whose data does not decode is a corrupt file, not zlib's error."""
    import lzma
    import zlib

    errors: tuple[type[BaseException], ...] = (zlib.error, lzma.LZMAError, EOFError)
    try:
        yield
    except errors as exc:
        raise CorruptFileError(f"{what}: the compressed stream does not decode: {exc}") from exc
    except OSError as exc:  # gzip.BadGzipFile, bz2's "Invalid data stream"
        if type(exc).__name__ != "BadGzipFile" and "Invalid data stream" not in str(exc):
            raise
        raise CorruptFileError(f"{what}: the compressed stream does not decode: {exc}") from exc


def _load_decoded_stream(
    inner: Any,
    what: str,
    native: bool,
    policy: Policy | None,
    stored: int | None,
    codec: str | None,
) -> Any:
    head, source = _head_of(inner)
    if looks_like_container(head):
        parts, _ = read_container_stream(source, what)
        value = unpickle(parts[0], parts[1:], LoadContext(native), what, policy)
    else:
        value = _load_pickle(source, what, native, policy, stored=stored, codec=codec)
    finish = getattr(inner, "finish", None)
    if finish is not None:
        finish()
    return value


def _load_pickle(fileobj: Any, what: str, native: bool, policy: Policy | None, **kw: Any) -> Any:
    """Load a pickle stream, plain or in joblib's format, from ``fileobj``."""
    stored, codec = kw.pop("stored", None), kw.pop("codec", None)
    if policy is not None:
        return safe_pickle(fileobj, what, native, policy, stored=stored, codec=codec, **kw)
    start = fileobj.tell() if _seekable(fileobj) else None
    with bad_pickle(what):
        if start is not None:
            try:
                return FastUnpickler(fileobj).load()
            except JoblibStream:
                fileobj.seek(start)
        return unpickle_joblib(fileobj, what=what, native=native, policy=policy, **kw)


def safe_pickle(
    fileobj: Any,
    what: str,
    native: bool,
    policy: Policy,
    *,
    filename: str | None = None,
    mmap: Any = None,
    mmap_mode: str | None = None,
    stored: int | None = None,
    codec: str | None = None,
    compat: bool = False,
) -> Any:
    """A safe load (``trusted=...``) of a pickle stream, plain or in joblib's format."""
    from .joblib_read import compat_warning
    from .safe_joblib import JoblibContext
    from .safe_unpickle import load_stream

    context = JoblibContext(filename, mmap, mmap_mode)
    context.native = native
    if stored is None and _seekable(fileobj):
        here = fileobj.tell()
        stored = fileobj.seek(0, os.SEEK_END) - here
        fileobj.seek(here)
    unpickler = load_stream(fileobj, policy, what, stored=stored, codec=codec, context=context)
    if context.compat or compat:
        compat_warning(filename or what)
    return unpickler.value


@contextlib.contextmanager
def bad_pickle(what: str) -> Iterator[None]:
    """A stream that is no pickle at all is a :class:`CorruptFileError`."""
    try:
        yield
    except UnicodeDecodeError as exc:
        from .joblib_read import _PY2_MESSAGE

        raise ValueError(_PY2_MESSAGE) from exc
    except (EOFError, pickle.UnpicklingError) as exc:
        if type(exc) not in (EOFError, pickle.UnpicklingError):
            raise  # UnsafeLoadError
        raise CorruptFileError(
            f"{what}: not an oxjob, joblib or pickle file (bad magic, then {exc})"
        ) from exc


def _seekable(fileobj: Any) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _Replay:
    """A stream that cannot be peeked at or rewound, with its first bytes put back.

    Reads are exact (``read(n)`` waits for ``n`` bytes or the end, never more), so
    a socket or pipe is not read past the object.
    """

    def __init__(self, head: bytes, fileobj: Any) -> None:
        self._head, self._file = head, fileobj

    def read(self, n: int = -1) -> bytes:
        parts = []
        if self._head:
            taken = self._head if n < 0 else self._head[:n]
            self._head = self._head[len(taken) :]
            parts.append(taken)
            n = n if n < 0 else n - len(taken)
        while n:
            data = self._file.read(n if n > 0 else 1 << 20)
            if not data:
                break
            parts.append(data)
            n = n if n < 0 else n - len(data)
        return b"".join(parts)

    def read1(self, n: int = -1) -> bytes:
        if not self._head:
            read1 = getattr(self._file, "read1", None) or self._file.read
            return read1(n if n > 0 else 1 << 20)
        return self.read(min(n, len(self._head)) if n > 0 else len(self._head))

    def peek(self, n: int = 1) -> bytes:
        if not self._head:
            self._head = self.read1(max(n, 1))
        return self._head

    def readinto(self, out: Any) -> int:
        view = memoryview(out).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readline(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n"):
            byte = self.read(1)
            if not byte:
                break
            line += byte
        return bytes(line)


def _undecided(head: bytes) -> bool:
    """Whether more first bytes are needed to tell the format."""
    prefixes = [MAGIC, streams.ZFILE_PREFIX, *streams.PREFIXES.values()]
    prefixes += [c.prefix for c in STREAM_COMPRESSORS.values() if isinstance(c.prefix, bytes)]
    return len(head) < _HEAD and any(
        len(head) < len(p) and p.startswith(head) for p in prefixes if p
    )


def _head_of(fileobj: Any) -> tuple[bytes, Any]:
    """The first bytes of ``fileobj`` and a file object positioned before them.

    Never waits for more bytes than the format needs: a tiny pickle on a socket
    is only a few bytes long.
    """
    peek = getattr(fileobj, "peek", None)
    if peek is not None:
        try:
            head = peek(_HEAD)[:_HEAD]
        except (OSError, ValueError):
            head = None
        if head is not None and (head and not _undecided(head)):
            return head, fileobj
    if _seekable(fileobj):
        start = fileobj.tell()
        head = fileobj.read(_HEAD)
        if not head and start:
            # joblib reads a file object from its start: ``dump(x, buf); load(buf)``.
            fileobj.seek(0)
            start, head = 0, fileobj.read(_HEAD)
        fileobj.seek(start)
        return head, fileobj
    read1 = getattr(fileobj, "read1", None) or fileobj.read
    head = b""
    while not head or _undecided(head):
        data = read1(_HEAD - len(head))
        if not data:
            break
        head += data
    return head, _Replay(head, fileobj)


def load_fileobj(fileobj: Any, mmap_mode: str | None, native: bool, policy: Policy | None) -> Any:
    """Load from an open file object, reading no further than the object's end."""
    what = repr(getattr(fileobj, "name", "<file object>"))
    head, source = _head_of(fileobj)
    name = streams.detect(head)
    wrapper = None if name is not None else _wrapper_for(head)  # built-in streams first
    if mmap_mode is not None:
        if isinstance(fileobj, io.BytesIO):
            message = (
                f'In memory persistence is not compatible with mmap_mode "{mmap_mode}" '
                "flag passed. mmap_mode option will be ignored."
            )
        elif name is not None or wrapper is not None:
            message = (
                f'mmap_mode "{mmap_mode}" is not compatible with compressed file {what}. '
                f'"{mmap_mode}" flag will be ignored.'
            )
        elif not isinstance(getattr(fileobj, "raw", fileobj), io.FileIO):
            message = (
                f'"{fileobj!r}" is not a raw file, mmap_mode "{mmap_mode}" flag will be ignored.'
            )
        else:
            message = None  # a raw file object: read, as joblib does
        if message:
            warnings.warn(message, stacklevel=3)
    if looks_like_container(head):
        parts, _ = read_container_stream(source, what)
        return unpickle(parts[0], parts[1:], LoadContext(native), what, policy)
    if head.startswith(streams.ZFILE_PREFIX):
        raise CorruptFileError(
            f"{what}: a joblib < 0.10 compressed file (ZF): load it by its file name"
        )
    if name is not None or wrapper is not None:
        stream = wrapper.decompressor_file(source) if wrapper else None
        if not stream:
            assert name is not None  # a wrapper is only looked for when it is None
            stream = streams.open_reader(name, source)
        return _load_decoded(stream, what, native, policy)
    return _load_pickle(source, what, native, policy)
