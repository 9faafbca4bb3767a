import contextlib
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import weakref

import numpy as np
import pytest

import oxjob
from oxjob import (
    Parallel,
    cpu_count,
    delayed,
    effective_n_jobs,
    parallel_backend,
    parallel_config,
    register_parallel_backend,
)
from oxjob.backends import ParallelBackendBase, SequentialBackend, ThreadingBackend
from oxjob.exceptions import RemoteTraceback, TerminatedWorkerError, TimeoutError

sys.path.insert(0, os.path.dirname(__file__))
import _helpers as h

BACKENDS = ["loky", "threading", "sequential"]


children = h.worker_children


def worker_pids():
    from oxjob._workers import shared_engine as _shared_engine

    engine = _shared_engine.running_engine()
    return set(engine.pids()) if engine else set()


def assert_only_pool_workers():
    """Every child process is a current pool worker: nothing leaked, nothing stale
    (workers forked ahead for a next pool are gone within seconds)."""
    deadline = time.time() + 10
    while time.time() < deadline:
        if set(children()) <= worker_pids():
            return
        time.sleep(0.05)
    assert set(children()) <= worker_pids(), (children(), worker_pids())


@pytest.mark.parametrize("backend", BACKENDS + ["multiprocessing", "processes"])
def test_results_in_order(backend):
    out = Parallel(n_jobs=2, backend=backend)(delayed(h.square)(i) for i in range(100))
    assert out == [i * i for i in range(100)]


def test_one_two_and_no_positional_arguments():
    # A batch of one function is sent as one sequence of arguments (or of argument
    # tuples); a tuple argument must stay one argument.
    assert Parallel(n_jobs=2)(delayed(divmod)(i, 3) for i in range(50)) == [
        divmod(i, 3) for i in range(50)
    ]
    assert Parallel(n_jobs=2)(delayed(len)((i, i)) for i in range(50)) == [2] * 50
    assert Parallel(n_jobs=2)(delayed(tuple)() for _ in range(50)) == [()] * 50


def test_kwargs_lambdas_and_main_functions():
    offset = 10
    out = Parallel(n_jobs=2)(delayed(lambda x, y=0: x + y + offset)(i, y=1) for i in range(5))
    assert out == [i + 11 for i in range(5)]
    mixed = [delayed(h.add)(1, y=2), delayed(h.square)(3), delayed(abs)(-4)]
    assert Parallel(n_jobs=2)(mixed) == [3, 9, 4]


def test_delayed_returns_the_call_as_joblib_does():
    options = {"y": 3}
    call = delayed(h.add)(1, **options)
    assert call == (h.add, (1,), {"y": 3})
    assert type(call) is tuple and call[2] is not options  # a copy, as **kwargs makes
    func, args, kwargs = delayed(h.square)(4)
    assert (func, args, kwargs) == (h.square, (4,), {})
    wrapper = delayed(h.add)
    assert wrapper.__name__ == "add" and wrapper.__qualname__ == "add"
    assert wrapper.__wrapped__ is h.add
    assert pickle.loads(pickle.dumps(wrapper))(2, y=5) == (h.add, (2,), {"y": 5})
    with pytest.raises(AttributeError):
        wrapper.no_such_attribute  # noqa: B018


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_the_tasks_held_outlives_the_call(backend):
    class Payload:
        pass

    payload = Payload()
    alive = weakref.ref(payload)
    square = delayed(lambda i, held=payload: i * i)  # `delayed` reuses wrappers within a call
    assert Parallel(n_jobs=2, backend=backend)(square(i) for i in range(20))[-1] == 361
    del payload, square
    gc.collect()
    assert alive() is None


MAIN_OBJECTS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    import _helpers as h
    import oxjob

    def increment(x):
        return x + 1

    class Box:
        def __init__(self, value):
            self.value = value

    if __name__ == "__main__":
        calls = (oxjob.delayed(h.apply)(increment, i) for i in range(4))
        print(oxjob.Parallel(n_jobs=2)(calls))
        boxes = oxjob.Parallel(n_jobs=2)(oxjob.delayed(h.identity)(Box(i)) for i in range(3))
        print([type(b).__name__ + str(b.value) for b in boxes])
        with oxjob.Pool(2) as pool:
            print(pool.starmap(h.apply, [(increment, i) for i in range(4)]))
            print([type(b) is Box for b in pool.map(h.identity, [Box(1)])])
    """
)


def test_functions_and_classes_of_main_travel_as_arguments(run_script):
    """Objects defined in the caller's script reach workers by value (their
    ``__main__`` is not the caller's), with ``Parallel`` and with ``Pool``."""
    out = run_script(MAIN_OBJECTS)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[1, 2, 3, 4]",
        "['Box0', 'Box1', 'Box2']",
        "[1, 2, 3, 4]",
        "[True]",
    ]


