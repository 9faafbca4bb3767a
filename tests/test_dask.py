"""Parallel(backend="dask") against a real LocalCluster started by the tests."""

import gc
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import _cluster_tasks as tasks  # noqa: E402
import cloudpickle  # noqa: E402

from oxjob import Parallel, delayed, parallel_config  # noqa: E402
from oxjob.exceptions import RemoteTraceback, TimeoutError  # noqa: E402

cloudpickle.register_pickle_by_value(tasks)  # workers need not import the tests' folder


def _cluster(**config):
    import dask

    with dask.config.set(config):
        return distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        )


@pytest.fixture(scope="module")
def client():
    cluster = _cluster()
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def scatters(client, monkeypatch):
    """The ids of the objects sent with client.scatter during the test."""
    sent = []
    real = client.scatter

    def counting(data, *args, **kwargs):
        one = type(data) is list and len(data) == 1  # oxjob sends [obj]: one future
        sent.append(id(data[0] if one else data))  # not the object: tests wait for its death
        return real(data, *args, **kwargs)

    monkeypatch.setattr(client, "scatter", counting)
    return sent


def _oxjob_tasks(client):
    return client.run_on_scheduler(
        lambda dask_scheduler: [k for k in dask_scheduler.tasks if "batch_of_" in str(k)]
    )


def _wait_drained(client, limit=20.0):
    deadline = time.monotonic() + limit
    while _oxjob_tasks(client):
        assert time.monotonic() < deadline, f"tasks left on the scheduler: {_oxjob_tasks(client)}"
        time.sleep(0.05)


def test_results_in_order_computed_on_the_cluster_workers(client):
    worker_pids = set(client.run(os.getpid).values())
    out = Parallel(backend="dask")(delayed(tasks.pid_square)(i) for i in range(200))
    assert [r for _, r in out] == [i * i for i in range(200)]
    pids = {pid for pid, _ in out}
    assert pids <= worker_pids
    assert os.getpid() not in pids


@pytest.mark.parametrize("batch_size", [1, 7, "auto"])
def test_parallel_config_with_an_explicit_client(client, batch_size):
    with parallel_config(backend="dask", client=client):
        out = Parallel(batch_size=batch_size)(delayed(tasks.pid_square)(i) for i in range(30))
    assert [r for _, r in out] == [i * i for i in range(30)]


def test_client_given_to_parallel_is_used(client):
    cluster = _cluster()
    try:
        with distributed.Client(cluster, set_as_default=False) as other:
            other_pids = set(other.run(os.getpid).values())
            out = Parallel(backend="dask", client=other)(
                delayed(tasks.pid_square)(i) for i in range(10)
            )
            assert {pid for pid, _ in out} <= other_pids
    finally:
        cluster.close()


def test_a_function_that_is_not_a_batch_is_sent_as_it_is(client):
    from oxjob._cluster.dask import DaskBackend

    backend = DaskBackend(client=client)
    backend.configure(parallel=None)
    outcomes = []
    job = backend.apply_async(lambda: (True, [os.getpid()], 0.0), callback=outcomes.append)
    ok, value, _ = job.get(timeout=30)
    assert ok and value[0] in set(client.run(os.getpid).values())
    assert outcomes == [(ok, value, 0.0)]


def test_effective_n_jobs_is_the_cluster_threads(client):
    from oxjob._cluster.dask import DaskBackend

    assert DaskBackend(client=client).effective_n_jobs(-1) == 2


def test_generators(client):
    gen = Parallel(backend="dask", return_as="generator")(
        delayed(tasks.sleep_then)(i, 0.05 * (i % 3)) for i in range(12)
    )
    assert list(gen) == list(range(12))
    gen = Parallel(backend="dask", return_as="generator_unordered", batch_size=1)(
        delayed(tasks.sleep_then)(i, 0.6 if i == 0 else 0.0) for i in range(6)
    )
    out = list(gen)
    assert sorted(out) == list(range(6))
    assert out[0] != 0  # in completion order: the slow first task did not come first


def test_verbose_messages(client, capsys):
    Parallel(backend="dask", verbose=11)(delayed(abs)(-i) for i in range(5))
    err = capsys.readouterr().err
    assert "Using backend DaskDistributedBackend with 2 concurrent workers." in err
    assert "Done   5 out of   5" in err  # joblib's width-3 counts


