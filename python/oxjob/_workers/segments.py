"""Large inputs of the task engine's calls: the segments they travel in.

An input of at least ``max_nbytes`` is copied once into a memfd segment (``_copy``,
the one copy per direction) and the worker maps it. Within a call, a buffer given to
many tasks is copied once; a segment every worker has let go of is refilled with a
later input of the same size. Across calls, in the modes where workers cannot write
through (``'c'``, ``'r'``), a segment is kept by the xxh3-128 of its bytes, and a later
call that sends the same bytes reuses it with no copy. See docs/engine.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _engine

if TYPE_CHECKING:
    from .engine import Call, Task

#: Segments of recent calls' inputs, known by the hash of their bytes, are kept this long
#: after the engine goes idle, and up to _RECENT_BYTES in all.
_RECENT_SECONDS = 5.0
_RECENT_BYTES = 2 << 30


class InputSegments:
    """The segment bookkeeping of :class:`oxjob._workers.engine.TaskEngine` (a part of it, under
    its lock): ``recent`` (segments of recent calls, by digest), ``spare`` (released
    segments, by size), ``reuse_content``, ``n``, set up by the engine."""

    recent: Any
    recent_bytes: int
    spare: dict
    reuse_content: bool
    n: int

    def _segment_for(self, call: Call, raw: memoryview) -> Any:
        """A segment holding ``raw``: with ``cache_inputs``, copied once per call
        however many tasks use it; a released segment of the same size is refilled
        rather than a new one allocated."""
        if not call.cache_inputs:
            return self._spare_or_new(raw)
        key = _engine.buffer_address(raw)
        call._carried.append(key)
        known = call.segments.get(key)
        if known is not None:
            call.reusable.get(raw.nbytes, {}).pop(key, None)
            return known[0]
        digest = _digest(raw) if self.reuse_content else None
        found = self.recent.pop((digest, raw.nbytes), None) if self.recent else None
        if found is not None:
            self.recent_bytes -= raw.nbytes
            segment, refillable = found
            if not refillable:
                call.pinned.add(key)  # a worker of an earlier call may map it still
        else:
            # Keeping every segment of the call lets the next call with the same inputs
            # reuse them all; past the budget, released ones are refilled instead.
            candidates = call.reusable.get(raw.nbytes)
            if candidates and (digest is None or self.recent_bytes + call.nbytes > _RECENT_BYTES):
                old_key = next(iter(candidates))
                del candidates[old_key]
                call.digests.pop(old_key, None)
                call.nbytes -= raw.nbytes
                segment = self._copy(raw, call.segments.pop(old_key)[0])
            else:
                segment = self._spare_or_new(raw)
        if digest is not None:
            call.digests[key] = digest
        call.segments[key] = (segment, raw)
        call.nbytes += raw.nbytes
        return segment

    def _keep_recent(self, digest: bytes, segment: Any, refillable: bool) -> None:
        key = (digest, segment.nbytes)
        if key in self.recent:
            return
        self.recent[key] = (segment, refillable)
        self.recent_bytes += segment.nbytes
        while self.recent_bytes > _RECENT_BYTES:
            (_, size), _ = self.recent.popitem(last=False)
            self.recent_bytes -= size

    def _spare_or_new(self, raw: memoryview) -> Any:
        spares = self.spare.get(raw.nbytes)
        if spares:
            return self._copy(raw, spares.pop())
        for key, (segment, refillable) in self.recent.items():  # oldest first
            if refillable and key[1] == raw.nbytes:
                del self.recent[key]
                self.recent_bytes -= raw.nbytes
                return self._copy(raw, segment)
        return self._copy(raw)

    @staticmethod
    def _copy(raw: memoryview, segment: Any = None) -> Any:
        """The one copy of a large input: into ``segment``, or into a new one."""
        if segment is None:
            return _engine.Segment.from_buffer(raw)
        segment.refill(raw)
        return segment

    def _carry(self, task: Task) -> None:
        call = task.call
        if call.cache_inputs and call._carried:
            task.keys = tuple(set(call._carried))
            for key in task.keys:
                call.users[key] = call.users.get(key, 0) + 1
        call._carried = []

    def _segments_returned(self, task: Task) -> None:
        call = task.call
        if not call.cache_inputs:
            if task.released:
                self._keep_spare(task.segments)
            task.segments = []
            return
        task.segments = []
        for key in task.keys:
            call.users[key] -= 1
            if not task.released:
                call.pinned.add(key)  # a worker may keep it: never refill it
            if call.users[key] == 0 and key not in call.pinned and key in call.segments:
                # Refilled only if no later task of the call brings the same bytes.
                call.reusable.setdefault(key[1], {})[key] = None

    def _keep_spare(self, segments: list, size: int | None = None) -> None:
        # Two per worker: enough for a steady stream of same-sized large inputs, and
        # the memory they hold stays bounded.
        room = 2 * self.n - sum(len(s) for s in self.spare.values())
        for segment in segments[: max(room, 0)]:
            self.spare.setdefault(size or segment.nbytes, []).append(segment)


def _digest(buffer: Any) -> bytes:
    hasher = _engine.StreamHasher()
    hasher.update(buffer)
    return hasher.digest()