def test_n_jobs_values():
    assert effective_n_jobs(-1) == cpu_count()
    assert effective_n_jobs(-2) == max(cpu_count() - 1, 1)
    assert effective_n_jobs(None) == 1
    assert Parallel(n_jobs=1.7).n_jobs == 1
    with pytest.raises(ValueError, match="n_jobs == 0 in Parallel has no meaning"):
        Parallel(n_jobs=0)(delayed(h.square)(1) for _ in range(2))
    with pytest.raises(ValueError, match="could not be converted to int"):
        Parallel(n_jobs="many")
    assert Parallel(n_jobs=-1)(delayed(h.square)(i) for i in range(3)) == [0, 1, 4]


def test_cpu_count_honours_affinity():
    assert cpu_count() == min(len(os.sched_getaffinity(0)), cpu_count())
    assert 1 <= cpu_count(only_physical_cores=True) <= cpu_count()
    code = "import oxjob; print(oxjob.cpu_count())"
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True
    )
    if out.returncode == 0:
        assert out.stdout.strip() == "1"


def test_bad_arguments():
    with pytest.raises(ValueError, match="Expected `return_as`"):
        Parallel(return_as="tuple")
    with pytest.raises(ValueError, match="batch_size must be 'auto' or a positive integer"):
        Parallel(batch_size=0)
    with pytest.raises(ValueError, match="Invalid backend"):
        Parallel(backend="nope")
    with pytest.raises(ValueError, match="prefer"):
        Parallel(prefer="gpu")
    with pytest.raises(ValueError, match="does not support shared memory"):
        Parallel(backend=oxjob.backends.ProcessBackend(), require="sharedmem")


@pytest.mark.parametrize("backend", BACKENDS)
def test_generators(backend):
    gen = Parallel(n_jobs=2, backend=backend, return_as="generator")(
        delayed(h.square)(i) for i in range(50)
    )
    assert not isinstance(gen, list)
    assert list(gen) == [i * i for i in range(50)]
    unordered = Parallel(n_jobs=2, backend=backend, return_as="generator_unordered")(
        delayed(h.sleep_then)(i, 0.05 if i == 0 else 0) for i in range(6)
    )
    assert sorted(unordered) == list(range(6))


def test_generator_dropped_early_then_next_call_works():
    gen = Parallel(n_jobs=2, return_as="generator")(
        delayed(h.sleep_then)(i, 0.2) for i in range(20)
    )
    assert next(gen) == 0
    del gen
    assert Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(4)) == [0, 1, 4, 9]
    assert_only_pool_workers()


@pytest.mark.parametrize("backend", BACKENDS)
def test_exception_type_and_remote_traceback(backend):
    with pytest.raises(ValueError, match="bad value 3") as info:
        Parallel(n_jobs=2, backend=backend)(delayed(h.fail_on)(i) for i in range(10))
    if backend == "loky":
        assert isinstance(info.value.__cause__, RemoteTraceback)
        assert "fail_on" in str(info.value.__cause__)
    assert Parallel(n_jobs=2, backend=backend)(delayed(h.square)(i) for i in range(3)) == [0, 1, 4]


def test_remaining_tasks_are_cancelled():
    start = time.time()
    with pytest.raises(ValueError):
        Parallel(n_jobs=2, batch_size=1)(
            [delayed(h.fail_on)(3)] + [delayed(h.sleep_then)(i, 0.5) for i in range(20)]
        )
    assert time.time() - start < 3
    assert_only_pool_workers()


@pytest.mark.parametrize(
    ("func", "arg", "expected"),
    [
        (h.exit_worker, 3, "EXIT(3)"),
        (h.kill_self, 0, "SIGKILL(-9)"),
        (h.segfault, 0, "SIGSEGV(-11)"),
    ],
    ids=["os._exit", "kill -9", "segfault"],
)
def test_dead_worker_raises_terminated_worker_error(func, arg, expected):
    before = worker_pids()
    start = time.time()
    with pytest.raises(
        TerminatedWorkerError, match=expected.replace("(", r"\(").replace(")", r"\)")
    ):
        Parallel(n_jobs=2)(delayed(func)(arg) for _ in range(2))
    assert time.time() - start < 5
    from concurrent.futures.process import BrokenProcessPool

    assert issubclass(TerminatedWorkerError, BrokenProcessPool)
    assert Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(4)) == [0, 1, 4, 9]
    assert_only_pool_workers()
    assert worker_pids() != before


