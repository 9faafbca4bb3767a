"""The one task engine under concurrent callers and faults: every call gets its own
results, a failing or cancelled call touches no other, deaths are reported as deaths,
and nothing leaks (workers, file descriptors). Hang limits only, no timings."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import _fault_helpers as fh
import _helpers as h
import pytest

import oxjob
from oxjob import Parallel, delayed
from oxjob.exceptions import TerminatedWorkerError


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def fd_links():
    links = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            links[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return links


def worker_children():
    return set(h.worker_children())


def shared_workers():
    from oxjob._workers import shared_engine as _shared_engine

    engine = _shared_engine.running_engine()
    return set(engine.pids()) if engine else set()


def settle(check, limit=10.0):
    # The verdict is the check that ended the wait, not one more: processes come and
    # go by themselves meanwhile (workers forked ahead for a next pool, gone unused
    # within seconds), and a second look could catch them arriving.
    deadline = time.monotonic() + limit
    while True:
        ok = check()
        if ok or time.monotonic() >= deadline:
            return ok
        time.sleep(0.05)


@pytest.fixture
def no_leaks():
    """After the test: no descriptor more than before (a few seconds to settle, for
    spare segments and replaced workers), and only the shared engine's workers."""
    Parallel(n_jobs=2)(delayed(fh.square_after)(i) for i in range(4))  # warm up
    before = open_fds()
    links = fd_links()
    yield
    assert settle(lambda: worker_children() <= shared_workers()), (
        worker_children(),
        shared_workers(),
    )
    assert settle(lambda: open_fds() <= before), (
        before,
        {fd: link for fd, link in fd_links().items() if links.get(fd) != link},
    )


