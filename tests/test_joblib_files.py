"""oxjob.load reads what joblib.dump and pickle write; joblib.load reads format='joblib'."""

import bz2
import gzip
import importlib.util
import lzma
import os
import pickle
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest

import oxjob

joblib = pytest.importorskip("joblib")
pytestmark = pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")

JOBLIB_COMPRESS = [
    0,
    3,
    True,
    ("zlib", 3),
    ("gzip", 3),
    ("bz2", 3),
    ("xz", 3),
    ("lzma", 3),
    pytest.param(
        ("lz4", 3),
        marks=pytest.mark.skipif(importlib.util.find_spec("lz4") is None, reason="no lz4"),
    ),
]


def objects():
    rng = np.random.default_rng(1)
    structured = np.zeros(300, dtype=[("x", "<f8"), ("n", "<i4"), ("s", "S3")])
    structured["x"] = np.arange(300)
    return {
        "big": rng.standard_normal((500, 300)),
        "small": np.arange(7, dtype=np.int16),
        "zero_d": np.array(2.5),
        "empty": np.empty((0, 3)),
        "fortran": np.asfortranarray(rng.standard_normal((40, 30))),
        "non_contiguous": np.arange(1000.0)[::3],
        "big_endian": np.arange(1000, dtype=">i4"),
        "structured": structured,
        "object": np.array([1, "two", {"three": 3}, None], dtype=object),
        "matrix": np.matrix([[1, 2], [3, 4]]),
        "text": "C'est l'été !",
        "bytes": bytes(range(256)),
        "nested": [{"a": np.ones(3)}, (np.zeros(2), 5)],
    }


def assert_equal(loaded, original):
    if isinstance(original, dict):
        assert set(loaded) == set(original)
        for key in original:
            assert_equal(loaded[key], original[key])
    elif isinstance(original, (list, tuple)):
        assert type(loaded) is type(original) and len(loaded) == len(original)
        for a, b in zip(loaded, original):
            assert_equal(a, b)
    elif isinstance(original, np.ndarray):
        assert isinstance(loaded, type(original))
        assert loaded.shape == original.shape
        assert loaded.dtype.newbyteorder("=") == original.dtype.newbyteorder("=")
        if original.dtype.hasobject:
            assert loaded.tolist() == original.tolist()
        else:
            np.testing.assert_array_equal(loaded, original)
    else:
        assert loaded == original


@pytest.mark.parametrize("compress", JOBLIB_COMPRESS, ids=str)
def test_reads_joblib_dump_in_every_format(tmp_path, compress):
    target = str(tmp_path / "model.pkl")
    joblib.dump(objects(), target, compress=compress)
    assert_equal(oxjob.load(target), objects())


@pytest.mark.parametrize("extension", [".z", ".gz", ".bz2", ".xz", ".lzma"])
def test_reads_joblib_files_named_by_extension(tmp_path, extension):
    target = str(tmp_path / f"model{extension}")
    joblib.dump(objects(), target)
    renamed = str(tmp_path / "no-extension")
    os.rename(target, renamed)  # detected by content, not by name
    assert_equal(oxjob.load(renamed), objects())


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reads_joblib_files_of_each_pickle_protocol(tmp_path, protocol):
    target = str(tmp_path / "model.pkl")
    joblib.dump(objects(), target, protocol=protocol)
    assert_equal(oxjob.load(target), objects())


@pytest.mark.parametrize("mode", ["r", "c", "r+", "w+"])
def test_mmap_of_a_raw_joblib_file_maps_every_array(tmp_path, mode):
    target = str(tmp_path / "model.pkl")
    data = objects()
    joblib.dump(data, target)
    loaded = oxjob.load(target, mmap_mode=mode)
    for key, value in data.items():
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            assert isinstance(loaded[key], np.memmap), key
            assert loaded[key].filename == os.path.abspath(target)
            np.testing.assert_array_equal(loaded[key], value)
    assert loaded["big_endian"].dtype == np.dtype(">i4")  # mapped as stored
    assert loaded["big"].flags.writeable == (mode != "r")
    if mode != "r":
        loaded["big"][0, 0] = 1234.5
        loaded["big"].flush()
        del loaded
        assert (joblib.load(target)["big"][0, 0] == 1234.5) == (mode in ("r+", "w+"))


