"""parallel_config / parallel_backend: joblib's semantics, bindings and messages."""

import multiprocessing
import os
import sys
import warnings

import pytest

from oxjob import Parallel, delayed, parallel_backend, parallel_config
from oxjob.backends import (
    BACKENDS,
    EXTERNAL_BACKENDS,
    ParallelBackendBase,
    ProcessBackend,
    SequentialBackend,
    ThreadingBackend,
)

sys.path.insert(0, os.path.dirname(__file__))
import _helpers as h

CONTEXTS = [parallel_config, parallel_backend]


def test_parallel_config_binds_the_settings_with_the_backend_instance():
    with parallel_config(backend="threading", n_jobs=3) as config:
        assert isinstance(config["backend"], ThreadingBackend)
        assert config["backend"].nesting_level == 0  # top level
        assert config["n_jobs"] == 3 and config["verbose"] == 0
        assert Parallel()._backend is config["backend"]
    with parallel_config(n_jobs=2) as config:
        assert config["backend"] is None and config["n_jobs"] == 2


def test_parallel_backend_binds_backend_and_n_jobs():
    with parallel_backend("threading") as (backend, n_jobs):
        assert isinstance(backend, ThreadingBackend) and backend.nesting_level == 0
        assert n_jobs == -1
        assert Parallel()._backend is backend
    with parallel_backend("sequential", n_jobs=2) as (backend, n_jobs):
        assert isinstance(backend, SequentialBackend) and n_jobs == 2


def test_nested_contexts_stack_and_keep_the_parent_backend_level():
    with parallel_config(backend="threading"):
        with parallel_config(n_jobs=2):
            p = Parallel()
            assert isinstance(p._backend, ThreadingBackend) and p.n_jobs == 2
        with parallel_config(backend=ThreadingBackend()) as inner:
            assert inner["backend"].nesting_level == 0
    with parallel_config(verbose=100), parallel_config(n_jobs=2):
        p = Parallel()
        assert p.verbose == 100 and p.n_jobs == 2


@pytest.mark.parametrize("context", CONTEXTS)
def test_n_jobs_none_is_unset_in_parallel_and_explicit_in_contexts(context):
    with context(backend="threading", n_jobs=2):
        assert Parallel(n_jobs=None).n_jobs == 2
        with context(backend="threading", n_jobs=None):
            assert Parallel().n_jobs == 1  # the backend's default, as joblib
    assert Parallel().n_jobs == 1


def test_prefer_processes_with_require_sharedmem_is_refused():
    with pytest.raises(ValueError, match="inconsistent settings"):
        Parallel(prefer="processes", require="sharedmem")
    with parallel_config(prefer="processes", require="sharedmem"):
        with pytest.raises(ValueError, match="inconsistent settings"):
            Parallel()


@pytest.mark.parametrize("param", ["prefer", "require"])
def test_bad_hints_name_the_value_as_joblib(param):
    with pytest.raises(ValueError, match=f"{param}=wrong is not a valid"):
        parallel_config(**{param: "wrong"})
    with pytest.raises(ValueError, match=f"{param}=wrong is not a valid"):
        Parallel(**{param: "wrong"})


def test_require_sharedmem_replaces_a_context_backend_with_one_thread():
    with parallel_config(backend="loky", n_jobs=4):
        p = Parallel(require="sharedmem")
        assert isinstance(p._backend, ThreadingBackend) and p.n_jobs == 1
    with pytest.raises(ValueError, match="does not support shared memory"):
        Parallel(backend="loky", require="sharedmem")


def test_constructor_parameters_need_a_backend_name():
    with pytest.raises(ValueError, match="only supported when backend is not None"):
        parallel_config(inner_max_num_threads=1)
    with pytest.raises(ValueError, match="only supported when backend is not None"):
        parallel_config(backend_param=1)
    with pytest.raises(ValueError, match="only supported when backend is a string"):
        parallel_config(backend=ThreadingBackend(), backend_param=1)
    with pytest.raises(ValueError, match="Invalid backend: nope"):
        parallel_config(backend="nope")


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("backend", ["threading", "sequential", ThreadingBackend()])
def test_inner_max_num_threads_refused_by_backends_that_cannot(context, backend):
    with pytest.raises(AssertionError, match="does not accept setting the inner_max_num_threads"):
        context(backend, inner_max_num_threads=1)


VARS = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]


