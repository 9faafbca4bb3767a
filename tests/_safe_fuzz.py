"""A grammar-based generator of hostile pickle streams for the safe loader.

``stream(choose)`` builds one opcode stream from the choices ``choose(n)`` makes
(``random.Random.randrange`` for the bounded run in pytest, atheris'
``FuzzedDataProvider`` for long runs: ``tests/fuzz_safe_load.py``). It mixes
allowed and refused globals, REDUCE/NEWOBJ/BUILD on any stack item, memo tricks
(PUT/GET of objects before their BUILD), nested joblib records, out-of-band
buffers, huge sizes, and valid fragments (dtypes, arrays) with mutated fields.
``check(data)`` loads one stream and says what went wrong, if anything.
"""

import io
import os
import pickle
import struct
import tempfile
from fractions import Fraction

CANARY = os.path.join(tempfile.gettempdir(), f"oxjob-fuzz-canary-{os.getpid()}")

GLOBALS = [
    "builtins dict", "builtins list", "builtins set", "builtins frozenset", "builtins tuple",
    "builtins bytearray", "builtins bytes", "builtins int", "builtins str", "builtins range",
    "builtins slice", "builtins object", "builtins getattr", "builtins eval", "builtins type",
    "copyreg _reconstructor", "copyreg __newobj__", "_codecs encode", "posix system",
    "os system", "fractions Fraction", "decimal Decimal", "collections OrderedDict",
    "collections defaultdict", "collections deque", "collections Counter",
    "datetime datetime", "datetime timezone", "numpy dtype", "numpy ndarray", "numpy memmap",
    "numpy matrix", "numpy float64", "numpy._core.multiarray _reconstruct",
    "numpy.core.multiarray scalar", "numpy._core.numeric _frombuffer",
    "numpy.ma.core _mareconstruct", "numpy.ma.core MaskedArray",
    "numpy.random._pickle __randomstate_ctor", "numpy.random._pickle __bit_generator_ctor",
    "numpy.random._pickle __generator_ctor", "numpy.random._mt19937 MT19937",
    "numpy.random._pcg64 PCG64", "numpy.random.bit_generator __pyx_unpickle_SeedSequence",
    "numpy.random.bit_generator SeedSequence", "scipy.sparse._csr csr_matrix",
    "scipy.sparse._coo coo_matrix", "sklearn.tree._tree Tree",
    "sklearn.linear_model._logistic LogisticRegression", "joblib.numpy_pickle NumpyArrayWrapper",
    "joblib.numpy_pickle NDArrayWrapper", "oxjob._io.container rebuild_array",
    "oxjob._io.container rebuild_small", "oxjob._io.container rebuild_indexed",
    "oxjob._io.container arena", "__main__ x", "numpy.f2py.__main__ main", "json decoder",
    "numpy.lib._npyio_impl NpzFile",
]  # fmt: skip

STRINGS = [
    "read", "policy", "__add__", "shape", "dtype", "order", "subclass", "allow_mmap",
    "numpy_array_alignment_bytes", "C", "F", "f8", "V8", "O8", "U4", "<", ">", "|", "a", "b",
    "latin1", "MT19937", "PCG64", "state", "key", "pos", "bit_generator", "w+", "1e100000000",
    "1/3", "__dict__", "__class__", "nodes", "values", "node_count", "max_depth", "_shape",
    "data", "indices", "indptr", f"touch {CANARY}", "/tmp/oxjob-fuzz-memmap",
]  # fmt: skip

TRUSTED = [[], ["sklearn"], ["numpy"], ["sklearn", "numpy", "scipy"], ["fractions.Fraction"]]


