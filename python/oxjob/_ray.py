"""``Parallel(backend="ray")``: batches as Ray tasks.

See ``docs/distributed.md``. Imported only when the ``'ray'`` backend is first used.
"""

from __future__ import annotations

import threading
from typing import Any

try:
    import ray
except ImportError as exc:  # pragma: no cover - exercised without ray installed
    raise ImportError(
        "backend='ray' needs ray: install ray (pip install 'ray' or 'oxjob[ray]')"
    ) from exc

from . import _cluster, _shared_args
from .backends import ParallelBackendBase, ThreadingBackend

__all__ = ["RayBackend"]

#: ``ray.put`` caches by (node, job): object refs do not outlive their driver's job.
_caches: dict[tuple, _shared_args.SharedArgs] = {}
_lock = threading.Lock()
_remote_batch: list = []


def _session() -> tuple:
    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id()


class RayBackend(_cluster.PerCallOptions, ParallelBackendBase):
    """Run ``Parallel`` batches as Ray tasks.

    Parameters
    ----------
    nesting_level : int, optional
    address : str, optional
        Passed to ``ray.init`` when Ray is not initialized yet (None: a local Ray).
    cache_nbytes : int or str, default='1G'
        Bound of the large arguments kept in the object store across calls.
    **remote_options
        Passed to ``.options()`` of the batch task (``num_cpus``, ``max_retries``,
        ``resources``...).
    """

    default_n_jobs = -1
    supports_timeout = True
    supports_sharedmem = False
    supports_return_generator = True

    def __init__(
        self,
        nesting_level: int | None = None,
        address: str | None = None,
        cache_nbytes: Any = "1G",
        **remote_options: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level)
        self._options = dict(address=address, cache_nbytes=cache_nbytes, **remote_options)
        if not ray.is_initialized():
            ray.init(address=address)
        with _lock:
            session = _session()
            shared = _caches.get(session)
            if shared is None:
                for old in [k for k in _caches if k[0] != session[0] or k[1] != session[1]]:
                    del _caches[old]  # refs of an earlier Ray session are dead
                shared = _caches[session] = _shared_args.SharedArgs(ray.put)
            if not _remote_batch:
                _remote_batch.append(ray.remote(_cluster.run_batch))
        shared.cache_nbytes = _shared_args.parse_nbytes(cache_nbytes)
        self.shared = shared
        self.remote = _remote_batch[0].options(**{"num_cpus": 1, **remote_options})
        self._start_call(None, 1)

    def effective_n_jobs(self, n_jobs: int) -> int:
        """The CPUs of the Ray cluster (``n_jobs`` is ignored, as for Dask).

        At least 2: ``Parallel`` runs a single-worker call in the caller.
        """
        return max(int(ray.cluster_resources().get("CPU", 1)), 2)

    def _start_call(self, parallel: Any, n_workers: int) -> None:
        from ._protocol import DEFAULT_MAX_NBYTES

        self.max_nbytes = getattr(parallel, "max_nbytes", DEFAULT_MAX_NBYTES)
        self.call_refs: dict = {}
        self.refs: dict = {}  # id -> object ref of the call's batches not yet done
        self.lock = threading.Lock()
        timeout = getattr(parallel, "timeout", None)
        self.deadlines = _cluster.Deadlines(timeout, n_workers) if timeout else None

    def apply_async(self, func: Any, callback: Any = None) -> _cluster.Job:
        """Submit one batch; ``callback(outcome)`` runs when it is done."""
        calls = _cluster.batched_calls_of(func)
        job = _cluster.Job(callback)
        if calls is None:
            ref = ray.remote(func).options(num_cpus=1).remote()
            opaque = True
        else:
            calls, refs = _shared_args.prepare(calls, self.shared, self.max_nbytes, self.call_refs)
            ref = self.remote.remote(calls, self.nesting_level or 0, *refs)
            opaque = False
        with self.lock:
            self.refs[id(ref)] = ref
        if self.deadlines is not None:
            self.deadlines.add(job)
        key = id(ref)
        ref.future().add_done_callback(lambda fut: self._finished(fut, key, job, opaque))
        return job

    def _finished(self, future: Any, key: int, job: _cluster.Job, opaque: bool) -> None:
        with self.lock:
            ref = self.refs.pop(key, None)
        if ref is None:
            return  # cancelled: the call was aborted
        try:
            value = future.result()
            outcome = value if opaque else (True, value[0], value[1])
        except BaseException as exc:  # noqa: BLE001 - re-raised by Parallel
            cause = getattr(exc, "cause", None)  # RayTaskError wraps the task's exception
            if isinstance(cause, BaseException):
                exc = cause
            outcome = (False, _cluster.with_remote_traceback(exc), 0.0)
        job.finish(outcome)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel every batch of the call still queued or running."""
        with self.lock:
            refs = list(self.refs.values())
            self.refs.clear()
        for ref in refs:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 - already finished or lost
                pass
        self._end_call()

    def terminate(self) -> None:
        self._end_call()

    def _end_call(self) -> None:
        if self.deadlines is not None:
            self.deadlines.stop()
            self.deadlines = None
        self.call_refs = {}

    def get_nested_backend(self) -> tuple[ParallelBackendBase, int | None]:
        return ThreadingBackend(nesting_level=(self.nesting_level or 0) + 1), None

    def __repr__(self) -> str:
        return "RayBackend()"
