"""P4, P5, P6, P11: hash, dump/load, and loading joblib's own files, beside joblib and numpy.

Run: ``python benchmarks/bench_persistence.py [--size-mb 1024] [--repeat 3]``.
Prints a markdown report (medians, ratios in the same run) for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile

import joblib
import numpy as np
from _harness import Table, interleaved_median_times, median_time

import oxjob


def bench_hash(data: np.ndarray, repeat: int) -> Table:
    table = Table(f"P4: hash of a {data.nbytes / 1e9:.2f} GB float64 array")
    table.add("joblib.hash (md5)", median_time(lambda: joblib.hash(data), repeat))
    table.add("oxjob.hash (xxh3-128)", median_time(lambda: oxjob.hash(data), repeat))
    table.add("oxjob.hash(hash_name='md5')", median_time(lambda: oxjob.hash(data, "md5"), repeat))
    return table


def bench_compressed(data: np.ndarray, tmp: str, repeat: int, label: str) -> Table:
    table = Table(f"P5: dump/load of {data.nbytes / 1e9:.2f} GB {label}, compressed")
    jpath, opath = os.path.join(tmp, "j.pkl"), os.path.join(tmp, "o.oxjob")

    def size(path: str) -> str:
        return f"file {os.path.getsize(path) / 1e6:.1f} MB"

    t = median_time(lambda: joblib.dump(data, jpath, compress=("zlib", 3)), repeat)
    table.add("joblib dump zlib-3", t, size(jpath))
    for codec, level in [("zstd", 3), ("lz4", 1), ("zlib", 3)]:
        t = median_time(lambda c=(codec, level): oxjob.dump(data, opath, compress=c), repeat)
        table.add(f"oxjob dump {codec}-{level}", t, size(opath))
    oxjob.dump(data, opath, compress=("zstd", 3))
    table.add("joblib load zlib-3", median_time(lambda: joblib.load(jpath), repeat))
    table.add(
        "oxjob load zstd-3",
        median_time(lambda: oxjob.load(opath), repeat),
        baseline="joblib load zlib-3",
    )
    assert np.array_equal(oxjob.load(opath), data)
    return table


def bench_raw(data: np.ndarray, tmp: str, repeat: int) -> Table:
    table = Table(f"P6: raw dump/load of {data.nbytes / 1e9:.2f} GB (files in {tmp})")
    plain, npy = os.path.join(tmp, "plain.bin"), os.path.join(tmp, "a.npy")
    jpath, opath = os.path.join(tmp, "j.pkl"), os.path.join(tmp, "o.oxjob")
    target = np.empty_like(data)

    def write_plain() -> None:
        with open(plain, "wb") as f:
            f.write(memoryview(data).cast("B"))

    table.add("memcpy (np.copyto)", median_time(lambda: np.copyto(target, data), repeat))

    def fresh(path: str):
        # Every writer gets a new file: overwriting would time the freeing of the old one.
        return lambda: os.path.exists(path) and os.unlink(path)

    table.add("plain write of the bytes", median_time(write_plain, repeat, fresh(plain)))
    table.add("plain read (np.fromfile)", median_time(lambda: np.fromfile(plain), repeat))
    table.add("numpy.save", median_time(lambda: np.save(npy, data), repeat, fresh(npy)))
    table.add(
        "numpy.load",
        median_time(lambda: np.load(npy), repeat),
        baseline="plain read (np.fromfile)",
    )
    table.add("joblib dump", median_time(lambda: joblib.dump(data, jpath), repeat, fresh(jpath)))
    table.add(
        "joblib load",
        median_time(lambda: joblib.load(jpath), repeat),
        baseline="plain read (np.fromfile)",
    )
    table.add("oxjob dump", median_time(lambda: oxjob.dump(data, opath), repeat, fresh(opath)))
    table.add(
        "oxjob load",
        median_time(lambda: oxjob.load(opath), repeat),
        baseline="plain read (np.fromfile)",
    )
    table.add("joblib load mmap_mode='r'", median_time(lambda: joblib.load(jpath, "r"), repeat))
    table.add("oxjob load mmap_mode='r'", median_time(lambda: oxjob.load(opath, "r"), repeat))
    small = os.path.join(tmp, "small.oxjob")
    oxjob.dump(data[: 1 << 17], small)
    table.add(
        "oxjob load mmap_mode='r', 1 MB file",
        median_time(lambda: oxjob.load(small, "r"), repeat),
        "O(1): same as the large file",
    )
    return table


def bench_joblib_files(data: np.ndarray, tmp: str, repeat: int) -> Table:
    """oxjob.load and joblib.load of the same files written by joblib.dump, in turns."""
    table = Table(f"P11: loading joblib's own files, {data.nbytes / 1e9:.2f} GB float64 array")
    formats = {"raw": 0, "zlib-3": ("zlib", 3)}
    try:
        import lz4  # noqa: F401

        formats["lz4-3"] = ("lz4", 3)
    except ImportError:
        print("    (lz4 not installed: no lz4 rows)")
    for label, compress in formats.items():
        path = os.path.join(tmp, f"joblib-{label}.pkl")
        joblib.dump(data, path, compress=compress)
        assert np.array_equal(oxjob.load(path), data)
        times = interleaved_median_times(
            {"joblib": lambda p=path: joblib.load(p), "oxjob": lambda p=path: oxjob.load(p)},
            repeat,
        )
        size = f"file {os.path.getsize(path) / 1e6:.0f} MB"
        table.add(f"joblib.load, joblib {label} file", times["joblib"], size)
        table.add(
            f"oxjob.load, joblib {label} file",
            times["oxjob"],
            size,
            baseline=f"joblib.load, joblib {label} file",
        )
        if compress == 0:
            times = interleaved_median_times(
                {
                    "joblib": lambda p=path: joblib.load(p, mmap_mode="r"),
                    "oxjob": lambda p=path: oxjob.load(p, mmap_mode="r"),
                },
                repeat,
            )
            table.add("joblib.load mmap_mode='r', joblib raw file", times["joblib"])
            table.add(
                "oxjob.load mmap_mode='r', joblib raw file",
                times["oxjob"],
                baseline="joblib.load mmap_mode='r', joblib raw file",
            )
        os.unlink(path)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--only", default="P4,P5,P6,P11")
    args = parser.parse_args()
    n = args.size_mb * 2**20 // 8
    rng = np.random.default_rng(0)
    tmp = tempfile.mkdtemp(dir=args.dir)
    only = args.only.split(",")
    print(
        f"# python {platform.python_version()}, numpy {np.__version__}, joblib "
        f"{joblib.__version__}, oxjob {oxjob.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    reports = []
    try:
        if "P4" in only:
            reports.append(
                bench_hash(rng.standard_normal(n), args.repeat).render("joblib.hash (md5)")
            )
        if "P5" in only:
            # Integer counters: highly compressible, as in many real tables.
            counters = (np.arange(n, dtype=np.int64) // 64) % 100_000
            reports.append(
                bench_compressed(counters, tmp, args.repeat, "int64 counters").render(
                    "joblib dump zlib-3"
                )
            )
            # Rounded random walk: floats that compress about 3x.
            walk = np.round(np.cumsum(rng.standard_normal(n // 4)), 2)
            reports.append(
                bench_compressed(walk, tmp, args.repeat, "rounded float64 random walk").render(
                    "joblib dump zlib-3"
                )
            )
        if "P6" in only:
            raw = bench_raw(rng.standard_normal(n), tmp, args.repeat)
            reports.append(raw.render("plain write of the bytes", speedup=False))
        if "P11" in only:
            files = bench_joblib_files(rng.standard_normal(n), tmp, args.repeat)
            reports.append(files.render("joblib.load, joblib raw file"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("\n\n".join(reports))


if __name__ == "__main__":
    main()