def test_mmap_of_compressed_joblib_file_warns_and_reads(tmp_path):
    target = str(tmp_path / "model.pkl")
    joblib.dump(objects(), target, compress=3)
    with pytest.warns(UserWarning, match="not compatible with compressed file"):
        loaded = oxjob.load(target, mmap_mode="r")
    assert not isinstance(loaded["big"], np.memmap)
    assert_equal(loaded, objects())


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_reads_plain_pickle_files(tmp_path, protocol):
    target = tmp_path / "plain.pickle"
    value = {"x": np.arange(10), "s": "text", "t": (1, 2.5, None)}
    target.write_bytes(pickle.dumps(value, protocol=protocol))
    assert_equal(oxjob.load(target), value)


def test_reads_joblib_test_data_files_of_old_joblib_versions():
    """The files joblib ships for its own compatibility tests (joblib 0.9 to 0.12)."""
    data = pytest.importorskip("joblib.test.data")
    directory = os.path.dirname(data.__file__)
    expected = [
        np.arange(5, dtype="<i8"),
        np.arange(5, dtype="<f8"),
        np.array([1, "abc", {"a": 1, "b": 2}], dtype="O"),
        np.arange(256, dtype=np.uint8).tobytes(),
        np.matrix([0, 1, 2], dtype="<i8"),
        "C'est l'\xe9t\xe9 !",
    ]
    extensions = (".pkl", ".gz", ".gzip", ".bz2", ".xz", ".lzma", ".lz4")
    names = [n for n in os.listdir(directory) if n.endswith(extensions) and "_py3" in n]
    if importlib.util.find_spec("lz4") is None:
        names = [n for n in names if not n.endswith(".lz4")]
    assert len(names) > 20  # joblib 0.9 (.npy beside, ZF), 0.10, 0.11, 0.12 files
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # joblib < 0.10 files
            warnings.simplefilter("ignore", UserWarning)  # unaligned arrays of joblib < 1.2
            for mmap_mode in (None, "r") if name.endswith(".pkl") else (None,):
                result = oxjob.load(os.path.join(directory, name), mmap_mode=mmap_mode)
                for got, want in zip(result, expected):
                    if isinstance(want, np.ndarray):
                        assert got.dtype.newbyteorder("=") == want.dtype, name
                        np.testing.assert_array_equal(got, want)
                    else:
                        assert got == want, name


def test_load_never_imports_joblib(tmp_path):
    target = str(tmp_path / "model.pkl")
    joblib.dump({"a": np.arange(10)}, target, compress=3)
    script = (
        "import sys; sys.modules['joblib'] = None\n"  # any import of joblib fails
        "import oxjob\n"
        f"print(oxjob.load({target!r})['a'].sum())\n"
    )
    env = dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "45"


def test_fitted_sklearn_estimators(tmp_path):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert sklearn.__version__
    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    for compress in (0, 3, ("xz", 1)):
        target = str(tmp_path / f"models-{compress}.joblib")
        joblib.dump({"forest": forest, "pipe": pipe}, target, compress=compress)
        loaded = oxjob.load(target)
        np.testing.assert_array_equal(loaded["forest"].predict_proba(X), forest.predict_proba(X))
        np.testing.assert_array_equal(loaded["pipe"].predict(X), pipe.predict(X))
    mapped = oxjob.load(str(tmp_path / "models-0.joblib"), mmap_mode="r")
    np.testing.assert_array_equal(mapped["forest"].predict(X), forest.predict(X))


