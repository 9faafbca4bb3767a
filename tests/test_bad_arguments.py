"""Bad arguments get a clear error naming the parameter and the value, or run as
joblib runs them (issue 21)."""

import math
import subprocess
import sys

import pytest

import oxjob
from oxjob import Parallel, delayed, shared


def test_memory_mmap_mode_is_checked(tmp_path):
    with pytest.raises(ValueError, match=r"mmap_mode must be one of .* got 'x'"):
        oxjob.Memory(tmp_path, mmap_mode="x")
    memory = oxjob.Memory(tmp_path, verbose=0)
    with pytest.raises(ValueError, match="mmap_mode"):
        memory.cache(abs, mmap_mode="rw")


@pytest.mark.parametrize("timeout", [math.inf, 1e10])
@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_huge_timeouts_run_as_joblib_runs_them(timeout, backend):
    assert Parallel(n_jobs=2, timeout=timeout, backend=backend)(
        delayed(abs)(-i) for i in range(4)
    ) == [0, 1, 2, 3]


def test_max_nbytes_error_names_max_nbytes():
    with pytest.raises(ValueError, match="Invalid max_nbytes '1Z'"):
        Parallel(n_jobs=2, max_nbytes="1Z")
    with pytest.raises(ValueError, match="max_nbytes must be"):
        Parallel(n_jobs=2, max_nbytes=-1)
    assert Parallel(n_jobs=2, max_nbytes="2K").max_nbytes == 2048


def test_huge_n_jobs_with_threads_names_n_jobs():
    with pytest.raises(ValueError, match=r"n_jobs=1000000000 is too large"):
        Parallel(n_jobs=10**9, backend="threading")(delayed(abs)(-i) for i in range(3))


def test_huge_n_jobs_with_threads_and_all_dispatched_starts_the_threads_it_needs():
    # it built a list of a billion threads (and hung); joblib fails to start them
    code = (
        "import threading, oxjob\n"
        "out = oxjob.Parallel(n_jobs=10**9, backend='threading', pre_dispatch='all')"
        "(oxjob.delayed(abs)(-i) for i in range(3))\n"
        "print(out, threading.active_count() <= 8)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().split() == ["[0,", "1,", "2]", "True"]


def test_shared_zeros_names_the_shape():
    with pytest.raises(ValueError, match=r"negative dimensions .* shape=\(-1,\)"):
        shared.zeros(-1)
    with pytest.raises(ValueError, match=r"too big: shape=\(1000000000000, 1000000000000\)"):
        shared.zeros((10**12, 10**12))


@pytest.mark.parametrize(
    "make", [shared.empty, shared.zeros, lambda s, order: shared.full(s, 1.0, order=order)]
)
@pytest.mark.parametrize("order", ["A", "K", "X", "c", "f", None])
def test_shared_arrays_take_the_orders_numpy_takes(make, order):
    np = pytest.importorskip("numpy")
    try:
        numpys = np.empty((3, 4), order=order)
    except ValueError as refused:
        with pytest.raises(ValueError) as ours:
            make((3, 4), order=order)
        assert str(ours.value) == str(refused)
    else:
        assert make((3, 4), order=order).strides == numpys.strides


@pytest.mark.parametrize("order", ["K", "A", "C", "F", "k", None, "X"])
@pytest.mark.parametrize("layout", ["C", "F", "transposed", "strided"])
def test_shared_like_arrays_keep_the_layout_numpy_keeps(order, layout):
    np = pytest.importorskip("numpy")
    base = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    prototype = {
        "C": base,
        "F": np.asfortranarray(base),
        "transposed": base.transpose(1, 2, 0),
        "strided": base[:, ::2, ::-1],
    }[layout]
    kwargs = {"order": order}
    if order == "X":
        with pytest.raises(ValueError, match="order must be one of"):
            shared.empty_like(prototype, **kwargs)
        return
    for ours, numpys in [
        (shared.empty_like(prototype, **kwargs), np.empty_like(prototype, **kwargs)),
        (shared.zeros_like(prototype, **kwargs), np.zeros_like(prototype, **kwargs)),
    ]:
        assert shared.is_shared(ours)
        assert (ours.shape, ours.dtype, ours.strides) == (
            numpys.shape,
            numpys.dtype,
            numpys.strides,
        )
    assert not shared.zeros_like(prototype, **kwargs).any()
    reshaped = shared.empty_like(prototype, shape=(6, 4), **kwargs)
    assert reshaped.strides == np.empty_like(prototype, shape=(6, 4), **kwargs).strides
    assert shared.empty_like(prototype).strides == np.empty_like(prototype).strides
    assert shared.zeros_like(prototype.tolist()).shape == prototype.shape  # any array-like


def _write_row(out, i):
    out[i] = i


def test_a_shared_like_array_laid_out_as_its_prototype_is_written_in_place():
    np = pytest.importorskip("numpy")
    prototype = np.zeros((4, 3, 5)).transpose(2, 0, 1)
    out = shared.zeros_like(prototype)
    assert not out.flags.c_contiguous and not out.flags.f_contiguous
    Parallel(n_jobs=2)(delayed(_write_row)(out, i) for i in range(5))
    assert [float(out[i].mean()) for i in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