def run_threads(targets):
    outcomes = [None] * len(targets)

    def runner(index, target):
        try:
            outcomes[index] = ("ok", target())
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            outcomes[index] = ("error", exc)

    threads = [threading.Thread(target=runner, args=item) for item in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a concurrent call hung"
    return outcomes


def test_concurrent_calls_from_eight_threads_each_get_their_own_results(no_leaks):
    def call(offset, backend):
        def run():
            return Parallel(n_jobs=2, backend=backend)(
                delayed(fh.square_after)(offset + i) for i in range(3000)
            )

        return run

    backends = ["loky", "loky", "threading", "loky", "loky", "sequential", "loky", "loky"]
    targets = [call(1000 * k, b) for k, b in enumerate(backends)]
    outcomes = run_threads(targets)
    for k, (status, value) in enumerate(outcomes):
        assert status == "ok", (k, value)
        assert value == [(1000 * k + i) ** 2 for i in range(3000)], k


def test_a_failing_call_leaves_concurrent_calls_alone(no_leaks):
    def good(offset):
        return lambda: Parallel(n_jobs=2, batch_size=4)(
            delayed(fh.square_after)(offset + i, 0.001) for i in range(400)
        )

    def failing():
        return Parallel(n_jobs=2)(delayed(fh.fail_at)(i, 50) for i in range(2000))

    outcomes = run_threads([good(0), failing, good(10_000), good(20_000)])
    status, exc = outcomes[1]
    assert status == "error" and isinstance(exc, ValueError), exc
    assert "task 50 failed on purpose" in str(exc)
    for index, offset in ((0, 0), (2, 10_000), (3, 20_000)):
        status, value = outcomes[index]
        assert status == "ok", value
        assert value == [(offset + i) ** 2 for i in range(400)]


def test_a_timed_out_call_does_not_kill_another_calls_tasks(no_leaks):
    def slow_but_fine():
        return Parallel(n_jobs=2, batch_size=1)(
            delayed(fh.square_after)(i, 0.05) for i in range(40)
        )

    def times_out():
        time.sleep(0.2)
        return Parallel(n_jobs=2, timeout=0.3)(delayed(fh.square_after)(i, 5) for i in range(2))

    fine, timed_out = run_threads([slow_but_fine, times_out])
    assert timed_out[0] == "error" and isinstance(timed_out[1], oxjob.exceptions.TimeoutError)
    assert fine == ("ok", [i * i for i in range(40)])


def test_interleaved_generators_in_one_thread(no_leaks):
    for _ in range(5):
        first = Parallel(n_jobs=2, return_as="generator")(
            delayed(fh.square_after)(i) for i in range(500)
        )
        second = Parallel(n_jobs=2, return_as="generator")(
            delayed(fh.square_after)(-i) for i in range(500)
        )
        a, b = [], []
        for x, y in zip(first, second):
            a.append(x)
            b.append(y)
        assert a == [i * i for i in range(500)] and b == a


def test_an_abandoned_generator_does_not_disturb_the_next_call(no_leaks):
    gen = Parallel(n_jobs=2, return_as="generator")(
        delayed(fh.square_after)(i, 0.01) for i in range(200)
    )
    assert next(gen) == 0
    assert Parallel(n_jobs=2)(delayed(fh.square_after)(i) for i in range(100)) == [
        i * i for i in range(100)
    ]
    gen.close()
    assert Parallel(n_jobs=2)(delayed(fh.square_after)(i) for i in range(10)) == [
        i * i for i in range(10)
    ]


def test_pool_and_parallel_at_once(no_leaks):
    with oxjob.Pool(2) as pool:
        pending = pool.map_async(fh.square_after, range(2000), chunksize=10)
        executor_result = []

        def executor():
            with oxjob.ProcessPoolExecutor(2) as ex:
                executor_result.extend(ex.map(fh.square_after, range(300)))

        thread = threading.Thread(target=executor)
        thread.start()
        out = Parallel(n_jobs=2)(delayed(fh.square_after)(i) for i in range(3000))
        thread.join(120)
        assert out == [i * i for i in range(3000)]
        assert pending.get(120) == [i * i for i in range(2000)]
        assert executor_result == [i * i for i in range(300)]


def test_generator_unordered_yields_each_result_as_soon_as_it_is_there(tmp_path):
    # The second task blocks until the test has taken the nine others: if any of them
    # waited behind it, the slow task gives up after its limit and returns -1 early.
    release = str(tmp_path / "release")
    gen = Parallel(n_jobs=2, return_as="generator_unordered")(
        delayed(fh.wait_for_file)(release, 20) if i == 1 else delayed(fh.square_after)(i)
        for i in range(10)
    )
    quick = sorted(next(gen) for _ in range(9))
    open(release, "w").close()
    assert quick == [0] + [i * i for i in range(2, 10)]
    assert list(gen) == [1000]


@pytest.mark.parametrize("entry", ["parallel", "pool"])
def test_a_worker_dying_while_work_is_sent_is_reported_as_a_death(entry, no_leaks):
    # The tasks exit at once, so workers die while the caller is still sending them
    # batches: that is a TerminatedWorkerError, never a BrokenPipeError.
    for _ in range(15):
        if entry == "parallel":
            with pytest.raises(TerminatedWorkerError, match=r"EXIT\(7\)"):
                Parallel(n_jobs=2, batch_size=1, pre_dispatch="all")(
                    delayed(fh.exit_now)(i) for i in range(50)
                )
        else:
            with oxjob.Pool(2) as pool:
                with pytest.raises(TerminatedWorkerError, match=r"EXIT\(7\)"):
                    pool.map(fh.exit_now, range(50), chunksize=1)
    assert Parallel(n_jobs=2)(delayed(fh.square_after)(i) for i in range(4)) == [0, 1, 4, 9]


def test_a_worker_dying_in_the_middle_of_a_large_frame_never_raises_sigpipe(tmp_path):
    # Command-line tools often restore SIGPIPE's default action, which kills the process
    # on a write to a closed socket. The worker is slow to start (sitecustomize), so the
    # caller is still writing its ~7 MB initializer frame when the worker is killed.
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(
        "import os, time\nif os.environ.get('OXJOB_PARENT_PID'):\n    time.sleep(1.5)\n"
    )
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, sys, threading, time
            import oxjob

            sys.path.insert(0, sys.argv[1])
            from _helpers import worker_children

            def kill_the_first_worker():
                while not worker_children():
                    time.sleep(0.005)
                time.sleep(0.5)  # the caller waits for the worker to read the frame
                os.kill(worker_children()[0], signal.SIGKILL)

            if __name__ == "__main__":
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                threading.Thread(target=kill_the_first_worker, daemon=True).start()
                big = [str(i) for i in range(1_000_000)]  # pickled inline: ~7 MB
                with oxjob.Pool(1, initializer=len, initargs=(big,)) as pool:
                    print(pool.map(abs, [-1, -2]))
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=f"{slow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    done = subprocess.run(
        [sys.executable, str(script), os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "[1, 2]"


def test_a_long_task_never_holds_up_the_caller_behind_its_workers_full_socket():
    # A worker reads its next frame only when its running task ends. Frames queued
    # behind a long task filled its socket, and the caller waited there, holding the
    # engine: nothing else could be submitted or returned until the task ended.
    with oxjob.Pool(2) as pool:
        pool.map(len, [b"x"] * 400, chunksize=1)  # known to be short: several queued
        submitted = threading.Event()

        def submit():
            pool.map_async(fh.sleep_or_len, [20.0] + [bytes(150_000)] * 40, chunksize=1)
            submitted.set()

        threading.Thread(target=submit, daemon=True).start()
        assert submitted.wait(15), "map_async waited for a busy worker to read its socket"
        assert pool.apply_async(abs, (-5,)).get(timeout=15) == 5
        pool.terminate()


def test_a_worker_killed_while_returning_a_large_result(no_leaks):
    np = pytest.importorskip("numpy")
    victim = []

    def kill_soon():
        time.sleep(0.3)
        pids = sorted(shared_workers())
        if pids:
            victim.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)

    Parallel(n_jobs=2)(delayed(fh.square_after)(i) for i in range(2))
    killer = threading.Thread(target=kill_soon)
    killer.start()
    try:
        out = Parallel(n_jobs=2, batch_size=1)(
            delayed(fh.big_array)(2**21, float(i)) for i in range(60)
        )
    except TerminatedWorkerError:
        pass
    else:  # the kill landed between tasks: every result must still be right
        assert [float(a[0]) for a in out] == [float(i) for i in range(60)]
        assert all(np.all(a == a[0]) for a in out)
    killer.join()
    # A worker killed while idle is noticed by its exit event: a task sent to it before
    # that would (rightly) fail, so the next call waits for the death to be seen.
    from oxjob._workers import shared_engine as _shared_engine

    engine = _shared_engine.running_engine()
    assert settle(lambda: bool(engine.pool.dead) or victim[0] not in shared_workers())
    out = Parallel(n_jobs=2)(delayed(fh.big_array)(8, float(i)) for i in range(4))
    assert [float(a[0]) for a in out] == [0.0, 1.0, 2.0, 3.0]


def test_a_worker_without_the_memory_to_map_its_input_fails_the_task_and_lives():
    np = pytest.importorskip("numpy")
    with oxjob.Pool(1, initializer=fh.limit_address_space, initargs=(200 << 20,)) as pool:
        pid = pool._engine.pids()[0]
        with pytest.raises(MemoryError):
            pool.apply_async(fh.first_value, (np.ones(50_000_000),)).get(60)  # 400 MB
        assert pool.apply_async(fh.first_value, (np.full(10, 3.0),)).get(60) == 3.0
        assert pool._engine.pids() == [pid]  # the same worker: it did not die


def test_kept_views_of_inputs_give_way_to_a_new_input_when_address_space_runs_out():
    np = pytest.importorskip("numpy")
    with oxjob.Pool(1, initializer=fh.limit_address_space, initargs=(400 << 20,)) as pool:
        pid = pool._engine.pids()[0]
        for n, value in ((18_750_000, 1.0), (20_000_000, 2.0), (25_000_000, 3.0)):
            # 150 MB, 160 MB, then 200 MB: kept mapped, each would leave no room for
            # the next (numpy takes ~100 MB of the 400) unless the worker lets go.
            assert pool.apply_async(fh.first_value, (np.full(n, value),)).get(60) == value
        assert pool._engine.pids() == [pid]