def test_kill_minus_nine_from_outside_mid_task():
    Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(2))  # warm the pool
    pids = sorted(worker_pids())
    gen = Parallel(n_jobs=2, return_as="generator")(delayed(h.sleep_then)(i, 1) for i in range(4))
    import threading

    threading.Timer(0.3, os.kill, (pids[0], signal.SIGKILL)).start()
    with pytest.raises(TerminatedWorkerError, match="SIGKILL"):
        list(gen)
    assert Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(4)) == [0, 1, 4, 9]
    assert_only_pool_workers()


def test_timeout_kills_the_worker():
    start = time.time()
    with pytest.raises(TimeoutError):
        Parallel(n_jobs=2, timeout=0.5)(delayed(h.sleep_then)(i, 10) for i in range(2))
    assert time.time() - start < 1.5 + 1
    assert issubclass(TimeoutError, __import__("multiprocessing").TimeoutError)
    assert Parallel(n_jobs=2, timeout=5)(delayed(h.square)(i) for i in range(4)) == [0, 1, 4, 9]
    assert_only_pool_workers()


def test_unpicklable_argument_names_the_task():
    import threading

    lock = threading.Lock()
    with pytest.raises(pickle.PicklingError, match="task 1"):
        Parallel(n_jobs=2, batch_size=2)(delayed(h.add)(x, 0) for x in [1, lock])
    assert Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(3)) == [0, 1, 4]


def test_functions_reach_each_worker_once_per_call():
    from oxjob._workers import processes as _process_pool
    from oxjob._workers import shared_engine as _shared_engine

    sent = []
    real = _process_pool._engine.Supervisor.send

    Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(2))
    pool = _shared_engine.running_engine().pool

    class Spy:
        def __init__(self, supervisor):
            self.supervisor = supervisor

        def send(self, worker, kind, tag, body, segments, n_shared=0):
            sent.append(kind)
            return real(self.supervisor, worker, kind, tag, body, segments, n_shared)

        def __getattr__(self, name):
            return getattr(self.supervisor, name)

    supervisor = pool.supervisor
    pool.supervisor = Spy(supervisor)
    try:
        Parallel(n_jobs=2, batch_size=1)(delayed(h.square)(i) for i in range(40))
    finally:
        pool.supervisor = supervisor
    from oxjob._workers.protocol import BATCH, FUNCTION

    assert sent.count(BATCH) == 40
    assert sent.count(FUNCTION) <= 2


