import os
import pickle
import subprocess
import sys
from collections import OrderedDict
from decimal import Decimal

import numpy as np
import pytest

import oxjob


class Point:
    def __init__(self, x, y, tags):
        self.x, self.y, self.tags = x, y, tags


def module_function(a):
    return a


class Node:
    def __init__(self, name, parent=None):
        self.name, self.parent, self.children = name, parent, []


class CachedMethodOwner:
    def __init__(self, location):
        self.f = oxjob.Memory(location, verbose=0).cache(self.f)

    def f(self, x):
        return x


def test_pinned_values():
    # These values are part of the cache format: a change invalidates users' caches.
    assert oxjob.hash({"a": 1, "b": [1.5, "two", None]}) == "7dc254c7a667d7a7f5f01fce8a4975d6"
    assert oxjob.hash(np.arange(12, dtype=np.int64).reshape(3, 4)) == (
        "7127db7c6500707e95769691c9bb6cf9"
    )


def test_pinned_values_md5_and_sha1_lengths():
    assert len(oxjob.hash([1, 2], hash_name="md5")) == 32
    assert len(oxjob.hash([1, 2], hash_name="sha1")) == 40
    assert oxjob.hash([1, 2], hash_name="md5") != oxjob.hash([1, 2])


def _import_path():
    # The child must import the oxjob under test, not whichever one is installed.
    return {"PYTHONPATH": os.path.dirname(os.path.dirname(oxjob.__file__))}


def test_stable_across_processes():
    code = (
        "import oxjob, numpy as np; "
        "print(oxjob.hash({'k': {3, 'x', 1.5}, 'b': np.ones((4, 5))[:, ::2], 's': 'abc'}))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": "", **_import_path()},
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(outputs) == 1
    expected = oxjob.hash({"k": {3, "x", 1.5}, "b": np.ones((4, 5))[:, ::2], "s": "abc"})
    assert outputs == {expected + "\n"}


def test_dict_and_set_order_do_not_matter():
    assert oxjob.hash({"a": 1, "b": 2}) == oxjob.hash({"b": 2, "a": 1})
    assert oxjob.hash({3, 1, 2}) == oxjob.hash({1, 2, 3})
    assert oxjob.hash({1: "x", "y": 2}) == oxjob.hash({"y": 2, 1: "x"})  # unorderable keys
    assert oxjob.hash(Point(1, 2, {"b": 1, "a": 2})) == oxjob.hash(Point(1, 2, {"a": 2, "b": 1}))
    assert oxjob.hash({1, 2}) != oxjob.hash(frozenset({1, 2}))
    assert oxjob.hash({1, 2}) != oxjob.hash((1, 2))


def test_shared_references_do_not_matter():
    shared = "a long string" * 3
    assert oxjob.hash([shared, shared]) == oxjob.hash([shared, "a long string" * 3])


def test_sensitivity():
    values = [
        1,
        1.0,
        "1",
        b"1",
        [1],
        (1,),
        {"a": 1},
        {"a": 2},
        OrderedDict(a=1),
        np.arange(10),
        np.arange(10.0),
        np.arange(10).reshape(2, 5),
        np.arange(11)[:10],
        Point(1, 2, []),
        Point(1, 3, []),
        module_function,
        None,
    ]
    hashes = [oxjob.hash(v) for v in values]
    assert len(set(hashes)) == len(hashes) - 1  # np.arange(11)[:10] equals np.arange(10)


def test_array_details():
    a = np.arange(100.0).reshape(10, 10)
    assert oxjob.hash(a) == oxjob.hash(a.copy())
    changed = a.copy()
    changed[9, 9] += 1e-9
    assert oxjob.hash(a) != oxjob.hash(changed)
    assert oxjob.hash(a) != oxjob.hash(a.astype(np.float32))
    assert oxjob.hash(a) != oxjob.hash(a.reshape(20, 5))
    # Non-contiguous views hash apart from their copies (joblib's rule); C and F differ.
    view = a[::2, 1::3]
    assert oxjob.hash(view) != oxjob.hash(np.ascontiguousarray(view))
    assert oxjob.hash(view) == oxjob.hash(a.copy()[::2, 1::3])
    assert oxjob.hash(a) != oxjob.hash(np.asfortranarray(a))
    assert oxjob.hash(a.T) == oxjob.hash(np.asfortranarray(a.T))


@pytest.mark.parametrize(
    "array",
    [
        np.array(5),
        np.empty((0, 3)),
        np.arange("2020-01", "2021-01", dtype="datetime64[M]"),
        np.zeros(3, dtype=[("a", "<i4"), ("b", "S2")]),
        np.array([{"b": 1, "a": 2}, None], dtype=object),
        np.arange(10**6).reshape(1000, 1000)[::7, ::13],
        np.arange(24).reshape(2, 3, 4)[:, ::2, 1:],
    ],
    ids=["0d", "empty", "datetime", "structured", "object", "strided2d", "strided3d"],
)
def test_many_dtypes_are_stable(array):
    same = _same_layout_copy(array)
    assert same.strides == array.strides and same.ctypes.data != array.ctypes.data
    assert oxjob.hash(array) == oxjob.hash(same)
    assert oxjob.hash(array, hash_name="md5") == oxjob.hash(same, hash_name="md5")


