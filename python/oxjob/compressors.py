"""The compressors ``dump`` knows, and :func:`register_compressor` for more.

Built-in *engine* codecs (``zstd``, ``lz4``, ``zlib``, ``gzip``) compress each
chunk of an oxjob container in Rust, on several threads. Registered *stream*
compressors (``bz2``, ``lzma``, ``xz`` and the user's own) wrap the whole
container in a Python file object, as joblib's compressors do; they are slower
but let any codec be used.
"""

from __future__ import annotations

import bz2
import lzma
from typing import Any

__all__ = ["CompressorWrapper", "register_compressor"]

#: Engine codecs, by name, with the file extension that selects them and the
#: level used when ``compress=True`` or only the name is given.
ENGINE_CODECS: dict[str, tuple[str, int]] = {
    "zstd": (".zst", 3),
    "lz4": (".lz4", 1),
    "zlib": (".z", 3),
    "gzip": (".gz", 3),
}
DEFAULT_CODEC = "zstd"


class CompressorWrapper:
    """A stream compressor usable by :func:`oxjob.dump` and :func:`oxjob.load`.

    Same interface as ``joblib.compressor.CompressorWrapper``.

    Parameters
    ----------
    obj : callable
        A file-object class such as ``bz2.BZ2File``, called as
        ``obj(fileobj, "wb", compresslevel=level)`` and ``obj(fileobj, "rb")``.
    prefix : bytes, default=b""
        The first bytes of a compressed stream, used by ``load`` to recognise it.
    extension : str, default=""
        File-name extension that selects this compressor in ``dump``.

    Examples
    --------
    >>> import bz2, oxjob
    >>> wrapper = oxjob.compressors.CompressorWrapper(bz2.BZ2File, b"BZh", ".mybz2")
    >>> oxjob.register_compressor("mybz2", wrapper)
    """

    fileobj_factory: Any

    def __init__(self, obj: Any, prefix: bytes = b"", extension: str = "") -> None:
        self.fileobj_factory = obj
        self.prefix = prefix
        self.extension = extension

    def compressor_file(self, fileobj: Any, compresslevel: int | None = None) -> Any:
        """Return a file object that compresses what is written into ``fileobj``."""
        if compresslevel is None:
            return self.fileobj_factory(fileobj, "wb")
        return self.fileobj_factory(fileobj, "wb", compresslevel=compresslevel)

    def decompressor_file(self, fileobj: Any) -> Any:
        """Return a file object that decompresses what it reads from ``fileobj``."""
        return self.fileobj_factory(fileobj, "rb")


class _LZMAWrapper(CompressorWrapper):
    def __init__(self, format: int, prefix: bytes, extension: str) -> None:
        super().__init__(lzma.LZMAFile, prefix, extension)
        self._format = format

    def compressor_file(self, fileobj: Any, compresslevel: int | None = None) -> Any:
        return lzma.LZMAFile(fileobj, "wb", format=self._format, preset=compresslevel)

    def decompressor_file(self, fileobj: Any) -> Any:
        return lzma.LZMAFile(fileobj, "rb", format=self._format)


#: Stream compressors by name (joblib's ``_COMPRESSORS`` minus the engine codecs).
STREAM_COMPRESSORS: dict[str, Any] = {
    "bz2": CompressorWrapper(bz2.BZ2File, b"BZh", ".bz2"),
    "lzma": _LZMAWrapper(lzma.FORMAT_ALONE, b"]\x00\x00", ".lzma"),
    "xz": _LZMAWrapper(lzma.FORMAT_XZ, b"\xfd7zXZ", ".xz"),
}


def register_compressor(compressor_name: str, compressor: Any, force: bool = False) -> None:
    """Register a stream compressor for :func:`oxjob.dump` and :func:`oxjob.load`.

    Parameters
    ----------
    compressor_name : str
        The name passed as ``compress=name`` or ``compress=(name, level)``.
    compressor : CompressorWrapper
        An object with ``compressor_file``, ``decompressor_file``, ``prefix`` and
        ``extension`` (a joblib ``CompressorWrapper`` works too).
    force : bool, default=False
        Replace an existing compressor of the same name.

    Raises
    ------
    ValueError
        If the name is not a string, the compressor lacks the interface, or the
        name is taken and ``force`` is false.
    """
    if not isinstance(compressor_name, str):
        raise ValueError(f"Compressor name should be a string, '{compressor_name}' was given.")
    needed = ("compressor_file", "decompressor_file", "prefix", "extension")
    if not all(hasattr(compressor, attr) for attr in needed):
        raise ValueError(
            f"Compressor should implement the CompressorWrapper interface, '{compressor}' "
            "was given."
        )
    if compressor_name in ENGINE_CODECS:
        raise ValueError(f"Compressor '{compressor_name}' is built into the engine.")
    if compressor_name in STREAM_COMPRESSORS and not force:
        raise ValueError(f"Compressor '{compressor_name}' already registered.")
    STREAM_COMPRESSORS[compressor_name] = compressor


def all_names() -> list[str]:
    """Every accepted compressor name, engine codecs first."""
    return [*ENGINE_CODECS, *STREAM_COMPRESSORS]
