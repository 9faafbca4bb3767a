import concurrent.futures
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
import zlib

import numpy as np
import pytest

import oxjob
from oxjob.exceptions import TerminatedWorkerError

sys.path.insert(0, os.path.dirname(__file__))
import _helpers as h

POOLS = {
    "multiprocessing": lambda *a, **k: multiprocessing.get_context("spawn").Pool(*a, **k),
    "oxjob": oxjob.Pool,
}


@pytest.fixture(params=list(POOLS), scope="module")
def make_pool(request):
    return POOLS[request.param]


@pytest.fixture(scope="module")
def pool(make_pool):
    with make_pool(2) as pool:
        yield pool


def test_map_starmap_apply(pool):
    assert pool.map(h.square, range(20)) == [i * i for i in range(20)]
    assert pool.map(h.square, range(20), chunksize=3) == [i * i for i in range(20)]
    assert pool.map(h.square, []) == []
    assert pool.starmap(h.add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.apply(h.add, (1,), {"y": 5}) == 6
    assert pool.map(h.square, iter(range(5))) == [0, 1, 4, 9, 16]


def test_async_results(pool):
    seen = []
    result = pool.apply_async(h.square, (6,), callback=seen.append)
    assert result.get(timeout=30) == 36 and result.ready() and result.successful()
    result.wait()
    assert seen == [36]
    errors = []
    failing = pool.apply_async(h.fail_on, (3,), error_callback=errors.append)
    with pytest.raises(ValueError, match="bad value 3"):
        failing.get(timeout=30)
    assert not failing.successful() and isinstance(errors[0], ValueError)
    mapped = pool.map_async(h.square, range(10), callback=seen.append)
    assert mapped.get(30) == [i * i for i in range(10)]
    assert seen[-1] == [i * i for i in range(10)]
    assert pool.starmap_async(h.add, [(1, 1)]).get(30) == [2]
    slow = pool.apply_async(h.sleep_then, (1, 2))
    with pytest.raises(multiprocessing.TimeoutError):
        slow.get(timeout=0.1)
    with pytest.raises(ValueError, match="not ready"):
        slow.successful()
    assert slow.get(30) == 1


def test_imap(pool):
    assert list(pool.imap(h.square, range(10))) == [i * i for i in range(10)]
    assert list(pool.imap(h.square, range(10), chunksize=3)) == [i * i for i in range(10)]
    assert sorted(pool.imap_unordered(h.square, range(10))) == [i * i for i in range(10)]
    iterator = pool.imap(h.slow_square, [3], 1)
    with pytest.raises(multiprocessing.TimeoutError):
        iterator.next(timeout=0.05)
    assert iterator.next(timeout=30) == 9


def test_exceptions_keep_their_type(pool):
    with pytest.raises(ValueError, match="bad value 3"):
        pool.map(h.fail_on, range(6))
    it = pool.imap(h.fail_on, range(6))
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError):
        next(it)


def test_closed_pool_raises_value_error(make_pool):
    pool = make_pool(1)
    assert pool.map(h.square, [3]) == [9]
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(h.square, [1])
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply_async(h.square, (1,))
    pool.join()
    running = make_pool(1)
    with pytest.raises(ValueError, match="Pool is still running"):
        running.join()
    running.terminate()
    with pytest.raises(ValueError, match="Pool not running"):
        running.apply(h.square, (1,))
    running.join()


def test_initializer_runs_in_every_worker(make_pool):
    with make_pool(2, initializer=h.init_global, initargs=("set",)) as pool:
        assert pool.map(h.read_global, range(8), chunksize=1) == ["set"] * 8


