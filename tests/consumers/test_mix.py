"""`medvision-pipeline mix`: caps, the validation carve by subject, seeded bytes, the conversational columns
read by Hugging Face `datasets` and a chat template, object storage."""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import os

import jinja2
import pyarrow.parquet as pq
import pytest

from consumers import mixture
from pipeline import storage
from pipeline.cli import main
from tests.mix_fixtures import write_synthetic_build

SPLITS = ("train", "validation", "test")
# Two CT subjects in train, a cephalogram in each split: a quick demo build with a subject to carve.
DEMO_CASES = "Task01_DemoCT/demo_ct_02,Task01_DemoCT/demo_ct_03,Ceph/001,Ceph/151"


def mix_rows(output: str, columns=("dataset", "task", "subject_id", "sample_id")) -> dict[str, list[dict]]:
    return {
        split: [
            row
            for path in sorted(glob.glob(os.path.join(output, split, "*.parquet")))
            for row in pq.read_table(path, columns=list(columns)).to_pylist()
        ]
        for split in SPLITS
    }


def run_mix(pairs: list[str], output: str, *options: str) -> dict:
    argv = ["mix", *[arg for root in pairs for arg in ("--pairs", root)], "--output", output, *options]
    assert main(argv) == 0
    return json.loads(storage.read_bytes(storage.join(output, "mix.json")))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("synthetic") / "build")
    write_synthetic_build(root, 6000)
    return root


@pytest.fixture(scope="module")
def capped(synthetic, tmp_path_factory) -> tuple[str, dict]:
    output = str(tmp_path_factory.mktemp("mix") / "capped")
    return output, run_mix([synthetic], output, "--validation-size", "300", "--seed", "3", "--max-per-task", "500")


@pytest.fixture(scope="module")
def demo_mix(tmp_path_factory, demo_root) -> str:
    build = str(tmp_path_factory.mktemp("demo") / "build")
    assert main(["build", f"--source=demo={demo_root}", "--output", build, "--cases", DEMO_CASES]) == 0
    output = str(tmp_path_factory.mktemp("demo") / "mix")
    run_mix([build], output, "--validation-size", "100", "--seed", "0")
    return output


def test_caps_and_validation_stratified_by_dataset(capped):
    output, summary = capped
    rows = mix_rows(output)
    per_group = collections.Counter((split, r["dataset"], r["task"]) for split in SPLITS for r in rows[split])
    assert max(per_group.values()) == 500  # the cap binds (synth2's test tasks hold 520)
    assert len(rows["validation"]) == summary["pairs"]["validation"] == 300
    train = collections.Counter(r["dataset"] for r in rows["train"])
    validation = collections.Counter(r["dataset"] for r in rows["validation"])
    for dataset, n in train.items():
        assert abs(validation[dataset] / 300 - n / len(rows["train"])) < 0.02, (validation, train)
    assert {(r["split"], r["dataset"], r["task"]): r["pairs"] for r in summary["counts"]} == dict(per_group)


def test_no_subject_in_two_splits_and_shared_volumes_stay_together(capped):
    rows = mix_rows(capped[0])
    splits_of = collections.defaultdict(set)
    for split in SPLITS:
        for row in rows[split]:
            splits_of[row["dataset"], row["subject_id"]].add(split)
    assert all(len(splits) == 1 for splits in splits_of.values())
    # subj_0 of every dataset shares the volume SHARED_VOLUME: one group, one split
    assert len({split for (dataset, subject), (split,) in splits_of.items() if subject == "subj_0"}) == 1
    assert sum(subject == "subj_0" for _, subject in splits_of) == 3
    validation_subjects = {key for key, (split,) in splits_of.items() if split == "validation"}
    assert len(validation_subjects) >= 3


def test_split_and_total_caps_balance_datasets(synthetic, tmp_path):
    summary = run_mix(
        [synthetic],
        str(tmp_path / "mix"),
        "--validation-size",
        "30",
        "--seed",
        "1",
        "--max-per-split",
        "test=90",
        "--max-total",
        "420",
    )
    assert summary["pairs"] == {"train": 300, "validation": 30, "test": 90}
    train = collections.Counter()
    for row in summary["counts"]:
        if row["split"] == "train":
            train[row["dataset"]] += row["pairs"]
    assert sorted(train.values()) == [100, 100, 100]  # the datasets in turn, though synth2 holds 2.5x synth0


