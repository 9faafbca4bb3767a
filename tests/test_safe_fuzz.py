"""A bounded run of the grammar-based fuzzer of the safe loader (long runs: fuzz_safe_load.py)."""

import random

import pytest
from _safe_fuzz import check, cleanup, mutate, pickled_seeds, stream


@pytest.mark.parametrize("seed", range(4))
def test_generated_streams_run_nothing_crash_nothing(seed):
    pytest.importorskip("numpy")
    rng = random.Random(seed)
    choose = rng.randrange
    cleanup()
    problems = []
    for _ in range(400):
        data = stream(choose)
        problem = check(data, choose)
        if problem:
            problems.append((data, problem))
    seeds = pickled_seeds()
    for _ in range(200):
        data = mutate(seeds[choose(len(seeds))], choose)
        problem = check(data, choose)
        if problem:
            problems.append((data, problem))
    cleanup()
    assert not problems, problems[:3]
