"""Which backend a ``Parallel`` call uses: joblib's precedence between the call's
arguments, the active :class:`~oxjob.parallel_config` and the defaults."""

from __future__ import annotations

from typing import Any

from . import base as _b
from .config import _check_hints, _is_mp_context, backend_factory, get_config


def resolve_backend(backend: Any, prefer: Any, require: Any, config: dict, verbose: int = 0) -> Any:
    """The backend a Parallel call uses, following joblib's precedence rules.

    Returns
    -------
    (ParallelBackendBase, dict)
        The backend and the context settings to use with it (``n_jobs`` forced to
        1 when a thread backend replaces the context's for ``require='sharedmem'``).
    """
    own_require = require  # only Parallel's own constraint can refuse its backend
    prefer = config.get("prefer") if prefer is None else prefer
    require = config.get("require") if require is None else require
    _check_hints(prefer, require)
    level = _b.nesting_level()
    active = config.get("backend")
    explicit = active is not None
    if active is None:
        if level >= 1:
            # A nested call in a worker: threads, then sequential (as joblib does).
            active = (_b.ThreadingBackend if level == 1 else _b.SequentialBackend)(
                nesting_level=level
            )
            explicit = True
        else:
            active = backend_factory(_b.default_backend())(nesting_level=level)
    uses_threads = getattr(active, "uses_threads", False)
    if (require == "sharedmem" and not getattr(active, "supports_sharedmem", False)) or (
        not explicit and prefer == "threads" and not uses_threads
    ):
        replaced = active
        active = _b.ThreadingBackend(nesting_level=active.nesting_level)
        if verbose >= 10 and explicit:
            print(
                f"Using {type(active).__name__} as joblib backend instead of "
                f"{type(replaced).__name__} as the latter does not provide shared "
                "memory semantics."
            )
        config = {**config, "n_jobs": 1}  # joblib: one thread unless told otherwise
    elif not explicit and prefer == "processes" and uses_threads:
        active = backend_factory(_b.DEFAULT_BACKEND)(nesting_level=active.nesting_level)
    nesting = active.nesting_level
    if backend is None:
        chosen = active
    elif isinstance(backend, _b.ParallelBackendBase):
        chosen = backend
        if chosen.nesting_level is None:
            chosen.nesting_level = nesting
    elif _is_mp_context(backend):
        # A multiprocessing context (``get_context("spawn")``...): oxjob's workers
        # are fresh interpreters whatever the start method, as with spawn.
        chosen = _b.ProcessBackend(nesting_level=nesting)
    else:
        chosen = backend_factory(backend)(nesting_level=nesting)
    if own_require == "sharedmem" and not getattr(chosen, "supports_sharedmem", False):
        raise ValueError(f"Backend {chosen} does not support shared memory")
    return chosen, config


def get_active_backend(prefer: Any = None, require: Any = None, verbose: int = 0) -> tuple:
    """``(backend, n_jobs)`` a ``Parallel()`` made here would use, as joblib's
    ``joblib.parallel.get_active_backend``; ``n_jobs`` is None when no context sets it."""
    backend, config = resolve_backend(None, prefer, require, get_config(), verbose)
    return backend, config.get("n_jobs")
