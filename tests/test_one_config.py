"""One configuration for both worlds: ``oxjob.parallel_config`` also decides where code
that calls joblib itself (scikit-learn's ``n_jobs=``) runs, when joblib is imported."""

import functools
import os
import subprocess
import sys

import pytest

joblib = pytest.importorskip("joblib")
sklearn = pytest.importorskip("sklearn")

import _hook_helpers  # noqa: E402
import cloudpickle  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

import oxjob  # noqa: E402

cloudpickle.register_pickle_by_value(_hook_helpers)  # cluster workers need not import it

X, Y = make_classification(n_samples=80, n_features=5, random_state=0)


def grid_search_places(folder):
    """Fit a grid search with n_jobs=2; where each of its scorer calls ran."""
    scorer = functools.partial(_hook_helpers.recording_scorer, str(folder))
    GridSearchCV(LogisticRegression(), {"C": [0.5, 1, 2]}, cv=2, n_jobs=2, scoring=scorer).fit(X, Y)
    lines = []
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as f:
            lines += f.read().splitlines()
    return lines


def places(folder):
    return {tuple(line.split()) for line in grid_search_places(folder)}


def test_threads_named_in_oxjob_run_scikit_learn_on_threads(tmp_path):
    with oxjob.parallel_config(backend="threading"):
        assert type(joblib.parallel.get_active_backend()[0]).__name__ == "ThreadingBackend"
        seen = places(tmp_path)
    assert {pid for pid, *_ in seen} == {str(os.getpid())}
    assert all(rest[0] != "MainThread" for _, *rest in seen)


@pytest.mark.parametrize("name", ["loky", "processes"])
def test_processes_named_in_oxjob_run_scikit_learn_on_oxjob_workers(tmp_path, name):
    with oxjob.parallel_backend(name, n_jobs=2) as (backend, n_jobs):
        active, _ = joblib.parallel.get_active_backend()
        assert type(active).__name__ == "OxjobBackend"
        seen = places(tmp_path)
        workers = {str(pid) for pid in active.worker_pids()}
    pids = {pid for pid, *_ in seen}
    assert pids and pids <= workers and str(os.getpid()) not in pids


def test_settings_end_with_the_block():
    before = joblib.parallel.get_active_backend()
    with oxjob.parallel_config(backend="sequential", n_jobs=3):
        assert type(joblib.parallel.get_active_backend()[0]).__name__ == "SequentialBackend"
    assert type(joblib.parallel.get_active_backend()[0]) is type(before[0])
    with oxjob.parallel_config(n_jobs=3):  # settings without a backend apply too
        assert joblib.parallel.get_active_backend()[1] == 3


def test_dask_named_in_oxjob_runs_scikit_learn_on_the_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = distributed.Client(cluster)
    try:
        (worker_pid,) = client.run(os.getpid).values()
        with oxjob.parallel_config(backend="dask"):
            # joblib names the backend as it would its own (verbose messages, tests)
            active = joblib.parallel.get_active_backend()[0]
            assert type(active).__name__ == "DaskDistributedBackend"
            seen = places(tmp_path)
    finally:
        client.close()
        cluster.close()
    assert {pid for pid, *_ in seen} == {str(worker_pid)}


def test_ray_named_in_oxjob_runs_scikit_learn_on_ray(tmp_path):
    pytest.importorskip("ray")
    code = (
        "import sys, ray; sys.path.insert(0, sys.argv[1]); import test_one_config as t\n"
        "env = {'env_vars': {'PYTHONPATH': sys.argv[1]}}  # Ray's workers import the helpers\n"
        "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=env)\n"
        "import oxjob\n"
        "with oxjob.parallel_config(backend='ray'):\n"
        "    seen = t.places(sys.argv[2])\n"
        "print(sorted({len(s) == 3 and s[2].startswith('ray:') for s in seen}))\n"
        "ray.shutdown()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, os.path.dirname(__file__), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == "[True]"


def test_scikit_learn_backend_respected_with_oxjob_as_joblib_default():
    # scikit-learn's own test: a forest fits on the backend the user names
    # (prefer="threads" is only a hint) and predicts on threads (require="sharedmem").
    code = (
        "import oxjob, sys, pytest; oxjob.use_as_joblib_default()\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--pyargs',"
        " 'sklearn.ensemble.tests.test_forest', '-k', 'test_backend_respected']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if "no tests ran" in done.stdout or "not found" in done.stdout:
        pytest.skip("scikit-learn's tests are not installed")
    assert done.returncode == 0, done.stdout[-3000:]
