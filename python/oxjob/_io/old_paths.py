"""Where the functions and classes that files name by an older module path live now.

A pickle stream names a function or class by its module path: every container and
cache entry names its array rebuilders (``rebuild_array``...), and a pickled
``Memory`` result or function names its class. When a private module moves, files
already on disk keep the old path; every loader (the C unpickler of plain loads,
joblib's reader, the safe loader's names and the ``trusted`` list) reads the path
through :func:`current`, so those files load as before. Entries are never removed:
files outlive versions.
"""

from __future__ import annotations

#: Old module path -> where that module's names are now.
MODULES = {
    # The array rebuilders, named by every container and cache entry.
    "oxjob._oxjob_format": "oxjob._io.container",
    # Memory's results and handles (NotMemorizedResult, MemorizedResult...): picklable.
    "oxjob._memory_results": "oxjob._memory.results",
    # CodeInfo, in the state of a pickled MemorizedFunc.
    "oxjob._func_inspect": "oxjob._memory.func_inspect",
}

#: Old qualified name -> its name now, for names that moved alone.
NAMES = {
    # Files written by oxjob 0.1 name the array rebuilder in the public module.
    ("oxjob.persistence", "_rebuild_array"): ("oxjob._io.container", "rebuild_array"),
}


def current(module: str, name: str) -> tuple[str, str]:
    """``(module, name)`` as a file names them -> where they are now."""
    moved = NAMES.get((module, name))
    if moved is not None:
        return moved
    return current_module(module), name


def current_module(module: str) -> str:
    """A module path, or a prefix of one (``trusted=['oxjob._memory_results']``), now."""
    for old, new in MODULES.items():
        if module == old or module.startswith(old + "."):
            return new + module[len(old) :]
    return module
