"""Type stubs for ``oxjob._engine``, the Rust engine (PyO3). Private: use ``oxjob``'s API."""

import sys
from collections.abc import Callable
from os import PathLike
from typing import Any, final

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__version__: str
"""The package version (the Cargo workspace's, as in the package metadata)."""

ALIGN: int
"""Alignment of uncompressed buffers in a container (4096)."""

class CorruptFileError(ValueError):
    """A file is not a valid oxjob container (re-exported by ``oxjob.exceptions``)."""

@final
class OwnedBuffer:
    """Engine-owned bytes exposed as a writable buffer; numpy views them without copies."""

    def __len__(self) -> int: ...
    def __buffer__(self, flags: int) -> memoryview: ...

@final
class StreamHasher:
    """Incremental xxh3-128 with ``hashlib``'s method names."""

    name: str
    def __new__(cls) -> StreamHasher: ...
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

@final
class Store:
    """The on-disk cache of ``Memory``: one directory per entry, written atomically."""

    def __new__(cls, root: str | PathLike[str]) -> Store: ...
    @property
    def root(self) -> str: ...
    def entry_dir(self, func_id: str, key: str) -> str:
        """The directory of an entry."""
    def put(
        self,
        func_id: str,
        key: str,
        parts: list[Any],
        codec: str,
        level: int,
        metadata: bytes,
        threads: int | None = None,
    ) -> int:
        """Store ``[pickle, buffer, ...]`` and ``metadata``, replacing an older entry of the
        key; returns the bytes the entry takes."""
    def get(self, func_id: str, key: str, threads: int | None = None) -> list[OwnedBuffer] | None:
        """``[pickle, buffer, ...]`` of an entry, or None when absent; marks it as used."""
    def touch(self, func_id: str, key: str) -> None:
        """Mark an entry as just used."""
    def contains(self, func_id: str, key: str) -> bool: ...
    def remove(self, func_id: str, key: str) -> None: ...
    def clear(self, sub: str | None = None) -> int:
        """Remove a function's entries (``sub``), or everything; returns how many."""
    def entries(self) -> list[tuple[str, str, int, float, float]]:
        """Every entry: ``(func_id, key, bytes, last_access, created)``, times in seconds."""
    def reduce(
        self,
        bytes_limit: int | None = None,
        items_limit: int | None = None,
        age_limit: float | None = None,
    ) -> list[tuple[str, str, int, float, float]]:
        """Enforce bounds, least recently used first; returns the removed entries."""
    def after_put(
        self,
        nbytes: int,
        bytes_limit: int | None = None,
        items_limit: int | None = None,
        age_limit: float | None = None,
    ) -> list[tuple[str, str, int, float, float]]:
        """Enforce bounds after a write of ``nbytes``, walking the store only when due
        (amortised O(1) per write); returns the removed entries."""

@final
class Segment:
    """Anonymous shared memory (a memfd) that travels to workers as a descriptor."""

    @staticmethod
    def create(nbytes: int) -> Segment:
        """A new zero-filled segment of ``nbytes`` bytes."""
    @staticmethod
    def from_buffer(data: Buffer) -> Segment:
        """A new segment holding a copy of ``data`` (copied without the GIL)."""
    def refill(self, data: Buffer) -> None:
        """Overwrite the whole segment with ``data``, exactly as long; only for a segment
        no worker maps any more (after its ``RELEASED`` frame). A memcpy once
        :meth:`map_for_refills` has mapped it here."""
    def map_for_refills(self) -> None:
        """Map the segment here now, every page writable, so that refills are memcpys."""
    @property
    def nbytes(self) -> int: ...
    @property
    def address(self) -> int:
        """Address of the shared mapping in this process (maps it if needed)."""
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int) -> memoryview: ...

@final
class DelayedFunction:
    """``f`` wrapped so that calling it returns the call as ``(f, args, kwargs)``; the
    attributes of ``f`` read through it (``__name__``, ``__qualname__`` ...)."""

    def __new__(cls, function: Callable[..., Any]) -> DelayedFunction: ...
    def __call__(
        self, *args: Any, **kwargs: Any
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]: ...
    @property
    def __wrapped__(self) -> Callable[..., Any]: ...
    def __getattr__(self, name: str) -> Any: ...

