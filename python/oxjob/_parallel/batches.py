"""The batches ``Parallel`` makes: :class:`BatchedCalls` (what a worker calls) and
:class:`GuardedBatch` (what a backend's ``apply_async`` is given). Both keep the
public module as their pickled name (``oxjob.parallel.BatchedCalls``, as before they
lived here), so a pickle of one names the face, which outlives this module's path."""

from __future__ import annotations

import time

__all__ = ["BatchedCalls", "GuardedBatch"]


class BatchedCalls:
    """A batch of ``(func, args, kwargs)`` calls, callable in a worker."""

    __slots__ = ("items",)

    def __init__(self, items: list) -> None:
        self.items = items

    def __call__(self) -> list:
        return [func(*args, **kwargs) for func, args, kwargs in self.items]

    def __len__(self) -> int:
        return len(self.items)


class GuardedBatch:
    """What ``Parallel`` gives a backend's ``apply_async``: called, it runs the batch
    and returns ``(ok, results or exception, seconds)``. The cluster backends read the
    batch's calls from :attr:`calls` (to send large arguments once) and run them their
    own way."""

    __slots__ = ("calls",)

    def __init__(self, calls: BatchedCalls) -> None:
        self.calls = calls

    def __call__(self) -> tuple:
        start = time.perf_counter()
        try:
            return True, self.calls(), time.perf_counter() - start
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            return False, exc, 0.0

    def __reduce__(self) -> tuple:
        return GuardedBatch, (self.calls,)


# Pickled (and shown) under the public face that re-exports them.
BatchedCalls.__module__ = GuardedBatch.__module__ = "oxjob.parallel"
