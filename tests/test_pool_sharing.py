"""multiprocessing's queues, locks, events and values given to workers at their start
(``initargs``, or an ``initializer`` closure) work as with the ``spawn`` start method;
the stdlib's spawn pools run the same checks as the reference."""

import concurrent.futures
import multiprocessing
import os
import sys

import pytest

import oxjob

sys.path.insert(0, os.path.dirname(__file__))
import _pool_helpers as ph

SPAWN = multiprocessing.get_context("spawn")
POOLS = {
    "stdlib": lambda *a, **k: SPAWN.Pool(*a, **k),
    "oxjob": oxjob.Pool,
}
EXECUTORS = {
    "stdlib": lambda *a, **k: concurrent.futures.ProcessPoolExecutor(*a, mp_context=SPAWN, **k),
    "oxjob": oxjob.ProcessPoolExecutor,
}


def _shared():
    return dict(
        queue=SPAWN.Queue(),
        lock=SPAWN.Lock(),
        event=SPAWN.Event(),
        counter=SPAWN.Value("i", 0),
    )


@pytest.mark.parametrize("name", list(POOLS))
def test_sync_objects_in_initargs_reach_every_worker(name):
    shared = _shared()
    shared["event"].set()
    # maxtasksperchild: replacement workers are given them too
    pool = POOLS[name](2, initializer=_keep, initargs=tuple(shared.values()), maxtasksperchild=3)
    assert pool.map(ph.use_shared, range(1, 11), chunksize=1) == [True] * 10
    pool.close()
    pool.join()  # (terminate() could kill a worker before its queue's feeder thread wrote)
    assert shared["counter"].value == 55
    assert sorted(shared["queue"].get(timeout=30) for _ in range(10)) == list(range(1, 11))


def _keep(queue, lock, event, counter):
    ph.keep_shared(queue=queue, lock=lock, event=event, counter=counter)


def test_an_initializer_closure_holding_a_queue_and_a_lock():
    # oxjob only: the stdlib pickles an initializer by reference and cannot send a closure.
    queue, lock = SPAWN.Queue(), SPAWN.Lock()

    def init():
        import _pool_helpers

        _pool_helpers.SHARED.update(queue=queue, lock=lock, event=None)

    with oxjob.ProcessPoolExecutor(2, initializer=init) as executor:
        assert executor.submit(ph.put_from_init, 7).result(timeout=60) == 7
    assert queue.get(timeout=30) == 7


@pytest.mark.parametrize("name", list(POOLS))
def test_a_lock_made_by_a_fork_context_is_refused_as_with_spawn(name):
    lock = multiprocessing.get_context("fork").Lock()
    with pytest.raises(RuntimeError, match="fork context"):
        pool = POOLS[name](1, initializer=_keep, initargs=(None, lock, None, None))
        try:
            pool.apply(ph.add, (1, 2))
        finally:
            pool.terminate()
