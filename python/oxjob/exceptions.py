"""Every exception oxjob raises that is not a Python built-in, in one place."""

from ._engine import CorruptFileError

__all__ = ["CacheWarning", "CorruptFileError", "JobLibCollisionWarning"]

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
