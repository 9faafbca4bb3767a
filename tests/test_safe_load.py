"""load(trusted=...) rebuilds only what is allowed; inspect runs none of a file's code."""

import os
import pickle

import numpy as np
import pytest

import oxjob
from oxjob.cli import main
from oxjob.persistence import UnsafeLoadError


class _System:
    """A hostile object: unpickling it runs a shell command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def hostile_files(tmp_path, marker):
    payload = {"weights": np.arange(10), "evil": _System(f"touch {marker}")}
    files = {"pickle": tmp_path / "evil.pkl", "oxjob": tmp_path / "evil.oxjob"}
    files["pickle"].write_bytes(pickle.dumps(payload, protocol=2))
    oxjob.dump(payload, str(files["oxjob"]))
    joblib = pytest.importorskip("joblib")
    files["joblib"] = tmp_path / "evil.joblib"
    joblib.dump(payload, str(files["joblib"]), compress=3)
    return files


@pytest.mark.parametrize("kind", ["pickle", "oxjob", "joblib"])
def test_os_system_is_refused_before_it_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = hostile_files(tmp_path, marker)[kind]
    with pytest.raises(UnsafeLoadError, match=r"refusing to load 'posix\.system'.*trusted="):
        oxjob.load(path, trusted=[])
    with pytest.raises(UnsafeLoadError):
        oxjob.load(path, trusted=["numpy", "sklearn"])
    assert not marker.exists()
    # The default mode runs the file's code, as pickle and joblib do.
    oxjob.load(path)
    assert marker.exists()


def test_safe_types_load_without_listing(tmp_path):
    value = {
        "a": np.arange(100_000.0),
        "small": np.arange(3),
        "obj": np.array([1, "x", None], dtype=object),
        "scalars": [np.float32(1.5), 2, 3.0, 1j, "s", b"b", None, True],
        "containers": (set([1]), frozenset([2]), bytearray(b"x"), {"k": [1]}),
        "dtype": np.dtype([("x", "<f8")]),
    }
    for protocol in (2, 4, 5):
        path = str(tmp_path / f"v{protocol}.oxjob")
        oxjob.dump(value, path, protocol=protocol)
        loaded = oxjob.load(path, trusted=[])
        np.testing.assert_array_equal(loaded["a"], value["a"])
        assert loaded["scalars"] == value["scalars"]
        assert loaded["containers"] == value["containers"]
        assert loaded["dtype"] == value["dtype"]


def test_listed_estimator_loads_and_unlisted_is_named(tmp_path):
    pytest.importorskip("sklearn")
    joblib = pytest.importorskip("joblib")
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=100, random_state=0)
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3)).fit(X, y)
    for name, write in [("o.oxjob", oxjob.dump), ("j.joblib", joblib.dump)]:
        path = str(tmp_path / name)
        write(model, path)
        loaded = oxjob.load(path, trusted=["sklearn"])
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
        with pytest.raises(UnsafeLoadError, match="sklearn.pipeline.Pipeline"):
            oxjob.load(path, trusted=[])
        # Exact names (strings or the classes) work as well as a module prefix.
        listed = [
            "sklearn.pipeline.Pipeline",
            StandardScaler,
            RandomForestClassifier,
            "sklearn.tree._classes.DecisionTreeClassifier",
            "sklearn.tree._tree.Tree",
        ]
        np.testing.assert_array_equal(oxjob.load(path, trusted=listed).predict(X), model.predict(X))


def _reexport_pickle(module, name):
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x04\x00\x00\x00true\x85R."


def test_prefix_allows_classes_not_reexports_or_functions(tmp_path):
    path = tmp_path / "sneaky.pkl"
    # os.path is under a listed prefix "os" only if listed; list "json" and ask for
    # something json re-exports from elsewhere, or a function.
    path.write_bytes(_reexport_pickle("json", "loads"))
    with pytest.raises(UnsafeLoadError, match="rebuilding classes only.*never call it"):
        oxjob.load(path, trusted=["json"])
    assert oxjob.load(path, trusted=["json.loads"]) is True
    path.write_bytes(_reexport_pickle("json.decoder", "re.compile"))  # a dotted re-export
    with pytest.raises(UnsafeLoadError):
        oxjob.load(path, trusted=["json"])
    path.write_bytes(_reexport_pickle("builtins", "getattr"))
    with pytest.raises(UnsafeLoadError, match="builtins.getattr"):
        oxjob.load(path, trusted=[])
    path.write_bytes(_reexport_pickle("json", "__builtins__"))
    with pytest.raises(UnsafeLoadError):
        oxjob.load(path, trusted=["json"])


def test_trusted_argument_errors(tmp_path):
    path = str(tmp_path / "x.oxjob")
    oxjob.dump(1, path)
    with pytest.raises(TypeError, match="trusted must be None or a list"):
        oxjob.load(path, trusted="sklearn")
    with pytest.raises(TypeError, match="trusted must"):
        oxjob.load(path, trusted=[3])


def test_inspect_tells_format_and_types_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    files = hostile_files(tmp_path, marker)
    assert main(["inspect", str(files["joblib"])]) == 0
    out = capsys.readouterr().out
    assert "joblib file (joblib >= 1.2 format, 1 arrays), in a zlib stream" in out
    assert "posix.system   (needs trusted)" in out
    assert "numpy.ndarray" in out
    assert main(["inspect", str(files["pickle"])]) == 0
    out = capsys.readouterr().out
    assert "pickle file (no joblib arrays), uncompressed, pickle protocol 2" in out
    assert main(["inspect", str(files["oxjob"])]) == 0
    out = capsys.readouterr().out
    assert "oxjob container" in out and "posix.system" in out
    gz = tmp_path / "plain.gz"
    oxjob.dump({"a": np.arange(5)}, str(gz))
    assert main(["inspect", str(gz)]) == 0
    out = capsys.readouterr().out
    assert "oxjob container" in out and "in a gzip stream" in out and "trusted=[]" in out
    assert not marker.exists()
