"""np.memmap arguments reach process workers as maps of the same file region (joblib's
behaviour): writes through r+/w+ maps are seen by the caller, nothing is copied."""

import os

import pytest

np = pytest.importorskip("numpy")

from _hook_helpers import describe, fill_view, write_mean, writeable  # noqa: E402

from oxjob import Parallel, delayed, dump, load  # noqa: E402


def test_workers_write_into_a_w_plus_memmap(tmp_path):
    # joblib's examples/parallel_memmap.py: the workers fill an output memmap.
    data = np.random.default_rng(0).random(20_000)
    slices = [slice(start, start + 2_000) for start in range(0, data.size - 2_000, 1_000)]
    output = np.memmap(str(tmp_path / "out"), dtype=data.dtype, shape=len(slices), mode="w+")
    Parallel(n_jobs=2)(delayed(write_mean)(data, sl, output, i) for i, sl in enumerate(slices))
    expected = [data[sl].mean() for sl in slices]
    np.testing.assert_allclose(output, expected)


def test_loaded_r_plus_memmap_and_its_views_are_written_through(tmp_path):
    path = str(tmp_path / "grid.oxjob")
    dump(np.zeros((6, 8)), path)
    grid = load(path, mmap_mode="r+")
    views = [grid[0], grid[1:3, ::2], grid[3:, ::-1].T, np.asarray(grid)[5, 7:]]
    pids = Parallel(n_jobs=2)(delayed(fill_view)(v, i + 1) for i, v in enumerate(views))
    assert os.getpid() not in pids
    assert (grid[0] == 1).all() and (grid[1:3, ::2] == 2).all()
    assert (grid[3:, :7] == 3).all() and grid[5, 7] == 4
    assert (grid[1:3, 1::2] == 0).all()  # what no view covers stays as it was
    grid._mmap.flush()
    assert (load(path)[1:3, ::2] == 2).all()  # and it is in the file


def test_memmaps_arrive_as_maps_of_the_file_not_copies(tmp_path):
    path = str(tmp_path / "data")
    data = np.memmap(path, dtype=np.float32, shape=(1000, 10), mode="w+")
    reader = np.memmap(path, dtype=np.float32, shape=(500, 10), mode="r", offset=4 * 10 * 500)
    received = Parallel(n_jobs=2)(delayed(describe)(a) for a in [data, data[10:20], reader])
    assert received == [
        ("memmap", os.path.abspath(path), "r+"),  # w+ is mapped again as r+, not truncated
        ("memmap", os.path.abspath(path), "r+"),
        ("memmap", os.path.abspath(path), "r"),
    ]
    modes = Parallel(n_jobs=2)(delayed(writeable)(a) for a in [reader, data, data[::2]])
    assert modes == [False, True, True]


def test_copy_on_write_memmap_is_not_written_through(tmp_path):
    path = str(tmp_path / "cow")
    np.memmap(path, dtype=np.int64, shape=8, mode="w+").flush()
    cow = np.memmap(path, dtype=np.int64, shape=8, mode="c")
    Parallel(n_jobs=2)(delayed(fill_view)(cow[i : i + 1], 7) for i in range(4))
    assert (cow == 0).all()
    assert (np.memmap(path, dtype=np.int64, shape=8, mode="r") == 0).all()
