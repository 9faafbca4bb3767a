"""``Parallel`` and ``delayed``: joblib's API on oxjob's engines.

``Parallel(n_jobs=2)(delayed(f)(x) for x in data)`` runs ``f`` over ``data`` on
worker processes (oxjob's Rust-driven engine), threads, or sequentially, with
joblib's parameters, messages and error behaviour. See ``docs/parallel.md``.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import os
import sys
import threading
import time
import types
from numbers import Integral
from typing import Any, Callable, Iterable, Iterator, Literal

from . import _engine
from ._backends.base import default_backend, set_default_backend
from ._backends.resolve import get_active_backend  # noqa: F401 - joblib.parallel's name
from ._expr import pre_dispatch_amount
from ._parallel.batches import BatchedCalls, GuardedBatch  # noqa: F401 - public names here
from ._parallel.runners import (
    BackendRunner,
    Outcome,
    ProcessRunner,
    Runner,
    SequentialRunner,
    ThreadRunner,
)
from ._units import DEFAULT_MAX_NBYTES, DEFAULT_MAX_NBYTES_TEXT, parse_size
from ._workers.mainscript import inner_threads
from .backends import (  # noqa: F401 - BACKENDS, EXTERNAL_BACKENDS...: joblib.parallel's names
    BACKENDS,
    EXTERNAL_BACKENDS,
    ParallelBackendBase,
    ProcessBackend,
    SequentialBackend,
    ThreadingBackend,
    cpu_count,
    effective_n_jobs,
    get_config,
    parallel_backend,
    parallel_config,
    register_parallel_backend,
    resolve_backend,
)
from .exceptions import TimeoutError

__all__ = ["Parallel", "delayed"]


#: Auto batching aims at batches that compute for about this long: long enough to
#: make dispatch overhead negligible, short enough to balance the load at the end.
_TARGET_BATCH_SECONDS = 0.02
#: Tiny tasks: a batch of up to 2048 task tuples stays in the CPU cache between being
#: built, pickled and freed; batches of 32768 made 100k tiny tasks ~35% slower.
_MAX_BATCH = 2048
_MAX_GROWTH = 64


# ``delayed`` is implemented in Rust (crates/oxjob-py/src/delayed.rs): in
# ``Parallel(delayed(f)(x) for x in xs)`` the caller's generator is the per-task cost,
# and a Python ``delayed`` doubled it.
delayed = _engine.delayed


def _short_format_time(t: float) -> str:
    if t > 60:
        return f"{t / 60.0:4.1f}min"
    return f" {t:5.1f}s"


def _verbosity_filter(index: int, verbose: int) -> bool:
    """joblib's rule for skipping progress messages (True: skip)."""
    if not verbose:
        return True
    if verbose > 10:
        return False
    if index == 0:
        return False
    step = 0.5 * (11 - verbose) ** 2
    scale = math.sqrt(index / step)
    next_scale = math.sqrt((index + 1) / step)
    return int(next_scale) == int(scale)


# ---- progress ---------------------------------------------------------------------------


