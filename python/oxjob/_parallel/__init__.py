"""``Parallel``'s plumbing behind :mod:`oxjob.parallel` (the public face).

``batches`` holds the batch objects ``Parallel`` hands to runners and backends
(``BatchedCalls``, ``GuardedBatch``, re-exported by the face); ``runners`` the
:class:`~oxjob._parallel.runners.Runner` protocol that ``Parallel`` dispatches
through, and one runner per kind of backend (in the caller, threads, the task
engine's worker processes, a registered backend's ``apply_async``).
"""
