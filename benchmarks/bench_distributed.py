"""D1-D4: oxjob's dask and ray backends side by side with joblib's on the same cluster.

Run: ``python benchmarks/bench_distributed.py [--repeat 3] [--skip-ray]``. One
``LocalCluster(n_workers=2, processes=True, threads_per_worker=1)`` serves both the
oxjob and the joblib rows (they take turns in each round), then one local Ray
(``ray.init(num_cpus=2)``) serves oxjob's ray backend and Ray's joblib backend.

- D1: 10k tiny tasks.
- D2: 8 tasks over one 200 MB array (the shared-X case).
- D3: 8 distinct 100 MB arrays in, one per task.
- D4: 8 results of 100 MB out.

D2 and D3 change the arrays' content before each round, so every call sends them
(the "first call" figure); their "repeated" rows call again with the same arrays,
which oxjob finds on the cluster by content and joblib sends again.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _harness import Table, interleaved_median_times

N_TINY = 10_000
BIG = 200 * 2**20 // 8
MID = 100 * 2**20 // 8


def tiny(i):
    return i + 1


def strided_sum(x, i):
    return float(x[::4096].sum()) + i


def make(i):
    return np.full(MID, float(i))


class Scenarios:
    """The four calls, for a ``Parallel`` class used inside a backend's config."""

    def __init__(self, parallel, delayed, config):
        self.parallel, self.delayed, self.config = parallel, delayed, config
        self.x = np.random.default_rng(0).random(BIG)
        self.arrays = [np.full(MID, float(i)) for i in range(8)]
        self.round = 0

    def run(self, calls):
        with self.config():
            return self.parallel()(calls)

    def tiny(self):
        out = self.run(self.delayed(tiny)(i) for i in range(N_TINY))
        assert out[-1] == N_TINY

    def shared_x(self, fresh=True):
        if fresh:
            self.round += 1
            self.x[0] = self.round
        out = self.run(self.delayed(strided_sum)(self.x, i) for i in range(8))
        assert len(out) == 8

    def arrays_in(self, fresh=True):
        if fresh:
            self.round += 1
            for a in self.arrays:
                a[0] = self.round
        out = self.run(self.delayed(strided_sum)(a, i) for i, a in enumerate(self.arrays))
        assert len(out) == 8

    def results_out(self):
        out = self.run(self.delayed(make)(i) for i in range(8))
        assert out[7][-1] == 7.0


def compare(title, variants, repeat, tables):
    """``variants``: name -> Scenarios; the first is the oxjob one."""
    names = list(variants)
    cases = [
        ("10k tiny tasks", lambda s: s.tiny),
        ("8 tasks over one 200 MB array, first call", lambda s: s.shared_x),
        ("8 tasks over one 200 MB array, repeated", lambda s: lambda: s.shared_x(False)),
        ("8 distinct 100 MB arrays in, first call", lambda s: s.arrays_in),
        ("8 distinct 100 MB arrays in, repeated", lambda s: lambda: s.arrays_in(False)),
        ("8 results of 100 MB out", lambda s: s.results_out),
    ]
    for case, pick in cases:
        print(f"  {title}: {case}", flush=True)
        funcs = {name: pick(variants[name]) for name in names}
        for func in funcs.values():
            func()  # warm-up: workers import numpy, repeated rows get their data there
        times = interleaved_median_times(funcs, repeat)
        table = Table(f"{title}: {case}")
        for name in names[1:]:
            table.add(name, times[name])
        table.add(names[0], times[names[0]], baseline=names[1])
        tables.append(table.render(names[1]))


def dask_rows(repeat, tables):
    import distributed
    import joblib

    import oxjob

    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = distributed.Client(cluster)
    try:
        variants = {
            "oxjob backend='dask'": Scenarios(
                oxjob.Parallel, oxjob.delayed, lambda: oxjob.parallel_config(backend="dask")
            ),
            "joblib backend='dask'": Scenarios(
                joblib.Parallel,
                joblib.delayed,
                lambda: joblib.parallel_config(backend="dask", n_jobs=-1),
            ),
        }
        compare("Dask LocalCluster (2 workers x 1 thread)", variants, repeat, tables)
    finally:
        client.close()
        cluster.close()


def ray_rows(repeat, tables):
    import joblib
    import ray
    from ray.util.joblib import register_ray

    import oxjob

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    register_ray()
    try:
        variants = {
            "oxjob backend='ray'": Scenarios(
                oxjob.Parallel, oxjob.delayed, lambda: oxjob.parallel_config(backend="ray")
            ),
            "ray.util.joblib backend='ray'": Scenarios(
                joblib.Parallel,
                joblib.delayed,
                lambda: joblib.parallel_config(backend="ray", n_jobs=-1),
            ),
        }
        compare("local Ray (num_cpus=2)", variants, repeat, tables)
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()
    tables: list[str] = []
    if not args.skip_dask:
        dask_rows(args.repeat, tables)
    if not args.skip_ray:
        ray_rows(args.repeat, tables)
    print()
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
