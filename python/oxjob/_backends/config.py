"""``parallel_config``, ``parallel_backend`` and the choice of a call's backend.

The rules are joblib's: a context's backend is built when the context is entered
(so its errors are raised there), a context's settings stack on its parent's, and
``Parallel``'s own arguments win over the context's.
"""

from __future__ import annotations

from typing import Any, Callable

from .._units import DEFAULT_MAX_NBYTES_TEXT
from . import base as _b

_NOT_SET = object()

#: joblib's defaults for what a context does not set (returned by ``with ... as``).
_DEFAULTS = {
    "backend": None,
    "n_jobs": None,
    "verbose": 0,
    "temp_folder": None,
    "max_nbytes": DEFAULT_MAX_NBYTES_TEXT,
    "mmap_mode": "c",
    "prefer": None,
    "require": None,
}
_VALID_PREFER = (None, "processes", "threads")
_VALID_REQUIRE = (None, "sharedmem")


def _register_dask() -> None:
    """Say what to install when ``backend='dask'`` cannot be had."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "To use the dask.distributed backend you must install both "
            "the `dask` and distributed modules.\n\n"
            "See https://dask.pydata.org/en/latest/install.html for more "
            "information: pip install 'dask[distributed]' (or 'oxjob[dask]')."
        ) from exc


#: Backends registered on first use: name -> function that registers them (or
#: raises ImportError saying what to install), as joblib's ``EXTERNAL_BACKENDS``.
EXTERNAL_BACKENDS: dict[str, Callable[[], None]] = {}
#: Names whose packages must be importable before the backend is built.
_REQUIREMENTS: dict[str, Callable[[], None]] = {"dask": _register_dask}


def backend_factory(name: str) -> Callable[..., Any]:
    """The registered factory of backend ``name``.

    Raises
    ------
    ImportError
        A known backend whose packages are missing (``'dask'``), naming them.
    ValueError
        An unknown name.
    """
    if name in _REQUIREMENTS:
        _REQUIREMENTS[name]()
    if name not in _b.BACKENDS and name in EXTERNAL_BACKENDS:
        EXTERNAL_BACKENDS[name]()
    if name not in _b.BACKENDS:
        raise ValueError(f"Invalid backend: {name}, expected one of {sorted(_b.BACKENDS)}")
    return _b.BACKENDS[name]


def _is_mp_context(backend: Any) -> bool:
    return hasattr(backend, "Pool") and hasattr(backend, "Lock")


def get_config() -> dict:
    """The settings of the innermost active :class:`parallel_config` (a copy)."""
    return dict(getattr(_b._local, "config", {}))


def _check_hints(prefer: Any, require: Any) -> None:
    if prefer not in _VALID_PREFER:
        raise ValueError(
            f"prefer={prefer} is not a valid backend hint, expected one of {list(_VALID_PREFER)}"
        )
    if require not in _VALID_REQUIRE:
        raise ValueError(
            f"require={require} is not a valid backend constraint, expected one of "
            f"{list(_VALID_REQUIRE)}"
        )
    if prefer == "processes" and require == "sharedmem":
        raise ValueError(
            "prefer == 'processes' and require == 'sharedmem' are inconsistent settings"
        )


class parallel_config:
    """Set defaults for the ``Parallel`` calls made inside a ``with`` block.

    Same parameters and semantics as :class:`joblib.parallel_config`; settings are
    local to the thread and stack on the enclosing context's. Arguments given to
    ``Parallel`` itself win. ``with parallel_config(...) as config`` binds the
    active settings (a dict; ``config["backend"]`` the backend instance, or None).

    Parameters
    ----------
    backend : str, ParallelBackendBase or multiprocessing context, optional
        Built when the context is created, so an unknown name fails here.
    n_jobs : int, optional
        ``None`` given explicitly means the backend's default (1).
    verbose : int, optional
    temp_folder, max_nbytes, mmap_mode, prefer, require : optional
        As in :class:`oxjob.Parallel`.
    inner_max_num_threads : int, optional
        Thread limit for native libraries (OpenMP, OpenBLAS, MKL...) in the
        workers; needs a backend, and one that supports it (the process backend).
    initializer, initargs : optional
        oxjob's addition: run ``initializer(*initargs)`` in each process worker.
    **backend_params
        Passed to the backend's constructor (``backend`` must be a name).

    Raises
    ------
    ValueError
        Unknown backend, hint or constraint; contradicting ``prefer`` and
        ``require``; backend parameters without a backend name.
    AssertionError
        ``inner_max_num_threads`` for a backend that cannot honour it (as joblib).

    Examples
    --------
    >>> from oxjob import Parallel, delayed, parallel_config
    >>> with parallel_config(backend="threading", n_jobs=2):
    ...     Parallel()(delayed(abs)(-i) for i in range(3))
    [0, 1, 2]
    """

    def __init__(
        self,
        backend: Any = _NOT_SET,
        *,
        n_jobs: Any = _NOT_SET,
        verbose: Any = _NOT_SET,
        temp_folder: Any = _NOT_SET,
        max_nbytes: Any = _NOT_SET,
        mmap_mode: Any = _NOT_SET,
        prefer: Any = _NOT_SET,
        require: Any = _NOT_SET,
        inner_max_num_threads: Any = None,
        initializer: Any = _NOT_SET,
        initargs: Any = _NOT_SET,
        **backend_params: Any,
    ) -> None:
        self._old = getattr(_b._local, "config", {})
        backend = self._check_backend(backend, inner_max_num_threads, **backend_params)
        given = {
            "backend": backend,
            "n_jobs": n_jobs,
            "verbose": verbose,
            "temp_folder": temp_folder,
            "max_nbytes": max_nbytes,
            "mmap_mode": mmap_mode,
            "prefer": prefer,
            "require": require,
            "initializer": initializer,
            "initargs": initargs,
        }
        if prefer is not _NOT_SET and prefer not in _VALID_PREFER:
            _check_hints(prefer, None)
        if require is not _NOT_SET and require not in _VALID_REQUIRE:
            _check_hints(None, require)
        self._new = {**self._old, **{k: v for k, v in given.items() if v is not _NOT_SET}}
        _b._local.config = self._new
        # joblib's callers (scikit-learn) follow the same settings while joblib is here.
        from .._joblib.bridge import joblib_config

        try:
            self._joblib = joblib_config({k: v for k, v in given.items() if v is not _NOT_SET})
        except Exception:  # noqa: BLE001 - settings joblib refuses: oxjob's still apply
            self._joblib = None

    def _check_backend(self, backend: Any, inner_max_num_threads: Any, **params: Any) -> Any:
        if backend is _NOT_SET or backend is None:
            if inner_max_num_threads is not None or params:
                raise ValueError(
                    "inner_max_num_threads and other constructor parameters "
                    "backend_params are only supported when backend is not None."
                )
            return _NOT_SET if backend is _NOT_SET else None
        if isinstance(backend, str):
            backend = backend_factory(backend)(**params)
        elif params:
            raise ValueError(
                "Constructor parameters backend_params are only supported when backend is a string."
            )
        elif _is_mp_context(backend):
            backend = _b.ProcessBackend()  # workers are always fresh interpreters
        if inner_max_num_threads is not None:
            msg = (
                f"{type(backend).__name__} does not accept setting the "
                "inner_max_num_threads argument."
            )
            assert backend.supports_inner_max_num_threads, msg
            backend.inner_max_num_threads = inner_max_num_threads
        if backend.nesting_level is None:
            parent = self._old.get("backend")
            backend.nesting_level = (
                parent.nesting_level
                if parent is not None and parent.nesting_level is not None
                else _b.nesting_level()
            )
        return backend

    def __enter__(self) -> dict:
        return {**_DEFAULTS, **self._new}

    def __getstate__(self) -> dict:
        # joblib's settings made alongside are this process's, not the receiver's.
        return {k: v for k, v in self.__dict__.items() if k != "_joblib"}

    def __exit__(self, *exc: Any) -> None:
        self.unregister()

    def unregister(self) -> None:
        """Restore the previous settings."""
        _b._local.config = self._old
        joblib_config = getattr(self, "_joblib", None)
        if joblib_config is not None:
            self._joblib = None
            joblib_config.unregister()


class parallel_backend(parallel_config):
    """Older name of :class:`parallel_config`, with the backend as first argument.

    ``with parallel_backend(...) as (backend, n_jobs)`` binds the backend instance
    and ``n_jobs``, as joblib's does.

    Parameters
    ----------
    backend : str, ParallelBackendBase or multiprocessing context
    n_jobs : int, default=-1
    inner_max_num_threads : int, optional
    **backend_params
    """

    def __init__(
        self,
        backend: Any,
        n_jobs: int = -1,
        inner_max_num_threads: int | None = None,
        **backend_params: Any,
    ) -> None:
        super().__init__(
            backend,
            n_jobs=n_jobs,
            inner_max_num_threads=inner_max_num_threads,
            **backend_params,
        )

    def __enter__(self) -> tuple[Any, Any]:  # type: ignore[override]
        return self._new.get("backend"), self._new.get("n_jobs")
