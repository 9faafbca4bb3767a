"""RSS of the caller and of the workers over 10k ``submit(bound_method, i)`` calls.

A bound method is a new object at every lookup; each one's pickle carries its object
(here a 2 MB model). Flat RSS means the engine keeps one copy per pending call, not one
per call ever made. The stdlib's executor (spawn) runs beside it as the reference.

    python benchmarks/bench_pool_memory.py [--calls 10000] [--model-mb 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os


class Model:
    def __init__(self, nbytes: int) -> None:
        self.weights = bytes(nbytes)

    def predict(self, x: int) -> int:
        return x + len(self.weights)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def _worker_pids(executor) -> list[int]:
    pids = [p for p in _children(os.getpid()) if p != getattr(executor, "_tracker", None)]
    return pids


def run(make, calls: int, model_mb: float) -> list[tuple[int, float, float]]:
    model = Model(int(model_mb * (1 << 20)))
    rows = []
    with make() as executor:
        window = []
        for i in range(1, calls + 1):
            window.append(executor.submit(model.predict, i))
            if len(window) == 8:  # a few in flight at a time, as a serving loop would
                for future in window:
                    future.result()
                window = []
            if i in (1000, 2500, 5000, 7500, calls):
                for future in window:
                    future.result()
                window = []
                workers = [_rss_mb(p) for p in _worker_pids(executor)]
                rows.append((i, _rss_mb(os.getpid()), max(workers) if workers else 0.0))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--model-mb", type=float, default=2.0)
    args = parser.parse_args()
    import oxjob

    spawn = multiprocessing.get_context("spawn")
    makers = {
        "oxjob.ProcessPoolExecutor": lambda: oxjob.ProcessPoolExecutor(2),
        "concurrent.futures (spawn)": lambda: concurrent.futures.ProcessPoolExecutor(
            2, mp_context=spawn
        ),
    }
    for name, make in makers.items():
        print(f"{name}: {args.calls} submit(model.predict, i), model {args.model_mb} MB")
        print("  calls   caller RSS MB   largest worker RSS MB")
        for calls, caller, worker in run(make, args.calls, args.model_mb):
            print(f"  {calls:>5}   {caller:>13.1f}   {worker:>21.1f}")


if __name__ == "__main__":
    main()
