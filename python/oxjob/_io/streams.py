"""Standard compressed streams: recognised by their first bytes, read and written.

``load`` recognises a stream by content, never by file name, as joblib does, so
files written by ``joblib.dump``, by ``oxjob.dump`` or by ``gzip``/``xz``/``bzip2``
command lines all open. The zlib and gzip readers decompress in large blocks
straight from the file (joblib's ``BinaryZlibFile`` works in 8 KiB reads).
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import Any

LZ4_NOT_INSTALLED_ERROR = (
    "LZ4 is not installed. Install it with pip: https://python-lz4.readthedocs.io/"
)

#: First bytes of each stream, as joblib's ``compressor.py`` defines them.
PREFIXES: dict[str, bytes] = {
    "zlib": b"\x78",
    "gzip": b"\x1f\x8b",
    "bz2": b"BZ",
    "xz": b"\xfd\x37\x7a\x58\x5a",
    "lzma": b"\x5d\x00",
    "lz4": b"\x04\x22\x4d\x18",
}
#: Extensions that make ``dump`` write the stream (joblib's ``compressor.extension``).
EXTENSIONS: dict[str, str] = {
    "zlib": ".z",
    "gzip": ".gz",
    "bz2": ".bz2",
    "xz": ".xz",
    "lzma": ".lzma",
    "lz4": ".lz4",
}
#: Level used when only the stream's name is given (joblib's defaults).
DEFAULT_LEVELS: dict[str, int] = {"zlib": 3, "gzip": 3, "bz2": 9, "xz": 6, "lzma": 6, "lz4": 0}
#: joblib's prefix for files written by joblib < 0.10 with compression.
ZFILE_PREFIX = b"ZF"
_BLOCK = 1 << 20
# Decoded in pieces small enough for the allocator to reuse their memory: larger
# ones are fresh pages each time, faulted in twice (here and in the array).
_OUT_BLOCK = 1 << 17


def detect(head: bytes) -> str | None:
    """Name of the standard stream that ``head`` starts, or None."""
    for name, prefix in PREFIXES.items():
        if head.startswith(prefix):
            return name
    return None


class _ZlibReader(io.BufferedIOBase):
    """Reads a zlib (``wbits=15``) or gzip (``wbits=31``) stream, exactly.

    Input is taken with ``peek`` and then consumed by as many bytes as the
    decompressor used, so the source is left just after the stream: a socket or a
    file holding more after it is not read into. A following gzip member (``cat
    a.gz b.gz``) is decoded only when more output is asked for.
    """

    def __init__(self, fileobj: Any, wbits: int) -> None:
        self._file = fileobj
        self._wbits = wbits
        self._inflate = zlib.decompressobj(wbits)
        self._peek = getattr(fileobj, "peek", None)
        self._held = b""  # input taken from a source without peek, not yet used
        self._out = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    _in_block = _BLOCK

    def _input(self) -> bytes:
        if self._peek is not None:
            return self._peek(self._in_block)[: self._in_block]
        if not self._held:
            read1 = getattr(self._file, "read1", None) or self._file.read
            self._held = read1(self._in_block)
        return self._held

    def _used(self, chunk: bytes) -> None:
        left = len(self._inflate.unconsumed_tail)
        if self._inflate.eof:
            left += len(self._inflate.unused_data)
        self._consume(chunk, left)

    def _consume(self, chunk: bytes, left: int) -> None:
        """``chunk`` was decoded but for its last ``left`` bytes: take the rest from the file."""
        if self._peek is not None:
            self._file.read(len(chunk) - left)
        else:
            self._held = chunk[len(chunk) - left :] if left else b""
            if self._inflate.eof and self._held and _seekable(self._file):
                self._file.seek(-len(self._held), io.SEEK_CUR)
                self._held = b""

    def _next_member(self) -> bool:
        if self._wbits != 31:
            return False
        head = self._peek(2)[:2] if self._peek is not None else self._input()[:2]
        if not head.startswith(PREFIXES["gzip"][:1]):
            return False
        self._inflate = zlib.decompressobj(self._wbits)
        return True

    def _decode(self, limit: int) -> bytes:
        """Up to ``limit`` more bytes of output; b"" at the end of the stream."""
        while True:
            if self._inflate.eof and not self._next_member():
                return b""
            chunk = self._input()
            if not chunk:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            data = self._inflate.decompress(chunk, limit)
            self._used(chunk)
            if data:
                return data

    def readinto(self, out: Any) -> int:
        view = memoryview(out).cast("B")
        filled = 0
        if self._pos < len(self._out):
            n = min(len(view), len(self._out) - self._pos)
            view[:n] = self._out[self._pos : self._pos + n]
            self._pos += n
            filled = n
        while filled < len(view):
            want = len(view) - filled
            data = self._decode(min(want, _OUT_BLOCK))
            if not data:
                break
            if len(data) > want:  # decoders without an output limit give more
                self._out, self._pos, data = data, want, data[:want]
            view[filled : filled + len(data)] = data
            filled += len(data)
        return filled

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts: list[bytes | bytearray] = [self._out[self._pos :]]
            self._out, self._pos = b"", 0
            while True:
                data = self._decode(_BLOCK)
                if not data:
                    return b"".join(parts)
                parts.append(data)
        if len(self._out) - self._pos >= size:
            data = self._out[self._pos : self._pos + size]
            self._pos += size
            return data
        if size <= _BLOCK:
            out = bytearray(size)
            return bytes(out[: self.readinto(out)])
        # A large size comes from the stream itself (a pickle's BINBYTES8): memory
        # is taken as the data arrives, in steps that double, so a damaged or
        # hostile size costs what the stream holds, not what it claims.
        parts, filled = [], 0
        while filled < size:
            piece = bytearray(min(size - filled, max(_BLOCK, filled)))
            got = self.readinto(piece)
            parts.append(piece if got == len(piece) else piece[:got])
            filled += got
            if got < len(piece):
                break  # the end of the stream
        return b"".join(parts)

    read1 = read

    def finish(self) -> None:
        """Consume the rest of the current stream (its end marker and checksum).

        The object inside can end before the stream's last bytes are decoded; a
        stream that carries more after it must be left just after this one.
        """
        while not self._inflate.eof:
            if not self._decode(_BLOCK):
                break

    def peek(self, size: int = 1) -> bytes:
        if self._pos >= len(self._out):
            self._out, self._pos = self._decode(_BLOCK), 0
        return self._out[self._pos :]

    def readline(self, size: int | None = -1) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n"):
            chunk = self.peek()
            if not chunk:
                break
            cut = chunk.find(b"\n") + 1 or len(chunk)
            line += self.read(cut)
        return bytes(line)


class _StreamReader(_ZlibReader):
    """bz2, xz, lzma and lz4 streams, read exactly as :class:`_ZlibReader` reads zlib.

    Input goes in 1 MiB blocks (the standard library's files use 8 KiB), each
    decoded whole.
    """

    _in_block = 1 << 15  # decoded whole: keep each output small (see _OUT_BLOCK)

    def __init__(self, fileobj: Any, name: str, factory: Any) -> None:
        super().__init__(fileobj, 15)
        self._name, self._factory = name, factory
        self._inflate = factory()

    def _next_member(self) -> bool:
        head = self._peek(8) if self._peek is not None else self._input()
        if not head[:8].startswith(PREFIXES[self._name][:2]):
            return False
        self._inflate = self._factory()
        return True

    def _decode(self, limit: int) -> bytes:
        # No output limit: with one, the end of the stream could be found in a later
        # call, after the chunk holding it was consumed whole, and the bytes after
        # the stream (``unused_data``) would be lost from the file.
        while True:
            if self._inflate.eof and not self._next_member():
                return b""
            chunk = self._input()
            if not chunk:
                raise EOFError("Compressed file ended before the end-of-stream marker")
            data = self._inflate.decompress(chunk)
            unused = self._inflate.unused_data if self._inflate.eof else b""
            self._consume(chunk, len(unused or b""))
            if data:
                return data


def _seekable(fileobj: Any) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _ZlibWriter(io.RawIOBase):
    def __init__(self, fileobj: Any, level: int, wbits: int) -> None:
        self._file = fileobj
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, wbits)
        self._position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        # The uncompressed position, as joblib's BinaryZlibFile gives it: joblib's
        # format aligns arrays on it.
        return self._position

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._file.write(self._deflate.compress(view))
        self._position += len(view)
        return len(view)

    def close(self) -> None:
        if not self.closed:
            self._file.write(self._deflate.flush())
        super().close()


def _lz4() -> Any:
    try:
        import lz4.frame
    except ImportError:
        raise ValueError(LZ4_NOT_INSTALLED_ERROR) from None
    return lz4.frame


def open_reader(name: str, fileobj: Any) -> Any:
    """A buffered file object decompressing stream ``name`` from ``fileobj``."""
    if name == "zlib":
        return _ZlibReader(fileobj, 15)
    if name == "gzip":
        return _ZlibReader(fileobj, 31)
    if name == "bz2":
        return _StreamReader(fileobj, name, bz2.BZ2Decompressor)
    if name == "xz":
        return _StreamReader(fileobj, name, lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ))
    if name == "lzma":
        return _StreamReader(fileobj, name, lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE))
    if name == "lz4":
        return _StreamReader(fileobj, name, _lz4().LZ4FrameDecompressor)
    raise ValueError(f"unknown stream {name!r}")


def open_writer(name: str, fileobj: Any, level: int | None) -> Any:
    """A file object compressing what is written into ``fileobj`` as stream ``name``.

    Closing it finishes the stream but leaves ``fileobj`` open.
    """
    level = DEFAULT_LEVELS[name] if level is None else level
    if name in ("zlib", "gzip"):
        # Level 0 would mean "stored": joblib writes level 3 for an explicit 0.
        wbits = 15 if name == "zlib" else 31
        return io.BufferedWriter(_ZlibWriter(fileobj, level or 3, wbits), _BLOCK)
    if name == "bz2":
        return bz2.BZ2File(fileobj, "wb", compresslevel=level or 9)
    if name in ("xz", "lzma"):
        form = lzma.FORMAT_XZ if name == "xz" else lzma.FORMAT_ALONE
        return lzma.LZMAFile(fileobj, "wb", format=form, preset=level)
    if name == "lz4":
        return _lz4().LZ4FrameFile(fileobj, "wb", compression_level=level)
    raise ValueError(f"unknown stream {name!r}")
