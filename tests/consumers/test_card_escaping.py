"""The dataset card shows input text (label, sequence and case names) as text: no HTML, heading, link or
table break comes out of it, and the front matter parses to what it should, whatever the names hold."""

from __future__ import annotations

import glob
import json
import os
import re

import pyarrow.parquet as pq
import pytest
import yaml

from consumers import card, figures
from pipeline.cli import main
from tests.conftest import brain_case, write_nifti

LABEL = "x\n# Injected\n<script>alert(1)</script>"
LABELS = {"0": "background", "1": LABEL, "2": "a|b`c` | d", "3": "[click](http://evil.example) $x$ **b** _i_"}
MODALITY = "T1 | `rm -rf` <b>bold</b>"
CASE = "<img src=x onerror=alert(1)>"
TASK = "Task01_Card"
OUR_HEADINGS = ("# MedVision-style", "## ", "### ")


def unescaped_pipes(line: str) -> int:
    """Pipes that delimit cells: not preceded by an odd number of backslashes."""
    return len(re.findall(r"(?<!\\)(?:\\\\)*\|", line))


def check_markdown(text: str) -> tuple[dict, list[str]]:
    """(front matter, body lines) of a card; fails on raw HTML, a heading or table row that is not ours."""
    assert text.startswith("---\n")
    matter, body = text[4:].split("\n---\n", 1)
    lines = body.splitlines()
    lowered = text.lower()
    assert "<script" not in lowered and "<img" not in lowered and "<b>" not in lowered
    assert not any(line.lstrip().startswith("#") and not line.startswith(OUR_HEADINGS) for line in lines)
    assert not any(re.search(r"(?<!\\)\]\((?!card/)", line) for line in lines), "a link that is not a figure"
    table_width = None
    for line in lines:
        if line.startswith("|"):
            table_width = table_width or unescaped_pipes(line)
            assert unescaped_pipes(line) == table_width, line
        else:
            table_width = None
    return yaml.safe_load(matter), lines


# --- the card's text from hostile values, without a build --------------------------------------------


def hostile_card() -> str:
    row = {
        "sample_id": "0" * 32,
        "case_id": f"{TASK}/{CASE}",
        "sequence": MODALITY,
        "plane": "axial",
        "slice_index": 3,
        "label_name": LABEL,
        "box_size_mm": [10.0, 12.0],
        "component_index": 0,
        "n_components": 1,
    }
    overlay = card.Figure("card/msd/detection/" + "0" * 32 + ".png", card.overlay_caption("detection", row))
    distributions = card.Figure("card/msd/distributions.png", "- msd\n===\n1. <i>x</i>: box size (mm) per pair")
    figures_ = card.CardFigures(
        card.Figure("card/pairs_per_dataset.png", "pairs per dataset"),
        {"msd": distributions},
        {("msd", "detection"): [overlay]},
    )
    stats = {
        "pipeline_version": "1.0",
        "finished_utc": "2026-01-01T00:00:00Z",
        "params_hash": "abc",
        "params": {
            "spacing": "finest",
            "conventions": "default",
            "prompt_style": "default",
            "split_salt": "s`al\nt| # <script>",
            "schema": "v1",
        },
        "rows": [{"dataset": "msd", "task": "detection", "split": "train", "rows": 5}],
        "total_rows": 5,
        "cases": {"msd": {"listed": 2, "with_pairs": 1}},
        "total_quarantined": 1,
        "quarantine": [{"dataset": "msd", "stage": "load", "reason": "bad_listing", "rows": 1}],
    }
    facts = [card.DatasetFacts("msd", ("CC-BY-4.0 | <img src=x>",), (True,), 0, "Cite\n# me [x](y)")]
    assert card.hf_licence(facts[0].licences) == "other"
    return card.render_card(stats, facts, figures_)


