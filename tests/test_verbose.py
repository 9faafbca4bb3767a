"""Parallel's verbose lines: the shape and the counts of joblib's ``print_progress``."""

import re

import pytest

from oxjob import Parallel, delayed

LINE = re.compile(r"^\[Parallel\(n_jobs=(\d+)\)\]: (.*)$")


def lines(text):
    out = []
    for line in text.strip().splitlines():
        match = LINE.match(line)
        assert match, line
        out.append(match.group(2))
    return out


def test_sequential_call_prints_no_backend_line_but_the_final_one(capsys):
    Parallel(n_jobs=1, verbose=5)(delayed(abs)(i) for i in range(2))
    got = lines(capsys.readouterr().err)
    assert len(got) == 1
    assert re.fullmatch(r"Done   2 out of   2 \| elapsed: +\d+\.\ds finished", got[0])


def test_sequential_counts_are_joblibs(capsys):
    # joblib 1.5, n_jobs=1, verbose=10, 30 tasks: 1, 4, 7, 12, 17, 24, then 30 finished.
    Parallel(n_jobs=1, verbose=10)([delayed(abs)(i) for i in range(30)])
    got = lines(capsys.readouterr().err)
    counts = [line.split("|")[0] for line in got]
    assert counts == [f"Done {n:2d} out of 30 " for n in (1, 4, 7, 12, 17, 24, 30)]
    assert got[-1].endswith("finished") and not got[0].endswith("finished")


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_parallel_call_lines(capsys, backend):
    Parallel(n_jobs=2, verbose=10, backend=backend)([delayed(abs)(i) for i in range(10)])
    got = lines(capsys.readouterr().err)
    name = "ProcessBackend" if backend == "loky" else "ThreadingBackend"
    assert got[0] == f"Using backend {name} with 2 concurrent workers."
    assert re.fullmatch(r"Done 10 out of 10 \| elapsed: +\d+\.\ds finished", got[-1])
    for line in got[1:-1]:  # right-aligned counts, then elapsed (and remaining)
        assert re.fullmatch(
            r"Done +\d+ out of 10 \| elapsed: +\d+\.\ds( remaining: +\d+\.\ds)?", line
        ), line
    assert sum(line.endswith("finished") for line in got) == 1


def test_generator_input_keeps_a_width_of_three(capsys):
    Parallel(n_jobs=2, verbose=10)(delayed(abs)(i) for i in range(10))
    got = lines(capsys.readouterr().err)
    assert got[-1].startswith("Done  10 out of  10 | elapsed:")
    for line in got[1:-1]:
        assert re.fullmatch(r"Done +\d+ tasks +\| elapsed: +\d+\.\ds", line) or re.fullmatch(
            r"Done +\d+ out of  10 \| elapsed: .*", line
        ), line


def test_verbose_from_50_goes_to_stdout(capsys):
    Parallel(n_jobs=2, verbose=60, backend="threading")([delayed(abs)(i) for i in range(3)])
    captured = capsys.readouterr()
    assert captured.err == ""
    assert lines(captured.out)[-1].startswith("Done 3 out of 3 | elapsed:")


def test_verbose_zero_prints_nothing(capsys):
    Parallel(n_jobs=2)(delayed(abs)(i) for i in range(3))
    assert capsys.readouterr() == ("", "")