def forget_delayed() -> None:
    """Drop the wrapper ``delayed`` keeps for reuse (at the end of a ``Parallel`` call)."""

def delayed(function: Callable[..., Any]) -> DelayedFunction:
    """Capture a call: ``delayed(f)(*args, **kwargs)`` returns ``(f, args, kwargs)``
    (``oxjob.delayed``; the returned tuples are not tracked by the cycle collector)."""

def uniform_calls(tasks: list[Any]) -> tuple[Callable[..., Any], tuple[Any, ...], bool] | None:
    """``(f, arguments, single)`` when every ``(f, args, kwargs)`` task calls the same
    ``f`` without keyword arguments, else ``None``; ``arguments`` are the ``args``
    tuples, or their only items when every call has one argument (``single``)."""

def buffer_address(data: Buffer) -> tuple[int, int]:
    """``(address, nbytes)`` of a bytes-like object's memory."""

_Event = tuple[Any, ...]

@final
class Supervisor:
    """Worker processes on the caller's side: ``oxjob_core::workers::Supervisor``, which
    starts, feeds and reaps them."""

    def __new__(
        cls,
        program: str,
        args: list[str],
        env: list[tuple[str, str]],
        n: int,
        result_mode: str = "shared",
        template: str | None = None,
    ) -> Supervisor:
        """Start ``n`` workers running ``program args...`` with ``env`` added, or
        forked from the template listening at ``template`` (see :mod:`oxjob._workers.template`)."""
    def __len__(self) -> int: ...
    def send(
        self,
        worker: int,
        kind: int,
        tag: int,
        body: Buffer,
        segments: list[Segment],
        n_shared: int = 0,
    ) -> None:
        """Send a frame with ``segments`` as descriptors; the last ``n_shared`` are shared."""
    def ready_events(self, limit: int) -> list[_Event]:
        """Up to ``limit`` events already waiting, without waiting."""
    def next_event(self, timeout: float | None = None) -> _Event | None:
        """``("frame", worker, generation, kind, tag, body, buffers, shared)`` or
        ``("exit", worker, generation, exit_code, signal)``; None after ``timeout``
        or when ``wake`` was called."""
    def wake(self) -> None:
        """End a ``next_event`` wait now (it returns None), or the next one."""
    def kill(self, worker: int) -> None:
        """SIGKILL a worker; its exit arrives as an event."""
    def spawn(self, worker: int) -> int:
        """(Re)start the worker in a slot; returns its new generation."""
    def pid(self, worker: int) -> int | None: ...
    def generation(self, worker: int) -> int | None: ...
    def shutdown(self, grace: float = 1.0) -> None:
        """Ask workers to exit, wait up to ``grace`` seconds, kill the rest."""

@final
class WorkerChannel:
    """A worker's end of its socket to the supervisor."""

    def __new__(cls, fd: int, map_mode: str = "c") -> WorkerChannel: ...
    def recv(
        self, timeout: float | None = None
    ) -> tuple[int, int, OwnedBuffer, list[OwnedBuffer], list[Segment]] | None:
        """The next frame, or None after ``timeout``; EOFError once the supervisor is gone.
        The shared segments of task frames are kept mapped for later frames, until a
        ``FORGET`` frame (handled here, never returned) or :meth:`let_go_of_segments`."""
    def keeps_segments(self) -> bool:
        """Whether shared segments are kept mapped."""
    def forget_segments(self, segments: list[Segment]) -> None:
        """Stop keeping ``segments`` mapped (spares the worker lets go of)."""
    def let_go_of_segments(self) -> None:
        """Stop keeping shared segments mapped (the worker is idle)."""
    def send(
        self, kind: int, tag: int, body: Buffer, segments: list[Segment], n_shared: int = 0
    ) -> None: ...

def fork_sibling() -> int:
    """In the template: fork a worker as a child of the template's parent (the
    caller); 0 in the child, its pid here. OSError where it cannot be done."""

def watch_parent(ppid: int) -> None:
    """In a worker: exit as soon as process ``ppid`` is gone."""