def test_hostile_values_render_as_text_in_a_card_of_intact_structure():
    matter, lines = check_markdown(hostile_card())
    assert matter["configs"] == [
        {
            "config_name": "msd-detection",
            "data_files": [{"split": "train", "path": "dataset=msd/task=detection/split=train/*.parquet"}],
        }
    ]
    overlay_row = next(line for line in lines if line.startswith("| ![0000"))
    assert "&lt;img src=x onerror=alert(1)&gt;" in overlay_row and "x \\# Injected &lt;script&gt;" in overlay_row
    assert "T1 \\| \\`rm -rf\\` &lt;b&gt;bold&lt;/b&gt;" in overlay_row
    caption = lines[
        lines.index("![- msd === 1. &lt;i&gt;x&lt;/i&gt;: box size (mm) per pair](card/msd/distributions.png)") + 2
    ]
    assert caption.startswith("\\- msd ===")  # not a list item, nor a setext heading underline
    assert any("split salt s\\`al t\\| \\# &lt;script&gt;, schema" in line for line in lines)  # no code span


@pytest.mark.parametrize(
    "text, expected",
    [
        ("la_003", "la_003"),
        ("tumor_lesion_size", "tumor_lesion_size"),
        ("_i_", "\\_i\\_"),
        ("a*b", "a\\*b"),
        ("[x](y)", "\\[x\\](y)"),
        ("$x$", "\\$x\\$"),
        ("a\\|b", "a\\\\\\|b"),
        ("AT&T", "AT&amp;T"),
        ("x\u2028# h", "x \\# h"),
        ("\u202eevil", "evil"),
        ("~~s~~", "\\~\\~s\\~\\~"),
    ],
)
def test_markdown_text_escapes_markup_and_leaves_plain_names_alone(text, expected):
    assert card.markdown_text(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("- x", "\\- x"),
        ("1. x", "1\\. x"),
        ("2) x", "2\\) x"),
        ("===", "\\==="),
        ("plain", "plain"),
        ("1.5 mm", "1\\.5 mm"),
    ],
)
def test_text_starting_a_line_cannot_start_a_list_or_underline_a_heading(text, expected):
    assert card.markdown_line(text) == expected


def test_figure_text_is_never_mathtext():
    rows = [{"dataset": r"$\undefinedcmd{$", "task": "detection", "rows": 3}]
    assert figures.pairs_per_dataset_png(rows).startswith(b"\x89PNG")
    panels = {"box size (mm)": {"box width": [1.0, 2.0]}}
    assert figures.distributions_png(r"$\frac{a}{$", panels).startswith(b"\x89PNG")


# --- a build whose names are hostile -----------------------------------------------------------------


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("card_names")
    task = os.path.join(str(root), TASK)
    image, labels, affine = brain_case(seed=3)
    write_nifti(os.path.join(task, "imagesTr", f"{CASE}.nii.gz"), image[..., 0], affine)
    write_nifti(os.path.join(task, "labelsTr", f"{CASE}.nii.gz"), labels, affine)
    json.dump(
        {
            "modality": {"0": MODALITY},
            "labels": LABELS,
            "training": [{"image": f"./imagesTr/{CASE}.nii.gz", "label": f"./labelsTr/{CASE}.nii.gz"}],
        },
        open(os.path.join(task, "dataset.json"), "w"),
    )
    output = str(root / "out")
    assert main(["build", f"--source=msd={task}", "--output", output]) == 0
    return output


def test_the_built_card_shows_hostile_names_as_text(build):
    text = open(os.path.join(build, "README.md")).read()
    matter, lines = check_markdown(text)
    assert {config["config_name"] for config in matter["configs"]} <= {"msd-detection", "msd-tumor_lesion_size"}
    overlays = [line for line in lines if line.startswith("| ![")]
    assert overlays and all(f"{TASK}/&lt;img src=x onerror=alert(1)&gt;" in line for line in overlays)
    assert all("T1 \\| \\`rm -rf\\` &lt;b&gt;bold&lt;/b&gt;" in line for line in overlays)


def test_rows_keep_the_names_as_they_are(build):
    names = {
        row["label_name"]
        for path in glob.glob(os.path.join(build, "dataset=msd/task=detection/*/*.parquet"))
        for row in pq.read_table(path, columns=["label_name"]).to_pylist()
    }
    assert names == {LABEL, LABELS["2"], LABELS["3"]}
