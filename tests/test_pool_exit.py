"""Interpreter exit and dropped pools, as the standard library: pending executor work
runs before exit, later submits are refused, nothing hangs the exit, and a pool or
executor dropped without shutdown stops its workers."""

import gc
import os
import sys
import textwrap
import time

import pytest

import oxjob

sys.path.insert(0, os.path.dirname(__file__))
import _helpers as h
import _pool_helpers as ph

IMPORTS = {
    "stdlib": "from concurrent.futures import ProcessPoolExecutor\n"
    "from multiprocessing import Pool\n",
    "oxjob": "from oxjob import Pool, ProcessPoolExecutor\n",
}


@pytest.fixture(params=list(IMPORTS))
def imports(request):
    return IMPORTS[request.param]


def test_work_submitted_and_never_waited_for_runs_before_exit(run_script, imports):
    done = run_script(
        imports
        + textwrap.dedent(
            """
            import sys
            sys.path.insert(0, sys.argv[1])
            import _pool_helpers as ph
            if __name__ == "__main__":
                executor = ProcessPoolExecutor(2)
                future = executor.submit(ph.sleep_then_print, 1.0, "apple")
            """
        )
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "apple"
    assert done.stderr == ""


def test_a_submit_after_the_exit_hook_is_refused(run_script, imports):
    done = run_script(
        imports
        + textwrap.dedent(
            """
            import atexit

            @atexit.register
            def run_last():
                try:
                    executor.submit(id, None)
                except RuntimeError as exc:
                    print("refused:", exc)

            if __name__ == "__main__":
                executor = ProcessPoolExecutor(2)
                executor.submit(id, 42).result()
            """
        )
    )
    assert done.returncode == 0, done.stderr
    # (the stdlib says "after shutdown" or "after interpreter shutdown" by version)
    assert done.stdout.startswith("refused: cannot schedule new futures after "), done.stdout


def test_pools_and_executors_never_closed_do_not_hang_the_exit(run_script, imports):
    done = run_script(
        imports
        + textwrap.dedent(
            """
            import sys
            sys.path.insert(0, sys.argv[1])
            import _pool_helpers as ph

            pool = Pool(2)
            executor = ProcessPoolExecutor(2)

            class Holder:
                def __init__(self):
                    self.pool = Pool(1)

            if __name__ == "__main__":
                holder = Holder()
                print(pool.map(ph.identity, [1, 2]), holder.pool.apply(ph.add, (1, 2)))
                print(executor.submit(ph.add, 2, 2).result(), flush=True)
            """
        ),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[1,", "2]", "3", "4"]


def _wait_until_gone(pids, timeout=30.0):
    deadline = time.monotonic() + timeout
    while pids & set(h.worker_children()) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.1)
    return pids & set(h.worker_children())


@pytest.mark.parametrize("make", [oxjob.Pool, oxjob.ProcessPoolExecutor])
def test_a_pool_dropped_without_shutdown_stops_its_workers(make):
    import warnings

    others = set(h.worker_children())  # other tests' pools, left alone
    ours = set()
    for _ in range(3):
        pool = make(2)
        if isinstance(pool, oxjob.Pool):
            assert pool.apply(ph.add, (1, 2)) == 3
        else:
            assert pool.submit(ph.add, 1, 2).result(timeout=60) == 3
        ours |= set(h.worker_children()) - others
        del pool
    assert len(ours) >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert _wait_until_gone(ours) == set()
