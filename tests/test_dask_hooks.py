"""The Dask backend where joblib's behaviour is a program's hook: nested calls from
tasks, clusters with no worker or scaling from zero, threads left after close, messages."""

import pytest

distributed = pytest.importorskip("distributed")

import _hook_helpers  # noqa: E402
import cloudpickle  # noqa: E402

from oxjob import Parallel, delayed, parallel_config  # noqa: E402

cloudpickle.register_pickle_by_value(_hook_helpers)


def _cluster(**kwargs):
    options = dict(processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
    return distributed.LocalCluster(**{**options, **kwargs})


def test_nested_call_from_a_task_secedes_instead_of_hanging():
    # One worker thread: the outer task waits for its inner call's batches, which can
    # only run if the waiting task leaves the thread pool (secede), as joblib's does.
    with _cluster(n_workers=1, threads_per_worker=1) as cluster, distributed.Client(cluster) as c:
        future = c.submit(_hook_helpers.nested_dask_sum, 6, pure=False)
        assert future.result(timeout=60) == 15
        with parallel_config(backend="dask"):
            outer = Parallel()(delayed(_hook_helpers.nested_dask_sum)(n) for n in (3, 4))
        assert outer == [3, 6]


def test_no_worker_and_no_wait_is_joblibs_runtime_error():
    with _cluster(n_workers=0) as cluster, distributed.Client(cluster):
        with parallel_config(backend="dask", wait_for_workers_timeout=0):
            with pytest.raises(RuntimeError, match="DaskDistributedBackend has no active worker"):
                Parallel()(delayed(abs)(-i) for i in range(3))


def test_no_worker_within_the_wait_names_joblibs_backend():
    with _cluster(n_workers=0) as cluster, distributed.Client(cluster):
        with parallel_config(backend="dask", wait_for_workers_timeout=0.5):
            with pytest.raises(TimeoutError, match="DaskDistributedBackend has no worker after"):
                Parallel()(delayed(abs)(-i) for i in range(3))


def test_adaptive_cluster_from_zero_workers_scales_up_for_the_call():
    with _cluster(n_workers=0, threads_per_worker=1) as cluster:
        cluster.adapt(minimum=0, maximum=1, interval="100ms")
        with distributed.Client(cluster):
            with parallel_config(backend="dask", wait_for_workers_timeout=60):
                assert Parallel()(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]


def test_no_client_message_is_joblibs():
    with pytest.raises(ValueError, match="To use Joblib with Dask first create a Dask Client"):
        with parallel_config(backend="dask"):
            pass


def test_no_thread_left_after_client_and_cluster_close(run_script):
    done = run_script(
        "import threading\n"
        "import distributed\n"
        "from oxjob import Parallel, delayed, parallel_config\n"
        "if __name__ == '__main__':\n"
        "    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,\n"
        "            host='127.0.0.1', dashboard_address='127.0.0.1:0') as cluster:\n"
        "        with distributed.Client(cluster):\n"
        "            with parallel_config(backend='dask'):\n"
        "                assert Parallel()(delayed(abs)(i) for i in range(9)) == list(range(9))\n"
        "    names = [t.name for t in threading.enumerate()]\n"
        "    print([n for n in names if 'Dask-Callback' in n or 'oxjob' in n])\n",
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