def test_bad_arguments(make_pool):
    with pytest.raises(ValueError, match="Number of processes must be at least 1"):
        make_pool(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        make_pool(1, initializer=3)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        make_pool(1, maxtasksperchild=0)


def test_maxtasksperchild_replaces_workers_without_losing_tasks():
    with oxjob.Pool(2, maxtasksperchild=2) as pool:
        pids = pool.map(h.record_pid, range(20), chunksize=1)
    assert len(pids) == 20
    counts = {pid: pids.count(pid) for pid in set(pids)}
    assert max(counts.values()) <= 2
    assert len(counts) >= 10
    with oxjob.Pool(2, maxtasksperchild=3, initializer=h.init_global, initargs=("again",)) as pool:
        assert pool.map(h.read_global, range(12), chunksize=1) == ["again"] * 12


def test_dead_worker_fails_only_its_task_and_never_hangs():
    with oxjob.Pool(2) as pool:
        good = pool.apply_async(h.sleep_then, (1, 0.3))
        bad = pool.apply_async(h.kill_self, (0,))
        with pytest.raises(TerminatedWorkerError, match="SIGKILL"):
            bad.get(timeout=10)
        assert good.get(timeout=10) == 1
        assert pool.map(h.square, range(5)) == [0, 1, 4, 9, 16]
        for _ in range(50):  # a hang would surface as multiprocessing.TimeoutError
            with pytest.raises(TerminatedWorkerError):
                pool.apply_async(h.exit_worker, (1,)).get(timeout=30)
        assert pool.map(h.square, range(5)) == [0, 1, 4, 9, 16]


def test_large_arrays_travel_without_pickling_through_pipes():
    arrays = [np.full(300_000, i, dtype=np.float64) for i in range(4)]
    with oxjob.Pool(2) as pool:
        assert pool.map(np.sum, arrays) == [300_000.0 * i for i in range(4)]
        doubled = pool.starmap(np.multiply, [(a, 2) for a in arrays])
    assert all((d == 2 * i).all() for i, d in enumerate(doubled))


def test_frames_larger_than_a_sockets_buffer_arrive_whole(pool):
    # Inline arguments of 0.1-1 MB: short tasks queue several per worker, so frames
    # meet full sockets and go in part (the rest is sent after letting go of the GIL).
    rng = np.random.default_rng(5)
    blobs = [rng.bytes(int(n)) for n in rng.integers(100_000, 1_000_000, size=48)]
    assert pool.map(zlib.crc32, blobs, chunksize=1) == [zlib.crc32(b) for b in blobs]
    assert list(pool.imap(len, blobs)) == [len(b) for b in blobs]


INTERRUPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    import _helpers as h
    import oxjob
    pool = oxjob.Pool(2)
    pool.map(h.square, range(2))
    print("ready", flush=True)
    try:
        pool.starmap(h.sleep_then, [(1, 30)] * 4)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    pool.terminate()
    """
)


def test_ctrl_c_during_map_interrupts_quickly(tmp_path):
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), os.path.dirname(__file__)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    # The map would take 60 s; ending at all within the timeout means Ctrl-C got through.
    out, _ = proc.communicate(timeout=20)
    assert "interrupted" in out


FORK_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, sys.argv[1])
    import _helpers as h
    import oxjob

    pool = oxjob.Pool(2)
    assert pool.map(h.square, range(4)) == [0, 1, 4, 9]
    pid = os.fork()
    if pid == 0:
        try:
            pool.map(h.square, range(4))
            os._exit(1)
        except RuntimeError as exc:
            assert "create a new pool here" in str(exc), exc
        pool.terminate()  # a no-op: the workers are the parent's
        with oxjob.Pool(2) as own:
            os._exit(0 if own.map(h.square, range(4)) == [0, 1, 4, 9] else 2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert pool.map(h.square, range(4)) == [0, 1, 4, 9]
    pool.terminate()
    print("ok")
    """
)


