"""Pool and ProcessPoolExecutor fail with the standard library's exception types and
messages; the stdlib's own pools (spawn) run the same checks as the reference."""

import concurrent.futures
import concurrent.futures.process
import gc
import multiprocessing
import multiprocessing.pool
import os
import sys
import time
import warnings

import pytest

import oxjob
from oxjob.exceptions import BrokenProcessPool

sys.path.insert(0, os.path.dirname(__file__))
import _helpers as h
import _pool_helpers as ph

SPAWN = multiprocessing.get_context("spawn")
POOLS = {"stdlib": SPAWN.Pool, "oxjob": oxjob.Pool}
EXECUTORS = {
    "stdlib": lambda n, **k: concurrent.futures.ProcessPoolExecutor(n, mp_context=SPAWN, **k),
    "oxjob": oxjob.ProcessPoolExecutor,
}


@pytest.fixture(params=list(POOLS))
def make_pool(request):
    return POOLS[request.param]


@pytest.fixture(params=list(EXECUTORS))
def make_executor(request):
    return EXECUTORS[request.param]


def test_a_workers_traceback_is_the_stdlibs_remote_traceback(make_pool, make_executor):
    with make_pool(1) as pool:
        with pytest.raises(ValueError) as info:
            pool.apply(h.fail_on, (3,))
    assert type(info.value.__cause__) is multiprocessing.pool.RemoteTraceback
    assert "fail_on" in info.value.__cause__.tb
    with make_executor(1) as executor:
        with pytest.raises(ValueError) as info:
            executor.submit(h.fail_on, 3).result(timeout=60)
    assert type(info.value.__cause__) is concurrent.futures.process._RemoteTraceback
    assert "fail_on" in info.value.__cause__.tb


def test_an_unpicklable_argument_raises_its_own_exception(make_pool, make_executor):
    with make_pool(1) as pool:
        with pytest.raises(RuntimeError, match="cannot pickle this object"):
            pool.map(ph.identity, [ph.RefusesPickling()] * 3)
        assert pool.map(ph.identity, [1, 2]) == [1, 2]  # the pool goes on
    with make_executor(1) as executor:
        future = executor.submit(ph.identity, ph.RefusesPickling())
        with pytest.raises(RuntimeError, match="cannot pickle this object"):
            future.result(timeout=60)
        assert executor.submit(ph.add, 1, 2).result(timeout=60) == 3


def test_an_unpicklable_result_is_a_maybe_encoding_error_for_pool(make_pool):
    with make_pool(1) as pool:
        errors = []
        result = pool.apply_async(ph.return_unpicklable, error_callback=errors.append)
        with pytest.raises(multiprocessing.pool.MaybeEncodingError) as info:
            result.get(timeout=60)
        assert errors == [info.value]
        assert "RefusesPickling" in info.value.value and "cannot pickle" in info.value.exc
        assert str(info.value).startswith("Error sending result: '<")
        with pytest.raises(multiprocessing.pool.MaybeEncodingError, match=r"Error sending .*\["):
            pool.map(ph.return_unpicklable, [1, 2], chunksize=2)
        assert pool.apply(ph.add, (1, 2)) == 3


@pytest.mark.parametrize("bad", [ph.ErrorAtUnpickle, ph.ExitAtUnpickle])
def test_a_task_the_worker_cannot_unpickle_is_broken_process_pool(make_executor, bad):
    with make_executor(2) as executor:
        with pytest.raises(BrokenProcessPool):
            executor.submit(ph.identity, bad()).result(timeout=60)


@pytest.mark.parametrize("bad", [ph.ErrorAtUnpickle, ph.ExitAtUnpickle])
def test_a_result_the_caller_cannot_unpickle_fails_its_task_and_never_hangs(bad):
    # The stdlib breaks the whole executor; oxjob fails the task (as BrokenProcessPool)
    # and the dispatcher lives on: later tasks complete and shutdown returns.
    executor = oxjob.ProcessPoolExecutor(2)
    future = executor.submit(ph.return_instance, bad)
    with pytest.raises(BrokenProcessPool) as info:
        future.result(timeout=60)
    assert type(info.value.__cause__) is concurrent.futures.process._RemoteTraceback
    assert executor.submit(ph.add, 2, 3).result(timeout=60) == 5
    executor.shutdown(wait=True)


def test_a_callback_raising_base_exception_does_not_stop_the_dispatcher(capsys):
    def leave(_):
        raise SystemExit("from a callback")

    with oxjob.ProcessPoolExecutor(1) as executor:
        first = executor.submit(ph.add, 1, 1)
        first.add_done_callback(leave)
        assert first.result(timeout=60) == 2
        assert executor.submit(ph.add, 2, 2).result(timeout=60) == 4
    with oxjob.Pool(1) as pool:
        pool.apply_async(ph.add, (1, 1), callback=leave).wait(60)
        assert pool.apply(ph.add, (3, 3)) == 6


