import bz2
import io
import os
import pathlib
import warnings

import numpy as np
import pytest

import oxjob
from oxjob.compressors import CompressorWrapper
from oxjob.exceptions import CorruptFileError

CODECS = [0, 3, "zstd", "lz4", "zlib", "gzip", ("zstd", 9), ("zlib", 1), "bz2", "xz", "lzma"]


def arrays():
    rng = np.random.default_rng(0)
    big = rng.standard_normal((300, 400))
    structured = np.zeros(5000, dtype=[("x", "<f8"), ("n", "<i4"), ("s", "S3")])
    structured["x"] = np.arange(5000)
    return {
        "bool": rng.integers(0, 2, 10_000).astype(bool),
        "int8": np.arange(-100, 100, dtype=np.int8),
        "uint16": np.arange(60_000, dtype=np.uint16),
        "int64": np.arange(100_000, dtype=np.int64),
        "float32": rng.standard_normal(50_000).astype(np.float32),
        "float64": big,
        "complex": (big + 1j * big)[:50],
        "datetime": np.arange("2020-01-01", "2030-01-01", dtype="datetime64[D]"),
        "timedelta": np.arange(5000).astype("timedelta64[ms]"),
        "structured": structured,
        "object": np.array([1, "two", {"three": 3}, None], dtype=object),
        "zero_d": np.array(3.5),
        "empty": np.empty((0, 7)),
        "non_contiguous": big[::3, ::2],
        "fortran": np.asfortranarray(big),
        "big_endian": np.arange(10_000, dtype=">i4"),
        "unicode": np.array(["α", "beta", "γάμμα"] * 2000),
    }


def assert_same(loaded, original):
    assert type(loaded) in (np.ndarray, np.memmap)
    assert loaded.shape == original.shape
    assert loaded.dtype.newbyteorder("=") == original.dtype.newbyteorder("=")
    if original.dtype.hasobject:
        assert loaded.tolist() == original.tolist()
    else:
        np.testing.assert_array_equal(loaded, original)


@pytest.mark.parametrize("compress", CODECS, ids=str)
def test_round_trip_arrays_through_filename(path, compress):
    data = arrays()
    assert oxjob.dump(data, path, compress=compress) == [path]
    loaded = oxjob.load(path)
    assert set(loaded) == set(data)
    for key, value in data.items():
        assert_same(loaded[key], value)


@pytest.mark.parametrize("compress", CODECS, ids=str)
def test_round_trip_through_file_objects(compress):
    data = {"nested": [1, (2.5, "three"), {"four": b"4", 5: None}], "a": arrays()["float64"]}
    buffer = io.BytesIO()
    assert oxjob.dump(data, buffer, compress=compress) is None
    buffer.seek(0)
    loaded = oxjob.load(buffer)
    assert loaded["nested"] == data["nested"]
    np.testing.assert_array_equal(loaded["a"], data["a"])


def test_two_objects_in_one_file_object():
    buffer = io.BytesIO()
    oxjob.dump("first", buffer)
    oxjob.dump(np.arange(10_000), buffer, compress="lz4")
    buffer.seek(0)
    assert oxjob.load(buffer) == "first"
    np.testing.assert_array_equal(oxjob.load(buffer), np.arange(10_000))


def test_plain_python_objects_and_bytes(path):
    value = {
        "text": "héllo",
        "numbers": list(range(1000)),
        "bytes": b"x" * 1_000_000,
        "bytearray": bytearray(b"y" * 1_000_000),
        "set": {1, 2, 3},
        "none": None,
    }
    oxjob.dump(value, path)
    assert oxjob.load(path) == value


def test_pathlib_paths(tmp_path):
    target = tmp_path / "p.oxjob"
    oxjob.dump([1, 2], target)
    assert oxjob.load(target) == [1, 2]


def test_loaded_arrays_are_writable_and_own_their_memory(path):
    oxjob.dump(np.arange(1_000_000), path)
    loaded = oxjob.load(path)
    assert loaded.flags.writeable
    loaded[0] = 42
    assert loaded[0] == 42


