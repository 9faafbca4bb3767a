"""Crafted files that attack ``load(trusted=...)`` and ``inspect``: each is refused, runs
nothing, changes nothing outside the load, and costs what its size allows."""

import gzip
import os
import pickle
import sys
import warnings
from fractions import Fraction

import numpy as np
import pytest

import oxjob
from oxjob.cli import main
from oxjob.exceptions import CorruptFileError, UnsafeLoadError


def text(s):
    """A BINUNICODE opcode holding ``s``."""
    b = s.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def refused_everywhere(tmp_path, data, trusted=(), match=None, kind=UnsafeLoadError):
    """``data`` is refused by ``load`` plain and gzipped, and ``inspect`` runs nothing."""
    plain, gz = tmp_path / "attack.pkl", tmp_path / "attack.pkl.gz"
    plain.write_bytes(data)
    gz.write_bytes(gzip.compress(data))
    errors = []
    for path in (plain, gz):
        with pytest.raises(kind, match=match) as info:
            oxjob.load(path, trusted=list(trusted))
        errors.append(info.value)
        assert main(["inspect", str(path)]) in (0, 1)  # an error message, never a traceback
    return errors


def test_joblib_record_cannot_be_given_a_reader(tmp_path):
    # joblib's array record, a BUILD that sets its ``read`` to an always-allowed oxjob
    # function returning its argument (the unpickler), a BUILD that sets the
    # unpickler's policy to None, then os.system: it ran on the old loader.
    marker = tmp_path / "pwned"
    chain = (
        b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}"
        + text("read")
        + b"coxjob._oxjob_format\narena\nsb}"
        + text("policy")
        + b"Nsb0cposix\nsystem\n"
        + text(f"touch {marker}")
        + b"\x85R."
    )
    refused_everywhere(tmp_path, chain, match="refusing joblib array record keys")
    assert not marker.exists()


def _dtype_state(fields, itemsize):
    return (3, "|", None, tuple(fields), fields, itemsize, 1, 0)


class _Reduce:
    """Pickles as ``func(*args)`` then ``BUILD(state)``: any stream we want."""

    def __init__(self, func, args, state=None):
        self.reduced = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.reduced


def _array_with(dtype_state, data):
    from numpy._core.multiarray import _reconstruct

    dtype = _Reduce(np.dtype, ("V8", False, True), dtype_state)
    return _Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), dtype, False, data))


def test_dtype_with_object_field_and_no_flags_is_refused(tmp_path):
    # Flags 0 on an object field turned 8 bytes of the file into an object pointer.
    state = _dtype_state({"a": (np.dtype("O"), 0)}, 8)
    data = pickle.dumps(_array_with(state, b"\x41" * 8), protocol=2)
    refused_everywhere(tmp_path, data, match="object fields")


def test_dtype_field_outside_its_item_is_refused(tmp_path):
    state = _dtype_state({"a": (np.dtype("<f8"), 1 << 20)}, 8)
    data = pickle.dumps(_array_with(state, b"\x00" * 8), protocol=2)
    refused_everywhere(tmp_path, data, match="outside its 8-byte item")


def test_build_never_sets_attributes_of_a_class(tmp_path):
    data = b"\x80\x04cfractions\nFraction\nN}\x8c\x07__add__cbuiltins\nslice\ns\x86b0\x8c\x02ok."
    refused_everywhere(tmp_path, data, match="refusing BUILD on the class fractions.Fraction")
    assert Fraction(1, 2) + Fraction(1, 3) == Fraction(5, 6)
    for name in ("collections\nCounter", "copyreg\n_reconstructor", "numpy\nmatrix"):
        data = b"\x80\x04c" + name.encode() + b"\n}\x8c\x03xyzK\x01sb."
        refused_everywhere(tmp_path, data, match="refusing BUILD on ")


def test_sizes_and_costs_the_file_does_not_pay_for_are_refused(tmp_path):
    cases = [
        (b"\x80\x04cbuiltins\nbytearray\nJ\x00\x00\x00@\x85R.", "bytearray"),
        (b"\x80\x04cfractions\nFraction\n" + text("1e100000000") + b"\x85R.", "exponent"),
        (b"\x80\x02cbuiltins\nbytes\nJ\x00\x00\x00@\x85R.", "bytes"),
        (b"I" + b"9" * 100_000 + b"\n.", "longer than 4300"),
        (b"\x80\x04cdecimal\nDecimal\n" + text("1" * 10_000) + b"\x85R.", "4300"),
    ]
    for data, match in cases:
        errors = refused_everywhere(tmp_path, data, match=match)
        assert all(type(e).__name__ == "LoadLimitError" for e in errors), errors