def test_a_pool_used_from_a_forked_child_raises_instead_of_hanging(run_script):
    out = run_script(FORK_CHILD, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def _memory_of(array):
    """The object that owns an array's memory (for a result: the engine's buffer)."""
    owner = array
    while True:
        base = owner.obj if isinstance(owner, memoryview) else getattr(owner, "base", None)
        if base is None:
            return owner
        owner = base


def test_results_are_freed_once_the_caller_drops_them():
    with oxjob.Pool(2) as pool:
        result = pool.apply(np.full, (2**21, 1.0))
        memory = weakref.ref(_memory_of(result))
        assert memory() is not None
        del result
        gc.collect()
        # Nothing of the pool (its dispatcher thread above all) keeps the result's memory.
        assert memory() is None


def test_process_pool_executor():
    with oxjob.ProcessPoolExecutor(max_workers=2) as executor:
        assert isinstance(executor, concurrent.futures.Executor)
        assert executor.submit(h.add, 1, y=2).result(timeout=30) == 3
        assert list(executor.map(h.square, range(10), chunksize=3)) == [i * i for i in range(10)]
        assert list(executor.map(h.add, [1, 2], [10, 20])) == [11, 22]
        with pytest.raises(ValueError, match="bad value"):
            executor.submit(h.fail_on, 3).result(timeout=30)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(h.square, 1)
    with oxjob.ProcessPoolExecutor(2, max_tasks_per_child=1) as executor:
        pids = [executor.submit(h.record_pid, i).result(timeout=30) for i in range(4)]
    assert len(set(pids)) == 4
    executor = oxjob.ProcessPoolExecutor(1)
    futures = [executor.submit(h.sleep_then, i, 0.3) for i in range(5)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert futures[0].result() == 0
    assert any(f.cancelled() for f in futures[1:])
    with pytest.raises(ValueError, match="max_workers"):
        oxjob.ProcessPoolExecutor(0)


def test_imap_reads_its_input_lazily():
    consumed = []

    def numbers():
        for i in range(1000):
            consumed.append(i)
            yield i

    with oxjob.Pool(2) as pool:
        it = pool.imap(h.square, numbers())
        assert next(it) == 0
        time.sleep(0.2)
        # No further than the workers can have queued: (depth + 1) chunks per process.
        assert len(consumed) <= 2 * (oxjob.pool._MAX_DEPTH + 1) + 1
        assert list(it) == [i * i for i in range(1, 1000)]


def test_no_thread_or_worker_left_after_terminate():
    before = threading.active_count()
    pool = oxjob.Pool(2)
    pids = pool._engine.pids()
    pool.map(h.square, range(4))
    pool.terminate()
    time.sleep(0.3)
    assert threading.active_count() <= before + 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            pass


def test_input_segments_are_reused_only_once_released():
    n = 2**18  # 2 MB of float64: travels in a segment
    with oxjob.Pool(1) as pool:
        for round in range(4):  # same-sized inputs: spare segments get refilled
            arrays = [np.full(n, float(10 * round + j)) for j in range(3)]
            assert pool.map(np.sum, arrays) == [n * (10.0 * round + j) for j in range(3)]
        assert pool.map(h.keep, [np.full(n, 1.0), np.full(n, 2.0)], 1) == [n * 1.0, n * 2.0]
        for _ in range(4):
            assert pool.map(np.sum, [np.full(n, 7.0)] * 3) == [n * 7.0] * 3
        assert pool.apply(h.kept_sums) == [n * 1.0, n * 2.0]  # never overwritten


def test_a_failing_callback_does_not_stop_the_pool(capsys):
    def bad_callback(value):
        raise RuntimeError("callback failed")

    with oxjob.Pool(2) as pool:
        result = pool.apply_async(h.square, (3,), callback=bad_callback)
        assert result.get(timeout=30) == 9
        later = pool.map_async(h.square, range(20), chunksize=1)
        assert later.get(timeout=30) == [i * i for i in range(20)]
    assert "callback failed" in capsys.readouterr().err


def test_pool_tasks_queued_behind_a_dying_task_still_run():
    # multiprocessing.Pool replaces the worker and never completes the lost task; ours
    # fails that one task and runs the rest (a ProcessPoolExecutor breaks, as the stdlib's)
    with oxjob.Pool(1) as pool:
        doomed = pool.apply_async(h.kill_self, (0,))
        others = [pool.apply_async(h.square, (i,)) for i in range(5)]
        with pytest.raises(TerminatedWorkerError):
            doomed.get(timeout=30)
        assert [r.get(timeout=30) for r in others] == [i * i for i in range(5)]


INIT_GLOBAL_SCRIPT = textwrap.dedent(
    """
    import multiprocessing
    import oxjob

    def init(value):
        global G
        G = value

    def read(_):
        return G

    class Tag:
        def __init__(self, value):
            self.value = value

    def tag(value):
        return Tag(G + value)

    if __name__ == "__main__":
        with oxjob.Pool(2, initializer=init, initargs=(42,)) as pool:
            print(pool.map(read, range(4)))
            print([type(t) is Tag and t.value for t in pool.map(tag, [1, 2])])
        with oxjob.ProcessPoolExecutor(2, initializer=init, initargs=(7,)) as executor:
            print(list(executor.map(read, range(3))))
        reference = []
        for method in ("spawn", "fork"):
            with multiprocessing.get_context(method).Pool(
                2, initializer=init, initargs=(42,)
            ) as pool:
                reference.append(pool.map(read, range(4)))
        print(reference)
    """
)


def test_a_scripts_initializer_sets_globals_its_functions_read(run_script):
    """As with multiprocessing's spawn: the script's functions live in one module in
    each worker (the script run as ``__mp_main__``), so a global set by the
    initializer is seen by the mapped function."""
    out = run_script(INIT_GLOBAL_SCRIPT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "[42, 42, 42, 42]",
        "[43, 44]",  # instances of the script's class, as the caller's class
        "[7, 7, 7]",
        "[[42, 42, 42, 42], [42, 42, 42, 42]]",
    ]


UNGUARDED_SCRIPT = textwrap.dedent(
    """
    import oxjob

    def double(x):
        return 2 * x

    print("top level runs")
    with oxjob.Pool(2) as pool:
        print(pool.map(double, range(3)))
    """
)


def test_a_script_without_main_guard_is_not_run_again_in_workers(run_script):
    out = run_script(UNGUARDED_SCRIPT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["top level runs", "[0, 2, 4]"]


GUARDED_BUT_STARTS_WORKERS = textwrap.dedent(
    """
    import oxjob

    def double(x):
        return 2 * x

    pool = oxjob.Pool(1)  # outside the guard: would start workers in every worker

    if __name__ == "__main__":
        try:
            print(pool.map(double, range(3)))
        except RuntimeError as exc:
            print("refused:", "if __name__ == '__main__'" in str(exc))
        pool.terminate()
    """
)


def test_a_script_starting_workers_at_import_is_refused_not_a_fork_bomb(run_script):
    out = run_script(GUARDED_BUT_STARTS_WORKERS, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["refused: True"]


def _store(proxy, key, value):
    proxy[key] = value
    return key


def test_manager_proxies_authenticate_in_workers():
    with multiprocessing.Manager() as manager:
        shared = manager.dict()
        with oxjob.Pool(2) as pool:
            assert pool.starmap(_store, [(shared, i, i * i) for i in range(4)]) == [0, 1, 2, 3]
        assert dict(shared) == {i: i * i for i in range(4)}
        lock = manager.Lock()
        out = oxjob.Parallel(n_jobs=2)(oxjob.delayed(_store)(shared, "k", lock) for _ in range(2))
        assert out == ["k", "k"]


def test_a_module_run_with_dash_m_is_loaded_as_mp_main_with_its_package(tmp_path):
    package = tmp_path / "runpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("OFFSET = 100\n")
    (package / "job.py").write_text(
        textwrap.dedent(
            """
            import oxjob
            from .helpers import OFFSET

            def init(value):
                global G
                G = value

            def read(x):
                return G + OFFSET + x

            if __name__ == "__main__":
                with oxjob.Pool(2, initializer=init, initargs=(1,)) as pool:
                    print(pool.map(read, range(3)))
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    out = subprocess.run(
        [sys.executable, "-m", "runpkg.job"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[101, 102, 103]"]
