"""The compressors ``dump`` knows, and :func:`register_compressor` for more.

Built-in *engine* codecs (``zstd``, and ``lz4``, ``zlib``, ``gzip`` for ``.oxjob``
names) compress each chunk of an oxjob container in Rust, on several threads.
*Standard streams* (``gzip``, ``zlib``, ``bz2``, ``xz``, ``lzma``, ``lz4``) wrap the
whole file so that other tools open it (``oxjob._io.streams``). Compressors added by
:func:`register_compressor` wrap the whole file too, as joblib's do.
"""

from __future__ import annotations

from typing import Any

from ._io import streams as _streams

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


#: Compressors added by :func:`register_compressor`, by name. They wrap a whole file.
STREAM_COMPRESSORS: dict[str, Any] = {}


def _is_wrapper(compressor: Any) -> bool:
    # joblib's own CompressorWrapper is accepted too, without importing joblib.
    return isinstance(compressor, CompressorWrapper) or any(
        klass.__name__ == "CompressorWrapper" and klass.__module__.startswith("joblib")
        for klass in type(compressor).__mro__
    )


def register_compressor(compressor_name: str, compressor: Any, force: bool = False) -> None:
    """Register a stream compressor for :func:`oxjob.dump` and :func:`oxjob.load`.

    Validates its arguments as ``joblib.register_compressor`` does, with the same
    messages.

    Parameters
    ----------
    compressor_name : str
        The name passed as ``compress=name`` or ``compress=(name, level)``.
    compressor : CompressorWrapper
        An instance of :class:`CompressorWrapper` (or of joblib's), whose
        ``fileobj_factory`` is a file-object class (``read``, ``write``, ``seek``,
        ``tell``).
    force : bool, default=False
        Replace an existing compressor of the same name.

    Raises
    ------
    ValueError
        If the name is not a string, ``compressor`` is not a ``CompressorWrapper``,
        its factory is not a file-object class, the name is one of the built-in
        streams or codecs, or the name is taken and ``force`` is false.

    Examples
    --------
    >>> import bz2, oxjob
    >>> from oxjob.compressors import CompressorWrapper
    >>> oxjob.register_compressor("bz2-copy", CompressorWrapper(bz2.BZ2File, b"BZh", ".bzc"))
    >>> oxjob.register_compressor("bz2-copy", object())
    Traceback (most recent call last):
    ...
    ValueError: Compressor should implement the CompressorWrapper interface, ...
    """
    if not isinstance(compressor_name, str):
        raise ValueError(f"Compressor name should be a string, '{compressor_name}' given.")
    if not _is_wrapper(compressor):
        raise ValueError(
            f"Compressor should implement the CompressorWrapper interface, '{compressor}' given."
        )
    factory = getattr(compressor, "fileobj_factory", None)
    if factory is not None and not all(
        hasattr(factory, attr) for attr in ("read", "write", "seek", "tell")
    ):
        raise ValueError(
            "Compressor 'fileobj_factory' attribute should implement the file object "
            f"interface, '{factory}' given."
        )
    if compressor_name in ENGINE_CODECS or compressor_name in _streams.PREFIXES:
        raise ValueError(f"Compressor '{compressor_name}' is built into oxjob.")
    if compressor_name in STREAM_COMPRESSORS and not force:
        raise ValueError(f"Compressor '{compressor_name}' already registered.")
    STREAM_COMPRESSORS[compressor_name] = compressor


def all_names() -> list[str]:
    """Every accepted compressor name, engine codecs first."""
    return list(dict.fromkeys([*ENGINE_CODECS, *_streams.PREFIXES, *STREAM_COMPRESSORS]))


def resolve(filename: Any, compress: Any, container_only: bool = False) -> tuple[str, str, int]:
    """``(kind, name, level)`` for a ``dump`` call, decided as joblib decides it.

    ``kind`` is ``"raw"``, ``"engine"`` (a codec inside oxjob's container),
    ``"stream"`` (a standard stream of that name around the file) or ``"wrapper"``
    (a compressor from :func:`register_compressor`). A standard stream name
    (``gzip``, ``zlib``, ``bz2``, ``xz``, ``lzma``, ``lz4``) or extension gives that
    stream, except for a ``.oxjob`` file name or ``container_only`` (the cache),
    where ``zlib``/``gzip``/``lz4`` are the engine's codecs.
    """
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
    if method not in all_names():
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
        return "raw", "raw", 0
    if method in STREAM_COMPRESSORS:
        return "wrapper", method, 0 if level is None or level is True else int(level)
    own_name = isinstance(filename, str) and filename.endswith(".oxjob")
    if method in _streams.PREFIXES and not (
        (own_name or container_only) and method in ENGINE_CODECS
    ):
        return "stream", method, _streams.DEFAULT_LEVELS[method] if level is None else int(level)
    if level is None or level is True:
        level = ENGINE_CODECS[method][1]
    return "engine", method, int(level)


def _extensions() -> dict[str, str]:
    found = {"zstd": ENGINE_CODECS["zstd"][0], **_streams.EXTENSIONS}
    found.update({name: c.extension for name, c in STREAM_COMPRESSORS.items() if c.extension})
    return found
