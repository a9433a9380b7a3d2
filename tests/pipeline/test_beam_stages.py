"""Each PTransform run on a Beam runner (TestPipeline + assert_that)."""

from __future__ import annotations

import gc
import glob
import gzip
import hashlib
import os
import shutil
import weakref

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

from pipeline import casework
from pipeline import write as write_module
from pipeline.casework import LoadSettings
from pipeline.sources import get_source
from pipeline.stages import (
    CheckUniqueIds,
    DeriveBoxes,
    DeriveLesionSizes,
    ExtractSlices,
    Guarded,
    PlanCases,
    ValidatePairs,
)
from pipeline.write import WriteTable, binary_array, partition_of, record_batch, row_bytes, shard_count
from schemas import rows as row_builders
from schemas.rows import RowBundle
from schemas.tables import column_paths, schema_for
from schemas.validate import file_row
from transforms.caseref import CaseRef, LabelName, SequenceRef
from transforms.intensity import Window, encode_png
from transforms.loading import ReadGeometry
from transforms.packed import PackedArray
from transforms.slicing import SliceContent, SliceRecord

PARAMS = "0123456789abcdef"


def check(predicate, describe):
    """An assert_that matcher from a predicate over the whole PCollection."""

    def matcher(actual):
        if not predicate(list(actual)):
            raise BeamAssertException(f"{describe}: got {list(actual)!r:.2000}")

    return matcher


def demo_cases(demo_root, *names):
    cases = get_source("demo").list_cases(demo_root)
    return [case for case in cases if case.case_id.split("/")[-1] in names]


def slice_record(labels_2d: np.ndarray, case_id="c1", spacing=(0.5, 0.5)) -> SliceRecord:
    case = CaseRef(
        "demo",
        case_id,
        case_id,
        "mem://img",
        "mem://seg",
        (SequenceRef("CT", "CT"),),
        (LabelName(1, "liver"), LabelName(2, "lesion")),
        lesion_labels=(2,),
    )
    rows, cols = labels_2d.shape
    content = SliceContent(
        "CT",
        "CT",
        "axial",
        4,
        None,
        (rows, cols),
        spacing,
        spacing[0],
        Window("soft_tissue", -160.0, 240.0),
        PackedArray.pack(labels_2d),
        png=encode_png(np.zeros((rows, cols), np.uint8)),
    )
    geometry = ReadGeometry(
        orig_orientation="LPS",
        obliquity_deg=0.0,
        orig_spacing_mm=(0.5, 0.5, 2.0),
        orig_shape=(cols, rows, 9),
        affine_source="sform",
        reader="test",
    )
    provenance = row_builders.provenance(
        case, geometry, {"mem://img": "sha-img", "mem://seg": "sha-seg"}, "finest", "test", PARAMS
    )
    return SliceRecord(case, "train", provenance, content)


def plan_and_cut(pipeline, cases, settings=LoadSettings(spacing="finest", split_salt="salt", params_hash=PARAMS)):
    """PlanCases, then ExtractSlices over the spread units: (slices, plan quarantine, cut quarantine)."""
    plans, plan_quarantine = pipeline | beam.Create(cases) | PlanCases(settings)
    slices, cut_quarantine = plans | beam.FlatMap(lambda plan: plan.units) | beam.Reshuffle() | ExtractSlices(settings)
    return slices, plan_quarantine, cut_quarantine


def test_planned_units_give_the_slices_and_a_truncated_case_is_quarantined_once(demo_root):
    cases = demo_cases(demo_root, "demo_mr_00", "demo_ct_04")
    with BeamPipeline() as pipeline:
        slices, plan_quarantine, cut_quarantine = plan_and_cut(pipeline, cases)
        assert_that(
            slices | beam.Map(lambda s: (s.case.case_id, s.content.sequence)) | beam.Distinct(),
            equal_to([("Task02_DemoMR/demo_mr_00", "T1w"), ("Task02_DemoMR/demo_mr_00", "T2w")]),
            label="SlicesOfTheGoodCase",
        )
        assert_that(
            plan_quarantine | beam.Map(lambda q: (q["case_id"], q["stage"], q["reason"])),
            equal_to([("Task01_DemoCT/demo_ct_04", "load", "truncated_gzip")]),
            label="Quarantined",
        )
        assert_that(cut_quarantine, equal_to([]), label="NothingLostWhileCutting")


