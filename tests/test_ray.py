"""Parallel(backend="ray") against a local Ray started by the tests (ray.init(num_cpus=2))."""

import os
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import _cluster_tasks as tasks  # noqa: E402
import cloudpickle  # noqa: E402

from oxjob import Parallel, delayed, parallel_config  # noqa: E402
from oxjob.exceptions import RemoteTraceback, TimeoutError  # noqa: E402

# Ray workers need not import the tests' folder (Ray pickles with its own cloudpickle).
cloudpickle.register_pickle_by_value(tasks)
ray.cloudpickle.register_pickle_by_value(tasks)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def puts(monkeypatch):
    """The ids of the objects put in the object store by oxjob during the test."""
    from oxjob._cluster import ray as _ray

    sent = []
    Parallel(backend="ray")  # makes the session's cache
    shared = _ray._caches[_ray._session()]
    real = shared.put

    def counting(obj):
        sent.append(id(obj))
        return real(obj)

    monkeypatch.setattr(shared, "put", counting)
    return sent


def test_results_in_order_computed_in_ray_workers():
    out = Parallel(backend="ray")(delayed(tasks.pid_square)(i) for i in range(100))
    assert [r for _, r in out] == [i * i for i in range(100)]
    assert os.getpid() not in {pid for pid, _ in out}
    gen = Parallel(backend="ray", return_as="generator_unordered", batch_size=1)(
        delayed(tasks.sleep_then)(i, 0.01) for i in range(6)
    )
    assert sorted(gen) == list(range(6))


def test_error_has_the_remote_traceback():
    with pytest.raises(ValueError, match="bad value 2") as info:
        Parallel(backend="ray")(delayed(tasks.fail_on)(i, 2) for i in range(5))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_on" in str(info.value.__cause__)


def test_first_error_cancels_the_rest(tmp_path):
    with pytest.raises(KeyError, match="task 1 failed"):
        Parallel(backend="ray", batch_size=1)(
            delayed(tasks.marked_sleep)(i, 0.3, str(tmp_path), fail=1) for i in range(30)
        )
    time.sleep(1.0)
    assert len(os.listdir(tmp_path)) < 8


def test_keyboard_interrupt_cancels(tmp_path):
    import _thread

    timer = threading.Timer(0.8, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            Parallel(backend="ray", batch_size=1, pre_dispatch="all")(
                delayed(tasks.marked_sleep)(i, 0.3, str(tmp_path)) for i in range(40)
            )
    finally:
        timer.cancel()
    time.sleep(1.0)
    assert len(os.listdir(tmp_path)) < 20


def test_timeout():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="less than 0.3 seconds"):
        Parallel(backend="ray", timeout=0.3, batch_size=1)(
            delayed(tasks.sleep_then)(i, 1.5) for i in range(4)
        )
    assert time.monotonic() - start < 1.4  # did not wait for the tasks (hang limit)


def test_large_argument_put_once_and_reused_by_content(puts):
    x = np.arange(1_000_000, dtype=np.float64)
    out = Parallel(backend="ray", batch_size=1)(delayed(tasks.array_sum)(x, i) for i in range(8))
    assert [r for _, r in out] == [float(x.sum()) + i for i in range(8)]
    assert puts == [id(x)]
    copy = x.copy()
    Parallel(backend="ray")(delayed(tasks.array_sum)(copy, i) for i in range(8))
    assert puts == [id(x)]
    x[0] = 1e6
    out = Parallel(backend="ray")(delayed(tasks.array_sum)(x, i) for i in range(8))
    assert [r for _, r in out] == [float(x.sum()) + i for i in range(8)]
    assert len(puts) == 2
    with pytest.raises(ValueError, match="read-only"):
        Parallel(backend="ray")(delayed(tasks.write_into)(x, i) for i in range(2))


def test_large_results_come_back():
    out = Parallel(backend="ray")(delayed(tasks.make_array)(1_500_000, i) for i in range(4))
    assert [(a.shape, a[0], a[-1]) for a in out] == [((1_500_000,), i, i) for i in range(4)]


def test_nested_parallel_uses_threads_in_the_worker():
    out = Parallel(backend="ray")(delayed(tasks.nested)(2) for _ in range(2))
    for pid, inner in out:
        assert {p for p, _ in inner} == {pid}
        assert all(name.startswith("oxjob-") for _, name in inner)


def test_worker_killed_mid_call_is_retried(tmp_path):
    marker = str(tmp_path / "killed")
    out = Parallel(backend="ray", batch_size=1)(
        delayed(tasks.kill_once)(i, marker) for i in range(4)
    )
    assert out == [0, 10, 20, 30]
    assert os.path.exists(marker)


def test_worker_killed_every_time_raises():
    with parallel_config(backend="ray", max_retries=0):
        with pytest.raises(ray.exceptions.WorkerCrashedError):
            Parallel()(delayed(tasks.kill_always)(i) for i in range(2))


def test_aborted_calls_never_crash_the_driver(run_script):
    # ray.cancel racing with a task's start or end kills the driver inside Ray
    # (ray-project/ray#54846): many calls aborted while batches start and finish, in a
    # driver of their own so that a crash is this test's failure only.
    done = run_script(
        """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import ray
import _cluster_tasks as tasks
from oxjob import Parallel, delayed

ray.cloudpickle.register_pickle_by_value(tasks)
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
x = np.arange(1_000_000, dtype=np.float64)
for rep in range(150):
    try:
        Parallel(backend="ray", batch_size=1, pre_dispatch="all")(
            delayed(tasks.fail_on)(i, 3 + rep % 5) for i in range(40)
        )
    except ValueError:
        pass
    try:
        Parallel(backend="ray")(delayed(tasks.write_into)(x, i) for i in range(4))
    except ValueError:
        pass
print(Parallel(backend="ray")(delayed(tasks.fail_on)(i, -1) for i in range(5)))
ray.shutdown()
""",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("[0, 1, 2, 3, 4]")


def test_ray_remote_args_reach_the_batch_tasks():
    # Ray's own joblib backend takes ray_remote_args: options of the tasks it submits.
    args = {"runtime_env": {"env_vars": {"OXJOB_RAY_MARK": "marked"}}}
    with parallel_config(backend="ray", ray_remote_args=args):
        marks = Parallel()(delayed(tasks.env_var)("OXJOB_RAY_MARK") for _ in range(3))
    assert marks == ["marked"] * 3
    with pytest.raises(TypeError, match="ray_remote_args must be a dict"):
        parallel_config(backend="ray", ray_remote_args=[1])
