"""Reviewed default rules for what fitted models hold: random generators, sparse matrices, trees.

Each type here is rebuilt by its own library code (``__setstate__``, the
``numpy.random._pickle`` constructors), but only after its state has been checked
against what that code assumes without checking: an MT19937 position inside its
624-word key, a Philox buffer position inside its buffer, sparse indices inside the
matrix, tree node children and features inside the tree. scikit-learn's ``Tree``
applies only when ``sklearn`` (or the class itself) is in ``trusted``.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import CorruptFileError
from .safe import refuse
from .safe_numpy import check_dtype, check_shape
from .safe_rules import LoadState, Rule

_BITGENS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


def _np() -> Any:
    import numpy

    return numpy


def _corrupt(state: LoadState, what: str) -> CorruptFileError:
    return CorruptFileError(f"{state.u.what}: invalid {what} in the pickle stream")


def _uint_array(state: LoadState, value: Any, length: int, what: str) -> None:
    np = _np()
    if not isinstance(value, np.ndarray) or value.shape != (length,) or value.dtype.kind != "u":
        raise _corrupt(state, what)


def _small_int(state: LoadState, value: Any, low: int, high: int, what: str) -> None:
    if type(value) is not int or not low <= value <= high:
        raise _corrupt(state, what)


def check_bitgen_state(state: LoadState, st: Any, name: str) -> None:
    """The state dict of bit generator ``name``, as its ``state`` setter expects it."""
    if type(st) is not dict or st.get("bit_generator") != name or type(st.get("state")) is not dict:
        raise _corrupt(state, f"{name} state")
    inner = st["state"]
    if name == "MT19937":
        _uint_array(state, inner.get("key"), 624, "MT19937 key")
        _small_int(state, inner.get("pos"), 0, 624, "MT19937 position")
        return
    _small_int(state, st.get("has_uint32"), 0, 1, f"{name} state")
    _small_int(state, st.get("uinteger"), 0, (1 << 32) - 1, f"{name} state")
    if name in ("PCG64", "PCG64DXSM"):
        for key in ("state", "inc"):
            _small_int(state, inner.get(key), 0, (1 << 128) - 1, f"{name} state")
    elif name == "Philox":
        _uint_array(state, inner.get("counter"), 4, "Philox counter")
        _uint_array(state, inner.get("key"), 2, "Philox key")
        _uint_array(state, st.get("buffer"), 4, "Philox buffer")
        _small_int(state, st.get("buffer_pos"), 0, 4, "Philox buffer position")
    elif name == "SFC64":
        _uint_array(state, inner.get("state"), 4, "SFC64 state")


def _made_bitgen(state: LoadState, value: Any) -> bool:
    np = _np()
    return isinstance(value, np.random.BitGenerator) and state.made.get(id(value)) is value


def _bitgen_arg(state: LoadState, value: Any) -> Any:
    np = _np()
    if type(value) is str and value in _BITGENS:
        return value
    if any(value is getattr(np.random, n) for n in _BITGENS) or _made_bitgen(state, value):
        return value
    raise refuse(f"{state.u.what}: refusing a random generator built from {value!r}")


def _bitgen_ctor(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) != 1:
        raise _corrupt(state, "bit generator arguments")
    value = func(_bitgen_arg(state, args[0]))
    state.made[id(value)] = value
    return state.add_fresh(value, _bitgen_build)


def _bitgen_build(state: LoadState, value: Any, st: Any) -> Any:
    seed = None
    if type(st) is tuple and len(st) == 2:
        st, seed = st
        np = _np()
        if seed is not None and not (
            isinstance(seed, np.random.SeedSequence) and state.made.get(id(seed)) is seed
        ):
            raise _corrupt(state, "bit generator seed sequence")
    check_bitgen_state(state, st, type(value).__name__)
    type(value).__setstate__(value, st if seed is None else (st, seed))
    return value


def _generator_ctor(kind: str) -> Any:
    def handler(state: LoadState, func: Any, args: tuple) -> Any:
        from numpy.random import _pickle

        if not 0 <= len(args) <= 2 or (
            len(args) == 2 and args[1] is not _pickle.__dict__.get("__bit_generator_ctor")
        ):
            raise _corrupt(state, f"{kind} arguments")
        value = func(*(_bitgen_arg(state, a) for a in args[:1]))
        state.made[id(value)] = value
        return state.add_fresh(value, _randomstate_build if kind == "RandomState" else _gen_build)

    return handler


def _randomstate_build(state: LoadState, value: Any, st: Any) -> Any:
    if type(st) is dict:
        check_bitgen_state(state, {k: st.get(k) for k in ("bit_generator", "state")}, "MT19937")
        _small_int(state, st.get("has_gauss"), 0, 1, "RandomState gauss flag")
        if type(st.get("gauss")) is not float:
            raise _corrupt(state, "RandomState gauss")
    elif type(st) is tuple and len(st) == 5 and st[0] == "MT19937":
        _uint_array(state, st[1], 624, "MT19937 key")
        _small_int(state, st[2], 0, 624, "MT19937 position")
        _small_int(state, st[3], 0, 1, "RandomState gauss flag")
        if type(st[4]) is not float:
            raise _corrupt(state, "RandomState gauss")
    else:
        raise _corrupt(state, "RandomState state")
    type(value).__setstate__(value, st)
    return value


def _gen_build(state: LoadState, value: Any, st: Any) -> Any:
    check_bitgen_state(state, st, type(value.bit_generator).__name__)
    type(value).__setstate__(value, st)
    return value


def _seed_state(state: LoadState, st: Any) -> None:
    if type(st) is not tuple or len(st) != 5:
        raise _corrupt(state, "SeedSequence state")
    entropy, spawned, pool, pool_size, spawn_key = st
    np = _np()
    if not (entropy is None or (type(entropy) is int and 0 <= entropy < 1 << 4096)):
        if not (isinstance(entropy, np.ndarray) and entropy.dtype.kind in "ui"):
            raise _corrupt(state, "SeedSequence entropy")
    _small_int(state, spawned, 0, 1 << 62, "SeedSequence children")
    _small_int(state, pool_size, 4, 1 << 16, "SeedSequence pool size")
    _uint_array(state, pool, pool_size, "SeedSequence pool")
    if pool.dtype != np.uint32:
        raise _corrupt(state, "SeedSequence pool")
    if type(spawn_key) is not tuple or any(type(k) is not int or k < 0 for k in spawn_key):
        raise _corrupt(state, "SeedSequence spawn key")


def _seed_unpickle(state: LoadState, func: Any, args: tuple) -> Any:
    np = _np()
    if len(args) != 3 or args[0] is not np.random.SeedSequence or type(args[1]) is not int:
        raise _corrupt(state, "SeedSequence arguments")
    if args[2] is not None:
        _seed_state(state, args[2])
    value = func(*args)
    state.made[id(value)] = value
    return state.add_fresh(value, _seed_build) if args[2] is None else value


def _seed_build(state: LoadState, value: Any, st: Any) -> Any:
    _seed_state(state, st)
    type(value).__setstate__(value, st)
    return value


# -- scipy sparse ------------------------------------------------------------------------------
_SPARSE_KEYS = {
    "_shape", "maxprint", "data", "indices", "indptr", "coords", "row", "col",
    "has_canonical_format", "_has_canonical_format", "_has_sorted_indices",
}  # fmt: skip


def _sparse_new(state: LoadState, cls: Any, args: tuple, kwargs: dict) -> Any:
    if args or kwargs or cls.__new__ is not object.__new__:
        raise _corrupt(state, "sparse matrix arguments")
    return state.add_fresh(object.__new__(cls), _sparse_build)


def _sparse_build(state: LoadState, value: Any, st: Any) -> Any:
    np = _np()
    if type(st) is not dict or not set(st) <= _SPARSE_KEYS:
        raise _corrupt(state, "sparse matrix state")
    shape = st.get("_shape")
    if type(shape) is not tuple or not 1 <= len(shape) <= 2:
        raise _corrupt(state, "sparse matrix shape")
    check_shape(state, tuple(min(d, 1) if type(d) is int else d for d in shape))
    for key in ("data", "indices", "indptr", "row", "col"):
        if key in st and not isinstance(st[key], np.ndarray):
            raise _corrupt(state, f"sparse matrix {key}")
    if "data" in st:
        check_dtype(state, st["data"].dtype, objects=False)
    coords = st.get("coords", ())
    if type(coords) is not tuple or not all(isinstance(c, np.ndarray) for c in coords):
        raise _corrupt(state, "sparse matrix coordinates")
    setstate = getattr(type(value), "__setstate__", None)  # scipy's coo_matrix has one
    if setstate is not None:
        setstate(value, st)
    else:
        object.__getattribute__(value, "__dict__").update(st)
    # scipy's own consistency check: every index inside the matrix.
    if hasattr(value, "check_format"):
        value.check_format(full_check=True)
    else:
        value._check()
        for axis, coord in enumerate(value.coords):
            if coord.size and (coord.min() < 0 or coord.max() >= value.shape[axis]):
                raise _corrupt(state, "sparse matrix coordinates")
    return value


def _sparse_rules() -> dict[str, Rule]:
    rules = {}
    for module in ("_csr", "_csc", "_coo", "csr", "csc", "coo"):
        for kind in ("matrix", "array"):
            name = f"scipy.sparse.{module}.{module.strip('_')}_{kind}"
            rules[name] = Rule(new=_sparse_new)
    return rules


# -- scikit-learn's trees ---------------------------------------------------------------------
def _tree_call(state: LoadState, func: Any, args: tuple) -> Any:
    np = _np()
    if len(args) != 3 or type(args[0]) is not int or type(args[2]) is not int:
        raise _corrupt(state, "Tree arguments")
    n_features, n_classes, n_outputs = args
    if not isinstance(n_classes, np.ndarray) or n_classes.shape != (n_outputs,):
        raise _corrupt(state, "Tree classes")
    if not 0 < n_features < 1 << 31 or not 0 < n_outputs < 1 << 16:
        raise _corrupt(state, "Tree sizes")
    if n_classes.dtype.kind not in "iu" or n_classes.min() < 1 or n_classes.max() >= 1 << 31:
        raise _corrupt(state, "Tree classes")
    return state.add_fresh(func(*args), _tree_build)


def _tree_build(state: LoadState, tree: Any, st: Any) -> Any:
    np = _np()
    from sklearn.tree import _tree

    if type(st) is not dict or type(st.get("node_count")) is not int:
        raise _corrupt(state, "Tree state")
    count, nodes, values = st["node_count"], st.get("nodes"), st.get("values")
    if not isinstance(nodes, np.ndarray) or nodes.dtype != _tree.NODE_DTYPE:
        raise _corrupt(state, "Tree nodes")
    if nodes.shape != (count,) or type(st.get("max_depth")) is not int:
        raise _corrupt(state, "Tree nodes")
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = left == -1
    inside = (left > 0) & (left < count) & (right > 0) & (right < count)
    if count and not np.all(np.where(leaf, right == -1, inside)):
        raise _corrupt(state, "Tree children")
    if count and not np.all(leaf | ((feature >= 0) & (feature < tree.n_features))):
        raise _corrupt(state, "Tree features")
    want = (count, tree.n_outputs, tree.max_n_classes)
    if not isinstance(values, np.ndarray) or values.shape != want or values.dtype != np.float64:
        raise _corrupt(state, "Tree values")
    type(tree).__setstate__(tree, st)
    return tree


def _rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    try:
        import numpy  # noqa: F401
    except ImportError:
        return rules
    ctor = "numpy.random._pickle."
    rules[ctor + "__bit_generator_ctor"] = Rule(call=_bitgen_ctor)
    rules[ctor + "__randomstate_ctor"] = Rule(call=_generator_ctor("RandomState"))
    rules[ctor + "__generator_ctor"] = Rule(call=_generator_ctor("Generator"))
    rules["numpy.random.bit_generator.__pyx_unpickle_SeedSequence"] = Rule(call=_seed_unpickle)
    rules["numpy.random.bit_generator.SeedSequence"] = Rule()
    for module, name in [
        ("_mt19937", "MT19937"), ("_pcg64", "PCG64"), ("_pcg64", "PCG64DXSM"),
        ("_philox", "Philox"), ("_sfc64", "SFC64"),
    ]:  # fmt: skip
        rules[f"numpy.random.{module}.{name}"] = Rule()
    rules.update(_sparse_rules())
    tree = "sklearn.tree._tree.Tree"
    rules[tree] = Rule(call=_tree_call, needs=tree)
    return rules


RULES = _rules()
