"""scikit-learn as a client of the joblib backend: ``joblib.parallel_config(backend="oxjob")``.

Each scenario runs once on loky and once on oxjob and compares the results; fits log
their process id (``log_pid`` below, inside a Pipeline) so the tests can check the
work ran in oxjob's workers.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")

import numpy as np  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import load_digits, load_iris, make_classification  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    cross_val_predict,
    cross_validate,
)
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import oxjob  # noqa: E402
import oxjob._workers.shared_engine  # noqa: E402
from oxjob.exceptions import TerminatedWorkerError  # noqa: E402
from oxjob.joblib_backend import OxjobBackend  # noqa: E402

HERE = os.path.dirname(__file__)


# ---- helpers run in the workers (importable: this module is on the workers' path) ----


def log_pid(X, log_dir):
    """Identity transform that leaves a file named after the process it ran in."""
    open(os.path.join(log_dir, str(os.getpid())), "w").close()
    return X


def logged(estimator, log_dir):
    return Pipeline(
        [
            ("log", FunctionTransformer(log_pid, kw_args={"log_dir": str(log_dir)})),
            ("est", estimator),
        ]
    )


def logged_pids(log_dir):
    return {int(name) for name in os.listdir(log_dir)}


class Misbehaving(ClassifierMixin, BaseEstimator):
    """A classifier whose fit raises, or kills its own process, for one value of C."""

    def __init__(self, C=1.0, bad=None, how="raise"):
        self.C, self.bad, self.how = C, bad, how

    def fit(self, X, y):
        if self.C == self.bad:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(f"fit refused C={self.C}")
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


@pytest.fixture
def backend():
    """An oxjob backend instance: the tests read its workers' pids afterwards."""
    return OxjobBackend()


def on(backend, fn):
    """``fn()`` inside ``parallel_config(backend=backend)``."""
    with joblib.parallel_config(backend=backend):
        return fn()


def ran_in_workers(log_dir, backend, refit_in_caller=False):
    pids = logged_pids(log_dir)
    workers = set(backend.worker_pids())
    assert (os.getpid() in pids) == refit_in_caller
    pids.discard(os.getpid())
    assert pids, "no fit ran in a worker"
    assert pids <= workers, (pids, workers)


# ---- registration ---------------------------------------------------------------------


def test_import_oxjob_registers_the_backend_without_importing_joblib(run_script):
    done = run_script(
        textwrap.dedent(
            """
            import sys
            import oxjob
            assert "joblib" not in sys.modules
            import joblib
            assert "oxjob" in joblib.parallel.BACKENDS
            with joblib.parallel_config(backend="oxjob", n_jobs=2):
                print(joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(4)))
            """
        )
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[0, 1, 2, 3]"
    assert done.stderr == ""


def test_import_oxjob_after_joblib_registers_it_too(run_script):
    done = run_script("import joblib, oxjob\nprint(joblib.parallel.BACKENDS['oxjob'].__name__)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "OxjobBackend"


def test_use_as_joblib_default_runs_sklearn_in_oxjob_workers_and_leaves_none(run_script):
    done = run_script(
        textwrap.dedent(
            """
            import os, sys
            import oxjob
            oxjob.use_as_joblib_default()
            import joblib
            from joblib.parallel import get_active_backend
            from sklearn.datasets import load_iris
            from sklearn.linear_model import LogisticRegression
            from sklearn.model_selection import cross_val_score
            backend, _ = get_active_backend()
            X, y = load_iris(return_X_y=True)
            scores = cross_val_score(LogisticRegression(max_iter=500), X, y, cv=4, n_jobs=2)
            pids = joblib.Parallel(n_jobs=2)(joblib.delayed(os.getpid)() for _ in range(8))
            print(type(backend).__name__, os.getpid(), len(scores), *sorted(set(pids)))
            """
        )
    )
    assert done.returncode == 0, done.stderr
    name, caller, n_scores, *pids = done.stdout.split()
    assert name == "OxjobBackend" and n_scores == "4"
    assert pids and caller not in pids
    assert _all_gone([int(p) for p in pids])  # the workers ended with the program


# ---- scikit-learn's parallel entry points, loky against oxjob ---------------------------


def test_grid_search_cv_equals_loky_and_runs_in_oxjob_workers(backend, tmp_path):
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]

    def search(log_dir):
        grid = GridSearchCV(logged(SVC(), log_dir), {"est__C": [0.1, 1, 10, 100]}, cv=5, n_jobs=2)
        return grid.fit(X, y)

    (tmp_path / "loky").mkdir()
    (tmp_path / "oxjob").mkdir()
    expected = on("loky", lambda: search(tmp_path / "loky"))
    got = on(backend, lambda: search(tmp_path / "oxjob"))
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        np.testing.assert_array_equal(got.cv_results_[key], expected.cv_results_[key])
    assert got.best_params_ == expected.best_params_
    ran_in_workers(tmp_path / "oxjob", backend, refit_in_caller=True)


def test_cross_validate_and_cross_val_predict_equal_loky(backend, tmp_path):
    X, y = load_iris(return_X_y=True)
    model = logged(LogisticRegression(max_iter=1000), tmp_path)

    def run():
        scores = cross_validate(model, X, y, cv=5, n_jobs=2, return_estimator=True)
        predicted = cross_val_predict(model, X, y, cv=5, n_jobs=2, method="predict_proba")
        return scores, predicted

    (loky_scores, loky_pred), (scores, pred) = on("loky", run), on(backend, run)
    np.testing.assert_array_equal(scores["test_score"], loky_scores["test_score"])
    np.testing.assert_array_equal(pred, loky_pred)
    for mine, theirs in zip(scores["estimator"], loky_scores["estimator"]):
        np.testing.assert_array_equal(mine[-1].coef_, theirs[-1].coef_)
    for name in os.listdir(tmp_path):  # loky's pids are logged too: keep only oxjob's
        if int(name) not in backend.worker_pids():
            os.remove(tmp_path / name)
    ran_in_workers(tmp_path, backend)


def test_column_transformer_n_jobs_2_equals_loky_on_large_results(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50_000, 8))  # 400 kB per column block: results travel in memfd
    halves = [("a", StandardScaler(), [0, 1, 2, 3]), ("b", StandardScaler(), [4, 5, 6, 7])]

    def run():
        return ColumnTransformer(halves, n_jobs=2).fit_transform(X)

    np.testing.assert_array_equal(on(backend, run), on("loky", run))


