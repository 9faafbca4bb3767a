"""Structural equality for what safe loads rebuild (models, generators, arrays)."""

import numpy as np


def same(a, b, depth=0):
    """Whether ``a`` and ``b`` hold the same data, type for type (not identity)."""
    if depth > 50 or type(a) is not type(b):
        return False
    if isinstance(a, np.ma.MaskedArray):
        return (
            same(a.data, b.data)
            and same(np.ma.getmaskarray(a), np.ma.getmaskarray(b))
            and a.fill_value == b.fill_value
        )
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape or a.strides != b.strides:
            return False
        if a.dtype.hasobject:
            return all(same(x, y, depth + 1) for x, y in zip(a.ravel(), b.ravel()))
        return a.tobytes() == b.tobytes()
    if isinstance(a, np.random.RandomState):
        return same(a.get_state(legacy=False), b.get_state(legacy=False), depth + 1)
    if isinstance(a, np.random.Generator):
        return same(a.bit_generator.state, b.bit_generator.state, depth + 1)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, depth + 1) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], depth + 1) for k in a)
    if hasattr(a, "toarray") and hasattr(a, "format"):  # scipy sparse
        return same(vars(a), vars(b), depth + 1)
    if type(a).__name__ == "Tree":
        return same(a.__getstate__(), b.__getstate__(), depth + 1)
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return same(vars(a), vars(b), depth + 1)
    return a == b
