"""House rules that keep the layers apart."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_transforms_and_schemas_do_not_import_beam():
    for package in ("transforms", "schemas"):
        for path in (ROOT / package).rglob("*.py"):
            beam = {m for m in imported_modules(path) if m.split(".")[0] == "apache_beam"}
            assert not beam, f"{path.relative_to(ROOT)} imports {beam}"
            assert not any(m.split(".")[0] == "pipeline" for m in imported_modules(path)), path


def test_transforms_import_neither_schemas_nor_pipeline():
    """The pure layer is the bottom one: schemas and pipeline may import transforms, never the reverse."""
    for path in (ROOT / "transforms").rglob("*.py"):
        upward = {m for m in imported_modules(path) if m.split(".")[0] in ("schemas", "pipeline")}
        assert not upward, f"{path.relative_to(ROOT)} imports {upward}"


def test_importing_transforms_loads_no_beam():
    code = (
        "import sys, transforms.loading, transforms.slicing, transforms.boxes, schemas.rows, schemas.validate; "
        "print(any(m.startswith('apache_beam') for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