def test_same_seed_same_bytes(synthetic, capped, tmp_path):
    def digests(output):
        return {
            os.path.relpath(p, output): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in sorted(glob.glob(os.path.join(output, "*", "*.parquet")))
        }

    again = str(tmp_path / "again")
    run_mix([synthetic], again, "--validation-size", "300", "--seed", "3", "--max-per-task", "500")
    assert digests(again) == digests(capped[0])
    other = str(tmp_path / "other")
    run_mix([synthetic], other, "--validation-size", "300", "--seed", "4", "--max-per-task", "500")
    assert digests(other)["train/train-00000.parquet"] != digests(capped[0])["train/train-00000.parquet"]


def test_datasets_reads_three_splits_with_images_and_messages(demo_mix):
    import datasets

    summary = json.load(open(os.path.join(demo_mix, "mix.json")))
    mix = datasets.load_dataset("parquet", data_dir=demo_mix)
    assert {split: mix[split].num_rows for split in SPLITS} == summary["pairs"]
    assert summary["pairs"]["validation"] == 100 and summary["pairs"]["train"] > 0
    row = mix["train"][0]
    assert row["image"].size == (row["image_width_px"], row["image_height_px"])
    assert [image.size for image in row["images"]] == [row["image"].size]
    assert row["messages"] == mixture.conversation(row["prompt"], row["answer"])
    assert "README.md" in os.listdir(demo_mix) and summary["command"].startswith("medvision-pipeline mix --pairs")


CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message.role }}|>"
    "{% for part in message.content %}{% if part.type == 'image' %}<image>{% else %}{{ part.text }}{% endif %}"
    "{% endfor %}<|end|>\n{% endfor %}"
)


def test_a_chat_template_places_the_image_before_the_prompt_and_the_answer_last(demo_mix):
    row = (
        pq.read_table(
            glob.glob(os.path.join(demo_mix, "test", "*.parquet"))[0], columns=["messages", "prompt", "answer"]
        )
        .slice(0, 1)
        .to_pylist()[0]
    )
    text = jinja2.Template(CHAT_TEMPLATE).render(messages=row["messages"])
    assert text == f"<|user|><image>{row['prompt']}<|end|>\n<|assistant|>{row['answer']}<|end|>\n"


def test_refuses_an_unfinished_build_and_a_used_output(synthetic, capped, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert (
        main(
            [
                "mix",
                "--pairs",
                str(unfinished),
                "--output",
                str(tmp_path / "o"),
                "--validation-size",
                "1",
                "--seed",
                "0",
            ]
        )
        == 2
    )
    assert "no _SUCCESS" in capsys.readouterr().err
    assert main(["mix", "--pairs", synthetic, "--output", capped[0], "--validation-size", "1", "--seed", "0"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (
        main(
            [
                "mix",
                "--pairs",
                synthetic,
                "--output",
                str(tmp_path / "o"),
                "--validation-size",
                "1",
                "--seed",
                "0",
                "--max-per-split",
                "train",
            ]
        )
        == 2
    )


def test_mix_from_and_to_object_storage(gcs_emulator, tmp_path):
    from tests.conftest import upload_tree

    local = str(tmp_path / "small")
    write_synthetic_build(local, 600)
    storage.gcs_filesystem().mkdir("mixbucket")
    upload_tree(local, "gs://mixbucket/build")
    summary = run_mix(
        ["gs://mixbucket/build"], "gs://mixbucket/mix", "--validation-size", "20", "--seed", "0", "--gcs-anonymous"
    )
    assert summary["pairs"]["validation"] == 20
    uris = storage.list_tree("gs://mixbucket/mix")
    assert {"README.md", "mix.json"} <= set(uris) and {u.split("/")[0] for u in uris if "/" in u} == set(SPLITS)
    total = sum(
        pq.read_table(storage.open_read(f"gs://mixbucket/mix/{u}")).num_rows for u in uris if u.endswith(".parquet")
    )
    assert total == sum(summary["pairs"].values())


def test_apportion_and_subject_groups():
    assert mixture.apportion(10, {"a": 30, "b": 30, "c": 30}) == {"a": 4, "b": 3, "c": 3}
    assert mixture.apportion(10, {"a": 1, "b": 1, "c": 1}) == {"a": 1, "b": 1, "c": 1}  # no more than there is
    assert mixture.apportion(5, {"a": 2, "b": 0}) == {"a": 2, "b": 0}
    groups = mixture.subject_groups(
        [("a", "s1", "v"), ("b", "s9", "v"), ("a", "s2", "w")],
        [("a", "s1", "train"), ("b", "s9", "test"), ("a", "s2", "train")],
        seed=0,
    )
    by_subject = {(g["dataset"], g["subject_id"]): g for g in groups}
    assert by_subject["a", "s1"]["group"] == by_subject["b", "s9"]["group"] != by_subject["a", "s2"]["group"]
    assert by_subject["a", "s1"]["group_split"] == "test" and by_subject["a", "s2"]["group_split"] == "train"