FORK_CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import _helpers as h
    from oxjob import Parallel, delayed
    from oxjob._workers import shared_engine as _shared_engine

    def run(backend):
        out = Parallel(n_jobs=2, backend=backend)(delayed(h.big_result)(2**21, i) for i in range(4))
        return [float(a[0]) for a in out] == [0.0, 1.0, 2.0, 3.0]

    # Large results leave spare segments behind, and the workers stay for reuse.
    assert run("loky") and run("threading")
    parent_workers = _shared_engine.running_engine().pids()
    pid = os.fork()
    if pid == 0:
        ok = run("loky") and run("threading")
        ok = ok and set(_shared_engine.running_engine().pids()).isdisjoint(parent_workers)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert run("loky") and _shared_engine.running_engine().pids() == parent_workers
    print("ok")
    """
)


def test_a_forked_child_starts_its_own_workers_and_spares_the_parents(run_script):
    """After a bare ``os.fork()`` (multiprocessing's default on Linux), the child has
    copies of the parent's engine without its threads: it starts its own workers and
    neither uses nor stops the parent's, nor refills the parent's spare segments."""
    out = run_script(FORK_CHILD, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_nested_calls_use_threads_then_sequential():
    out = Parallel(n_jobs=2)(delayed(h.nested_backend)(i) for i in range(2))
    assert out == [("ThreadingBackend", [1])] * 2
    inner = Parallel(n_jobs=2, backend="threading")(delayed(h.nested_backend)(i) for i in range(2))
    assert inner[0][0] in ("ThreadingBackend", "SequentialBackend")


def test_thread_limits_in_workers():
    expected = str(max(cpu_count() // 2, 1))
    values = Parallel(n_jobs=2)(delayed(h.env)("OMP_NUM_THREADS") for _ in range(2))
    assert values == [os.environ.get("OMP_NUM_THREADS", expected)] * 2


def test_verbose_messages(capsys):
    Parallel(n_jobs=2, verbose=5)(delayed(h.square)(i) for i in range(10))
    err = capsys.readouterr().err
    assert "[Parallel(n_jobs=2)]: Using backend ProcessBackend with 2 concurrent workers." in err
    # joblib's width for a generator (no len): 3, even once it is exhausted.
    assert err.strip().splitlines()[-1].startswith("[Parallel(n_jobs=2)]: Done  10 out of  10 |")
    assert err.strip().endswith("finished")
    Parallel(n_jobs=2, verbose=60, backend="threading")(delayed(h.square)(i) for i in range(3))
    assert "Done   3 out of   3" in capsys.readouterr().out


def test_progress_bar(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm is a test dependency
    Parallel(n_jobs=2, progress=True)(delayed(h.square)(i) for i in range(30))
    err = capsys.readouterr().err
    assert "30/30" in err and "tasks/s" in err and "ETA" in err


def test_running_instance_raises():
    parallel = Parallel(n_jobs=2, return_as="generator")
    gen = parallel(delayed(h.square)(i) for i in range(10))
    next(gen)
    with pytest.raises(RuntimeError, match="already running"):
        parallel(delayed(h.square)(i) for i in range(3))
    assert list(gen) == [i * i for i in range(1, 10)]
    assert list(parallel(delayed(h.square)(i) for i in range(3))) == [0, 1, 4]


def test_context_manager_keeps_workers():
    with Parallel(n_jobs=2) as parallel:
        first = set(parallel(delayed(h.pid)(i) for i in range(8)))
        second = set(parallel(delayed(h.pid)(i) for i in range(8)))
    assert first and first | second <= worker_pids()
    assert os.getpid() not in first


def test_batch_size_and_pre_dispatch():
    for batch_size in (1, 7, "auto"):
        for pre_dispatch in ("2 * n_jobs", "all", 3, "n_jobs"):
            out = Parallel(n_jobs=2, batch_size=batch_size, pre_dispatch=pre_dispatch)(
                delayed(h.square)(i) for i in range(25)
            )
            assert out == [i * i for i in range(25)]
    with pytest.raises(ValueError, match="pre_dispatch"):
        Parallel(n_jobs=2, pre_dispatch="lots")(delayed(h.square)(i) for i in range(2))


@contextlib.contextmanager
def _batch_sizes():
    from oxjob import parallel as parallel_module

    seen = []
    real = parallel_module.Parallel._next_batch_size

    def spy(self, state, runner):
        size = real(self, state, runner)
        seen.append(size)
        return size

    parallel_module.Parallel._next_batch_size = spy
    try:
        yield seen
    finally:
        parallel_module.Parallel._next_batch_size = real


def test_auto_batching_grows_within_a_few_batches():
    from oxjob import parallel as parallel_module

    with _batch_sizes() as seen:
        Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(200_000))
    # Tiny tasks: the ideal size is the largest batch allowed.
    big = next(i for i, size in enumerate(seen) if size >= parallel_module._MAX_BATCH)
    assert big <= 8, seen[:12]


def test_fast_tasks_with_large_inputs_or_results_are_not_batched():
    import numpy as np

    data = [np.full(2_500_000, float(i)) for i in range(12)]  # 20 MB each: ms to copy
    with _batch_sizes() as seen:
        out = Parallel(n_jobs=2)(delayed(h.total)(a) for a in data)
    assert out == [float(i) * 2_500_000 for i in range(12)]
    assert set(seen) == {1}, seen
    with _batch_sizes() as seen:
        out = Parallel(n_jobs=2)(delayed(h.big_result)(200_000, i) for i in range(60))
    assert [a[0] for a in out] == list(range(60))
    assert set(seen) == {1}, seen


def test_parallel_config_and_backend_contexts():
    with parallel_config(backend="threading", n_jobs=2):
        p = Parallel()
        assert isinstance(p._backend, ThreadingBackend) and p.n_jobs == 2
        with parallel_config(n_jobs=1):
            assert Parallel().n_jobs == 1
        assert Parallel(n_jobs=3).n_jobs == 3
    assert Parallel().n_jobs == 1  # joblib: n_jobs=None is the backend's default, 1
    with parallel_backend("sequential") as (backend, n_jobs):
        assert isinstance(backend, SequentialBackend)
        assert isinstance(Parallel()._backend, SequentialBackend)
    assert isinstance(Parallel(prefer="threads")._backend, ThreadingBackend)
    assert isinstance(Parallel(require="sharedmem")._backend, ThreadingBackend)
    with pytest.raises(ValueError, match="Invalid backend"):
        parallel_config(backend="nope")


def test_initializer_from_parallel_config():
    with parallel_config(initializer=h.set_global, initargs=("ready",)):
        out = Parallel(n_jobs=2)(delayed(h.read_global)(i) for i in range(4))
    assert out == ["ready"] * 4


def test_register_parallel_backend():
    from concurrent.futures import ThreadPoolExecutor

    class ExecutorBackend(ParallelBackendBase):
        supports_timeout = False

        def configure(self, n_jobs=1, parallel=None, **kwargs):
            self.executor = ThreadPoolExecutor(max_workers=2)
            return 2

        def effective_n_jobs(self, n_jobs):
            return 2

        def apply_async(self, func, callback=None):
            future = self.executor.submit(func)
            if callback is not None:
                future.add_done_callback(lambda f: callback(f.result()))
            return future

        def terminate(self):
            self.executor.shutdown()

    register_parallel_backend("executor", ExecutorBackend)
    out = Parallel(n_jobs=2, backend="executor")(delayed(h.square)(i) for i in range(20))
    assert out == [i * i for i in range(20)]
    with pytest.raises(ValueError, match="bad value"):
        Parallel(backend="executor")(delayed(h.fail_on)(i) for i in range(5))


def test_star_import_matches_joblib():
    joblib = pytest.importorskip("joblib")
    namespace: dict = {}
    exec("from oxjob import *", namespace)
    missing = set(joblib.__all__) - set(namespace)
    assert not missing


def test_large_arrays_round_trip_through_shared_memory():
    arrays = [np.full((500, 1000), i, dtype=np.float64) for i in range(4)]
    out = Parallel(n_jobs=2, max_nbytes="1M")(delayed(np.multiply)(a, 2) for a in arrays)
    for i, result in enumerate(out):
        assert result.shape == (500, 1000) and result.flags.writeable
        assert (result == 2 * i).all()
    # Copy-on-write by default: a worker's writes stay private.
    data = np.zeros(300_000)
    out = Parallel(n_jobs=2)(delayed(np.add)(data, 1, out=data) for _ in range(2))
    assert (data == 0).all() and all((o == 1).all() for o in out)


SIGINT_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    import _helpers as h
    from oxjob import Parallel, delayed
    Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(2))
    print("ready", flush=True)
    try:
        Parallel(n_jobs=2)(delayed(h.sleep_then)(i, 30) for i in range(4))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    """
)