@pytest.mark.parametrize(
    "extension, opener",
    [
        (".gz", gzip.open),
        (".bz2", bz2.open),
        (".xz", lzma.open),
        (".lzma", lambda p: lzma.open(p, format=lzma.FORMAT_ALONE)),
        (".z", None),
    ],
)
def test_standard_stream_names_write_that_stream(tmp_path, extension, opener):
    target = str(tmp_path / f"data{extension}")
    value = {"a": np.arange(100_000), "s": np.arange(3)}
    oxjob.dump(value, target)
    if opener is None:
        content = zlib.decompress((tmp_path / f"data{extension}").read_bytes())
    else:
        with opener(target) as f:
            content = f.read()
    assert content.startswith(b"\x93OXJOB\r\n")
    assert_equal(oxjob.load(target), value)
    # Decompressed by another tool, it is an oxjob file that maps.
    plain = tmp_path / "plain.oxjob"
    plain.write_bytes(content)
    mapped = oxjob.load(str(plain), mmap_mode="r")
    assert isinstance(mapped["a"], np.memmap) and isinstance(mapped["s"], np.memmap)


@pytest.mark.parametrize("compress", ["gzip", "zlib", "bz2", "xz", "lzma", ("gzip", 6)])
def test_compress_names_write_that_stream(tmp_path, compress):
    target = str(tmp_path / "data.bin")
    oxjob.dump(np.arange(1000), target, compress=compress)
    name = compress[0] if isinstance(compress, tuple) else compress
    prefixes = {"gzip": b"\x1f\x8b", "zlib": b"\x78", "bz2": b"BZh", "xz": b"\xfd7zXZ"}
    head = (tmp_path / "data.bin").read_bytes()[:6]
    assert head.startswith(prefixes.get(name, b"]\x00"))
    np.testing.assert_array_equal(oxjob.load(target), np.arange(1000))


def test_oxjob_names_keep_engine_codecs(tmp_path):
    target = str(tmp_path / "data.oxjob")
    oxjob.dump(np.zeros(100_000), target, compress="lz4")
    assert (tmp_path / "data.oxjob").read_bytes()[:8] == b"\x93OXJOB\r\n"


@pytest.mark.parametrize("compress", [0, 3, True, "gzip", ("bz2", 3), "xz", "lzma", ("zlib", 1)])
@pytest.mark.parametrize("protocol", [None, 2, 5])
def test_format_joblib_is_read_by_joblib(tmp_path, compress, protocol):
    target = str(tmp_path / "for-joblib.pkl")
    assert oxjob.dump(objects(), target, compress=compress, protocol=protocol, format="joblib")
    # joblib's own round trip is the reference (it returns a matrix as an ndarray).
    joblib.dump(objects(), str(tmp_path / "by-joblib.pkl"), compress=compress, protocol=protocol)
    assert_equal(joblib.load(target), joblib.load(str(tmp_path / "by-joblib.pkl")))
    assert_equal(oxjob.load(target), objects())


def test_format_joblib_raw_files_map_in_joblib(tmp_path):
    target = str(tmp_path / "for-joblib.pkl")
    oxjob.dump(objects(), target, format="joblib")
    mapped = joblib.load(target, mmap_mode="r")
    assert isinstance(mapped["big"], np.memmap) and isinstance(mapped["small"], np.memmap)
    assert mapped["big"].ctypes.data % 16 == 0  # joblib's alignment
    np.testing.assert_array_equal(mapped["fortran"], objects()["fortran"])


def test_format_joblib_fitted_estimator(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_regression
    from sklearn.ensemble import GradientBoostingRegressor

    X, y = make_regression(n_samples=100, n_features=4, random_state=0)
    model = GradientBoostingRegressor(n_estimators=10).fit(X, y)
    target = str(tmp_path / "model.joblib")
    oxjob.dump(model, target, compress=3, format="joblib")
    np.testing.assert_array_equal(joblib.load(target).predict(X), model.predict(X))


def test_format_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        oxjob.dump(1, str(tmp_path / "x"), format="hdf5")
    with pytest.raises(ValueError, match="joblib has no such codec"):
        oxjob.dump(1, str(tmp_path / "x"), compress="zstd", format="joblib")
