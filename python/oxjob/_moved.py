"""Old module paths of moved private modules, still importable.

A pickle names a class or function by its module path (``oxjob._config`` for a
``parallel_config`` pickled by an older oxjob), and so may a file, a Dask
scheduler's state, or code written against an older layout. When the package
regrouped its private modules into subpackages, each old path was written here;
importing it gives the module that lives at the new one (the same module object,
so ``pickle`` finds its names and ``isinstance`` holds).

The finder sits at the end of ``sys.meta_path``: it is asked only about names that
nothing else found, and answers only for the names below. An old path that is now a
package (``oxjob._cluster``) forwards its old names from the package's ``__getattr__``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Sequence

#: Old module path -> where that module lives now.
MOVED = {
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


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module at its new one."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        # The module itself, not a copy: the import system files it under the old
        # name as well. It keeps its __name__; its __spec__, which the import system
        # replaces with the old name's, is put back by exec_module.
        module = importlib.import_module(MOVED[spec.name])
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed under its new name: only its own spec is put back.
        for old, new in MOVED.items():
            if new == module.__name__ and old in self._specs:
                module.__spec__ = self._specs.pop(old)


def install() -> None:
    """Put the finder at the end of ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
