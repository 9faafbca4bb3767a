"""``Parallel(backend="ray")``: batches as Ray tasks.

See ``docs/distributed.md``. Imported only when the ``'ray'`` backend is first used.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

try:
    import ray
except ImportError as exc:  # pragma: no cover - exercised without ray installed
    raise ImportError(
        "backend='ray' needs ray: install ray (pip install 'ray' or 'oxjob[ray]')"
    ) from exc

from ..backends import ParallelBackendBase, ThreadingBackend
from . import base, shared_args

__all__ = ["RayBackend"]

#: ``ray.put`` caches by (node, job): object refs do not outlive their driver's job.
_caches: dict[tuple, shared_args.SharedArgs] = {}
_lock = threading.Lock()
_remote_batch: list = []


def _session() -> tuple:
    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id()


class _Window:
    """The batches of one call that are Ray tasks: at most ``size`` at once, the rest
    wait here in order.

    An aborted call drops its waiting batches and never calls ``ray.cancel``: a cancel
    racing with a task's start or end kills the driver inside Ray ("Check failed:
    it != submissible_tasks_.end()", ray-project/ray#54846). Batches already running
    finish on the cluster and their results are dropped.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.running = 0
        self.waiting: collections.deque = collections.deque()
        self.aborted = False
        self.lock = threading.Lock()

    def admit(self, batch: tuple, job: base.Job) -> bool:
        """True: submit ``batch`` now; False: it waits for a running one to finish."""
        with self.lock:
            if self.aborted:
                return False
            if self.running >= self.size:
                self.waiting.append((batch, job))
                return False
            self.running += 1
            return True

    def release(self) -> tuple | None:
        """A running batch is done: the next one to submit, if any."""
        with self.lock:
            self.running -= 1
            if self.aborted or not self.waiting:
                return None
            self.running += 1
            return self.waiting.popleft()

    def abort(self) -> None:
        with self.lock:
            self.aborted = True
            self.waiting.clear()


def _outcome(future: Any, opaque: bool) -> tuple:
    """``(ok, value, seconds)`` of a finished batch task."""
    try:
        value = future.result()
    except BaseException as exc:  # noqa: BLE001 - re-raised by Parallel
        cause = getattr(exc, "cause", None)  # RayTaskError wraps the task's exception
        if isinstance(cause, BaseException):
            exc = cause
        return (False, base.with_remote_traceback(exc), 0.0)
    return value if opaque else (True, value[0], value[1])


class RayBackend(base.PerCallOptions, ParallelBackendBase):
    """Run ``Parallel`` batches as Ray tasks.

    Parameters
    ----------
    nesting_level : int, optional
    address : str, optional
        Passed to ``ray.init`` when Ray is not initialized yet (None: a local Ray).
    cache_nbytes : int or str, default='1G'
        Bound of the large arguments kept in the object store across calls.
    ray_remote_args : dict, optional
        Options of the batch task, as Ray's own joblib backend takes them (merged with
        ``**remote_options``, which win).
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
        ray_remote_args: dict | None = None,
        **remote_options: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level)
        self._options = dict(address=address, cache_nbytes=cache_nbytes, **remote_options)
        if ray_remote_args is not None:
            if not isinstance(ray_remote_args, dict):
                raise TypeError(
                    f"ray_remote_args must be a dict, got {type(ray_remote_args).__name__}"
                )
            self._options["ray_remote_args"] = ray_remote_args
            remote_options = {**ray_remote_args, **remote_options}
        if not ray.is_initialized():
            ray.init(address=address)
        with _lock:
            session = _session()
            shared = _caches.get(session)
            if shared is None:
                for old in [k for k in _caches if k[0] != session[0] or k[1] != session[1]]:
                    del _caches[old]  # refs of an earlier Ray session are dead
                shared = _caches[session] = shared_args.SharedArgs(ray.put)
            if not _remote_batch:
                _remote_batch.append(ray.remote(base.run_batch))
        shared.cache_nbytes = shared_args.parse_nbytes(cache_nbytes)
        self.shared = shared
        self.remote_options = {"num_cpus": 1, **remote_options}
        self.remote = _remote_batch[0].options(**self.remote_options)
        self._start_call(None, 1)

    def effective_n_jobs(self, n_jobs: int) -> int:
        """The CPUs of the Ray cluster (``n_jobs`` is ignored, as for Dask).

        At least 2: ``Parallel`` runs a single-worker call in the caller.
        """
        return max(int(ray.cluster_resources().get("CPU", 1)), 2)

    def _start_call(self, parallel: Any, n_workers: int) -> None:
        from .._units import DEFAULT_MAX_NBYTES

        self.max_nbytes = getattr(parallel, "max_nbytes", DEFAULT_MAX_NBYTES)
        self.call_refs: dict = {}
        # Two per CPU: a worker finds its next batch queued, and an aborted call leaves
        # at most that many to run on.
        self.window = _Window(2 * n_workers)
        timeout = getattr(parallel, "timeout", None)
        self.deadlines = base.Deadlines(timeout, n_workers) if timeout else None

    def apply_async(self, func: Any, callback: Any = None) -> base.Job:
        """Submit one batch; ``callback(outcome)`` runs when it is done."""
        calls = base.batched_calls_of(func)
        job = base.Job(callback)
        if calls is None:
            batch = (func, None, True)
        else:
            calls, refs = shared_args.prepare(calls, self.shared, self.max_nbytes, self.call_refs)
            batch = (calls, refs, False)
        if self.window.admit(batch, job):
            self._submit(self.window, batch, job)
        return job

    def _submit(self, window: _Window, batch: tuple, job: base.Job) -> None:
        calls, refs, opaque = batch
        try:
            if opaque:
                ref = ray.remote(calls).options(**self.remote_options).remote()
            else:
                ref = self.remote.remote(calls, self.nesting_level or 0, *refs)
        except BaseException as exc:  # noqa: BLE001 - reported as the batch's outcome
            job.finish((False, exc, 0.0))
            self._next(window)
            return
        if self.deadlines is not None:
            self.deadlines.add(job)
        ref.future().add_done_callback(lambda fut: self._finished(window, fut, job, opaque))

    def _next(self, window: _Window) -> None:
        following = window.release()
        if following is not None:
            self._submit(window, *following)

    def _finished(self, window: _Window, future: Any, job: base.Job, opaque: bool) -> None:
        if not window.aborted:
            job.finish(_outcome(future, opaque))
        self._next(window)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Drop the call's batches not yet submitted; the running ones finish unheard."""
        self.window.abort()
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