def test_random_forest_named_backend_is_respected_and_equals_loky(backend, capsys):
    X, y = make_classification(n_samples=300, n_features=10, random_state=0)

    def run():
        forest = RandomForestClassifier(n_estimators=20, n_jobs=2, random_state=0, verbose=1)
        return forest.fit(X, y).predict_proba(X)

    expected = on("loky", run)
    capsys.readouterr()
    got = on(backend, run)
    np.testing.assert_array_equal(got, expected)
    # fit asks prefer="threads", a hint: the backend the user named keeps it (joblib's
    # rule, scikit-learn's test_backend_respected); predict's require="sharedmem" needs
    # threads.
    err = capsys.readouterr().err
    assert "Using backend OxjobBackend with 2 concurrent workers" in err
    assert "Using backend ThreadingBackend with 2 concurrent workers" in err


def test_permutation_importance_equals_loky(backend):
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    model = LogisticRegression(max_iter=1000).fit(X, y)

    def run():
        return permutation_importance(model, X, y, n_repeats=4, n_jobs=2, random_state=0)

    np.testing.assert_array_equal(on(backend, run).importances, on("loky", run).importances)


def test_pipeline_with_oxjob_memory_in_a_grid_search(backend, tmp_path):
    X, y = load_iris(return_X_y=True)
    memory = oxjob.Memory(tmp_path / "cache", verbose=0)

    def search(memory):
        pipe = Pipeline([("scale", StandardScaler()), ("clf", Ridge())], memory=memory)
        return GridSearchCV(pipe, {"clf__alpha": [0.1, 1.0, 10.0]}, cv=3, n_jobs=2).fit(X, y)

    expected = on("loky", lambda: search(None))
    got = on(backend, lambda: search(memory))
    np.testing.assert_array_equal(
        got.cv_results_["mean_test_score"], expected.cv_results_["mean_test_score"]
    )
    # The scaler of each fold was fitted once in a worker and cached; the refit
    # on the whole data in the caller added one more entry.
    entries = [d for d, _, files in os.walk(tmp_path / "cache") if "output.oxjob" in files]
    assert len(entries) == 3 + 1, entries
    again = on(backend, lambda: search(memory))
    np.testing.assert_array_equal(
        again.cv_results_["mean_test_score"], expected.cv_results_["mean_test_score"]
    )


# ---- failures ---------------------------------------------------------------------------


def test_a_fit_that_raises_raises_in_the_caller_and_the_next_fit_works(backend):
    X, y = load_iris(return_X_y=True)
    grid = GridSearchCV(
        Misbehaving(bad=3.0), {"C": [1.0, 2.0, 3.0, 4.0]}, cv=3, n_jobs=2, error_score="raise"
    )
    with pytest.raises(ValueError, match="fit refused C=3.0"):
        on(backend, lambda: grid.fit(X, y))
    good = GridSearchCV(Misbehaving(), {"C": [1.0, 2.0]}, cv=3, n_jobs=2)
    assert on(backend, lambda: good.fit(X, y)).best_params_ == {"C": 1.0}


def test_a_worker_killed_mid_fit_raises_terminated_worker_error(backend):
    X, y = load_iris(return_X_y=True)
    grid = GridSearchCV(
        Misbehaving(bad=3.0, how="kill"), {"C": [1.0, 2.0, 3.0, 4.0]}, cv=3, n_jobs=2
    )
    start = time.monotonic()
    with pytest.raises(TerminatedWorkerError, match="SIGKILL"):
        on(backend, lambda: grid.fit(X, y))
    assert time.monotonic() - start < 60  # no hang
    good = GridSearchCV(Misbehaving(), {"C": [1.0, 2.0]}, cv=3, n_jobs=2)
    assert on(backend, lambda: good.fit(X, y)).best_params_ == {"C": 1.0}
    assert all(_alive(pid) for pid in backend.worker_pids())