def test_big_endian_is_made_native_unless_asked(path):
    oxjob.dump(np.arange(10_000, dtype=">i4"), path)
    assert oxjob.load(path).dtype == np.dtype("=i4")
    assert oxjob.load(path, ensure_native_byte_order=False).dtype == np.dtype(">i4")
    with pytest.raises(ValueError, match="Native byte ordering"):
        oxjob.load(path, mmap_mode="r", ensure_native_byte_order=True)


def test_extension_selects_codec(tmp_path):
    data = np.zeros(1_000_000)
    sizes = {}
    for ext in ["oxjob", "zst", "lz4", "z", "gz", "bz2", "xz"]:
        target = str(tmp_path / f"a.{ext}")
        oxjob.dump(data, target)
        sizes[ext] = os.path.getsize(target)
        np.testing.assert_array_equal(oxjob.load(target), data)
    assert all(sizes[ext] < sizes["oxjob"] / 10 for ext in sizes if ext != "oxjob")
    # An explicit (method, level) tuple wins over the extension.
    target = str(tmp_path / "b.gz")
    oxjob.dump(data, target, compress=("zstd", 3))
    with open(target, "rb") as f:
        assert f.read(8) == b"\x93OXJOB\r\n"


def test_bad_compress_arguments(path):
    with pytest.raises(ValueError, match="Non valid compression method"):
        oxjob.dump(1, path, compress="snappy")
    with pytest.raises(ValueError, match="zstd"):
        oxjob.dump(1, path, compress="snappy")
    with pytest.raises(ValueError, match="Non valid compress level"):
        oxjob.dump(1, path, compress=12)
    with pytest.raises(ValueError, match="exactly 2 elements"):
        oxjob.dump(1, path, compress=("zlib", 3, 4))
    with pytest.raises(ValueError, match="Second argument should be a filename"):
        oxjob.dump(1, 42)
    assert not os.path.exists(path)


def test_register_compressor(tmp_path):
    wrapper = CompressorWrapper(bz2.BZ2File, prefix=b"BZh", extension=".mybz")
    oxjob.register_compressor("mybz", wrapper)
    with pytest.raises(ValueError, match="already registered"):
        oxjob.register_compressor("mybz", wrapper)
    oxjob.register_compressor("mybz", wrapper, force=True)
    with pytest.raises(ValueError, match="CompressorWrapper interface"):
        oxjob.register_compressor("other", object())
    with pytest.raises(ValueError, match="should be a string"):
        oxjob.register_compressor(3, wrapper)
    target = str(tmp_path / "data.mybz")
    oxjob.dump({"x": np.arange(100_000)}, target)
    with open(target, "rb") as f:
        assert f.read(3) == b"BZh"
    np.testing.assert_array_equal(oxjob.load(target)["x"], np.arange(100_000))


def test_mmap_shares_the_file_pages(path):
    original = np.arange(1_000_000, dtype=np.float64)
    oxjob.dump({"a": original, "small": np.arange(3)}, path)
    mapped = oxjob.load(path, mmap_mode="r")["a"]
    assert isinstance(mapped, np.memmap)
    assert mapped.filename == os.path.abspath(path)
    assert not mapped.flags.writeable
    # Write through another handle: a mapped array sees the file's own pages.
    with open(path, "r+b") as f:
        f.seek(mapped.offset)
        f.write(np.array([-7.0]).tobytes())
    assert mapped[0] == -7.0


def test_mmap_modes_write_or_copy(path):
    oxjob.dump(np.zeros(100_000), path)
    shared = oxjob.load(path, mmap_mode="r+")
    shared[5] = 1.0
    shared.flush()
    assert oxjob.load(path)[5] == 1.0
    private = oxjob.load(path, mmap_mode="c")
    private[6] = 2.0
    assert oxjob.load(path)[6] == 0.0
    with pytest.raises(ValueError, match="mmap_mode"):
        oxjob.load(path, mmap_mode="x")


def test_mmap_of_compressed_file_warns_and_reads(path):
    oxjob.dump(np.arange(100_000), path, compress=3)
    with pytest.warns(UserWarning, match="not compatible with compressed file"):
        loaded = oxjob.load(path, mmap_mode="r")
    assert not isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, np.arange(100_000))


