"""Every exception oxjob raises that is not a Python built-in, in one place."""

from ._engine import CorruptFileError

__all__ = ["CorruptFileError"]

CorruptFileError.__doc__ = """A file is not a valid oxjob file.

Raised by :func:`oxjob.load` (and the cache) when a file is truncated, has a
corrupted byte, was not written by oxjob, or claims sizes its bytes cannot hold.
The message names the file and the check that failed. A subclass of
:class:`ValueError`.
"""
