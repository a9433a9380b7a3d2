"""House rules that keep the layers apart."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import REPO

ROOT = REPO


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:  # `from a.b import c`: a.b.c (c may be a module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


OURS = ("transforms", "schemas", "consumers", "pipeline")
# What each package may import of ours: transforms is pure imaging and measurement, schemas the tables, row
# text and validation, consumers what reads a build's output (through pipeline's storage, options and
# adapters' facts), pipeline Beam and the CLI.
ALLOWED = {
    "transforms": ("transforms",),
    "schemas": ("transforms", "schemas"),
    "consumers": ("transforms", "schemas", "consumers", "pipeline.storage", "pipeline.config", "pipeline.sources"),
    "pipeline": ("transforms", "schemas", "pipeline"),
}
# pipeline modules that hand work to a consumer: the build writes its card, the CLI runs the commands
PIPELINE_TO_CONSUMERS = ("pipeline/run.py", "pipeline/cli.py")
# Beam only where the graph is built and run, and in the storage and claim code that uses its filesystems
BEAM_MODULES = (
    "pipeline/cli.py",
    "pipeline/run.py",
    "pipeline/dag.py",
    "pipeline/stages.py",
    "pipeline/write.py",
    "pipeline/counts.py",
    "pipeline/claim.py",
    "pipeline/storage.py",
)


def ours(module: str) -> bool:
    return module.split(".")[0] in OURS


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
    for path in (ROOT / package).rglob("*.py"):
        relative = str(path.relative_to(ROOT))
        prefixes = ALLOWED[package] + (("consumers",) if relative in PIPELINE_TO_CONSUMERS else ())
        outside = {m for m in imported_modules(path) if ours(m) and not allowed(m, prefixes)}
        assert not outside, f"{relative} imports {outside}"


def test_beam_is_imported_only_where_the_graph_is_built():
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            relative = str(path.relative_to(ROOT))
            beam = {m for m in imported_modules(path) if m.split(".")[0] == "apache_beam"}
            assert not beam or relative in BEAM_MODULES, f"{relative} imports {beam}"


def printed_by_a_fresh_interpreter(code: str) -> str:
    """What `code` prints in a new Python process (the modules it imports are its own)."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_importing_transforms_loads_no_beam():
    code = (
        "import sys, transforms.loading, transforms.slicing, transforms.boxes, schemas.rows, schemas.validate; "
        "print(any(m.startswith('apache_beam') for m in sys.modules))"
    )
    assert printed_by_a_fresh_interpreter(code) == "False"


def test_the_build_path_loads_simpleitk_only_to_read_an_itk_file():
    """SimpleITK's import (60 ms, ~90 MB) is paid by MHA/NRRD cases only, not by every NIfTI or DICOM build."""
    code = (
        "import sys, pipeline.run, transforms.readers; before = 'SimpleITK' in sys.modules; "
        "transforms.readers.itk_version(); print(before, 'SimpleITK' in sys.modules)"
    )
    assert printed_by_a_fresh_interpreter(code) == "False True"
