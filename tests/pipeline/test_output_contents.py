"""A finished output holds exactly what README's Output section lists, and README's cross-task
readers (Polars, the card's `datasets` configs) read it."""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.conftest import REPO, make_msd_task

README = REPO / "README.md"


def listed_in_readme() -> set[str]:
    """Top-level names of the code block under README's `## Output` heading (`dataset=<name>` kept as
    `dataset=`)."""
    section = README.read_text().split("\n## Output\n", 1)[1]
    block = section.split("```", 2)[1]
    names = set()
    for line in block.splitlines():
        entry = line.strip().split(" ", 1)[0]
        if entry and entry != "OUTPUT/":
            names.add(re.sub(r"=.*", "=", entry.split("/", 1)[0]))
    return names


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("contents")
    task = make_msd_task(root / "msd", n_cases=2)
    output = str(root / "out")
    assert main(["build", "--source", f"msd={task}", "--output", output]) == 0
    return output


def test_a_finished_output_holds_only_what_readme_lists(built):
    found = {re.sub(r"=.*", "=", name) for name in os.listdir(built)}
    assert "_work" not in os.listdir(built)
    assert found <= listed_in_readme()
    assert {"dataset=", "stats.json", "README.md", "_CLAIM", "_SUCCESS"} <= found


def test_polars_reads_every_task_at_once_as_readme_shows(built):
    pl = pytest.importorskip("polars")
    root = built
    tasks = ("detection", "tumor_lesion_size", "angle_distance")
    every_task = pl.concat(
        [
            pl.scan_parquet(f"{root}/dataset=*/task={t}/split=*/*.parquet", hive_partitioning=True)
            for t in tasks
            if glob.glob(f"{root}/dataset=*/task={t}/split=*/*.parquet")
        ],
        how="diagonal_relaxed",
    )
    frame = every_task.select("task", "box_xyxy_px", "major_axis_mm").collect()
    stats = json.loads(Path(root, "stats.json").read_text())
    assert frame.height == stats["total_rows"]
    assert set(frame["task"]) == {"detection", "tumor_lesion_size"}
    lesion_rows = frame.filter(pl.col("task") == "tumor_lesion_size")
    assert lesion_rows["box_xyxy_px"].null_count() == lesion_rows.height  # another task's column: null


def test_the_cards_configs_load_by_name(built, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    pairs = datasets.load_dataset(built, "msd-detection", cache_dir=str(tmp_path / "hf"))
    stats = json.loads(Path(built, "stats.json").read_text())
    expected = {row["split"]: row["rows"] for row in stats["rows"] if row["task"] == "detection"}
    assert {split: len(rows) for split, rows in pairs.items()} == expected
    assert pairs[next(iter(expected))][0]["image"].mode == "L"
