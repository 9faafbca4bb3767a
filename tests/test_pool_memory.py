"""Memory stays bounded per call: a function is known by its pickled bytes and
forgotten once no task needs it (in the caller and in the workers), and map iterators
let go of what they have yielded."""

import gc
import os
import sys
import weakref

import pytest

import oxjob

sys.path.insert(0, os.path.dirname(__file__))
import _helpers as h
import _pool_helpers as ph


def _everyone_rss(executor_pids):
    return ph.rss_mb(), max(ph.rss_mb(pid) for pid in executor_pids)


def test_bound_methods_of_a_large_object_do_not_pile_up():
    model = ph.Model(4 << 20)  # each pickle of model.predict carries 4 MB
    with oxjob.ProcessPoolExecutor(2) as executor:
        for i in range(20):
            assert executor.submit(model.predict, i).result(timeout=60) == i + (4 << 20)
        before = _everyone_rss(h.worker_children())
        for i in range(150):
            futures = [executor.submit(model.predict, i) for _ in range(2)]
            assert [f.result(timeout=60) for f in futures] == [i + (4 << 20)] * 2
        after = _everyone_rss(h.worker_children())
    # Kept for the pool's life, 300 copies of 4 MB would be 1.2 GB in the caller and
    # in each worker; the budget here is far under one tenth of that.
    assert after[0] - before[0] < 60, (before, after)
    assert after[1] - before[1] < 60, (before, after)


@pytest.mark.parametrize("kind", ["executor", "imap"])
def test_map_iterators_let_go_of_what_they_yielded(kind):
    if kind == "executor":
        pool = oxjob.ProcessPoolExecutor(2)
        results = pool.map(ph.array_of, range(4))
    else:
        pool = oxjob.Pool(2)
        results = pool.imap(ph.array_of, range(4))
    try:
        first = next(results)
        assert first[0] == 0
        ref = weakref.ref(first)
        del first
        gc.collect()
        assert ref() is None  # the iterator holds no yielded result
        assert [int(a[0]) for a in results] == [1, 2, 3]
    finally:
        pool.shutdown() if kind == "executor" else pool.terminate()