def test_timeout_kills_the_task_and_raises(backend):
    import joblib.parallel

    with joblib.parallel_config(backend=backend):
        with pytest.raises(joblib.parallel.TimeoutError):
            joblib.Parallel(n_jobs=2, timeout=0.5)(
                joblib.delayed(time.sleep)(s) for s in (0.0, 30.0)
            )
        # The engine works on after the kill.
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-i) for i in range(3)) == [0, 1, 2]


SIGINT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    import oxjob, joblib
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV
    from test_sklearn import SlowFit
    X, y = load_iris(return_X_y=True)
    with joblib.parallel_config(backend="oxjob"):
        print(*joblib.Parallel(n_jobs=2)(joblib.delayed(os.getpid)() for _ in range(4)),
              flush=True)
        try:
            GridSearchCV(SlowFit(), {"C": [1.0, 2.0, 3.0]}, cv=3, n_jobs=2).fit(X, y)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        sys.stdin.readline()  # the test checks the workers while this process lives
    """
)


class SlowFit(Misbehaving):
    def fit(self, X, y):
        time.sleep(30)
        return super().fit(X, y)


def test_ctrl_c_during_a_fit_interrupts_quickly_and_kills_its_workers(tmp_path):
    script = tmp_path / "sigint.py"
    script.write_text(SIGINT_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), HERE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert workers, "the script printed no worker pid"
        time.sleep(1.0)  # the slow fits are running
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "interrupted"
        assert time.monotonic() - start < 5
        assert _all_gone(workers)
        proc.communicate("\n", timeout=30)
        assert proc.returncode == 0
    finally:
        proc.kill()


# ---- nesting and thread limits ----------------------------------------------------------


def nested_view(_):
    from joblib.parallel import get_active_backend

    inner, n_jobs = get_active_backend()
    threads = os.environ.get("OMP_NUM_THREADS")
    return type(inner).__name__, inner.nesting_level, n_jobs, threads, os.getpid()


def nested_oxjob(_):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with joblib.parallel_config(backend="oxjob"):
            out = joblib.Parallel(n_jobs=2)(joblib.delayed(os.getpid)() for _ in range(2))
    return out, os.getpid(), [str(w.message) for w in caught]


def test_nested_calls_follow_joblibs_rules(backend):
    with joblib.parallel_config(backend=backend):
        views = joblib.Parallel(n_jobs=2)(joblib.delayed(nested_view)(i) for i in range(4))
        nested = joblib.Parallel(n_jobs=2)(joblib.delayed(nested_oxjob)(i) for i in range(2))
    from oxjob import cpu_count

    limit = os.environ.get("OMP_NUM_THREADS", str(max(cpu_count() // 2, 1)))
    for name, level, n_jobs, threads, pid in views:
        assert (name, level, n_jobs, threads) == ("ThreadingBackend", 1, None, limit)
        assert pid in backend.worker_pids()
    for pids, pid, messages in nested:
        assert pids == [pid, pid]  # an explicit nested oxjob call runs in its worker
        assert any("cannot be nested" in m for m in messages)


def test_inputs_are_read_only_as_with_loky_by_default(backend):
    data = np.zeros(1_000_000)  # 8 MB: above max_nbytes

    for name in ("loky", backend):
        with joblib.parallel_config(backend=name):
            with pytest.raises(ValueError, match="read-only"):
                joblib.Parallel(n_jobs=2)(joblib.delayed(np.copyto)(data, 1.0) for _ in range(2))
            copies = joblib.Parallel(n_jobs=2, mmap_mode="c")(
                joblib.delayed(np.add)(data, 1, out=data) for _ in range(2)
            )
            assert all((c == 1).all() for c in copies) and (data == 0).all()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _all_gone(pids, within=10.0):
    """Whether every process in ``pids`` has ended (waiting up to ``within`` seconds)."""
    deadline = time.monotonic() + within
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def blas_limits(_):
    from threadpoolctl import threadpool_info

    return sorted({info["num_threads"] for info in threadpool_info()})


def test_inner_max_num_threads_limits_native_thread_pools_in_workers():
    np.ones(2) @ np.ones(2)  # BLAS loaded here too, so that the workers load it
    with joblib.parallel_config(backend="oxjob", n_jobs=2, inner_max_num_threads=2):
        limits = joblib.Parallel()(joblib.delayed(blas_limits)(i) for i in range(2))
    assert limits == [[2], [2]]  # the default here is cpu_count() // n_jobs = 1


def mark_initialized(status):
    status[os.getpid()] = "initialized"


def initialized_here(status):
    return status.get(os.getpid())


def test_initializer_runs_in_each_worker_and_manager_proxies_connect():
    import multiprocessing

    with multiprocessing.Manager() as manager:
        status = manager.dict()
        with joblib.parallel_config(
            backend="oxjob", n_jobs=2, initializer=mark_initialized, initargs=(status,)
        ):
            seen = joblib.Parallel()(joblib.delayed(initialized_here)(status) for _ in range(20))
        assert seen == ["initialized"] * 20
        assert len(status) >= 1 and os.getpid() not in status