def test_mmap_of_file_object_warns():
    buffer = io.BytesIO()
    oxjob.dump(np.arange(10), buffer)
    buffer.seek(0)
    # joblib's warning, word for word.
    with pytest.warns(UserWarning, match="In memory persistence is not compatible"):
        oxjob.load(buffer, mmap_mode="r")


def test_failed_dump_leaves_no_file(tmp_path):
    target = str(tmp_path / "out.oxjob")
    oxjob.dump("old", target)
    with pytest.raises((TypeError, AttributeError, Exception)):
        oxjob.dump({"f": lambda: 0}, target)
    assert oxjob.load(target) == "old"
    assert os.listdir(tmp_path) == ["out.oxjob"]


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        oxjob.load(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError):
        oxjob.dump(1, str(tmp_path / "no" / "dir" / "x"))


# ---- corrupt files ---------------------------------------------------------------------


@pytest.fixture(params=[0, "zstd", "lz4", "zlib", "gzip"], ids=str)
def small_file(request, tmp_path):
    target = str(tmp_path / "small.oxjob")
    oxjob.dump({"a": np.arange(2000, dtype=np.int32), "t": "text"}, target, compress=request.param)
    return target


def test_every_flipped_byte_is_detected(small_file):
    good = pathlib.Path(small_file).read_bytes()
    for at in range(len(good)):
        bad = bytearray(good)
        bad[at] ^= 0x04
        pathlib.Path(small_file).write_bytes(bad)
        with pytest.raises(CorruptFileError) as info:
            oxjob.load(small_file)
        assert small_file in str(info.value)


def test_every_truncation_is_detected(small_file):
    good = pathlib.Path(small_file).read_bytes()
    for length in range(0, len(good), 7):
        pathlib.Path(small_file).write_bytes(good[:length])
        with pytest.raises(CorruptFileError, match="truncated|bad magic|does not fit"):
            oxjob.load(small_file)


def test_trailing_garbage_is_detected(small_file):
    with open(small_file, "ab") as f:
        f.write(b"junk")
    with pytest.raises(CorruptFileError, match="after the end"):
        oxjob.load(small_file)


def test_foreign_files(path):
    pathlib.Path(path).write_bytes(b"definitely not a pickle")
    with pytest.raises(CorruptFileError, match="bad magic"):
        oxjob.load(path)
    assert issubclass(CorruptFileError, ValueError)


def test_hostile_sizes_do_not_allocate(path):
    oxjob.dump(b"", path)
    data = bytearray(pathlib.Path(path).read_bytes())
    data[32 + 8 : 32 + 16] = (1 << 62).to_bytes(8, "little")  # pickle section raw_len
    pathlib.Path(path).write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="does not fit"):
        oxjob.load(path)


def test_mmap_load_still_checks_structure(path):
    oxjob.dump(np.arange(100_000), path)
    data = bytearray(pathlib.Path(path).read_bytes())
    data[-3] ^= 1
    pathlib.Path(path).write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        oxjob.load(path, mmap_mode="r")


def test_no_warning_on_plain_round_trip(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oxjob.dump([np.arange(10)], path)
        oxjob.load(path)


def test_register_compressor_validates_as_joblib_does():
    class NotAFile:
        pass

    with pytest.raises(ValueError, match="'fileobj_factory' attribute should implement the file"):
        oxjob.register_compressor("bad", CompressorWrapper(NotAFile, prefix=b"bad"))
    with pytest.raises(ValueError, match=r"Compressor name should be a string, '\(\)' given\."):
        oxjob.register_compressor((), None)
    with pytest.raises(ValueError, match="CompressorWrapper interface"):
        oxjob.register_compressor("duck", type("Duck", (), {"prefix": b"", "extension": ""})())
    with pytest.raises(ValueError, match="built into oxjob"):
        oxjob.register_compressor("gzip", CompressorWrapper(bz2.BZ2File, b"BZh"))
    joblib_compressor = pytest.importorskip("joblib.compressor")
    wrapper = joblib_compressor.CompressorWrapper(bz2.BZ2File, prefix=b"BZh", extension=".jlbz")
    oxjob.register_compressor("joblib-bz2", wrapper, force=True)  # joblib's wrapper is accepted
