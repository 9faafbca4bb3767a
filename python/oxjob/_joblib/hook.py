"""Registers oxjob's joblib backend when joblib is there, without importing joblib.

``import oxjob`` calls :func:`watch_joblib`: if joblib is already imported, the
``"oxjob"`` backend is registered at once; otherwise a finder on ``sys.meta_path``
waits for ``import joblib`` and registers the backend right after joblib's own
module has run, then removes itself. Without joblib nothing is imported, and the
finder costs one string comparison per import.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any


def _register() -> None:
    try:
        # The module registers the backend as it is imported. Imported already (a
        # worker unpickling the backend's batch runner imports joblib from it), it has
        # registered it or is about to.
        importlib.import_module("oxjob.joblib_backend")
    except Exception as exc:  # noqa: BLE001 - never break `import joblib` or `import oxjob`
        warnings.warn(
            f"oxjob could not register its joblib backend: {exc!r}", RuntimeWarning, stacklevel=2
        )


class _RegisteringLoader:
    """joblib's own loader, followed by the registration once joblib has run."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, resource readers
        return getattr(self._loader, name)


class _JoblibFinder:
    """Waits on ``sys.meta_path`` for ``import joblib``."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "joblib":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None

    def invalidate_caches(self) -> None:
        pass


def watch_joblib() -> None:
    """Register the backend now if joblib is imported, or when it is."""
    joblib = sys.modules.get("joblib")
    if joblib is not None:
        if hasattr(joblib, "register_parallel_backend"):
            _register()
        return
    if not any(isinstance(finder, _JoblibFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _JoblibFinder())