def test_error_has_the_remote_traceback(client):
    with pytest.raises(ValueError, match="bad value 3") as info:
        Parallel(backend="dask")(delayed(tasks.fail_on)(i, 3) for i in range(6))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fail_on" in str(cause)
    worker_pids = client.run(os.getpid).values()
    assert any(f"(in process {pid})" in str(cause) for pid in worker_pids)


def test_unpicklable_exception_becomes_a_runtime_error(client):
    with pytest.raises(RuntimeError, match="Unpicklable: 1") as info:
        Parallel(backend="dask")(delayed(tasks.raise_unpicklable)() for _ in range(2))
    assert "raise_unpicklable" in str(info.value.__cause__)


def test_first_error_cancels_the_rest(client, tmp_path):
    n = 30
    with pytest.raises(KeyError, match="task 1 failed"):
        Parallel(backend="dask", batch_size=1)(
            delayed(tasks.marked_sleep)(i, 0.3, str(tmp_path), fail=1) for i in range(n)
        )
    _wait_drained(client)
    time.sleep(0.5)
    done = len(os.listdir(tmp_path))
    assert done < 8, f"{done} tasks ran after the error"


def test_keyboard_interrupt_cancels_what_was_submitted(client, tmp_path):
    import _thread

    timer = threading.Timer(0.8, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            Parallel(backend="dask", batch_size=1, pre_dispatch="all")(
                delayed(tasks.marked_sleep)(i, 0.3, str(tmp_path)) for i in range(40)
            )
    finally:
        timer.cancel()
    _wait_drained(client)
    time.sleep(0.5)
    assert len(os.listdir(tmp_path)) < 20


def _wait_idle(client, limit=20.0):
    """Until no worker runs a task (a cancelled task runs to its end)."""
    deadline = time.monotonic() + limit
    while any(client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
        assert time.monotonic() < deadline, "workers still busy"
        time.sleep(0.05)


def test_timeout(client):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="less than 0.3 seconds"):
        Parallel(backend="dask", timeout=0.3, batch_size=1)(
            delayed(tasks.sleep_then)(i, 1.5) for i in range(4)
        )
    assert time.monotonic() - start < 1.4  # did not wait for the tasks (hang limit)
    _wait_drained(client)
    _wait_idle(client)


def test_queued_batches_do_not_time_out(client):
    # 8 batches of 0.3 s on 2 workers take ~1.2 s: each within the 1 s timeout.
    out = Parallel(backend="dask", timeout=1.0, batch_size=1)(
        delayed(tasks.sleep_then)(i, 0.3) for i in range(8)
    )
    assert out == list(range(8))


def test_large_argument_sent_once_per_call_and_reused_by_content(client, scatters):
    x = np.arange(1_000_000, dtype=np.float64)  # 8 MB, above the 1M default
    expected = [float(x.sum()) + i for i in range(8)]
    out = Parallel(backend="dask", batch_size=1)(delayed(tasks.array_sum)(x, i) for i in range(8))
    assert [r for _, r in out] == expected
    assert scatters == [id(x)]

    copy = x.copy()  # same bytes, another object: nothing sent again
    out = Parallel(backend="dask")(delayed(tasks.array_sum)(copy, i) for i in range(8))
    assert [r for _, r in out] == expected
    assert len(scatters) == 1

    x[0] = 1e6  # changed in place: the new content is sent, results follow it
    out = Parallel(backend="dask")(delayed(tasks.array_sum)(x, i) for i in range(8))
    assert [r for _, r in out] == [float(x.sum()) + i for i in range(8)]
    assert len(scatters) == 2


def test_arguments_above_1kb_are_scattered_once_per_call(client, scatters):
    # joblib's size on Dask: an argument of more than 1 KB (dask's sizeof) that several
    # tasks use is sent once and every task using it gets the reference.
    data1, data2 = np.ones(10_000, dtype=np.uint8), np.zeros(10_000, dtype=np.uint8)
    out = Parallel(backend="dask", batch_size=1)(
        delayed(tasks.array_sum)(data, i) for i, data in enumerate([data1] * 3 + [data2] * 3)
    )
    assert [r for _, r in out] == [10_000.0 + i for i in range(3)] + [3.0 + i for i in range(3)]
    assert sorted(scatters) == sorted([id(data1), id(data2)])
    small = np.ones(100)  # 800 bytes: travels with its batch
    out = Parallel(backend="dask")(delayed(tasks.array_sum)(small, i) for i in range(4))
    assert [r for _, r in out] == [100.0 + i for i in range(4)]
    assert len(scatters) == 2
    rows = np.arange(25_000.0).reshape(50, 500)  # 4 KB rows, each used by one task:
    out = Parallel(backend="dask")(delayed(tasks.array_sum)(row, 0) for row in rows)
    assert [r for _, r in out] == [float(row.sum()) for row in rows]  # sent with batches
    assert len(scatters) == 2


def test_kept_while_the_array_lives(client, scatters):
    from oxjob._cluster import dask as _dask

    shared = _dask._caches[client.id]
    shared.clear()
    x = np.full(500_000, 2.0)
    Parallel(backend="dask")(delayed(tasks.array_sum)(x, i) for i in range(2))
    assert len(shared.by_content) == 1
    assert scatters == [id(x)]
    key = next(iter(shared.by_content.values())).ref.key
    del x
    gc.collect()
    assert len(shared.by_content) == 0
    deadline = time.monotonic() + 10
    while key in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)):
        assert time.monotonic() < deadline, "the scattered array stayed on the cluster"
        time.sleep(0.05)


