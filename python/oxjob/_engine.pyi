"""Type stubs for ``oxjob._engine``, the Rust engine (PyO3). Private: use ``oxjob``'s API."""

import sys
from collections.abc import Callable
from os import PathLike
from typing import Any

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

ALIGN: int
"""Alignment of uncompressed buffers in a container (4096)."""

class CorruptFileError(ValueError):
    """A file is not a valid oxjob container (re-exported by ``oxjob.exceptions``)."""

class OwnedBuffer:
    """Engine-owned bytes exposed as a writable buffer; numpy views them without copies."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int) -> memoryview: ...

class StreamHasher:
    """Incremental xxh3-128 with ``hashlib``'s method names."""

    name: str
    def __init__(self) -> None: ...
    def update(self, data: Buffer) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...

def write_file(
    path: str | PathLike[str],
    parts: list[Any],
    codec: str,
    level: int,
    threads: int | None = None,
) -> int:
    """Write ``[pickle, buffer, ...]`` as a container, atomically; returns its size."""

def write_stream(
    write: Callable[[bytes], Any],
    parts: list[Any],
    codec: str,
    level: int,
    threads: int | None = None,
) -> int:
    """Write a container through a file object's ``write``; returns its size."""

def read_file(path: str | PathLike[str], threads: int | None = None) -> list[OwnedBuffer]:
    """Read and check a whole container file: ``[pickle, buffer, ...]``."""

def read_bytes(data: Buffer, threads: int | None = None) -> tuple[list[OwnedBuffer], int]:
    """Read and check the container at the start of ``data``; also returns its length."""

def layout_file(
    path: str | PathLike[str],
) -> tuple[OwnedBuffer, list[tuple[str, int, int]], int]:
    """Check a container's structure; return its pickle stream and ``(codec, offset, length)``
    of each buffer, and the container's length."""

def mark_unverified(path: str | PathLike[str]) -> None:
    """Stop checking the data checksums of uncompressed buffers (before an ``r+`` map)."""

def codec_names() -> list[str]:
    """Names of the engine's codecs."""

def default_threads() -> int:
    """Threads the engine uses by default."""