class _ProgressBar:
    """A progress bar with rate and ETA: tqdm when installed, a plain one otherwise."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.count = 0
        self.start = time.monotonic()
        self.last_draw = 0.0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.tqdm = None
        else:
            self.tqdm = tqdm(total=total, unit="task")

    def update(self, n: int, total: int | None) -> None:
        self.count += n
        if self.tqdm is not None:
            if total is not None and self.tqdm.total != total:
                self.tqdm.total = total
            self.tqdm.update(n)
            return
        self.total = total if total is not None else self.total
        now = time.monotonic()
        if now - self.last_draw < 0.1 and self.count != self.total:
            return
        self.last_draw = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        if self.total:
            done = self.count / self.total
            bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
            eta = (self.total - self.count) / rate if rate else 0.0
            line = f"[{bar}] {self.count}/{self.total} | {rate:,.1f} tasks/s | ETA {eta:.1f}s"
        else:
            line = f"{self.count} tasks | {rate:,.1f} tasks/s | {elapsed:.1f}s"
        sys.stderr.write("\r" + line)
        sys.stderr.flush()

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.count:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ---- Parallel ---------------------------------------------------------------------------


class Parallel:
    """Run calls in parallel: ``Parallel(n_jobs=2)(delayed(f)(x) for x in data)``.

    Same signature, defaults and behaviour as :class:`joblib.Parallel`, on oxjob's
    engines: worker processes are fresh interpreters driven from Rust, reused across
    calls; large numpy arguments and results travel through shared memory.

    Parameters
    ----------
    n_jobs : int, optional
        Number of workers. ``None`` means 1 unless set by :class:`parallel_config`;
        ``-1`` all CPUs, ``-2`` all but one; floats are floored; 0 is an error.
    backend : str or ParallelBackendBase, optional
        ``'loky'``, ``'multiprocessing'`` or ``'processes'`` (oxjob's process
        engine, the default), ``'threading'``, ``'sequential'``, a registered name,
        or a backend instance.
    return_as : {'list', 'generator', 'generator_unordered'}, default='list'
        A list of results in order, a generator in order, or a generator in
        completion order.
    verbose : int, default=0
        joblib's progress messages: on stderr below 50, on stdout from 50, more
        often as it grows (above 10: every batch).
    timeout : float, optional
        Seconds a task may run; beyond that its worker is killed and
        :class:`~oxjob.exceptions.TimeoutError` is raised.
    pre_dispatch : int or str, default='2 * n_jobs'
        How many batches are dispatched ahead of completion: an int, ``'all'``, or
        arithmetic on ``n_jobs`` (``'2*n_jobs'``), parsed, never evaluated as code.
    batch_size : int or 'auto', default='auto'
        Tasks per batch; ``'auto'`` measures task durations and reaches batches of
        about 20 ms within a few batches.
    temp_folder : str, optional
        Accepted for compatibility; oxjob needs no temporary files.
    max_nbytes : int or str, default='1M'
        Out-of-band buffers (numpy arrays...) from this size travel in shared memory.
    mmap_mode : {'c', 'r', 'r+', 'w+'}, default='c'
        How workers see large inputs: ``'c'`` writable with private changes
        (copy-on-write), ``'r'`` read-only.
    prefer : {'processes', 'threads'}, optional
        Soft hint for the default backend.
    require : {'sharedmem'}, optional
        Hard constraint: use a backend whose workers share the caller's memory.
    progress : bool, default=False
        Show a progress bar with rate and ETA (tqdm when installed).
    **backend_kwargs
        Passed to the backend's ``configure``; ``initializer`` and ``initargs`` (as in
        joblib) run ``initializer(*initargs)`` in every process worker before its
        first task.

    Examples
    --------
    >>> from math import sqrt
    >>> from oxjob import Parallel, delayed
    >>> Parallel(n_jobs=2)(delayed(sqrt)(i ** 2) for i in range(5))
    [0.0, 1.0, 2.0, 3.0, 4.0]
    """

    def __init__(
        self,
        n_jobs: int | None = None,
        backend: str | ParallelBackendBase | None = None,
        return_as: Literal["list", "generator", "generator_unordered"] = "list",
        verbose: int | None = None,
        timeout: float | None = None,
        pre_dispatch: int | str = "2 * n_jobs",
        batch_size: int | Literal["auto"] = "auto",
        temp_folder: str | os.PathLike[str] | None = None,
        max_nbytes: int | str | None = None,
        mmap_mode: Literal["r+", "r", "w+", "c"] | None = None,
        prefer: Literal["processes", "threads"] | None = None,
        require: Literal["sharedmem"] | None = None,
        progress: bool = False,
        **backend_kwargs: Any,
    ) -> None:
        config = get_config()
        if return_as not in {"list", "generator", "generator_unordered"}:
            raise ValueError(
                'Expected `return_as` parameter to be a string equal to "list"'
                f',"generator" or "generator_unordered", but got {return_as} instead.'
            )
        self.return_as = return_as
        self.return_generator = return_as != "list"
        self.return_ordered = return_as != "generator_unordered"
        self.verbose = int(config.get("verbose", 0) if verbose is None else verbose)
        self.timeout = timeout
        self.pre_dispatch = pre_dispatch
        self.progress = progress
        if batch_size == "auto" or (
            isinstance(batch_size, Integral) and not isinstance(batch_size, bool) and batch_size > 0
        ):
            self.batch_size = batch_size
        else:
            raise ValueError(
                f"batch_size must be 'auto' or a positive integer, got: {batch_size!r}"
            )
        self.temp_folder = temp_folder if temp_folder is not None else config.get("temp_folder")
        nbytes = (
            config.get("max_nbytes", DEFAULT_MAX_NBYTES_TEXT) if max_nbytes is None else max_nbytes
        )
        self.max_nbytes = _parse_nbytes(nbytes)
        mode = config.get("mmap_mode") if mmap_mode is None else mmap_mode
        mode = "c" if mode is None else mode
        if mode not in ("c", "r", "r+", "w+"):
            raise ValueError(f"mmap_mode must be one of 'c', 'r', 'r+', 'w+', got {mode!r}")
        self.mmap_mode = mode
        self._backend, config = resolve_backend(backend, prefer, require, config, self.verbose)
        # What joblib passes to ``configure``: a custom backend may read it.
        self._backend_kwargs = {
            **backend_kwargs,
            "max_nbytes": self.max_nbytes,
            "temp_folder": self.temp_folder,
            "mmap_mode": self.mmap_mode,
            "prefer": config.get("prefer") if prefer is None else prefer,
            "require": config.get("require") if require is None else require,
            "verbose": max(0, self.verbose - 50),
        }
        if n_jobs is None:
            n_jobs = config.get("n_jobs")
        if n_jobs is None:
            n_jobs = self._backend.default_n_jobs
        try:
            n_jobs = int(n_jobs)
        except (TypeError, ValueError):
            raise ValueError("n_jobs could not be converted to int") from None
        self.n_jobs = n_jobs
        # joblib passes these to the process backends through ``**backend_kwargs``.
        self._initializer = backend_kwargs.get("initializer", config.get("initializer"))
        self._initargs = backend_kwargs.get("initargs", config.get("initargs", ()))
        self._running = False
        self._managed = False

    # ---- context manager -------------------------------------------------------------

    def __enter__(self) -> Parallel:
        self._managed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._managed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_jobs={self.n_jobs})"

    # ---- messages --------------------------------------------------------------------

    def _print(self, msg: str) -> None:
        if not self.verbose:
            return
        writer = sys.stderr.write if self.verbose < 50 else sys.stdout.write
        writer(f"[{self}]: {msg}\n")

    # joblib's progress hooks: a subclass may override ``print_progress`` (a tqdm bar,
    # say) and read these counters of the current (or last) call.
    _state: _CallState | None = None

    @property
    def n_dispatched_tasks(self) -> int:
        """Tasks sent to workers so far in the current (or last) call."""
        return self._state.n_dispatched if self._state is not None else 0

    @property
    def n_dispatched_batches(self) -> int:
        """Batches sent to workers so far in the current (or last) call."""
        return self._state.n_batches if self._state is not None else 0

    @property
    def n_completed_tasks(self) -> int:
        """Tasks whose results came back so far in the current (or last) call."""
        return self._state.n_completed if self._state is not None else 0

    def _is_completed(self) -> bool:
        """Whether every task was read, dispatched and completed (joblib's meaning:
        never while the caller's iterable is still being read or after a failure)."""
        state = self._state
        if state is None or state.aborting:
            return False
        done_reading = (
            state.finished
            or state.exhausted
            or (state.n_tasks is not None and state.n_dispatched >= state.n_tasks)
        )
        return done_reading and state.n_completed == state.n_dispatched

    def print_progress(self) -> None:
        """Report progress; called as joblib calls it, after each batch completes and
        once when the call ends, whatever ``verbose`` is.

        The default writes joblib's ``verbose`` lines. Override it to drive your own
        display from :attr:`n_completed_tasks`, :attr:`n_dispatched_tasks`,
        :attr:`n_dispatched_batches` and ``_is_completed()``, as with joblib.
        """
        if self._state is not None:
            self._print_progress(self._state, finished=self._state.finished)

    def _print_progress(self, state: _CallState, finished: bool = False) -> None:
        """joblib's ``print_progress``: the same lines at the same counts. A line
        goes out for a batch by the rule of ``_verbosity_filter`` while tasks are
        still being read, then by ``verbose``'s share of the tasks left; the last
        (``finished``) is written once, when the call ends."""
        if not self.verbose:
            return
        n_tasks = state.n_tasks
        # joblib knows the number of tasks only from ``len()``: a generator's lines
        # keep the width of 3 even once it is exhausted.
        width = math.floor(math.log10(state.length)) + 1 if state.length else 3
        elapsed = time.time() - state.start_time
        completed = state.n_completed
        if finished:
            self._print(
                f"Done {completed:{width}d} out of {completed:{width}d} | elapsed: "
                f"{_short_format_time(elapsed)} finished"
            )
            return
        if not state.all_dispatched:
            if _verbosity_filter(state.n_batches, self.verbose):
                return
            fmt_time = f"| elapsed: {_short_format_time(elapsed)}"
            if n_tasks is not None:
                self._print(f"Done {completed:{width}d} out of {n_tasks:{width}d} {fmt_time}")
            else:
                pad = " " * (len("out of ") + width - len("tasks"))
                self._print(f"Done {completed:{width}d} tasks {pad}{fmt_time}")
            return
        total = state.n_dispatched if n_tasks is None else n_tasks
        if completed == total:
            return  # the finished line follows
        if completed != 0:
            cursor = total - completed + 1 - state.pre_dispatch
            frequency = (total // self.verbose) + 1
            is_last_item = completed + 1 == total
            if is_last_item or cursor % frequency:
                return
        remaining = (elapsed / max(completed, 1)) * (total - completed)
        self._print(
            f"Done {completed:{width}d} out of {total:{width}d} | elapsed: "
            f"{_short_format_time(elapsed)} remaining: {_short_format_time(remaining)}"
        )

    # ---- running ---------------------------------------------------------------------

    def _make_runner(self, n_workers: int) -> Runner:
        backend = self._backend
        if isinstance(backend, SequentialBackend) or n_workers == 1:
            return SequentialRunner()
        if isinstance(backend, ThreadingBackend):
            return ThreadRunner(n_workers)
        if isinstance(backend, ProcessBackend):
            return ProcessRunner(
                n_workers,
                self.mmap_mode,
                self.max_nbytes,
                backend.idle_worker_timeout,
                self._initializer,
                self._initargs,
            )
        return BackendRunner(backend, n_workers)

    def _pre_dispatch_batches(self, n_workers: int) -> int | None:
        pre = self.pre_dispatch
        if pre == "all":
            return None
        if isinstance(pre, str):
            expression = pre
            try:
                pre = pre_dispatch_amount(expression, n_workers)
            except ValueError:
                too_many = "n_jobs" in expression and pre_dispatch_amount(expression, 1) >= 0
                if too_many and n_workers > 10**5:
                    raise ValueError(
                        f"n_jobs={n_workers} is too large: pre_dispatch={expression!r} would be "
                        "beyond a million tasks (joblib refuses it too); use a smaller "
                        "n_jobs or pre_dispatch='all'"
                    ) from None
                raise
        elif not isinstance(pre, Integral) or isinstance(pre, bool):
            raise ValueError(
                f"pre_dispatch must be an int, 'all' or an expression of n_jobs, got {pre!r}"
            )
        return max(int(pre), 1)

    def __call__(self, iterable: Iterable) -> Any:
        """Run the calls of ``iterable`` (``delayed`` tuples).

        Returns
        -------
        list or generator
            Per ``return_as``.

        Raises
        ------
        Exception
            The first exception raised by a task, with the worker's traceback as
            ``__cause__``; the remaining tasks are cancelled.
        TerminatedWorkerError
            When a worker process dies.
        TimeoutError
            When a task runs longer than ``timeout``.
        """
        if self._running:
            raise RuntimeError("This Parallel instance is already running !")
        n_workers = self._backend.configure(
            n_jobs=self.n_jobs, parallel=self, **self._backend_kwargs
        )
        # A call on one worker runs in the caller (joblib: SequentialBackend), where a
        # task cannot be timed out.
        runs_here = n_workers == 1 or isinstance(self._backend, SequentialBackend)
        if self.timeout is not None and (runs_here or not self._backend.supports_timeout):
            import warnings

            name = "SequentialBackend" if runs_here else type(self._backend).__name__
            warnings.warn(
                f"The backend class {name!r} does not support "
                f"timeout. You have set 'timeout={self.timeout}' in Parallel but the "
                "'timeout' parameter will not be used.",
                stacklevel=2,
            )
        backend_name = type(self._backend).__name__
        if n_workers == 0:
            raise RuntimeError(f"{backend_name} has no active worker.")
        self._running = True
        if n_workers != 1:  # joblib names no backend for a sequential call
            self._print(f"Using backend {backend_name} with {n_workers} concurrent workers.")
        if self.return_generator:
            return self._outputs(iterable, n_workers)
        results: list = []
        try:
            for chunk in self._chunks(iterable, n_workers):
                results.extend(chunk)  # a batch at a time: no per-result generator step
        except BaseException:
            results.clear()  # the traceback keeps this frame: not the results' memory
            chunk = None
            raise
        return results

    def _outputs(self, iterable: Iterable, n_workers: int) -> Iterator:
        for chunk in self._chunks(iterable, n_workers):
            yield from chunk

    def _chunks(self, iterable: Iterable, n_workers: int) -> Iterator[list]:
        """Results a batch at a time, in the order ``return_as`` asks for."""
        try:
            yield from self._run(iterable, n_workers)
        finally:
            self._running = False
            _engine.forget_delayed()  # what the call's tasks held is the caller's again
            if not self._managed:
                self._backend.terminate()

    def _next_batch_size(self, state: _CallState, runner: Runner) -> int:
        if state.sequential and self.verbose:
            return 1  # progress lines at joblib's counts: one task at a time
        if self.batch_size != "auto":
            return int(self.batch_size)
        if state.task_seconds is None or runner.one_task_per_batch:
            return 1
        ideal = int(_TARGET_BATCH_SECONDS / max(state.task_seconds, 1e-9))
        size = max(1, min(ideal, state.last_size * _MAX_GROWTH, _MAX_BATCH))
        if state.n_tasks is not None:
            remaining = state.n_tasks - state.n_dispatched
            size = min(size, max(1, math.ceil(remaining / state.n_workers)))
        return size

    def _run(self, iterable: Iterable, n_workers: int) -> Iterator:
        state = self._state = _CallState(n_workers, getattr(iterable, "__len__", None))
        pre_dispatch = self._pre_dispatch_batches(n_workers)
        state.pre_dispatch = pre_dispatch or 0
        tasks = iter(iterable)
        if pre_dispatch is None:
            listed = list(tasks)
            tasks, state.n_tasks = iter(listed), len(listed)
            del listed
        # joblib reports a sequential call task by task, as if still reading them.
        state.sequential = n_workers == 1
        state.dispatch_all = pre_dispatch is None and not state.sequential
        with inner_threads(getattr(self._backend, "inner_max_num_threads", None)):
            runner = self._make_runner(n_workers)
        bar = _ProgressBar(state.n_tasks) if self.progress else None
        ordered: dict[int, list] = {}
        next_to_yield = 0
        in_flight = 0
        outcomes: list[Outcome] | None  # None once let go of (on an error, below)
        retrieval = (
            contextlib.nullcontext() if state.sequential else self._backend.retrieval_context()
        )
        try:
            retrieval.__enter__()
            while True:
                limit = (
                    runner.capacity()
                    if pre_dispatch is None
                    else min(runner.capacity(), pre_dispatch - in_flight)
                )
                while not state.exhausted and limit > 0:
                    size = self._next_batch_size(state, runner)
                    batch = _take(tasks, size)
                    if len(batch) < size:
                        state.exhausted = True
                        if state.n_tasks is None:
                            state.n_tasks = state.n_dispatched + len(batch)
                    if not batch:
                        break
                    runner.submit(state.n_batches, batch)
                    state.sizes[state.n_batches] = len(batch)
                    state.last_size = len(batch)
                    state.n_batches += 1
                    state.n_dispatched += len(batch)
                    in_flight += 1
                    limit -= 1
                if in_flight == 0:
                    break
                outcomes = runner.wait(self._wait_time(runner))
                if not outcomes:
                    self._check_timeouts(runner)
                    continue
                for batch_id, ok, value, duration in outcomes:
                    in_flight -= 1
                    if not ok:
                        raise value
                    size = state.sizes.pop(batch_id)
                    state.record_duration(size, duration)
                    state.n_completed += size
                    if bar is not None:
                        bar.update(size, state.n_tasks)
                    self.print_progress()
                    if self.return_ordered:
                        ordered[batch_id] = value
                        while next_to_yield in ordered:
                            yield ordered.pop(next_to_yield)
                            next_to_yield += 1
                    else:
                        yield value
        except BaseException as exc:
            state.aborting = True
            runner.cancel()
            # The exception's traceback keeps this frame alive until the cycle collector
            # runs: let go of the results it holds now (their shared memory with them).
            ordered.clear()
            outcomes = value = None
            retrieval.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            runner.close()
            retrieval.__exit__(None, None, None)
            state.finished = True
            self.print_progress()
        finally:
            if bar is not None:
                bar.close()

    def _wait_time(self, runner: Runner) -> float | None:
        if self.timeout is None:
            return None
        running = runner.running()
        if not running:
            return min(self.timeout, threading.TIMEOUT_MAX)
        oldest = min(started for _, started in running)
        # timeout=inf or 1e10 waits as long as the system allows, as joblib does.
        wait = max(0.0, oldest + self.timeout - time.monotonic()) + 0.001
        return min(wait, threading.TIMEOUT_MAX)

    def _check_timeouts(self, runner: Runner) -> None:
        if self.timeout is None:
            return
        now = time.monotonic()
        for batch_id, started in runner.running():
            if now - started >= self.timeout:
                runner.kill_worker_of(batch_id)
                raise TimeoutError(
                    f"A task has failed to return in less than {self.timeout} seconds"
                )


class _CallState:
    """Counters of one call, used for batching and progress messages."""

    def __init__(self, n_workers: int, length: Callable[[], int] | None) -> None:
        self.n_workers = n_workers
        self.n_tasks: int | None = length() if length is not None else None
        self.length = self.n_tasks
        self.n_dispatched = 0
        self.n_completed = 0
        self.n_batches = 0
        self.exhausted = False
        self.task_seconds: float | None = None
        self.last_size = 1
        self.sizes: dict[int, int] = {}
        self.pre_dispatch = 0
        self.sequential = False
        self.dispatch_all = False
        self.start_time = time.time()
        self._weight = 0
        self.finished = False  # every result is in (the last progress report)
        self.aborting = False  # a task failed or the call was stopped

    @property
    def all_dispatched(self) -> bool:
        """joblib's "the caller's iterator is done with" (progress lines change)."""
        if self.sequential:
            return False
        return (
            self.dispatch_all
            or self.exhausted
            or (self.n_tasks is not None and self.n_dispatched >= self.n_tasks)
        )

    def record_duration(self, size: int, duration: float) -> None:
        """Update the per-task time estimate; the newest batch weighs at least half,
        so a slow first task (imports, warm-up) is forgotten within a batch or two."""
        if not size:
            return
        if self.task_seconds is None:
            self.task_seconds, self._weight = duration / size, size
            return
        old = min(self._weight, size)
        self.task_seconds = (self.task_seconds * old + duration) / (old + size)
        self._weight = old + size


def _take(tasks: Iterator, size: int) -> list:
    """The next ``size`` tasks. The garbage collector is paused meanwhile: building
    thousands of live task tuples would otherwise trigger collections that find
    nothing to free (they cost more than the tuples themselves)."""
    if size < 64 or not gc.isenabled():
        return list(itertools.islice(tasks, size))
    gc.disable()
    try:
        return list(itertools.islice(tasks, size))
    finally:
        gc.enable()


def _parse_nbytes(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_NBYTES
    return parse_size(value, "max_nbytes")


class _ParallelModule(types.ModuleType):
    """This module's type: ``DEFAULT_BACKEND``, joblib.parallel's name for the backend
    used when none is given (code sets and restores it, joblib's tests among them),
    reads and writes the default that the backends' registry owns, so nothing below
    this module has to look it up here."""

    @property
    def DEFAULT_BACKEND(self) -> str:
        return default_backend()

    @DEFAULT_BACKEND.setter
    def DEFAULT_BACKEND(self, name: str) -> None:
        set_default_backend(name)


sys.modules[__name__].__class__ = _ParallelModule
