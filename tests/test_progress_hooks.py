"""joblib's progress hooks: a ``Parallel`` subclass overriding ``print_progress`` (the
documented tqdm pattern) sees the counters move as in joblib."""

import io

import pytest
from _helpers import square

from oxjob import Parallel, delayed

tqdm = pytest.importorskip("tqdm").tqdm


class ProgressParallel(Parallel):
    """The tqdm pattern people write for joblib, unchanged."""

    def __call__(self, *args, **kwargs):
        self.seen = []
        with tqdm(file=io.StringIO()) as self._pbar:
            return Parallel.__call__(self, *args, **kwargs)

    def print_progress(self):
        self.seen.append(
            (self.n_completed_tasks, self.n_dispatched_tasks, self.n_dispatched_batches)
        )
        self.seen_completed = self._is_completed()
        self._pbar.total = self.n_dispatched_tasks
        self._pbar.n = self.n_completed_tasks
        self._pbar.refresh()


@pytest.mark.parametrize("backend", ["loky", "threading", "sequential"])
@pytest.mark.parametrize("tasks", [list, iter], ids=["list", "generator"])
def test_tqdm_subclass_pattern_reaches_the_end(backend, tasks):
    parallel = ProgressParallel(n_jobs=2, backend=backend)
    out = parallel(tasks([delayed(square)(i) for i in range(7)]))
    assert out == [i * i for i in range(7)]
    assert (parallel._pbar.n, parallel._pbar.total) == (7, 7)
    assert parallel.seen[-1][:2] == (7, 7) and parallel.seen_completed
    completed = [c for c, _, _ in parallel.seen]
    assert completed == sorted(completed)  # after each batch, then once at the end
    assert all(c <= d for c, d, _ in parallel.seen)
    assert 1 <= parallel.seen[-1][2] <= 7  # batches
    assert parallel.n_completed_tasks == parallel.n_dispatched_tasks == 7


def test_not_completed_while_tasks_remain():
    parallel = ProgressParallel(n_jobs=2, batch_size=1, pre_dispatch="2*n_jobs")
    states = []
    parallel.print_progress = lambda: states.append(
        (parallel.n_completed_tasks, parallel._is_completed())
    )
    parallel.seen = []
    parallel([delayed(square)(i) for i in range(10)])
    assert states[-1] == (10, True)
    assert all(not done for completed, done in states if completed < 10)
    assert len(states) >= 10  # one call per completed batch, then the last


def test_counters_start_at_zero():
    parallel = Parallel(n_jobs=2)
    assert (parallel.n_completed_tasks, parallel.n_dispatched_tasks) == (0, 0)
    assert parallel.n_dispatched_batches == 0 and not parallel._is_completed()
