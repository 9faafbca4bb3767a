"""Large inputs of the task engine's calls: the segments they travel in.

An input of at least ``max_nbytes`` is copied once into a memfd segment (``_copy``,
the one copy per direction) and the worker maps it. Within a call, a buffer given to
many tasks is copied once; a segment every worker has let go of is refilled with a
later input of the same size. Across calls, in the modes where workers cannot write
through (``'c'``, ``'r'``), a segment is kept by the xxh3-128 of its bytes, and a later
call that sends the same bytes reuses it with no copy. See docs/engine.md.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from .. import _engine

if TYPE_CHECKING:
    from .calls import Task

#: Segments of recent calls' inputs, known by the hash of their bytes, are kept this long
#: after the engine goes idle, and up to RECENT_BYTES in all (a documented seam: a test
#: sets it to 0 to see them evicted).
RECENT_SECONDS = 5.0
RECENT_BYTES = 2 << 30

# Every copy of a large input into a segment, in this process (see counts()).
_counts = {"copies": 0, "copied_bytes": 0, "new_segments": 0}


def counts() -> dict[str, int]:
    """How many large inputs this process has copied into segments so far (``copies``,
    ``copied_bytes``; refills included) and how many segments it allocated for them
    (``new_segments``). Diagnostics: the tests count copies with it."""
    return dict(_counts)


class CallInputs:
    """One call's large inputs: the segments they were copied into.

    Parameters
    ----------
    cache : bool
        Keep the segment of every large input for the whole call, so an argument given
        to many tasks is copied once (``Parallel``); otherwise a task's segments become
        spares as soon as its worker lets go of them (``Pool``).
    """

    __slots__ = ("cache", "segments", "users", "pinned", "reusable", "digests", "nbytes", "carried")

    def __init__(self, cache: bool) -> None:
        self.cache = cache
        # Segments by (address, size) of the memory they copy; holding the buffer keeps
        # the address from being reused during the call.
        self.segments: dict[tuple[int, int], tuple[Any, memoryview]] = {}
        self.users: dict[tuple[int, int], int] = {}  # tasks in flight carrying it
        self.pinned: set[tuple[int, int]] = set()  # a worker may still map it
        self.reusable: dict[int, dict[tuple[int, int], None]] = {}  # by size, oldest first
        self.digests: dict[tuple[int, int], bytes] = {}  # xxh3 of each segment's bytes
        self.nbytes = 0  # held in self.segments
        # Keys of the segments the task being pickled uses: filled by segment_for,
        # handed to the task by carry.
        self.carried: list = []


class InputSegments:
    """The large-input segments of one :class:`~oxjob._workers.engine.TaskEngine`, used
    under its lock: ``spare`` (segments the workers let go of, by size: refilling one
    costs a plain copy, a new one also costs allocating its pages) and ``recent`` (where
    workers cannot write through to an input, ``'c'`` and ``'r'``, the segments of
    recent calls' inputs by the digest of their bytes, reused for the same bytes).

    Parameters
    ----------
    n_workers : int
        Spares are kept two per worker.
    reuse_content : bool
        Keep segments by content across calls (the ``'c'`` and ``'r'`` modes).
    """

    def __init__(self, n_workers: int, reuse_content: bool) -> None:
        self.n = n_workers
        self.reuse_content = reuse_content
        self.spare: dict[int, list] = {}
        # (digest, size) -> (segment, refillable), oldest first.
        self.recent: collections.OrderedDict = collections.OrderedDict()
        self.recent_bytes = 0

    def segment_for(self, inputs: CallInputs, raw: memoryview) -> Any:
        """A segment holding ``raw``: with ``inputs.cache``, copied once per call
        however many tasks use it; a released segment of the same size is refilled
        rather than a new one allocated."""
        if not inputs.cache:
            return self._spare_or_new(raw)
        key = _engine.buffer_address(raw)
        inputs.carried.append(key)
        known = inputs.segments.get(key)
        if known is not None:
            inputs.reusable.get(raw.nbytes, {}).pop(key, None)
            return known[0]
        digest = _digest(raw) if self.reuse_content else None
        found = self.recent.pop((digest, raw.nbytes), None) if self.recent else None
        if found is not None:
            self.recent_bytes -= raw.nbytes
            segment, refillable = found
            if not refillable:
                inputs.pinned.add(key)  # a worker of an earlier call may map it still
        else:
            # Keeping every segment of the call lets the next call with the same inputs
            # reuse them all; past the budget, released ones are refilled instead.
            candidates = inputs.reusable.get(raw.nbytes)
            if candidates and (digest is None or self.recent_bytes + inputs.nbytes > RECENT_BYTES):
                old_key = next(iter(candidates))
                del candidates[old_key]
                inputs.digests.pop(old_key, None)
                inputs.nbytes -= raw.nbytes
                segment = _copy(raw, inputs.segments.pop(old_key)[0])
            else:
                segment = self._spare_or_new(raw)
        if digest is not None:
            inputs.digests[key] = digest
        inputs.segments[key] = (segment, raw)
        inputs.nbytes += raw.nbytes
        return segment

    def carry(self, task: Task) -> None:
        """The task just pickled holds the segments it uses until it returns."""
        inputs = task.call.inputs
        if inputs.cache and inputs.carried:
            task.keys = tuple(set(inputs.carried))
            for key in task.keys:
                inputs.users[key] = inputs.users.get(key, 0) + 1
        inputs.carried = []

    def returned(self, task: Task) -> None:
        """The task's worker answered: segments no task needs may be refilled."""
        inputs = task.call.inputs
        if not inputs.cache:
            if task.released:
                self._keep_spare(task.segments)
            task.segments = []
            return
        task.segments = []
        for key in task.keys:
            inputs.users[key] -= 1
            if not task.released:
                inputs.pinned.add(key)  # a worker may keep it: never refill it
            if inputs.users[key] == 0 and key not in inputs.pinned and key in inputs.segments:
                # Refilled only if no later task of the call brings the same bytes.
                inputs.reusable.setdefault(key[1], {})[key] = None

    def unkeep(self, task: Task) -> None:
        """A task going to another worker will be pickled again: its count goes too."""
        inputs = task.call.inputs
        for key in task.keys:
            inputs.users[key] -= 1
            inputs.pinned.add(key)  # the dead worker's copy is gone, but be safe
        task.keys = ()
        task.segments = []

    def close(self, inputs: CallInputs) -> None:
        """The call ended: its segments become recent (by content) or spares."""
        reusable = {key for keys in inputs.reusable.values() for key in keys}
        for key, (segment, _) in inputs.segments.items():
            digest = inputs.digests.get(key)
            if digest is not None:
                self._keep_recent(digest, segment, key in reusable)
            elif key in reusable:
                self._keep_spare([segment], key[1])
        inputs.segments.clear()
        inputs.reusable.clear()
        inputs.digests.clear()
        inputs.nbytes = 0

    def holding(self) -> bool:
        """Whether any memory is kept for later inputs."""
        return bool(self.spare or self.recent)

    def idle_for(self, seconds: float, spare_seconds: float) -> None:
        """The engine has been idle this long: free spares after ``spare_seconds``, and
        recent inputs after RECENT_SECONDS."""
        if seconds > spare_seconds:
            self.spare.clear()
        if seconds > RECENT_SECONDS:
            self.recent.clear()
            self.recent_bytes = 0

    def clear(self) -> None:
        self.spare.clear()
        self.recent.clear()
        self.recent_bytes = 0

    def _keep_recent(self, digest: bytes, segment: Any, refillable: bool) -> None:
        key = (digest, segment.nbytes)
        if key in self.recent:
            return
        self.recent[key] = (segment, refillable)
        self.recent_bytes += segment.nbytes
        while self.recent_bytes > RECENT_BYTES:
            (_, size), _ = self.recent.popitem(last=False)
            self.recent_bytes -= size

    def _spare_or_new(self, raw: memoryview) -> Any:
        spares = self.spare.get(raw.nbytes)
        if spares:
            return _copy(raw, spares.pop())
        for key, (segment, refillable) in self.recent.items():  # oldest first
            if refillable and key[1] == raw.nbytes:
                del self.recent[key]
                self.recent_bytes -= raw.nbytes
                return _copy(raw, segment)
        return _copy(raw)

    def _keep_spare(self, segments: list, size: int | None = None) -> None:
        # Two per worker: enough for a steady stream of same-sized large inputs, and
        # the memory they hold stays bounded.
        room = 2 * self.n - sum(len(s) for s in self.spare.values())
        for segment in segments[: max(room, 0)]:
            self.spare.setdefault(size or segment.nbytes, []).append(segment)


def _copy(raw: memoryview, segment: Any = None) -> Any:
    """The one copy of a large input: into ``segment``, or into a new one."""
    _counts["copies"] += 1
    _counts["copied_bytes"] += raw.nbytes
    if segment is None:
        _counts["new_segments"] += 1
        return _engine.Segment.from_buffer(raw)
    segment.refill(raw)
    return segment


def _digest(buffer: Any) -> bytes:
    hasher = _engine.StreamHasher()
    hasher.update(buffer)
    return hasher.digest()
