"""``Parallel(backend="dask")``: batches as tasks of a ``dask.distributed`` cluster.

See ``docs/distributed.md``. Imported only when the ``'dask'`` backend is first used.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any, Iterator

try:
    import distributed
except ImportError as exc:  # pragma: no cover - exercised without dask installed
    raise ImportError(
        "backend='dask' needs dask.distributed: install dask[distributed] "
        "(pip install 'dask[distributed]' or 'oxjob[dask]')"
    ) from exc

from ..backends import ParallelBackendBase
from . import base, shared_args

__all__ = ["DaskDistributedBackend", "DaskBackend"]

#: joblib's size on Dask: an argument of more than 1 KB (``dask.sizeof``) that tasks
#: share is sent to the cluster once per call (from its second use: one used by a single
#: task travels with its batch, where joblib would send every row of an array alone).
_REUSE_NBYTES = 1_000 + 1

#: Scatter caches by client id: arrays sent in one call are found again in the next.
_caches: dict[str, shared_args.SharedArgs] = {}
_clients: dict[str, distributed.Client] = {}
_lock = threading.Lock()


class DaskDistributedBackend(base.PerCallOptions, ParallelBackendBase):
    """Run ``Parallel`` batches on a ``dask.distributed`` cluster (joblib's name).

    Parameters
    ----------
    nesting_level : int, optional
    scheduler_host : str, optional
        Address of a scheduler to connect to (one client per address is kept).
    scatter : list or tuple, optional
        Objects to send to every worker now (``broadcast=True``, as joblib); calls using
        them send nothing more.
    client : distributed.Client, optional
        The client to use; by default the current one (``distributed.get_client()``).
    loop : optional
        Event loop of the client made for ``scheduler_host``.
    wait_for_workers_timeout : float, default=10
        Seconds to wait for a first worker when the cluster has none.
    cache_nbytes : int or str, default='1G'
        Bound of the large arguments kept on the cluster across calls (0: none kept).
    direct : bool, default=True
        Send large arguments to the workers and read results from them directly, not
        through the scheduler (one network hop instead of two). False where the client
        cannot reach the workers (behind a gateway).
    **submit_kwargs
        Passed to ``client.submit`` (``resources``, ``retries``, ``priority``...).
    """

    default_n_jobs = -1
    supports_timeout = True
    supports_sharedmem = False
    supports_return_generator = True

    def __init__(
        self,
        nesting_level: int | None = None,
        scheduler_host: str | None = None,
        scatter: Any = None,
        client: Any = None,
        loop: Any = None,
        wait_for_workers_timeout: float = 10,
        cache_nbytes: Any = "1G",
        direct: bool = True,
        **submit_kwargs: Any,
    ) -> None:
        super().__init__(nesting_level=nesting_level)
        self._options = dict(
            scheduler_host=scheduler_host,
            scatter=scatter,
            client=client,
            loop=loop,
            wait_for_workers_timeout=wait_for_workers_timeout,
            cache_nbytes=cache_nbytes,
            direct=direct,
            **submit_kwargs,
        )
        if client is None:
            client = _client_for(scheduler_host, loop)
        self.client = client
        self.wait_for_workers_timeout = wait_for_workers_timeout
        self.submit_kwargs = submit_kwargs
        with _lock:
            shared = _caches.get(client.id)
            if shared is None:
                # The scatter reads the cache's ``direct`` setting when it runs.
                new = shared_args.SharedArgs(
                    lambda obj: _scatter(client, obj, direct=new.direct), sizeof=_sizeof()
                )
                shared = _caches[client.id] = new
        shared.cache_nbytes = shared_args.parse_nbytes(cache_nbytes)
        shared.direct = self.direct = direct
        self.shared = shared
        if scatter is not None and not isinstance(scatter, (list, tuple)):
            raise TypeError(f"scatter must be a list/tuple, got `{type(scatter).__name__}`")
        self._scatter = list(scatter or ())
        self._scatter_refs: dict = {}
        for obj in self._scatter:
            self.shared.send(obj, self._scatter_refs, put=self._broadcast)
        self._start_call(None, 1)

    def _broadcast(self, obj: Any) -> Any:
        return _scatter(self.client, obj, direct=self.direct, broadcast=True)

    def effective_n_jobs(self, n_jobs: int) -> int:
        """The cluster's worker threads (``n_jobs`` is ignored, as in joblib).

        At least 2: ``Parallel`` runs a single-worker call in the caller. With no
        worker, a probe task is submitted and awaited for ``wait_for_workers_timeout``
        seconds (an adaptive cluster scales up for it), as joblib does; with a timeout
        of 0, no wait: ``RuntimeError``, joblib's "has no active worker".
        """
        total = sum(self.client.nthreads().values())
        if total == 0 and not self.wait_for_workers_timeout:
            raise RuntimeError("DaskDistributedBackend has no active worker.")
        if total == 0:
            try:
                self.client.submit(_probe, pure=False).result(timeout=self.wait_for_workers_timeout)
            except (TimeoutError, distributed.TimeoutError) as exc:
                raise TimeoutError(
                    f"DaskDistributedBackend has no worker after "
                    f"{self.wait_for_workers_timeout} seconds. Make sure that workers are "
                    "started and can properly connect to the scheduler and increase the "
                    "joblib/dask connection timeout with:\n\n"
                    "parallel_config(backend='dask', "
                    f"wait_for_workers_timeout={max(10, 2 * self.wait_for_workers_timeout)})"
                ) from exc
            total = sum(self.client.nthreads().values())
        return max(total, 2)

    @contextlib.contextmanager
    def retrieval_context(self) -> Iterator[None]:
        """Inside a Dask task, leave the worker's thread pool while waiting for the
        nested call's batches (``secede``/``rejoin``, as joblib does): the cluster's
        threads may all be busy with tasks like this one, waiting."""
        in_task = hasattr(distributed.worker.thread_state, "execution_state")
        if in_task:
            distributed.secede()
        try:
            yield
        finally:
            if in_task:
                distributed.rejoin()

    def _start_call(self, parallel: Any, n_workers: int) -> None:
        from .._units import DEFAULT_MAX_NBYTES

        self.max_nbytes = getattr(parallel, "max_nbytes", DEFAULT_MAX_NBYTES)
        self.call_refs = dict(self._scatter_refs)
        self.futures: dict = {}  # key -> future of the call's batches not yet done
        self.lock = threading.Lock()
        timeout = getattr(parallel, "timeout", None)
        self.deadlines = base.Deadlines(timeout, n_workers) if timeout else None
        self.results: _Results | None = None  # made by the first batch

    def apply_async(self, func: Any, callback: Any = None) -> base.Job:
        """Submit one batch; ``callback(outcome)`` runs when it is done."""
        calls = base.batched_calls_of(func)
        level = self.nesting_level or 0
        job = base.Job(callback)
        if calls is None:
            future = self.client.submit(func, pure=False, **self.submit_kwargs)
            opaque = True
        else:
            key = f"{_batch_name(calls)}-{uuid.uuid4().hex}"
            calls, refs = shared_args.prepare(
                calls, self.shared, self.max_nbytes, self.call_refs, _REUSE_NBYTES
            )
            future = self.client.submit(
                _run_batch,
                calls,
                level,
                *refs,
                key=key,
                pure=False,
                **self.submit_kwargs,
            )
            opaque = False
        with self.lock:
            self.futures[future.key] = future
        if self.deadlines is not None:
            self.deadlines.add(job)
        if self.results is None:
            self.results = _Results(self._finished)
        self.results.add(future, job, opaque)
        return job

    def _finished(self, future: Any, job: base.Job, opaque: bool) -> None:
        # Only self.futures refers to a batch's future: once done and read, the
        # cluster forgets it (an aborted call's traceback keeps nothing there).
        with self.lock:
            self.futures.pop(future.key, None)
        if future.status == "cancelled":
            return  # the call was aborted: nobody waits for it
        try:
            if future.status == "finished":
                value = self.client.gather(future, direct=self.direct)
                outcome = value if opaque else (True, value[0], value[1])
            else:
                outcome = (False, base.with_remote_traceback(future.exception()), 0.0)
        except BaseException as exc:  # noqa: BLE001 - the client lost the result
            outcome = (False, exc, 0.0)
        job.finish(outcome)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Cancel every batch of the call still queued or running."""
        with self.lock:
            futures = list(self.futures.values())
            self.futures.clear()
        if futures:
            self.client.cancel(futures)
        self._end_call()

    def terminate(self) -> None:
        self._end_call()

    def _end_call(self) -> None:
        results, self.results = getattr(self, "results", None), None
        if results is not None:
            results.stop()
        if self.deadlines is not None:
            self.deadlines.stop()
            self.deadlines = None
        self.call_refs = dict(self._scatter_refs)

    def get_nested_backend(self) -> tuple[ParallelBackendBase, int | None]:
        """This cluster for every worker thread (joblib's choice)."""
        return DaskDistributedBackend(
            nesting_level=(self.nesting_level or 0) + 1, client=self.client
        ), -1

    def __reduce__(self) -> tuple:
        # Sent to a worker (inside joblib's batch objects): made again there with the
        # worker's client, as joblib's is; a client cannot be pickled.
        return DaskDistributedBackend, (self.nesting_level,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client={self.client!r})"


DaskBackend = DaskDistributedBackend  # oxjob's earlier name


def _run_batch(calls: list, level: int, *values: Any) -> tuple[list, float]:
    """:func:`base.run_batch` in a Dask worker, with this backend active for the
    nested ``Parallel`` calls of the batch (as in joblib): they send their batches to
    the cluster, on every worker thread, and ``require='sharedmem'`` gets threads.

    A Dask task starts from nesting level 0, as joblib's do (``level`` is not used):
    a nested call that leaves the cluster for threads gets threads, then sequential
    one level further down, as at the top of a program.
    """
    from .._backends.config import parallel_config

    with parallel_config(backend=DaskDistributedBackend(nesting_level=0)):
        return base.run_batch(calls, -1, *values)


def _scatter(client: Any, obj: Any, **options: Any) -> Any:
    """One future for ``obj``, whatever it is: ``client.scatter`` of a dict (or a list)
    itself would send each value under its own key (a dict's keys become task keys, the
    same for every dict with the same keys)."""
    return client.scatter([obj], hash=False, **options)[0]


def _batch_name(calls: list) -> str:
    """joblib's name of a batch, the start of its task key on the dashboard:
    ``batch_of_<first function>_<n>_calls``, ``mixed_...`` when it calls several."""
    from dask.utils import funcname

    mixed = len({id(func) for func, _, _ in calls}) > 1
    first = funcname(calls[0][0]) if calls else "nothing"
    return f"{'mixed_' if mixed else ''}batch_of_{first}_{len(calls)}_calls"


def _sizeof() -> Any:
    from dask.sizeof import sizeof

    return sizeof


def _probe() -> None:
    """A task that does nothing: submitted to a cluster with no worker, it makes an
    adaptive cluster start one (joblib's probe)."""


class _Results:
    """Hands each batch's outcome to ``Parallel`` as it completes, from a thread that
    runs while batches are pending and ends when none is (``Future.add_done_callback``
    would leave Dask's process-wide callback thread behind; a ``with Parallel()``
    block never says when its calls are over)."""

    def __init__(self, finished: Any) -> None:
        self.finished = finished
        self.jobs: dict = {}  # future key -> (job, opaque)
        self.pending = distributed.as_completed([], with_results=False)
        self.lock = threading.Lock()
        self.running = False

    def add(self, future: Any, job: Any, opaque: bool) -> None:
        with self.lock:
            self.jobs[future.key] = (job, opaque)
            self.pending.add(future)
            if not self.running:
                self.running = True
                threading.Thread(target=self._run, daemon=True, name="oxjob-dask-results").start()

    def _run(self) -> None:
        while True:
            for future in self.pending:  # ends when nothing is pending
                job, opaque = self.jobs.pop(future.key)
                self.finished(future, job, opaque)
            with self.lock:
                if self.pending.is_empty():
                    self.running = False
                    return

    def stop(self) -> None:
        """Nothing to do: the thread ends once every batch still pending is done or
        cancelled."""


def _client_for(scheduler_host: str | None, loop: Any) -> Any:
    if scheduler_host:
        with _lock:
            client = _clients.get(scheduler_host)
            if client is None or client.status not in ("running", "connecting", "newly-created"):
                client = _clients[scheduler_host] = distributed.Client(
                    scheduler_host, loop=loop, set_as_default=False
                )
            return client
    try:
        return distributed.get_client()
    except ValueError as exc:
        raise ValueError(
            "To use Joblib with Dask first create a Dask Client\n\n"
            "    from dask.distributed import Client\n"
            "    client = Client()\n"
            "or\n"
            "    client = Client('scheduler-address:8786')\n\n"
            "(or pass parallel_config(backend='dask', client=...) or scheduler_host=...)"
        ) from exc