def test_memo_reuse_cannot_make_hashing_quadratic(tmp_path):
    # Each level is a tuple of two references to the level below: hashing the top
    # costs 2**60 while the file is a few hundred bytes.
    data = b"\x80\x04K\x01\x94"
    for level in range(60):
        data += b"h" + bytes([level]) + b"h" + bytes([level]) + b"\x86\x94"
    data += b"\x8f(h" + bytes([60]) + b"\x90."
    refused_everywhere(tmp_path, data, match="work")
    deep = b"\x80\x04)" + b"\x85" * 100_000 + b"."
    refused_everywhere(tmp_path, deep, match="nested deeper")


def test_max_bytes_bounds_what_a_file_may_ask_for(tmp_path):
    path = str(tmp_path / "big.pkl")
    with open(path, "wb") as f:
        pickle.dump(np.arange(300_000.0), f, protocol=4)
    with pytest.raises(UnsafeLoadError, match=r"max_bytes=1000000") as info:
        oxjob.load(path, trusted=[], max_bytes=1_000_000)
    assert type(info.value).__name__ == "LoadLimitError"
    np.testing.assert_array_equal(oxjob.load(path, trusted=[], max_bytes=10**7), np.arange(3e5))
    # A decompression bomb: far more than its stored size times gzip's worst ratio.
    bomb = tmp_path / "bomb.pkl.gz"
    bomb.write_bytes(gzip.compress(b"\x80\x04\x8e" + (1 << 31).to_bytes(8, "little")))
    with pytest.raises(UnsafeLoadError, match="max_bytes"):
        oxjob.load(bomb, trusted=[])
    with pytest.raises(ValueError, match="max_bytes bounds safe loads only"):
        oxjob.load(path, max_bytes=10)


def test_trusted_numpy_prefix_cannot_open_or_map_paths(tmp_path):
    target = tmp_path / "created"
    for op in (b"R", b"\x81"):  # called, or rebuilt with arguments
        data = b"\x80\x04cnumpy\nmemmap\n" + text(str(target)) + text("w+") + b"\x86" + op + b"."
        refused_everywhere(tmp_path, data, trusted=["numpy"], match="numpy.*memmap")
        assert not target.exists()


def test_main_and_test_modules_are_never_imported(tmp_path):
    sys.modules.pop("numpy.f2py.__main__", None)
    for module in ("numpy.f2py.__main__", "numpy.testing", "numpy.tests.test_x"):
        data = b"\x80\x04c" + module.encode() + b"\nmain\n)R."
        refused_everywhere(tmp_path, data, trusted=["numpy"], match="never imports")
    assert "numpy.f2py.__main__" not in sys.modules


def test_prefix_cannot_reach_process_state(tmp_path):
    # A module's dict (shared by the whole process) is not a class: never resolved.
    data = b"\x80\x04cjson.decoder\nBACKSLASH\n" + text("k") + text("v") + b"s."
    refused_everywhere(tmp_path, data, trusted=["json"], match="classes and functions only")
    for code in (b"P0\n.", b"\x80\x02\x82\x01.", b"\x80\x02\x83\x01\x00."):
        refused_everywhere(tmp_path, code, match="opcode is refused")


def test_model_with_a_numpy_payload_reading_a_path_is_refused(tmp_path):
    pytest.importorskip("sklearn")
    joblib = pytest.importorskip("joblib")
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.npz"

    class Shell:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    np.savez(evil, x=np.array([Shell()], dtype=object))
    from numpy.lib._npyio_impl import NpzFile

    X, y = make_classification(n_samples=50, random_state=0)
    model = LogisticRegression().fit(X, y)
    model.payload = _Reduce(dict, (_Reduce(NpzFile, (str(evil), False, True)),))
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    with pytest.raises(UnsafeLoadError, match="NpzFile"):
        oxjob.load(path, trusted=["sklearn", "numpy"])
    main(["inspect", str(path)])
    assert not marker.exists()


def _models():
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=80, random_state=0)
    forest = RandomForestClassifier(n_estimators=3, random_state=np.random.RandomState(0))
    models = {
        "logistic": LogisticRegression().fit(X, y),
        "forest": forest.fit(X, y),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
    }
    return X, models


