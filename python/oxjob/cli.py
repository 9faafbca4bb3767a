"""oxjob's command line: a timed demo, file inspection and cache maintenance.

``demo``
    Runs oxjob's main jobs on this machine and prints the timings, joblib's beside
    them when joblib is installed; needs no numpy.
``inspect FILE``
    Tells a file's format (oxjob, joblib, pickle, compression) and lists the types
    it needs, without running any of its code.
``cache info|ls|prune|clear LOCATION``
    Sizes and counts per function, every entry, eviction by bytes/items/age, or
    removal of everything, for the cache of ``Memory(LOCATION)``.

Run it as ``python -m oxjob``, or call :func:`main` with the arguments. The commands
live in ``_cli/``.
"""

from __future__ import annotations

from ._cli.commands import PROG as PROG
from ._cli.commands import cache_command as cache_command
from ._cli.commands import demo as demo
from ._cli.commands import inspect as inspect
from ._cli.commands import main

__all__ = ["main"]
