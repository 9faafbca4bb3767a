"""Long fuzz runs of the safe loader with atheris (coverage-guided), beside the bounded
pytest run. ``pip install atheris``, then
``python tests/fuzz_safe_load.py -max_total_time=1800``."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import atheris

with atheris.instrument_imports():
    import oxjob  # noqa: F401
    from oxjob._io import safe_builtins, safe_numpy, safe_rules, safe_unpickle  # noqa: F401

from _safe_fuzz import check, cleanup, mutate, pickled_seeds, stream

SEEDS = pickled_seeds()


def one_input(data):
    provider = atheris.FuzzedDataProvider(data)

    def choose(n):
        return provider.ConsumeIntInRange(0, n - 1) if n > 1 else 0

    if choose(3) == 0:
        payload = mutate(SEEDS[choose(len(SEEDS))], choose)
    else:
        payload = stream(choose)
    problem = check(payload, choose)
    if problem:
        cleanup()
        raise AssertionError(f"{problem} for {payload!r}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
