"""What `./run_local.sh` installs (`pip install .`: setup.py's install_requires and what they require) is
enough to build from and to gs://; a missing client package is one line, never a traceback.

A fresh virtualenv would need the network and minutes; instead the build runs in a child process
that can import only the distributions `pip install .` would bring (every other installed
distribution's modules are hidden from it), against the GCS emulator.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
from unittest import mock

import pytest
from packaging.requirements import Requirement

from pipeline import storage
from tests.conftest import REPO, make_msd_task, upload_tree

OWN_PACKAGES = ("pipeline", "transforms", "schemas", "consumers", "tests")

# Runs in the child: every import finder answers "not found" for the modules named in HIDDEN_MODULES
# (dotted prefixes), as in an environment without their distributions, then the CLI runs.
CHILD = """
import json, os, sys
hidden = json.loads(os.environ["HIDDEN_MODULES"])
class Hiding:
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in hidden):
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)
sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
sys.path_importer_cache.clear()
from pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def install_requires() -> list[Requirement]:
    """setup.py's install_requires, read by running setup.py with setuptools.setup captured."""
    captured = {}
    with mock.patch("setuptools.setup", lambda **kwargs: captured.update(kwargs)):
        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            exec(compile((REPO / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "__main__"})
        finally:
            os.chdir(cwd)
    return [Requirement(text) for text in captured["install_requires"]]


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """Normalised names of the distributions `pip install` of `requirements` brings, from this
    environment's metadata (extras followed, markers evaluated)."""
    seen, todo = set(), [(req, frozenset(req.extras)) for req in requirements]
    while todo:
        req, extras = todo.pop()
        name = _normal(req.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in metadata.requires(req.name) or ():
            child = Requirement(text)
            environments = [{"extra": extra} for extra in extras] + [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in environments):
                todo.append((child, frozenset(child.extras)))
    return {name for name, _ in seen}


def module_prefixes(distribution: metadata.Distribution) -> set[str]:
    """Dotted names of the top packages and modules a distribution installs (namespace packages such as
    `google` are not its own: it owns `google.cloud.bigquery`, the first level holding `__init__.py`)."""
    files = {str(path) for path in distribution.files or ()}
    prefixes = set()
    for path in files:
        parts = path.split("/")
        if parts[0].endswith((".dist-info", ".egg-info", ".data")) or parts[0] in ("..", "bin", "__pycache__"):
            continue
        if len(parts) == 1:
            if path.endswith(".py") or path.endswith(".so"):
                prefixes.add(path.split(".")[0])
            continue
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth] + ["__init__.py"]) in files:
                prefixes.add(".".join(parts[:depth]))
                break
    return prefixes


def hidden_modules(kept: set[str]) -> list[str]:
    """Module prefixes of every installed distribution outside `kept` (none that a kept one shares)."""
    hidden: set[str] = set()
    shared: set[str] = set()
    for distribution in metadata.distributions():
        name = _normal(distribution.metadata["Name"] or "")
        (shared if name in kept else hidden).update(module_prefixes(distribution))
    return sorted(
        prefix
        for prefix in hidden - shared
        if prefix.split(".")[0] not in OWN_PACKAGES and not prefix.startswith("__editable__")
    )


def run_cli(argv: list[str], hidden: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, HIDDEN_MODULES=json.dumps(hidden), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, timeout=300, env=env, cwd=REPO
    )


@pytest.fixture(scope="module")
def fresh_install_hidden() -> list[str]:
    kept = installed_closure(install_requires())
    assert {"gcsfs", "google-cloud-storage", "boto3", "apache-beam"} <= kept
    hidden = hidden_modules(kept)
    assert "moto" in hidden and "hypothesis" in hidden  # test-only packages are really hidden
    return hidden


def test_a_fresh_install_builds_from_and_to_the_gcs_emulator(tmp_path, gcs_emulator, fresh_install_hidden):
    task = make_msd_task(tmp_path / "msd", n_cases=1)
    storage.gcs_filesystem().mkdir("medvision-fresh")
    upload_tree(task, "gs://medvision-fresh/raw/Task01_BrainTumour")
    result = run_cli(
        [
            "build",
            "--source",
            "msd=gs://medvision-fresh/raw/Task01_BrainTumour",
            "--output",
            "gs://medvision-fresh/out/run1",
            "--gcs-anonymous",
        ],
        fresh_install_hidden,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert storage.exists("gs://medvision-fresh/out/run1/_SUCCESS")
    assert json.loads(storage.read_bytes("gs://medvision-fresh/out/run1/stats.json"))["total_rows"] > 0
    assert storage.glob("gs://medvision-fresh/out/run1/_work/**") == []  # no intermediate files left


@pytest.mark.parametrize("scheme,package", [("gs://", "gcsfs"), ("s3://", "boto3")])
def test_a_missing_storage_package_is_one_line_naming_it(tmp_path, scheme, package, fresh_install_hidden):
    result = run_cli(
        ["build", "--source", f"msd={scheme}bucket/raw", "--output", str(tmp_path / "out")],
        fresh_install_hidden + [package],
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert f"pip install {package}" in result.stderr and scheme in result.stderr
    assert not (tmp_path / "out").exists()
