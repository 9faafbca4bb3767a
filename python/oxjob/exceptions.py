"""Every exception oxjob raises that is not a Python built-in, in one place."""

import pickle
from multiprocessing import TimeoutError

try:
    from concurrent.futures.process import BrokenProcessPool
except ImportError:  # no _multiprocessing (Pyodide, WASI): keep the same class tree
    from concurrent.futures import BrokenExecutor

    class BrokenProcessPool(BrokenExecutor):  # type: ignore[no-redef]
        """Stand-in for ``concurrent.futures.process.BrokenProcessPool``."""


from ._engine import CorruptFileError

__all__ = [
    "CacheWarning",
    "CorruptFileError",
    "JobLibCollisionWarning",
    "LoadLimitError",
    "RemoteTraceback",
    "UnsafeLoadError",
    "TerminatedWorkerError",
    "TimeoutError",
]

CorruptFileError.__doc__ = """A file is not a valid oxjob file.

Raised by :func:`oxjob.load` (and the cache) when a file is truncated, has a
corrupted byte, was not written by oxjob, or claims sizes its bytes cannot hold.
The message names the file and the check that failed. A subclass of
:class:`ValueError`.
"""


class CacheWarning(UserWarning):
    """The cache could not store or read an entry; the result is still returned.

    Raised as a warning by :class:`oxjob.Memory` when a result cannot be pickled, the
    disk is full or read-only, or an entry is damaged (it is then recomputed).
    """


class JobLibCollisionWarning(UserWarning):
    """Two functions map to the same cache directory (same module and name)."""


class TerminatedWorkerError(BrokenProcessPool):
    """A worker process died while running tasks (killed, crashed or out of memory).

    The message names the exit code or the signal. The call's remaining tasks are
    cancelled; the next call starts fresh workers. A subclass of
    :class:`concurrent.futures.process.BrokenProcessPool`, as in joblib/loky.
    """


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, attached as ``__cause__``."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class UnsafeLoadError(pickle.UnpicklingError):
    """``load(trusted=...)`` met a type or function it was not told to trust.

    Nothing of the file's own code has run when this is raised. The message names
    the global and how to allow it.
    """


class LoadLimitError(UnsafeLoadError):
    """A safe load (``load(trusted=...)``) met one of its size or work limits.

    The message names the limit: ``max_bytes`` (raise it with ``load(...,
    max_bytes=...)`` for a file you expect to be that large), the length of a number
    written as text, or the nesting of tuples. Nothing of the file's code has run.
    """