def test_sigint_interrupts_quickly_and_leaves_no_worker(tmp_path):
    script = tmp_path / "sigint.py"
    script.write_text(SIGINT_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), os.path.dirname(__file__)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    workers = [
        int(p) for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) == proc.pid
    ]
    start = time.time()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert "interrupted" in out
    assert time.time() - start < 3
    time.sleep(0.5)
    assert workers and not [w for w in workers if _alive(w)]


def _parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_joblib_documented_example_runs_unchanged():
    code = textwrap.dedent(
        """
        import oxjob as joblib
        from joblib import Parallel, delayed
        from math import sqrt
        print(Parallel(n_jobs=2)(delayed(sqrt)(i ** 2) for i in range(10)))
        with joblib.parallel_config(backend="threading", n_jobs=2):
            print(Parallel()(delayed(sqrt)(i ** 2) for i in range(3)))
        """
    ).replace("from joblib import", "from oxjob import")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        str([float(i) for i in range(10)]),
        "[0.0, 1.0, 2.0]",
    ]


class _ImmediateBackend(ParallelBackendBase):
    """A custom backend running each batch at once, as third-party backends do."""

    def __init__(self, workers=2, **kwargs):
        super().__init__(**kwargs)
        self.workers = workers
        self.entered = self.exited = 0

    def configure(self, n_jobs=1, parallel=None, **kwargs):
        return self.workers

    def apply_async(self, func, callback=None):
        from concurrent.futures import Future

        future = Future()
        future.set_result(func())
        if callback is not None:
            callback(future.result())
        return future

    @contextlib.contextmanager
    def retrieval_context(self):
        self.entered += 1
        try:
            yield
        finally:
            self.exited += 1


