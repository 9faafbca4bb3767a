"""Files written before oxjob's private modules moved still load.

Pickle streams name functions and classes by module path: a container's arrays name
their rebuilder (``oxjob._oxjob_format.rebuild_array`` in files of that time), and
``Memory``'s records their class. ``tests/data/before_move/`` holds files written by
the code of that time (``_old_files.write``); they must load through the public API,
plain and safe, and a cache written then must still answer.
"""

import os
import pickle
import shutil

import numpy as np
import pytest
from _old_files import square, values

import oxjob
from oxjob.memory import MemorizedResult, NotMemorizedResult

DATA = os.path.join(os.path.dirname(__file__), "data", "before_move")


def _check_arrays(loaded):
    for name, expected in values().items():
        assert isinstance(loaded[name], np.ndarray)
        np.testing.assert_array_equal(loaded[name], expected)
        assert loaded[name].dtype == expected.dtype


def _check_records(loaded):
    result, code = loaded["result"], loaded["code"]
    assert type(result) is NotMemorizedResult and result.get() == [1, 2]
    assert type(code).__name__ == "CodeInfo" and type(code).__module__.startswith("oxjob.")
    assert "return x * x" in code.source


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_a_container_written_before_the_move_loads(mmap_mode):
    loaded = oxjob.load(os.path.join(DATA, "container.oxjob"), mmap_mode=mmap_mode)
    _check_arrays(loaded)
    _check_records(loaded)
    old = oxjob.load(os.path.join(DATA, "container_protocol4.oxjob"), mmap_mode=mmap_mode)
    _check_arrays(old)


def test_a_container_written_before_the_move_loads_safely():
    # The array rebuilders are default rules, whatever path the file names them by.
    _check_arrays(oxjob.load(os.path.join(DATA, "container_protocol4.oxjob"), trusted=[]))
    code_info = type(oxjob.load(os.path.join(DATA, "container.oxjob"))["code"])
    # The classes as they are today, and by the paths the file (and older advice) names.
    for trusted in (
        [NotMemorizedResult, code_info],
        ["oxjob._memory_results.NotMemorizedResult", "oxjob._func_inspect.CodeInfo"],
    ):
        loaded = oxjob.load(os.path.join(DATA, "container.oxjob"), trusted=trusted)
        _check_arrays(loaded)
        _check_records(loaded)
    with pytest.raises(oxjob.persistence.UnsafeLoadError, match="NotMemorizedResult"):
        oxjob.load(os.path.join(DATA, "container.oxjob"), trusted=[])


@pytest.mark.parametrize("trusted", [None, [NotMemorizedResult]])
def test_a_joblib_format_file_written_before_the_move_loads(trusted):
    loaded = oxjob.load(os.path.join(DATA, "joblib_format.pkl"), trusted=trusted)
    _check_arrays(loaded)
    assert type(loaded["result"]) is NotMemorizedResult and loaded["result"].get() == [1, 2]


def _cache(tmp_path):
    location = tmp_path / "cache"
    shutil.copytree(os.path.join(DATA, "cache"), location)
    return oxjob.Memory(location, verbose=0)


def _call_id(memory):
    [item] = memory.store_backend.get_items()
    return ("_old_files/square", os.path.basename(item.path))


def test_a_cache_entry_written_before_the_move_loads(tmp_path):
    memory = _cache(tmp_path)
    call_id = _call_id(memory)
    expected = values()["big"] ** 2
    np.testing.assert_array_equal(memory.store_backend.load_item(call_id), expected)
    np.testing.assert_array_equal(MemorizedResult(memory.store_backend, call_id).get(), expected)


def test_a_cached_call_is_answered_by_an_output_written_before_the_move(tmp_path):
    # The key of a call holds a digest of the function's bytecode, which changes with
    # Python's version: the old output is put under the key this Python computes.
    memory = oxjob.Memory(tmp_path / "cache", verbose=0)
    cached = memory.cache(square)
    x = values()["big"]
    cached(x)
    [entry] = memory.store_backend.get_items()
    [old] = _cache(tmp_path / "old").store_backend.get_items()
    shutil.copyfile(
        os.path.join(old.path, "output.oxjob"), os.path.join(entry.path, "output.oxjob")
    )
    call_id = ("_old_files/square", os.path.basename(entry.path))
    written = memory.store_backend.get_metadata(call_id)["time"]
    np.testing.assert_array_equal(cached(x), x**2)
    # Read, not computed again: a new result would have been stored with its own time.
    assert memory.store_backend.get_metadata(call_id)["time"] == written


def test_a_file_naming_the_rebuilder_where_oxjob_0_1_put_it_loads(tmp_path):
    # oxjob 0.1's files call ``oxjob.persistence._rebuild_array(buffer, dtype, shape, order)``.
    expected = np.arange(6.0).reshape(2, 3)
    arguments = pickle.dumps((bytearray(expected.tobytes()), expected.dtype, (2, 3), "C"), 2)
    stream = b"\x80\x02coxjob.persistence\n_rebuild_array\n" + arguments[2:-1] + b"R."
    path = tmp_path / "old.pkl"
    path.write_bytes(stream)
    for trusted in (None, []):
        np.testing.assert_array_equal(oxjob.load(path, trusted=trusted), expected)