def slice_digest(records) -> str:
    """One digest of the records' keys, splits, pixels and labels, in a fixed order (a digest, so the
    matcher Beam pickles stays small)."""
    keyed = sorted(
        (
            r.case.case_id,
            r.content.sequence,
            r.content.plane,
            r.content.slice_index,
            r.split,
            r.volume_hash,
            r.content.pixels.data,
            r.content.packed_labels.data,
        )
        for r in records
    )
    return hashlib.sha256(repr(keyed).encode()).hexdigest()


def test_units_of_any_size_cut_the_same_slices_as_the_whole_case(demo_root):
    """Spreading a case over work units must not change what it yields: units of at most 16 slices,
    through Beam, give exactly the records of cutting the whole case in one pass."""
    cases = demo_cases(demo_root, "demo_mr_00", "demo_ct_00")
    whole = LoadSettings(spacing="finest", split_salt="salt", params_hash=PARAMS, max_slices_per_unit=10**6)
    expected = slice_digest(r for case in cases for r in casework.slice_records(case, whole)[0])
    small_units = LoadSettings(spacing="finest", split_salt="salt", params_hash=PARAMS, max_slices_per_unit=16)
    assert all(len(casework.plan_case(case, small_units).units) > 6 for case in cases)
    with BeamPipeline() as pipeline:
        slices, _, _ = plan_and_cut(pipeline, cases, small_units)
        assert_that(
            slices | beam.combiners.ToList() | beam.Map(slice_digest), equal_to([expected]), label="SameRecords"
        )


