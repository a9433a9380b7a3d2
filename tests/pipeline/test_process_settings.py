"""Process-wide settings the pipeline makes on import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HUGEPAGE_STATE = "import pipeline.cli; from numpy._core import multiarray; print(multiarray._set_madvise_hugepage(0))"


@pytest.mark.parametrize("given, expected", [(None, "False"), ("1", "True")])
def test_numpy_huge_pages_are_off_unless_asked_for(given, expected):
    """Off by default (the first touch of a decoded volume stalled on memory compaction); a setting given wins."""
    env = {key: value for key, value in os.environ.items() if key != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given
    result = subprocess.run([sys.executable, "-c", HUGEPAGE_STATE], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected


CONSOLE_EXIT = (
    "import gc, sys; from pipeline import cli; sys.argv = ['medvision-pipeline', 'sources']; "
    "code = cli.console_main(); print(code, gc.get_freeze_count() > 0)"
)


def test_the_command_returns_mains_exit_code_with_the_heap_frozen_for_exit():
    """The interpreter's last collections would walk every object Beam and the imaging stack left (0.3-0.45 s)."""
    result = subprocess.run([sys.executable, "-c", CONSOLE_EXIT], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "0 True"


COLLECTION_DURING_A_COMMAND = (
    "import gc, sys; from pipeline import cli; sys.argv = ['medvision-pipeline', 'sources']; "
    "cli.print_sources = lambda: print(gc.isenabled(), gc.get_freeze_count() > 0); cli.console_main()"
)


def test_a_command_runs_with_collection_on_and_its_imports_frozen():
    """Collection is off only while the command's imports build the long-lived heap."""
    result = subprocess.run(
        [sys.executable, "-c", COLLECTION_DURING_A_COMMAND], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "True True"