@pytest.mark.parametrize("context", CONTEXTS)
def test_inner_max_num_threads_reaches_process_workers(context):
    with context("loky", inner_max_num_threads=1):
        seen = Parallel(n_jobs=2)(delayed(h.env)(var) for var in VARS * 2)
    assert seen == ["1"] * 6
    with context("loky", inner_max_num_threads=3):  # the workers are restarted for it
        seen = Parallel(n_jobs=2)(delayed(h.env)(var) for var in VARS * 2)
    assert seen == ["3"] * 6
    default = str(max(os.cpu_count() // 2, 1))
    seen = Parallel(n_jobs=2)(delayed(h.env)("OMP_NUM_THREADS") for _ in range(2))
    assert seen == [os.environ.get("OMP_NUM_THREADS", default)] * 2


def test_dask_without_dask_says_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match="must install both the `dask` and distributed"):
        parallel_config(backend="dask")
    with pytest.raises(ImportError, match="must install both the `dask` and distributed"):
        Parallel(backend="dask")


def test_external_backends_register_on_first_use():
    def register():
        BACKENDS["foo"] = ThreadingBackend

    EXTERNAL_BACKENDS["foo"] = register
    try:
        with parallel_config("foo"):
            assert isinstance(Parallel()._backend, ThreadingBackend)
    finally:
        del EXTERNAL_BACKENDS["foo"]
        BACKENDS.pop("foo", None)


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_a_multiprocessing_context_as_backend(method):
    context = multiprocessing.get_context(method)
    p = Parallel(n_jobs=2, backend=context)
    assert isinstance(p._backend, ProcessBackend)
    assert p(delayed(h.square)(i) for i in range(5)) == [0, 1, 4, 9, 16]
    with parallel_config(backend=context):
        assert isinstance(Parallel()._backend, ProcessBackend)


def _nested(inner_n_jobs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Parallel(n_jobs=inner_n_jobs, backend="loky")(delayed(abs)(-i) for i in range(2))
    return [str(w.message) for w in caught]


def test_process_calls_nested_below_threads_warn_and_run_on_one_worker():
    out = Parallel(n_jobs=2, backend="threading")(delayed(_nested)(2) for _ in range(2))
    assert out == [["Process-backed parallel loops cannot be nested below threads, "
                    "setting n_jobs=1"]] * 2  # fmt: skip
    assert Parallel(n_jobs=2, backend="threading")(delayed(_nested)(1) for _ in range(2)) == [
        [],
        [],
    ]


class _NoTimeout(ParallelBackendBase):
    def apply_async(self, func, callback=None):
        from concurrent.futures import Future

        future = Future()
        future.set_result(func())
        if callback is not None:
            callback(future.result())
        return future


def test_timeout_unsupported_by_a_backend_warns():
    with pytest.warns(UserWarning, match="does not support timeout"):
        out = Parallel(n_jobs=2, backend=_NoTimeout(), timeout=5)(
            delayed(abs)(-i) for i in range(3)
        )
    assert out == [0, 1, 2]


def test_timeout_on_one_worker_warns_as_joblibs_sequential_backend():
    with pytest.warns(UserWarning, match="'SequentialBackend' does not support timeout"):
        Parallel(n_jobs=1, timeout=1)(delayed(abs)(i) for i in range(3))


class _ProcessLike(ParallelBackendBase):
    pass


def test_require_sharedmem_says_which_backend_replaces_which_at_verbose_10(capsys):
    with parallel_config(backend=_ProcessLike()):
        assert isinstance(Parallel(require="sharedmem")._backend, ThreadingBackend)
        assert capsys.readouterr() == ("", "")
        assert isinstance(Parallel(require="sharedmem", verbose=10)._backend, ThreadingBackend)
    assert capsys.readouterr().out.strip() == (
        "Using ThreadingBackend as joblib backend instead of _ProcessLike as the latter "
        "does not provide shared memory semantics."
    )


def _levels(limit):
    with Parallel(n_jobs=2) as p:
        here = [(type(p._backend).__name__, p._backend.nesting_level)]
        if limit == 0:
            return here
        return here + p(delayed(_levels)(limit - 1) for _ in range(1))[0]


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_nesting_levels_of_nested_calls(backend):
    with parallel_config(backend, n_jobs=2):
        levels = _levels(3)
    top = "ProcessBackend" if backend == "loky" else "ThreadingBackend"
    assert levels == [
        (top, 0),
        ("ThreadingBackend", 1),
        ("SequentialBackend", 2),
        ("SequentialBackend", 2),
    ]


def test_the_callers_thread_variables_win_and_changes_restart_workers(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert Parallel(n_jobs=2)(delayed(h.env)("OPENBLAS_NUM_THREADS") for _ in range(2)) == [
        "4",
        "4",
    ]
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "5")
    assert Parallel(n_jobs=2)(delayed(h.env)("OPENBLAS_NUM_THREADS") for _ in range(2)) == [
        "5",
        "5",
    ]


def test_initializer_given_to_parallel_as_joblib():
    out = Parallel(n_jobs=2, initializer=h.set_global, initargs=("direct",))(
        delayed(h.read_global)(i) for i in range(4)
    )
    assert out == ["direct"] * 4


def test_make_default_and_restoring_joblibs_module_attribute():
    import oxjob.parallel as parallel_module
    from oxjob import register_parallel_backend

    original = parallel_module.DEFAULT_BACKEND
    try:
        register_parallel_backend("threading", ThreadingBackend, make_default=True)
        assert parallel_module.DEFAULT_BACKEND == "threading"
        assert isinstance(Parallel()._backend, ThreadingBackend)
    finally:
        parallel_module.DEFAULT_BACKEND = original  # as joblib's tests restore it
    assert isinstance(Parallel()._backend, ProcessBackend)


class _ParameterizedBackend(SequentialBackend):
    def __init__(self, param=None):  # no super().__init__(), as joblib's test backend
        if param is None:
            raise ValueError("param should not be None")
        self.param = param


def test_backend_parameters_from_the_context(monkeypatch):
    from oxjob.parallel import get_active_backend

    monkeypatch.setitem(BACKENDS, "param_backend", _ParameterizedBackend)
    with parallel_config("param_backend", param=42, n_jobs=3):
        backend, n_jobs = get_active_backend()
        assert type(backend) is _ParameterizedBackend and backend.param == 42
        assert n_jobs == 3 and backend.nesting_level == 0
        assert Parallel()(delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
