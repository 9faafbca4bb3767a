"""Print the declared floors of oxjob's libraries as pins, for pip's ``-c``.

The floors leg of ``.ci/run`` installs the oldest versions pyproject.toml allows of the
libraries oxjob works with, so the floors declared there are floors that were tested:
every ``name>=X`` of these libraries in the dependencies, the extras and the dependency
groups becomes ``name==X`` (pyproject.toml stays the one place they are written).
"""

import re
import sys
import tomllib
from pathlib import Path

#: The libraries whose floors are tested (test tools such as pytest are not).
LIBRARIES = {"numpy", "cloudpickle", "dask", "ray", "joblib", "scikit-learn"}


def floors(pyproject: Path) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text())
    requirements = list(project["project"].get("dependencies", []))
    for extra in project["project"].get("optional-dependencies", {}).values():
        requirements += extra
    for group in project.get("dependency-groups", {}).values():
        requirements += [r for r in group if isinstance(r, str)]
    found: dict[str, str] = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?>=([0-9][0-9.]*)", requirement)
        if match and match.group(1).lower() in LIBRARIES:
            name, floor = match.group(1).lower(), match.group(2)
            if found.setdefault(name, floor) != floor:
                sys.exit(f"{name} has two floors in pyproject.toml: {found[name]} and {floor}")
    missing = LIBRARIES - set(found)
    if missing:
        sys.exit(f"no '>=' floor in pyproject.toml for {sorted(missing)}")
    return found


if __name__ == "__main__":
    for name, floor in sorted(
        floors(Path(__file__).resolve().parent.parent / "pyproject.toml").items()
    ):
        print(f"{name}=={floor}")