def test_a_thread_keeps_only_its_last_case_and_frees_it_before_decoding_the_next(demo_root, monkeypatch):
    """Units of one case in a row decode it once; the memory bound needs the old case gone before
    the next is decoded, not after."""
    mr, ct = sorted(
        demo_cases(demo_root, "demo_mr_00", "demo_ct_00"), key=lambda case: "demo_mr_00" not in case.case_id
    )
    settings = LoadSettings(spacing="finest", split_salt="salt", params_hash=PARAMS)
    first, _ = casework.load(mr, settings)
    assert casework.load(mr, settings)[0] is first
    first_alive = weakref.ref(first)
    del first
    seen_while_decoding = []
    real = casework.load_case

    def spy(*args, **kwargs):
        gc.collect()
        seen_while_decoding.append(first_alive() is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(casework, "load_case", spy)
    casework.load(ct, settings)
    assert seen_while_decoding == [False]


def test_split_into_units_keeps_order_and_balances_lengths():
    runs = casework.split_into_units(tuple(range(10, 311)), 128)
    assert sorted(len(run) for run in runs) == [100, 100, 101]
    assert sum(runs, ()) == tuple(range(10, 311))
    assert casework.split_into_units((4, 5), 128) == [(4, 5)]


def test_an_input_changed_after_planning_is_quarantined(demo_root, tmp_path):
    """A unit re-reads its case; if the bytes differ from the planned ones its pairs would carry
    another file's provenance, so the unit is refused with `input_changed`."""
    shutil.copytree(demo_root, tmp_path / "demo")
    case = demo_cases(str(tmp_path / "demo"), "demo_mr_00")[0]
    settings = LoadSettings(spacing="finest", split_salt="salt", params_hash=PARAMS)
    plan = casework.plan_case(case, settings)
    casework.drop_cached_case()
    with open(case.image_uri, "rb") as handle:  # the same voxels, compressed again: other bytes
        voxels = gzip.decompress(handle.read())
    with open(case.image_uri, "wb") as handle:
        handle.write(gzip.compress(voxels, compresslevel=1, mtime=0))
    with BeamPipeline() as pipeline:
        slices, quarantine = pipeline | beam.Create(plan.units[:1]) | ExtractSlices(settings)
        assert_that(slices, equal_to([]), label="NoSlices")
        assert_that(
            quarantine | beam.Map(lambda q: (q["reason"], q["message"].split(":")[0])),
            equal_to(
                [
                    (
                        "input_changed",
                        f"{plan.units[0].plane} slices {plan.units[0].slice_indices[0]}-"
                        f"{plan.units[0].slice_indices[-1]}",
                    )
                ]
            ),
            label="InputChanged",
        )


def test_an_error_while_cutting_keeps_the_slices_out_and_says_how_many(demo_root, monkeypatch):
    """The slice stage streams, so a failure after the first slices of a unit cannot take them back:
    the quarantine row must say how many got out, and the other units and cases go on."""
    real = casework.unit_records
    settings = LoadSettings(spacing="finest", split_salt="salt", params_hash=PARAMS)
    cases = sorted(demo_cases(demo_root, "demo_mr_00", "demo_ct_00"), key=lambda case: "demo_mr_00" not in case.case_id)
    failing = casework.plan_case(cases[0], settings).units[0]
    assert len(failing.slice_indices) * len(cases[0].sequences) > 3

    def fails_after_three(unit, load_settings):
        records = real(unit, load_settings)

        def cut():
            for n, record in enumerate(records):
                if n == 3 and unit == failing:
                    raise ValueError("cutting bug")
                yield record

        return cut()

    total = sum(1 for _ in casework.slice_records(cases[0], settings)[0])
    monkeypatch.setattr(casework, "unit_records", fails_after_three)
    lost = len(failing.slice_indices) * len(cases[0].sequences) - 3
    with BeamPipeline() as pipeline:
        slices, _, quarantine = plan_and_cut(pipeline, cases, settings)
        assert_that(
            slices | beam.Map(lambda s: s.case.case_id) | beam.combiners.Count.PerElement(),
            check(
                lambda counts: (
                    dict(counts)["Task02_DemoMR/demo_mr_00"] == total - lost
                    and dict(counts)["Task01_DemoCT/demo_ct_00"] > 3
                ),
                "3 slices of the failing unit",
            ),
            label="SlicesBeforeTheError",
        )
        where = f"{failing.plane} slices {failing.slice_indices[0]}-{failing.slice_indices[-1]}"
        assert_that(
            quarantine | beam.Map(lambda q: (q["case_id"], q["reason"], q["message"][: len(where) + 43])),
            equal_to(
                [
                    (
                        "Task02_DemoMR/demo_mr_00",
                        "unexpected_error",
                        f"{where}: cutting stopped after 3 slices (those are",
                    )
                ]
            ),
            label="SaysHowMany",
        )


def test_derive_boxes_gives_one_pair_per_component():
    labels = np.zeros((30, 40), np.uint8)
    labels[2:22, 5:25] = 1
    labels[25:28, 30:33] = 2
    labels[25:28, 35:38] = 2
    with BeamPipeline() as pipeline:
        pairs, quarantine = pipeline | beam.Create([slice_record(labels)]) | DeriveBoxes()
        assert_that(pairs | beam.Map(len), equal_to([3]), label="OneListPerSlice")
        assert_that(
            pairs
            | beam.FlatMap(RowBundle.full_rows)
            | beam.Map(
                lambda r: (
                    r["label_name"],
                    tuple(r["box_xyxy_px"]),
                    tuple(r["box_size_mm"]),
                    r["n_components"],
                    r["single_instance"],
                )
            ),
            equal_to(
                [
                    ("liver", (5.0, 2.0, 25.0, 22.0), (10.0, 10.0), 1, True),
                    ("lesion", (30.0, 25.0, 33.0, 28.0), (1.5, 1.5), 2, False),
                    ("lesion", (35.0, 25.0, 38.0, 28.0), (1.5, 1.5), 2, False),
                ]
            ),
            label="Pairs",
        )
        assert_that(quarantine, equal_to([]), label="NoQuarantine")


def test_derive_lesion_sizes_measures_targets_and_quarantines_refused_fits():
    labels = np.zeros((60, 60), np.uint8)
    labels[5:45, 5:45] = 1  # not a target label
    labels[10:30, 10:20] = 2  # 10 x 20 px = 5 x 10 mm at 0.5 mm
    labels[50, 50] = 2  # one pixel: refused
    with BeamPipeline() as pipeline:
        pairs, quarantine = pipeline | beam.Create([slice_record(labels)]) | DeriveLesionSizes()
        assert_that(
            pairs
            | beam.FlatMap(RowBundle.full_rows)
            | beam.Map(lambda r: (r["label_name"], r["n_components"], round(r["longest_diameter_mm"]))),
            equal_to([("lesion", 2, 11)]),
            label="Pairs",
        )
        assert_that(
            quarantine | beam.Map(lambda q: (q["stage"], q["reason"], len(q["sample_id"]))),
            equal_to([("tumor_lesion_size", "fit_too_few_points", 32)]),
            label="Refused",
        )


def test_validate_pairs_quarantines_broken_rows():
    """Bundles are validated in batches of several bundles; only the broken row of a batch is quarantined,
    and its bundle goes on with the other row and the image."""
    labels = np.zeros((30, 40), np.uint8)
    labels[2:22, 5:25] = 1
    good = row_builders.detection_rows(slice_record(labels))[0]
    broken = {**good, "sample_id": "b" * 32, "box_xyxy_px": [5.0, 2.0, 45.0, 22.0]}
    others = [RowBundle.of([{**good, "sample_id": f"{n:032d}"}]) for n in range(20)]
    with BeamPipeline() as pipeline:
        valid, quarantine = pipeline | beam.Create([RowBundle.of([good, broken]), *others]) | ValidatePairs(max_rows=4)
        assert_that(
            valid | beam.Map(lambda bundle: tuple(row["sample_id"] for row in bundle.full_rows())),
            equal_to([(good["sample_id"],)] + [(bundle.rows[0]["sample_id"],) for bundle in others]),
            label="Valid",
        )
        assert_that(
            valid
            | beam.Filter(lambda bundle: bundle.rows[0]["sample_id"] == good["sample_id"])
            | beam.FlatMap(RowBundle.full_rows),
            equal_to([good]),
            label="GoodRowWithImage",
        )
        assert_that(
            quarantine,
            check(
                lambda q: (
                    len(q) == 1
                    and q[0]["reason"] == "invalid_pair"
                    and q[0]["sample_id"] == "b" * 32
                    and "outside" in q[0]["message"]
                ),
                "one invalid pair",
            ),
            label="Invalid",
        )


class _Explodes(beam.DoFn):
    def process(self, case):
        if case.case_id == "bad":
            raise ZeroDivisionError("a bug, not bad input")
        yield case.case_id


def test_unexpected_errors_are_quarantined_not_fatal():
    cases = [CaseRef("demo", name, name, f"/data/{name}.nii.gz", "", (), ()) for name in ("good", "bad")]
    with BeamPipeline() as pipeline:
        results, quarantine = pipeline | beam.Create(cases) | Guarded("load", _Explodes())
        assert_that(results, equal_to(["good"]), label="Results")
        assert_that(
            quarantine,
            check(
                lambda q: (
                    len(q) == 1
                    and q[0]["reason"] == "unexpected_error"
                    and "ZeroDivisionError" in q[0]["message"]
                    and q[0]["source_uri"] == "/data/bad.nii.gz"
                ),
                "one unexpected error",
            ),
            label="Quarantine",
        )


def test_write_table_writes_sorted_shards_and_counts(tmp_path):
    labels = np.zeros((30, 40), np.uint8)
    for index in range(6):
        labels[2 + 4 * index : 4 + 4 * index, 1:39:3] = 1 + index % 2
    rows = row_builders.detection_rows(slice_record(labels))
    output = str(tmp_path / "out")
    with BeamPipeline() as pipeline:
        counts = pipeline | beam.Create([RowBundle.of(rows)]) | WriteTable(output, partition_of, lambda r: r["task"], 1)
        assert_that(
            counts | beam.Map(lambda c: (c["partition"], c["rows"])),
            equal_to([("dataset=demo/task=detection/split=train", len(rows))]),
        )
    files = glob.glob(os.path.join(output, "dataset=demo/task=detection/split=train/*.parquet"))
    table = pq.read_table(files[0])
    assert len(files) == 1 and table.num_rows == len(rows)
    assert table.column("sample_id").to_pylist() == sorted(r["sample_id"] for r in rows)
    assert table.column("image").combine_chunks().field("bytes").to_pylist() == [rows[0]["image"]["bytes"]] * len(rows)
    assert "dataset" not in table.column_names and table.schema.metadata[b"huggingface"]


def test_duplicate_sample_ids_fail_the_run_naming_both():
    labels = np.zeros((30, 40), np.uint8)
    labels[2:22, 5:25] = 1
    row = row_builders.detection_rows(slice_record(labels))[0]
    with pytest.raises(Exception, match=f"sample_id {row['sample_id']} is shared by"):
        with BeamPipeline() as pipeline:
            _ = pipeline | beam.Create([RowBundle.of([row]), RowBundle.of([dict(row)])]) | CheckUniqueIds()


def test_write_table_splits_a_partition_into_deterministic_sorted_shards(tmp_path, monkeypatch):
    """Bundles of two rows: each bundle's rows stay side by side in one file and one row group (a row group of
    about one bundle here), bundles in the order of their first sample_id, a bundle's rows by sample_id."""
    monkeypatch.setattr(write_module, "ROW_GROUP_BYTES", 1)
    labels = np.zeros((30, 40), np.uint8)
    for index in range(6):
        labels[2 + 4 * index : 4 + 4 * index, 1:39:3] = 1 + index % 2
    rows = row_builders.detection_rows(slice_record(labels))
    bundles = [RowBundle.of(rows[start : start + 2]) for start in range(0, len(rows), 2)]
    target_mb = 6 * row_bytes(rows[0]) / 2**20  # about three bundles per file
    digests = []
    for attempt in range(2):
        output = str(tmp_path / f"out{attempt}")
        with BeamPipeline() as pipeline:
            _ = pipeline | beam.Create(bundles) | WriteTable(output, partition_of, lambda r: r["task"], target_mb)
        files = sorted(glob.glob(os.path.join(output, "dataset=demo/task=detection/split=train/*.parquet")))
        tables = [pq.read_table(f) for f in files]
        file_of = {i: n for n, t in enumerate(tables) for i in t.column("sample_id").to_pylist()}
        assert all(len({file_of[row["sample_id"]] for row in bundle.rows}) == 1 for bundle in bundles)
        assert 1 < len(files) <= shard_count(sum(row_bytes(r) for r in rows), target_mb)  # a shard may be empty
        bundle_of = {row["sample_id"]: n for n, bundle in enumerate(bundles) for row in bundle.rows}
        for file in files:
            groups = pq.ParquetFile(file)
            in_groups = [groups.read_row_group(g).column("sample_id").to_pylist() for g in range(groups.num_row_groups)]
            assert all(len({bundle_of[i] for i in ids}) == 1 and ids == sorted(ids) for ids in in_groups)
            assert [ids[0] for ids in in_groups] == sorted(ids[0] for ids in in_groups)
        assert sorted(i for t in tables for i in t.column("sample_id").to_pylist()) == sorted(
            r["sample_id"] for r in rows
        )
        digests.append([hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files])
    assert digests[0] == digests[1]
    group = pq.ParquetFile(files[0]).metadata.row_group(0)
    codecs = {group.column(i).path_in_schema: group.column(i).compression for i in range(group.num_columns)}
    assert codecs.pop("image.bytes") == "UNCOMPRESSED"  # PNG is deflated already
    assert set(codecs) == set(column_paths(tables[0].schema)) - {"image.bytes"} and set(codecs.values()) == {"ZSTD"}


def test_planned_bytes_size_the_files_and_counts_stay_exact(tmp_path):
    """With a plan's estimate the write needs no count of the rows first: files follow the estimate (an
    unplanned partition gets one), while the returned counts are still those of the rows."""
    labels = np.zeros((30, 40), np.uint8)
    for index in range(6):
        labels[2 + 4 * index : 4 + 4 * index, 1:39:3] = 1 + index % 2
    rows = row_builders.detection_rows(slice_record(labels))
    moved = [{**row, "split": "test", "sample_id": "f" * 31 + str(i)} for i, row in enumerate(rows[:4])]
    target_mb = 1.0
    planned = [("dataset=demo/task=detection/split=train", 5 * 2**20 // 2)] * 2  # two cases: 5 MB in all
    output = str(tmp_path / "out")
    with BeamPipeline() as pipeline:
        counts = (
            pipeline
            | "Rows" >> beam.Create([RowBundle.of([row]) for row in rows + moved])
            | WriteTable(
                output,
                partition_of,
                lambda r: r["task"],
                target_mb,
                planned_bytes=pipeline | "Planned" >> beam.Create(planned),
            )
        )
        assert_that(
            counts | beam.Map(lambda c: (c["partition"], c["rows"])),
            equal_to(
                [
                    ("dataset=demo/task=detection/split=train", len(rows)),
                    ("dataset=demo/task=detection/split=test", len(moved)),
                ]
            ),
        )
    train = glob.glob(os.path.join(output, "dataset=demo/task=detection/split=train/*.parquet"))
    test = glob.glob(os.path.join(output, "dataset=demo/task=detection/split=test/*.parquet"))
    assert all(f.endswith("-of-00005.parquet") for f in train) and 1 < len(train) <= 5  # a shard may be empty
    assert [os.path.basename(f) for f in test] == ["part-00000-of-00001.parquet"]
    assert sum(pq.read_metadata(f).num_rows for f in train) == len(rows)


def test_record_batch_equals_arrow_row_conversion():
    """The write's batch (PNG bytes joined in one copy) is the batch Arrow makes from the rows, pointer rows
    (no bytes) and empty bytes included, with the schema's metadata."""
    labels = np.zeros((30, 40), np.uint8)
    labels[2:10, 3:9], labels[15:25, 20:30] = 1, 2
    rows = row_builders.detection_rows(slice_record(labels))
    rows += [
        {**rows[0], "sample_id": "p" * 32, "image_mode": "pointer", "image": {"bytes": None, "path": None}},
        {**rows[1], "sample_id": "e" * 32, "image": {"bytes": b"", "path": "x.png"}},
    ]
    schema = schema_for("detection")
    expected = pa.RecordBatch.from_pylist([file_row(row, schema) for row in rows], schema=schema)
    batch = record_batch(rows, schema)
    assert batch.equals(expected) and batch.schema.equals(schema, check_metadata=True)
    values = [b"\x89PNG", None, b"", b"abc" * 1000, None]
    assert binary_array(values).equals(pa.array(values, pa.binary()))
    assert binary_array([b"a", b"bc"]).equals(pa.array([b"a", b"bc"], pa.binary()))
