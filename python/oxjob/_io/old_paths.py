"""Where the functions and classes that files name by an older module path live now.

A pickle stream names a function or class by its module path: every container and
cache entry names its array rebuilders (``rebuild_array``...), and a pickled
``Memory`` result or function names its class. When a private module moves, files
already on disk keep the old path; every loader (the C unpickler of plain loads,
joblib's reader, the safe loader's names and the ``trusted`` list) reads the path
through :func:`current`, so those files load as before. Entries are never removed:
files outlive versions.

The same map makes an old module path importable (:func:`install`, run by ``import
oxjob``): ``import oxjob._config`` gives the module now at ``oxjob._backends.config``
(the same module object), so a plain ``pickle.loads`` outside oxjob's loaders (a Dask
scheduler, a user's own pickle of a ``parallel_config``) finds what it names too.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Sequence

#: Old module path -> where that module's names are now.
MODULES = {
    # The array rebuilders, named by every container and cache entry.
    "oxjob._oxjob_format": "oxjob._io.container",
    # Memory's results and handles (NotMemorizedResult, MemorizedResult...): picklable.
    "oxjob._memory_results": "oxjob._memory.results",
    # CodeInfo, in the state of a pickled MemorizedFunc.
    "oxjob._func_inspect": "oxjob._memory.func_inspect",
    # The backends, cluster and engine rooms (a pickled parallel_config names
    # oxjob._config; cluster workers are sent functions of oxjob._cluster, whose old
    # names its package forwards, as it is a package now).
    "oxjob._config": "oxjob._backends.config",
    "oxjob._resolve": "oxjob._backends.resolve",
    "oxjob._dask": "oxjob._cluster.dask",
    "oxjob._ray": "oxjob._cluster.ray",
    "oxjob._shared_args": "oxjob._cluster.shared_args",
    "oxjob._tasks": "oxjob._workers.engine",
    "oxjob._calls": "oxjob._workers.calls",
    "oxjob._input_segments": "oxjob._workers.segments",
    "oxjob._shared_engine": "oxjob._workers.shared_engine",
    "oxjob._process_pool": "oxjob._workers.processes",
    "oxjob._protocol": "oxjob._workers.protocol",
    "oxjob._functions": "oxjob._workers.functions",
    "oxjob._outcomes": "oxjob._workers.outcomes",
    "oxjob._worker": "oxjob._workers.worker",
    "oxjob._worker_start": "oxjob._workers.worker_start",
    "oxjob._mainscript": "oxjob._workers.mainscript",
    "oxjob._template": "oxjob._workers.template",
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


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the module at its new one. It sits at the end of
    ``sys.meta_path``: it is asked only about names nothing else found."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # The module itself, not a copy: the import system files it under the old
        # name as well. It keeps its __name__; its __spec__, which the import system
        # replaces with the old name's, is put back by exec_module.
        module = importlib.import_module(MODULES[spec.name])
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its new name: only its own spec is put back.
        for old, new in MODULES.items():
            if new == module.__name__ and old in self._specs:
                module.__spec__ = self._specs.pop(old)


def install() -> None:
    """Put the finder at the end of ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
