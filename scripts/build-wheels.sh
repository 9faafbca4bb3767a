#!/usr/bin/env bash
# Build the release artefacts, check them, and test the wheel on every supported Python.
#
#   dist/oxjob-<version>-cp311-abi3-manylinux_2_28_x86_64.whl   one wheel for 3.11, 3.12, 3.13
#   dist/oxjob-<version>.tar.gz                                  the sdist
#
# 1. the wheel: maturin with zig as the linker, so the engine links against glibc 2.28's
#    symbols whatever this machine's glibc is (memfd_create needs 2.27, so not 2014/2.17);
#    `auditwheel show` must agree on manylinux_2_28;
# 2. the sdist, then built again from its unpacked copy with cargo offline
#    (CARGO_NET_OFFLINE=true, --locked): every crate comes from the sdist's own Cargo.lock and
#    the local cargo registry cache (~/.cargo/registry, warmed by step 1); nothing is fetched
#    from crates.io. (maturin itself comes from the tools venv, not from PyPI, at that step.)
# 3. for each Python in OXJOB_WHEEL_PYTHONS (default "3.12 3.13"): a fresh venv, the wheel,
#    the dependency group OXJOB_TEST_GROUP (default test-local: no dask, no ray), and the test
#    suite run against the installed wheel. A Python that cannot be found fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
work="${OXJOB_BUILD_DIR:-$(mktemp -d /tmp/oxjob-build.XXXXXX)}"
pythons="${OXJOB_WHEEL_PYTHONS:-3.12 3.13}"
group="${OXJOB_TEST_GROUP:-test-local}"
export OXJOB_ALLOWED_SKIPS="${OXJOB_ALLOWED_SKIPS-root ignores directory permissions|could not import '(dask|distributed|ray)'}"
mkdir -p "$work"

find_python() {  # python3.X from PATH, else pyenv's newest 3.X; fails when there is none
    local found
    found="$(command -v "python$1" || true)"
    # (a pyenv shim exists on PATH even for a version it will refuse to run)
    if [ -n "$found" ] && ! "$found" -c "" 2>/dev/null; then found=""; fi
    if [ -z "$found" ]; then
        found="$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/python"$1" 2>/dev/null | sort -V | tail -1 || true)"
    fi
    if [ -z "$found" ]; then
        echo "build-wheels: no Python $1 found (PATH or pyenv): cannot test it" >&2
        return 1
    fi
    echo "$found"
}

echo "== build tools (maturin, ziglang, auditwheel) in $work/tools"
"$(find_python 3.11)" -m venv "$work/tools"
"$work/tools/bin/pip" install --quiet --upgrade "pip>=25.1" "maturin>=1.9.4,<2" ziglang auditwheel
export PATH="$work/tools/bin:$PATH"

echo "== wheel (abi3-py311, manylinux_2_28 through zig) and sdist"
rm -rf dist
start=$SECONDS
maturin build --release --locked --zig --compatibility manylinux_2_28 \
    --interpreter "$(find_python 3.11)" --out dist
echo "   wheel built in $((SECONDS - start)) s"
maturin sdist --out dist
wheels=(dist/*.whl)
[ "${#wheels[@]}" -eq 1 ] || { echo "expected one wheel, got ${wheels[*]}" >&2; exit 1; }
wheel="$root/${wheels[0]}"
case "$wheel" in *-cp311-abi3-manylinux_2_28_x86_64.whl) ;; *)
    echo "unexpected wheel tag: $wheel" >&2; exit 1 ;;
esac
auditwheel show "$wheel" | tee "$work/auditwheel.txt"
# (auditwheel wraps its lines: join them before matching.)
tr '\n' ' ' <"$work/auditwheel.txt" | grep -q 'consistent with *the following platform tag: *"manylinux_2_28_x86_64"' || {
    echo "auditwheel does not name manylinux_2_28_x86_64" >&2; exit 1; }

echo "== the sdist builds offline from its own Cargo.lock"
rm -rf "$work/sdist" && mkdir -p "$work/sdist"
tar -xzf dist/oxjob-*.tar.gz -C "$work/sdist"
(
    cd "$work/sdist"/oxjob-*
    test -f Cargo.lock && test -f LICENSE
    start=$SECONDS
    CARGO_NET_OFFLINE=true CARGO_TARGET_DIR="$work/sdist-target" \
        maturin build --offline --locked --interpreter "$(find_python 3.11)" --out "$work/sdist-dist"
    echo "   built offline from the sdist in $((SECONDS - start)) s (debug profile)"
)

for version in $pythons; do
    python="$(find_python "$version")"
    venv="$work/venv-$version"
    echo "== Python $version: a fresh venv, the wheel, group '$group', the tests"
    start=$SECONDS
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade "pip>=25.1"
    "$venv/bin/python" -m pip install --quiet "$wheel" --group "$group"
    # The tests must import the installed wheel, not the checkout.
    "$venv/bin/python" -c "import oxjob, sys; assert oxjob.__file__.startswith(sys.prefix), oxjob.__file__"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests
    # The type check too: the libraries' stubs differ between the versions each Python
    # gets (numpy 2.5's accept a buffer-protocol object where 2.4's do not).
    "$venv/bin/python" -m mypy
    "$venv/bin/python" -m mypy.stubtest oxjob._engine --allowlist stubtest-allowlist.txt
    echo "   Python $version done in $((SECONDS - start)) s"
done