def _same_layout_copy(array):
    """An equal array in new memory with the same strides (views keep being views)."""
    if array.flags.c_contiguous or array.flags.f_contiguous or array.base is None:
        return array.copy(order="K")
    base = array.base.copy(order="K")
    offset = array.ctypes.data - array.base.ctypes.data
    return np.lib.stride_tricks.as_strided(
        base.reshape(-1)[offset // base.itemsize :], array.shape, array.strides
    )


def test_memmap_coercion(tmp_path):
    a = np.arange(1000)
    path = str(tmp_path / "a.oxjob")
    oxjob.dump(a, path)
    mapped = oxjob.load(path, mmap_mode="r")
    assert oxjob.hash(mapped, coerce_mmap=True) == oxjob.hash(a)
    assert oxjob.hash(mapped) != oxjob.hash(a)


def test_functions_and_lambdas():
    assert oxjob.hash(module_function) == oxjob.hash(module_function)
    assert oxjob.hash(module_function) != oxjob.hash(Point)


def _make_local(k):
    def scaled(x):
        return x * k

    class Local:
        pass

    return scaled, Local


@pytest.mark.parametrize("which", ["function", "lambda", "class", "instance"])
def test_what_pickle_cannot_name_is_a_pickling_error(which):
    # As joblib: a local function hashed by its code alone would give two closures over
    # different values the same hash, so a cached call could return the other's result.
    scaled, local_class = _make_local(2)
    obj = {
        "function": scaled,
        "lambda": lambda x: x + 1,
        "class": local_class,
        "instance": local_class(),
    }[which]
    with pytest.raises(pickle.PicklingError, match="PicklingError while hashing"):
        oxjob.hash({"arg": obj})


def test_object_that_refers_to_itself():
    class_level = Node("root")
    class_level.children.append(Node("leaf", parent=class_level))
    again = Node("root")
    again.children.append(Node("leaf", parent=again))
    assert oxjob.hash(class_level) == oxjob.hash(again)
    again.children[0].name = "other"
    assert oxjob.hash(class_level) != oxjob.hash(again)
    ring = Node("ring")
    ring.parent = ring  # a self-reference straight through the instance state
    assert oxjob.hash(ring) == oxjob.hash(ring)


def test_memorized_method_stored_on_its_instance(tmp_path):
    # obj.f = memory.cache(obj.f): the instance refers to itself through the bound method.
    first, second = CachedMethodOwner(tmp_path), CachedMethodOwner(tmp_path)
    assert oxjob.hash(first) == oxjob.hash(second)
    assert first.f(3) == 3


def test_sets_with_values_that_do_not_order():
    nan = Decimal("NaN")
    assert oxjob.hash({Decimal(0), nan}) == oxjob.hash({nan, Decimal(0)})
    assert oxjob.hash({Decimal(0), nan}) != oxjob.hash({Decimal(1), nan})
    fnan = float("nan")
    assert oxjob.hash([{fnan, 1.0, 0.5}]) == oxjob.hash([{0.5, 1.0, fnan}])
    small, big = frozenset({1}), frozenset({2})  # subset order is partial
    assert oxjob.hash({small, big, frozenset()}) == oxjob.hash({frozenset(), big, small})
    assert oxjob.hash({Decimal(0): 1, nan: 2}) == oxjob.hash({nan: 2, Decimal(0): 1})


def test_non_contiguous_view_differs_from_its_copies():
    # joblib's rule: the strides of a non-contiguous array are part of its hash.
    view = np.asarray(np.arange(6000).reshape((1000, 2, 3)), order="F")[:, :1, :]
    assert not (view.flags.c_contiguous or view.flags.f_contiguous)
    assert oxjob.hash(view) != oxjob.hash(np.ascontiguousarray(view))
    assert oxjob.hash(view) != oxjob.hash(np.asfortranarray(view))
    again = np.asarray(np.arange(6000).reshape((1000, 2, 3)), order="F")[:, :1, :]
    assert oxjob.hash(view) == oxjob.hash(again)
    shifted = np.asarray(np.arange(6000).reshape((1000, 2, 3)) + 1, order="F")[:, :1, :]
    assert oxjob.hash(view) != oxjob.hash(shifted)  # same strides, other values


def test_cycles():
    a = [1]
    a.append(a)
    b = [1]
    b.append(b)
    assert oxjob.hash(a) == oxjob.hash(b)


def test_bad_hash_name():
    with pytest.raises(ValueError, match="Valid options for 'hash_name'"):
        oxjob.hash(1, hash_name="sha256")
