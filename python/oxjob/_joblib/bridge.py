"""One configuration for both worlds: an ``oxjob.parallel_config`` block also configures
joblib, when joblib is imported, so that code calling joblib itself (scikit-learn's
``n_jobs=``) runs on the backend the user named.

The oxjob backend maps to a joblib backend: threads and sequential to joblib's own,
oxjob's process engine to the ``"oxjob"`` joblib backend (``joblib_backend.py``), and
any other backend (Dask, Ray, a user's) to :class:`OxjobBridgeBackend`, a joblib backend
that hands joblib's batches to that oxjob backend instance.
"""

from __future__ import annotations

import sys
from typing import Any

#: The settings of ``parallel_config`` that joblib's ``parallel_config`` takes too.
_SHARED_SETTINGS: tuple[str, ...] = (
    "n_jobs",
    "verbose",
    "temp_folder",
    "max_nbytes",
    "mmap_mode",
    "prefer",
)
_SHARED_SETTINGS += ("require",)


def joblib_config(given: dict) -> Any:
    """A joblib ``parallel_config`` for the settings an oxjob one was given (its
    ``backend`` an oxjob backend instance), already in force; None without joblib."""
    joblib = sys.modules.get("joblib")
    if joblib is None or not hasattr(joblib, "parallel_config"):
        return None
    settings = {k: given[k] for k in _SHARED_SETTINGS if k in given}
    if "backend" in given:
        settings["backend"] = _joblib_backend(given["backend"])
    if not settings:
        return None
    return joblib.parallel_config(**settings)


def _joblib_backend(backend: Any) -> Any:
    from .. import backends as _b

    if backend is None:
        return None
    level = backend.nesting_level
    if isinstance(backend, _b.ThreadingBackend):
        from joblib._parallel_backends import ThreadingBackend

        return ThreadingBackend(nesting_level=level)
    if isinstance(backend, _b.SequentialBackend):
        from joblib._parallel_backends import SequentialBackend

        return SequentialBackend(nesting_level=level)
    if isinstance(backend, _b.ProcessBackend):
        from ..joblib_backend import OxjobBackend

        return OxjobBackend(
            nesting_level=level,
            inner_max_num_threads=getattr(backend, "inner_max_num_threads", None),
            idle_worker_timeout=backend.idle_worker_timeout,
        )
    return _bridge_named(type(backend).__name__)(backend)


#: The bridge's subclasses, by the name of the oxjob backend class they carry.
_named: dict = {}


def _bridge_named(name: str) -> type:
    """:class:`OxjobBridgeBackend` under the name of the oxjob backend it carries
    (``DaskDistributedBackend``...): joblib names a call's backend by its class, in its
    messages ("Using backend ... with 4 concurrent workers") and to code that asks."""
    cls = _named.get(name)
    if cls is None:
        base = _bridge_class()
        cls = _named[name] = type(name, (base,), {"__module__": __name__, "__doc__": base.__doc__})
    return cls


_bridge: list = []


def _bridge_class() -> type:
    """:class:`OxjobBridgeBackend`, made when first needed (it subclasses joblib's base)."""
    if _bridge:
        return _bridge[0]
    from joblib._parallel_backends import ParallelBackendBase

    class OxjobBridgeBackend(ParallelBackendBase):
        """joblib's backend interface over an oxjob backend instance (Dask, Ray...):
        joblib's batches run where that backend runs oxjob's."""

        supports_retrieve_callback = True
        supports_timeout = True

        def __init__(self, inner: Any, nesting_level: Any = None, **kwargs: Any) -> None:
            level = inner.nesting_level if nesting_level is None else nesting_level
            super().__init__(nesting_level=level, **kwargs)
            self.inner = inner

        def effective_n_jobs(self, n_jobs: Any) -> int:
            return self.inner.effective_n_jobs(n_jobs)

        def configure(self, n_jobs: int = 1, parallel: Any = None, **kwargs: Any) -> int:
            # joblib's own settings (max_nbytes, mmap_mode...) are not the backend's.
            n_workers = self.inner.configure(n_jobs=n_jobs, parallel=None)
            self.parallel = parallel
            return n_workers

        def submit(self, func: Any, callback: Any = None) -> Any:
            # joblib's batch (a BatchedCalls) given as oxjob's Parallel gives its own:
            # the cluster backends read its calls and run them their own way.
            from .._parallel.batches import GuardedBatch

            return self.inner.apply_async(GuardedBatch(func), callback=callback)

        apply_async = submit  # joblib 1.3/1.4 call this one

        def retrieve_result_callback(self, out: Any) -> Any:
            ok, value, _ = out.get() if hasattr(out, "get") else out
            if not ok:
                raise value
            return value

        def retrieve_result(self, out: Any, timeout: Any = None) -> Any:
            ok, value, _ = out.get(timeout) if hasattr(out, "get") else out.result(timeout)
            if not ok:
                raise value
            return value

        def abort_everything(self, ensure_ready: bool = True) -> None:
            self.inner.abort_everything(ensure_ready=ensure_ready)

        def terminate(self) -> None:
            self.inner.terminate()

        def get_nested_backend(self) -> tuple:
            nested, n_jobs = self.inner.get_nested_backend()
            return _joblib_backend(nested), n_jobs

        def retrieval_context(self) -> Any:
            return self.inner.retrieval_context()

        def __repr__(self) -> str:
            return f"OxjobBridgeBackend({self.inner!r})"

    _bridge.append(OxjobBridgeBackend)
    return OxjobBridgeBackend