def test_cache_nbytes_zero_keeps_nothing_across_calls(client, scatters):
    x = np.full(300_000, 3.0)
    with parallel_config(backend="dask", cache_nbytes=0):
        Parallel()(delayed(tasks.array_sum)(x, i) for i in range(3))
        Parallel()(delayed(tasks.array_sum)(x, i) for i in range(3))
    assert len(scatters) == 2


def test_scatter_option_sends_up_front(client, scatters):
    x = np.full(300_000, 4.0)
    with parallel_config(backend="dask", scatter=[x]):
        parallel = Parallel()
        assert scatters == [id(x)]  # sent when the backend is made
        # to every worker (joblib's broadcast=True): no task waits for a transfer
        ref = parallel._backend._scatter_refs[id(x)][1]
        assert len(client.who_has([ref])[ref.key]) == 2
        out = parallel(delayed(tasks.array_sum)(x, i) for i in range(3))
    assert [r for _, r in out] == [1_200_000.0 + i for i in range(3)]
    assert len(scatters) == 1
    with pytest.raises(TypeError, match="scatter must be a list/tuple"):
        with parallel_config(backend="dask", scatter=x):
            Parallel()


def test_shared_arrays_are_read_only_in_tasks(client):
    x = np.zeros(500_000)
    with pytest.raises(ValueError, match="read-only"):
        Parallel(backend="dask")(delayed(tasks.write_into)(x, i) for i in range(4))
    small = np.zeros(100)  # 800 bytes, sent with its batch: the task's own copy
    assert (
        Parallel(backend="dask")(delayed(tasks.write_into)(small, i) for i in range(4))
        == [-1.0] * 4
    )
    assert not x.any() and not small.any()


def test_scatter_option_sends_any_object_once(client, scatters):
    table = {i: str(i) for i in range(1000)}
    with parallel_config(backend="dask", scatter=[table]):
        parallel = Parallel(batch_size=1)
        out = parallel(delayed(tasks.lookup)(table, i) for i in range(6))
        # one future for the dict, not one per value under keys "0", "1"... that
        # every other dict with the same keys would share
        ref = parallel._backend._scatter_refs[id(table)][1]
        assert isinstance(ref, distributed.Future) and ref.key not in ("0", 0)
    assert out == [str(i) for i in range(6)]
    assert scatters == [id(table)]


def test_large_results_come_back(client):
    out = Parallel(backend="dask")(delayed(tasks.make_array)(1_500_000, i) for i in range(4))
    for i, arr in enumerate(out):
        assert arr.shape == (1_500_000,) and arr[0] == i and arr[-1] == i


def test_nested_parallel_in_a_task_uses_the_cluster(client):
    # As joblib: a Parallel() inside a Dask task runs on the Dask backend (all the
    # cluster's threads), and on threads of the worker when it requires shared memory.
    worker_pids = set(client.run(os.getpid).values())
    out = Parallel(backend="dask")(delayed(tasks.nested_backend)() for _ in range(2))
    for name, n_jobs, pids in out:
        assert (name, n_jobs) == ("DaskDistributedBackend", -1)
        assert set(pids) <= worker_pids
    out = Parallel(backend="dask")(delayed(tasks.nested_backend)("sharedmem") for _ in range(2))
    for name, _, pids in out:
        assert name == "ThreadingBackend" and len(pids) == 1 and pids[0] in worker_pids