def test_a_backend_with_no_worker_raises_instead_of_returning_nothing():
    with pytest.raises(RuntimeError, match="_ImmediateBackend has no active worker"):
        Parallel(backend=_ImmediateBackend(workers=0))(delayed(abs)(-i) for i in range(3))


def test_the_backends_retrieval_context_is_held_while_results_are_retrieved():
    backend = _ImmediateBackend()
    assert Parallel(backend=backend)(delayed(abs)(-i) for i in range(5)) == list(range(5))
    assert (backend.entered, backend.exited) == (1, 1)
    with pytest.raises(ValueError, match="bad value"):
        Parallel(backend=backend)(delayed(h.fail_on)(i) for i in range(5))
    assert (backend.entered, backend.exited) == (2, 2)
    gen = Parallel(backend=backend, return_as="generator")(delayed(abs)(i) for i in range(5))
    assert next(gen) == 0 and backend.entered == 3 and backend.exited == 2
    gen.close()
    assert backend.exited == 3


@pytest.mark.parametrize(
    "expression, expected",
    [("2 * n_jobs", 6), ("n_jobs", 3), ("1.5*n_jobs", 4), ("(n_jobs + 1) // 2", 2), (" 7 ", 7)],
)
def test_pre_dispatch_arithmetic(expression, expected):
    from oxjob._expr import pre_dispatch_amount

    assert pre_dispatch_amount(expression, 3) == expected
    out = Parallel(n_jobs=3, pre_dispatch=expression)(delayed(abs)(-i) for i in range(20))
    assert out == list(range(20))


STARTS_A_PROCESS = (
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen']"
    "[0](['touch', 'PWNED'])"
)


@pytest.mark.parametrize(
    "expression",
    [
        STARTS_A_PROCESS,
        "__import__('os').system('touch PWNED')",
        "n_jobs.__class__",
        "open('PWNED', 'w')",
        "lambda: 1",
        "9**9**9",
        "n_jobs if 1 else 2",
        "2 * jobs",
        "",
    ],
)
def test_pre_dispatch_is_never_evaluated_as_code(expression, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="pre_dispatch=") as caught:
        Parallel(n_jobs=2, pre_dispatch=expression)(delayed(abs)(-i) for i in range(4))
    assert repr(expression[:30]) in str(caught.value)
    assert not (tmp_path / "PWNED").exists()


def test_pre_dispatch_other_types_are_refused():
    for value in (None, 2.5, [2], True):
        with pytest.raises(ValueError, match="pre_dispatch"):
            Parallel(n_jobs=2, pre_dispatch=value)(delayed(abs)(-i) for i in range(4))


def test_no_eval_or_exec_in_the_package():
    import ast
    import pathlib

    for path in pathlib.Path(oxjob.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("eval", "exec"), f"{path.name}:{node.lineno}"


def test_a_function_the_worker_cannot_import_is_an_error_naming_its_module(tmp_path):
    module = tmp_path / "vanishing_module.py"
    module.write_text("def twice(x):\n    return 2 * x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import vanishing_module
    finally:
        sys.path.remove(str(tmp_path))
    try:
        with pytest.raises(ModuleNotFoundError, match="vanishing_module") as caught:
            Parallel(n_jobs=2)(delayed(vanishing_module.twice)(i) for i in range(4))
        assert "could not be loaded in the worker" in str(caught.value.__cause__)
        # The workers lived: the next call runs on them.
        assert Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(4)) == [0, 1, 4, 9]
    finally:
        del sys.modules["vanishing_module"]


MAIN_GLOBALS = textwrap.dedent(
    """
    import oxjob

    def init(value):
        global G
        G = value

    def read(_):
        return G

    def set_then_read(value):
        init(value)
        return read(None)

    if __name__ == "__main__":
        with oxjob.parallel_config(initializer=init, initargs=(42,)):
            print(oxjob.Parallel(n_jobs=2)(oxjob.delayed(read)(i) for i in range(4)))
        print(oxjob.Parallel(n_jobs=2)(oxjob.delayed(set_then_read)(i) for i in range(3)))
    """
)


def test_a_scripts_functions_share_its_globals_in_the_workers(run_script):
    out = run_script(MAIN_GLOBALS)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[42, 42, 42, 42]", "[0, 1, 2]"]


def _recurse_forever():
    return Parallel()(delayed(_recurse_forever)() for _ in range(2))


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_recursive_parallelism_raises_recursion_error_not_a_bomb(backend):
    with parallel_config(backend, n_jobs=2):
        with pytest.raises(RecursionError):
            _recurse_forever()