def test_max_tasks_per_child_with_a_fork_context_is_refused(make_executor):
    fork = multiprocessing.get_context("fork")
    with pytest.raises(ValueError, match="incompatible with the 'fork'"):
        oxjob.ProcessPoolExecutor(1, mp_context=fork, max_tasks_per_child=1)
    with pytest.raises(TypeError, match="must be an integer"):
        oxjob.ProcessPoolExecutor(1, max_tasks_per_child="3")
    with pytest.raises(ValueError, match="must be >= 1"):
        oxjob.ProcessPoolExecutor(1, max_tasks_per_child=0)
    with make_executor(1, max_tasks_per_child=1) as executor:
        assert executor.submit(ph.add, 1, 1).result(timeout=60) == 2


def test_a_running_pool_collected_warns_resource_warning(make_pool):
    pool = make_pool(1)
    assert pool.apply(ph.add, (1, 2)) == 3

    def warned():
        return any(
            issubclass(w.category, ResourceWarning)
            and "unclosed running multiprocessing pool" in str(w.message)
            for w in caught
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del pool
        # A pool's result thread may hold its last task (and, through it, the pool) a
        # moment longer: the stdlib's pool too. Wait for the collection, not a fixed time.
        for _ in range(100):
            gc.collect()
            if warned():
                break
            time.sleep(0.1)
    assert warned()


def test_the_remote_traceback_shows_the_source_of_a_classmethod(make_pool):
    with make_pool(1) as pool:
        with pytest.raises(RuntimeError) as info:
            pool.apply(ph.Raiser.fail)
    assert "raise RuntimeError(123)  # the line the remote traceback shows" in (
        info.value.__cause__.tb
    )


def test_a_worker_that_dies_breaks_the_executor_as_the_stdlibs(make_executor):
    with make_executor(1) as executor:
        assert executor.submit(ph.add, 1, 1).result(timeout=60) == 2
        dying = executor.submit(ph.exit_abruptly)
        behind = executor.submit(ph.add, 2, 2)
        for future in (dying, behind):
            with pytest.raises(BrokenProcessPool, match="terminated abruptly"):
                future.result(timeout=60)
        with pytest.raises(BrokenProcessPool, match="not usable anymore"):
            executor.submit(ph.add, 3, 3)


def test_an_initializer_that_fails_breaks_the_executor(make_executor):
    with make_executor(2, initializer=ph.fail_to_initialize) as executor:
        with pytest.raises(BrokenProcessPool):
            executor.submit(ph.add, 1, 1).result(timeout=60)
        with pytest.raises(BrokenProcessPool):
            executor.submit(ph.add, 1, 1)


def test_an_initializer_that_fails_is_logged_as_the_stdlib_logs_it(make_executor):
    # The stdlib's worker logs the failure on the "concurrent.futures" logger (where a
    # program's logging setup sees it), with its traceback, then exits.
    import queue

    log_queue = SPAWN.Queue()
    executor = make_executor(1, initializer=ph.log_then_fail, initargs=(log_queue,))
    with executor:
        with pytest.raises(BrokenProcessPool):
            executor.submit(ph.add, 1, 1).result(timeout=60)
    record = log_queue.get(timeout=30)
    assert record.getMessage().splitlines()[0] == "Exception in initializer:"
    assert record.levelname == "CRITICAL"
    assert "this initializer fails" in record.getMessage()  # QueueHandler adds the traceback
    with pytest.raises(queue.Empty):
        log_queue.get(timeout=0.5)  # once


def test_an_executor_broken_before_its_constructor_returned_reports_the_break():
    # Workers forked ahead are ready at once, so a failing initializer can break the
    # engine before the executor opens its call: that call must report BrokenProcessPool
    # (as the standard library's executor does), not "This engine has been shut down".
    from oxjob._workers.engine import TaskEngine
    from oxjob._workers.outcomes import EXECUTOR

    engine = TaskEngine(
        2,
        "c",
        1 << 20,
        3600.0,
        initializer=ph.fail_to_initialize,
        initargs=(),
        break_when_a_worker_dies=True,
    )
    try:
        deadline = time.monotonic() + 60
        while engine.broken is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.broken is not None
        call = engine.open_call(cache_inputs=False, style=EXECUTOR)
        with pytest.raises(BrokenProcessPool):
            call.submit(ph.add, "calls", [((1, 1), {})], lambda ok, value: None)
    finally:
        engine.stop(0.0)