@pytest.mark.parametrize("writer", ["oxjob", "joblib", "pickle"])
def test_fitted_models_load_with_trusted_sklearn_equal_to_the_originals(tmp_path, writer):
    pytest.importorskip("sklearn")
    joblib = pytest.importorskip("joblib")
    from _safe_helpers import same

    X, models = _models()
    values = {**models, "rng": np.random.default_rng(7), "state": np.random.RandomState(3)}
    for name, value in values.items():
        path = str(tmp_path / f"{name}.{writer}")
        if writer == "pickle":
            with open(path, "wb") as f:
                pickle.dump(value, f, protocol=2)
        else:
            {"oxjob": oxjob.dump, "joblib": joblib.dump}[writer](value, path)
        loaded = oxjob.load(path, trusted=["sklearn"])
        assert same(loaded, oxjob.load(path)), name
        if name in models:
            np.testing.assert_array_equal(loaded.predict_proba(X), value.predict_proba(X))
        else:
            assert same(loaded, value)


def test_refusal_advice_works_when_followed(tmp_path):
    pytest.importorskip("sklearn")
    import re

    _, models = _models()
    path = str(tmp_path / "forest.oxjob")
    oxjob.dump(models["forest"], path)
    trusted = []
    for _ in range(10):
        try:
            oxjob.load(path, trusted=trusted)
            break
        except UnsafeLoadError as exc:
            trusted.append(re.search(r"trusted=\[\.\.\., '([^']+)'\]", str(exc)).group(1))
    else:
        pytest.fail(f"the advice never led to a load: {trusted}")
    # Names with a private '__' part are listable (numpy's generator constructors).
    data = pickle.dumps(np.random.RandomState(0), protocol=2)
    (tmp_path / "rs.pkl").write_bytes(data)
    listed = ["numpy.random._pickle.__randomstate_ctor"]
    assert same_state(oxjob.load(tmp_path / "rs.pkl", trusted=listed), np.random.RandomState(0))


def same_state(a, b):
    return a.randint(0, 1 << 30, 5).tolist() == b.randint(0, 1 << 30, 5).tolist()


def test_random_generator_state_out_of_range_is_refused(tmp_path):
    state = np.random.RandomState(0)
    reduced = list(state.__reduce__())
    reduced[2] = dict(reduced[2], state={"key": reduced[2]["state"]["key"], "pos": 10**6})
    data = pickle.dumps(_Reduce(*reduced), protocol=2)
    refused_everywhere(tmp_path, data, match="MT19937 position", kind=CorruptFileError)


def test_old_joblib_files_load_safely_and_inspect_reads_beside_the_file(
    tmp_path, capsys, monkeypatch
):
    data = pytest.importorskip("joblib.test.data")
    directory = os.path.dirname(data.__file__)
    names = [n for n in os.listdir(directory) if n.endswith((".pkl", ".gz")) and "_py3" in n]
    assert any("0.9" in n for n in names)
    from _safe_helpers import same

    monkeypatch.chdir(tmp_path)  # not the files' directory
    for name in names:
        path = os.path.join(directory, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joblib < 0.10 files are deprecated
            plain = oxjob.load(path)
            if "0.9" in name and name.endswith(".pkl"):  # its object array is a pickle
                with pytest.raises(UnsafeLoadError, match="object array in a .npy file"):
                    oxjob.load(path, trusted=[])
                continue
            safe = oxjob.load(path, trusted=[])
        assert all(same(a, b) for a, b in zip(safe, plain)), name
    for name in names:
        assert main(["inspect", os.path.join(directory, name)]) == 0
    assert "joblib < 0.10 file" in capsys.readouterr().out


def test_container_naming_joblibs_record_is_a_corrupt_file(tmp_path):
    # Issue 21: the internal JoblibStream escaped with no message.
    path = str(tmp_path / "x.oxjob")
    oxjob.dump({"a": 1}, path)
    from oxjob import _engine

    stream = b"\x80\x04cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81."
    _engine.write_file(path, [stream], "raw", 0)
    for trusted in (None, []):
        with pytest.raises(CorruptFileError, match="NumpyArrayWrapper"):
            oxjob.load(path, trusted=trusted)


def test_undecodable_compressed_streams_are_corrupt_files():
    # Found by the fuzzer: a stream that starts like zlib raised zlib.error.
    import io

    for data in (b"x\x02cnumpy\nfoo", b"\x1f\x8b\x08\x00\x00\x00", b"BZh91AY&SY\x00"):
        for trusted in (None, []):
            with pytest.raises(CorruptFileError, match="does not decode"):
                oxjob.load(io.BytesIO(data), trusted=trusted)
