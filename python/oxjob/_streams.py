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


def detect(head: bytes) -> str | None:
    """Name of the standard stream that ``head`` starts, or None."""
    for name, prefix in PREFIXES.items():
        if head.startswith(prefix):
            return name
    return None


class _ZlibReader(io.RawIOBase):
    """Reads a zlib (``wbits=15``) or gzip (``wbits=31``) stream, member after member."""

    def __init__(self, fileobj: Any, wbits: int) -> None:
        self._file = fileobj
        self._wbits = wbits
        self._inflate = zlib.decompressobj(wbits)
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        view = memoryview(out).cast("B")
        filled = 0
        while filled < len(view) and not self._done:
            if not self._pending:
                if self._inflate.unconsumed_tail:
                    self._pending = self._inflate.unconsumed_tail
                else:
                    self._pending = self._file.read(_BLOCK)
                    if not self._pending:
                        if not self._inflate.eof:
                            raise EOFError("Compressed file ended before the end-of-stream marker")
                        self._done = True
                        break
            data = self._inflate.decompress(self._pending, len(view) - filled)
            self._pending = self._inflate.unconsumed_tail
            view[filled : filled + len(data)] = data
            filled += len(data)
            if self._inflate.eof:
                self._next_member()
        return filled

    def _next_member(self) -> None:
        rest = self._inflate.unused_data + self._pending
        self._pending = b""
        if self._wbits != 31:
            self._done = True
            return
        # gzip allows several members one after the other (``cat a.gz b.gz``).
        while len(rest) < len(PREFIXES["gzip"]):
            more = self._file.read(_BLOCK)
            if not more:
                break
            rest += more
        if rest.startswith(PREFIXES["gzip"]):
            self._inflate = zlib.decompressobj(self._wbits)
            self._pending = rest
        elif rest.strip(b"\0"):
            raise OSError("Not a gzipped file: trailing data after the last member")
        else:
            self._done = True


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
        return io.BufferedReader(_ZlibReader(fileobj, 15), _BLOCK)
    if name == "gzip":
        return io.BufferedReader(_ZlibReader(fileobj, 31), _BLOCK)
    if name == "bz2":
        return bz2.BZ2File(fileobj, "rb")
    if name == "xz":
        return lzma.LZMAFile(fileobj, "rb", format=lzma.FORMAT_XZ)
    if name == "lzma":
        return lzma.LZMAFile(fileobj, "rb", format=lzma.FORMAT_ALONE)
    if name == "lz4":
        return _lz4().LZ4FrameFile(fileobj, "rb")
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