def test_task_keys_name_the_function(client):
    # The dashboard shows a task by its key: joblib's "batch_of_<func>_<n>_calls-<id>".
    def keys():
        return client.run_on_scheduler(
            lambda dask_scheduler: {str(t[0]) for t in dask_scheduler.transition_log}
        )

    before = keys()
    Parallel(backend="dask", batch_size=2)(delayed(tasks.pid_square)(i) for i in range(4))
    Parallel(backend="dask", batch_size=2)(
        delayed(abs if i % 2 else tasks.pid_square)(i) for i in range(4)
    )
    new = sorted({k.rsplit("-", 1)[0] for k in keys() - before})
    assert new == ["batch_of_pid_square_2_calls", "mixed_batch_of_pid_square_2_calls"]


def test_a_with_parallel_block_leaves_no_thread_behind(client):
    def collectors():
        return [t for t in threading.enumerate() if t.name == "oxjob-dask-results"]

    with Parallel(backend="dask") as parallel:
        assert parallel(delayed(abs)(-i) for i in range(20)) == list(range(20))
        assert parallel(delayed(abs)(-i) for i in range(5)) == list(range(5))
    deadline = time.monotonic() + 10
    while collectors():
        assert time.monotonic() < deadline, "the results thread outlived the block"
        time.sleep(0.05)


def test_short_calls_are_batched_automatically(client):
    def keys():
        return client.run_on_scheduler(
            lambda dask_scheduler: {str(t[0]) for t in dask_scheduler.transition_log}
        )

    before = keys()
    out = Parallel(backend="dask")(delayed(abs)(-i) for i in range(10_000))
    assert out == list(range(10_000))
    batches = {k for k in keys() - before if k.startswith("batch_of_abs_")}
    assert 1 < len(batches) < 100  # batches grow past one call each, as joblib's do


def test_nested_parallel_with_an_explicit_process_backend_stays_in_the_worker(client):
    worker_pids = set(client.run(os.getpid).values())
    out = Parallel(backend="dask")(delayed(tasks.nested)(2, "loky") for _ in range(2))
    assert {pid for pid, _ in out} <= worker_pids
    for pid, inner in out:
        assert {p for p, _ in inner} == {pid}


def test_memory_from_tasks_on_a_shared_folder(client, tmp_path):
    location, log = str(tmp_path / "cache"), str(tmp_path / "log")
    out = Parallel(backend="dask")(delayed(tasks.cached_square)(location, i, log) for i in range(6))
    assert out == [i * i for i in range(6)]
    with open(log) as f:
        assert sorted(int(line) for line in f) == list(range(6))
    # The caller finds what the workers stored: nothing is computed again.
    assert [tasks.cached_square(location, i, log) for i in range(6)] == out
    with open(log) as f:
        assert len(f.readlines()) == 6


def test_worker_killed_mid_call_is_retried(tmp_path):
    cluster = _cluster()
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            marker = str(tmp_path / "killed")
            with parallel_config(backend="dask", client=client):
                out = Parallel(batch_size=1)(delayed(tasks.kill_once)(i, marker) for i in range(4))
            assert out == [0, 10, 20, 30]
            assert os.path.exists(marker)
    finally:
        cluster.close()


def test_worker_killed_every_time_raises_killed_worker():
    cluster = _cluster(**{"distributed.scheduler.allowed-failures": 1})
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            with parallel_config(backend="dask", client=client):
                with pytest.raises(distributed.KilledWorker, match="batch_of_kill_always"):
                    Parallel()(delayed(tasks.kill_always)(i) for i in range(2))
    finally:
        cluster.close()


def test_import_and_error_messages():
    code = (
        "import sys\n"
        "import oxjob\n"
        "assert 'dask' not in sys.modules and 'distributed' not in sys.modules\n"
        "sys.modules['distributed'] = None\n"
        "try:\n"
        "    oxjob.Parallel(backend='dask')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "sys.modules.pop('distributed')\n"
        "try:\n"  # as joblib's, parallel_config makes the backend: it needs a client
        "    oxjob.parallel_config(backend='dask')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "you must install both the `dask` and distributed modules" in done.stdout
    assert "first create a Dask Client" in done.stdout  # no client yet (joblib's words)


def test_oxjob_parallel_inside_a_plain_dask_task_runs_sequentially_with_joblibs_warning(client):
    out, messages, started_workers = client.submit(
        tasks.oxjob_parallel_inside, 5, pure=False
    ).result(timeout=60)
    assert out == [0, 1, 2, 3, 4]
    assert any("Inside a Dask worker with daemon=True, setting n_jobs=1" in m for m in messages)
    assert not started_workers  # no local process pool inside the Dask worker