def _text(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(choose):
    kind = choose(7)
    if kind == 0:
        return b"K" + bytes([choose(256)])
    if kind == 1:
        return b"J" + struct.pack("<i", [0, -1, 1 << 30, -(1 << 31), 8, 624][choose(6)])
    if kind == 2:
        return b"M" + struct.pack("<H", choose(1 << 16))
    if kind == 3:
        n = [1, 8, 17, 200][choose(4)]
        return b"\x8a" + bytes([n]) + bytes(choose(256) for _ in range(n))
    if kind == 4:
        return b"I" + str([0, 1, 10**20, -5, 2**63][choose(5)]).encode() + b"\n"
    if kind == 5:
        return b"I0" + b"9" * [1, 5000][choose(2)] + b"\n"
    return b"\x88" if choose(2) else b"\x89"


def _sized(choose):
    """Bytes and strings, some claiming sizes far past the stream."""
    kind = choose(6)
    n = [0, 1, 8, 24, 1 << 31, (1 << 63) - 1][choose(6)]
    if kind == 0:
        return b"C" + bytes([min(n, 255)]) + b"\x00" * min(n, 255)
    if kind == 1:
        return b"\x8e" + struct.pack("<Q", n) + b"\x01" * min(n, 64)
    if kind == 2:
        return b"\x96" + struct.pack("<Q", n) + b"\x02" * min(n, 64)
    if kind == 3:
        return b"B" + struct.pack("<I", min(n, (1 << 32) - 1)) + b"\x03" * min(n, 64)
    if kind == 4:
        return b"\x8d" + struct.pack("<Q", n) + b"a" * min(n, 64)
    return _text(STRINGS[choose(len(STRINGS))])


def _global(choose):
    module, name = GLOBALS[choose(len(GLOBALS))].split(" ")
    if choose(2):
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return _text(module) + _text(name) + b"\x93"


def _dtype_fragment(choose):
    """numpy.dtype(typestr) REDUCE then a BUILD state with mutated fields."""
    typestr = ["f8", "V8", "O8", "U4", "M8", "V16", "i4"][choose(7)]
    field = b"cnumpy\ndtype\n" + _text(["O8", "f8", "i1"][choose(3)]) + b"\x89\x88\x87R"
    field += b"(K\x03" + _text("|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    fields = b"}" + _text("a") + field + _int(choose) + b"\x86s" if choose(2) else b"N"
    names = b"(" + _text("a") + b"t" if choose(2) else b"N"
    endian = _text(["<", ">", "|", "="][choose(4)])
    state = b"(K\x03" + endian + b"N" + names + fields + _int(choose) + _int(choose) + _int(choose)
    return b"cnumpy\ndtype\n" + _text(typestr) + b"\x89\x88\x87R\x94" + state + b"tb"


def _array_fragment(choose):
    head = b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R\x94"
    shape = [b")", b"K\x01\x85", b"K\x03K\x04\x86", b"J\xff\xff\xff\x7f\x85"][choose(4)]
    data = _sized(choose) if choose(2) else b"]" + _int(choose) + b"a"
    return head + b"(K\x01" + shape + _dtype_fragment(choose) + b"\x89" + data + b"tb"


def _record_fragment(choose):
    head = b"cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}"
    keys = b""
    for _ in range(choose(4)):
        keys += _text(STRINGS[choose(len(STRINGS))]) + _item(choose, 1)
    keys += _text("shape") + b"K\x02\x85" + _text("order") + _text("C")
    keys += _text("dtype") + _dtype_fragment(choose)
    return head + b"(" + keys + b"ub" + b"\x00" * choose(40)


def _item(choose, depth):
    """Opcodes that push one item (often), with room for nesting."""
    kind = choose(12 if depth < 4 else 6)
    if kind == 0:
        return _int(choose)
    if kind == 1:
        return _sized(choose)
    if kind == 2:
        return _global(choose)
    if kind == 3:
        return [b"N", b")", b"]", b"}", b"\x8f", b"G" + b"\x7f\xf0" + b"\x00" * 6][choose(6)]
    if kind == 4:
        return b"h" + bytes([choose(8)])
    if kind == 5:
        return b"\x97" if choose(2) else b"\x98"
    if kind == 6:
        return b"(" + b"".join(_item(choose, depth + 1) for _ in range(choose(4))) + b"t"
    if kind == 7:
        return _dtype_fragment(choose)
    if kind == 8:
        return _array_fragment(choose)
    if kind == 9:
        return _record_fragment(choose)
    if kind == 10:
        return _item(choose, depth + 1) + _item(choose, depth + 1) + b"\x86"
    return b"(" + _item(choose, depth + 1) + _item(choose, depth + 1) + b"l"


OPS = [
    b"R", b"\x81", b"b", b"a", b"e", b"s", b"u", b"\x90", b"\x91", b"0", b"1", b"2", b"\x85",
    b"\x86", b"\x87", b"\x94", b"q\x03", b"h\x00", b"h\x01", b"(", b"t", b"l", b"d", b"\x92",
    b"P0\n", b"\x82\x01", b"\x95" + struct.pack("<Q", 1 << 40), b"c__builtin__\nset\n",
]  # fmt: skip


def stream(choose):
    """One hostile pickle stream."""
    parts = [b"\x80" + bytes([choose(6)])] if choose(4) else []
    for _ in range(1 + choose(12)):
        parts.append(_item(choose, 0) if choose(3) else OPS[choose(len(OPS))])
    parts.append(b".")
    return b"".join(parts)


def check(data, choose, buffers=None):
    """Load ``data`` safely; return a problem (str) or None. Never raises."""
    import oxjob
    from oxjob.exceptions import CorruptFileError, UnsafeLoadError

    trusted = TRUSTED[choose(len(TRUSTED))]
    problem = None
    try:
        oxjob.load(io.BytesIO(data), trusted=trusted, max_bytes=1 << 26)
    except (UnsafeLoadError, CorruptFileError):
        pass
    except Exception as exc:  # noqa: BLE001
        problem = f"{type(exc).__name__}: {exc}"
    if os.path.exists(CANARY):
        problem = "code ran: the canary file exists"
    if Fraction(1, 2) + Fraction(1, 3) != Fraction(5, 6) or Fraction.__dict__.get("x"):
        problem = "a class changed"
    return problem


def cleanup():
    for path in (CANARY, "/tmp/oxjob-fuzz-memmap"):
        if os.path.exists(path):
            os.unlink(path)


def pickled_seeds():
    """Valid streams to mutate (real objects through Python's pickler)."""
    import numpy as np

    values = [
        np.arange(6.0).reshape(2, 3), np.dtype([("a", "<f8"), ("b", "i1")]),
        np.random.RandomState(0), np.random.default_rng(0), {"k": [1, (2, 3)]},
        np.ma.masked_array([1, 2], mask=[0, 1]), Fraction(1, 3),
    ]  # fmt: skip
    return [pickle.dumps(v, protocol=p) for v in values for p in (2, 5)]


def mutate(seed, choose):
    """``seed`` with a few bytes changed, cut or repeated."""
    data = bytearray(seed)
    for _ in range(1 + choose(4)):
        at = choose(len(data))
        kind = choose(3)
        if kind == 0:
            data[at] = choose(256)
        elif kind == 1:
            del data[at : at + choose(8)]
        else:
            data[at:at] = data[at : at + choose(16)]
    return bytes(data)
