"""The portable runner path (what Flink uses), executed on Beam's local job service, and offline translation."""

from __future__ import annotations

import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.config import BuildConfig, SourceSpec
from pipeline.dag import build_graph
from pipeline.sources import get_source
from tests.pipeline.test_cli_end_to_end import part_file_digests

TWO_CASES = "Task02_DemoMR/demo_mr_00,Task01_DemoCT/demo_ct_02"


def test_portable_runner_with_external_workers_writes_the_direct_runners_bytes(
    tmp_path, demo_root, portable_runner_options
):
    outputs = {}
    for name, extra in (("direct", []), ("portable", portable_runner_options)):
        outputs[name] = str(tmp_path / name)
        command = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "build",
            "--source",
            f"demo={demo_root}",
            "--output",
            outputs[name],
            "--cases",
            TWO_CASES,
            *extra,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    digests = part_file_digests(outputs["direct"])
    assert len(digests) >= 2 and part_file_digests(outputs["portable"]) == digests


def test_the_build_translates_to_a_portable_pipeline_proto(tmp_path, demo_root):
    """What a job server receives: every stage present, and the proto round-trips."""
    config = BuildConfig(sources=(SourceSpec("demo", demo_root),), output=str(tmp_path / "out"))
    config = config.for_runner("PortableRunner")
    cases = get_source("demo").list_cases(demo_root)[:2]
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=PortableRunner"]))
    build_graph(pipeline, config, cases)
    proto = pipeline.to_runner_api()
    names = {transform.unique_name for transform in proto.components.transforms.values()}
    for stage in (
        "PlanCases",
        "CutUnits/SpreadUnits",
        "SharedSplits",
        "CutUnits/SlicePairs/ExtractSlices",
        "CutUnits/SlicePairs/DeriveBoxes",
        "CutUnits/SlicePairs/DeriveLesionSizes",
        "CutUnits/SlicePairs/DeriveLandmarkMeasures",
        "ApplySharedSplits",
        "ValidatePairs",
        "WritePairs",
        "WriteQuarantine",
        "WriteCounts",
    ):
        assert stage in names
    assert not [name for name in names if "Here" in name]  # every case spreads off the DirectRunner
    again = beam.Pipeline.from_runner_api(proto, pipeline.runner, pipeline.options).to_runner_api()
    assert {t.unique_name for t in again.components.transforms.values()} == names


def upstream_transforms(proto, pcollection_id: str) -> set[str]:
    """Names of every leaf transform that a PCollection depends on."""
    leaves = [t for t in proto.components.transforms.values() if not t.subtransforms]
    producer = {pcoll: t for t in leaves for pcoll in t.outputs.values()}
    seen, todo = set(), [pcollection_id]
    while todo:
        transform = producer.get(todo.pop())
        if transform is not None and transform.unique_name not in seen:
            seen.add(transform.unique_name)
            todo += list(transform.inputs.values())
    return seen


@pytest.mark.parametrize("runner", ["PortableRunner", "DirectRunner"])
def test_the_pair_rows_cross_one_shuffle_as_their_file_sizes_come_from_the_plans(tmp_path, demo_root, runner):
    """WritePairs' shard counts (a side input) must not depend on the rows: if they did, every runner would
    materialise all rows, PNGs included, once more before the write's shuffle."""
    config = BuildConfig(sources=(SourceSpec("demo", demo_root),), output=str(tmp_path / "out")).for_runner(runner)
    pipeline = beam.Pipeline(options=PipelineOptions([f"--runner={runner}"]))
    build_graph(pipeline, config, get_source("demo").list_cases(demo_root)[:2])
    proto = pipeline.to_runner_api()
    assign = [
        t
        for t in proto.components.transforms.values()
        if t.unique_name.startswith("WritePairs/WriteTable/AssignShard") and t.spec.urn == "beam:transform:pardo:v1"
    ]
    side_inputs = beam_runner_api_pb2.ParDoPayload.FromString(assign[0].spec.payload).side_inputs
    assert len(assign) == 1 and len(side_inputs) == 1
    upstream = upstream_transforms(proto, assign[0].inputs[next(iter(side_inputs))])
    assert any(name.startswith("PlanCases") for name in upstream)
    assert not any(name.startswith(("CutUnits", "WritePairs/WriteTable/ByPartition")) for name in upstream)


def test_dataflow_runner_builds_the_job_without_submitting_it(demo_root):
    """DataflowRunner --dry_run: Beam applies its Dataflow translations and builds the job, no network."""
    config = BuildConfig(sources=(SourceSpec("demo", demo_root),), output="gs://medvision-bucket/out/run1")
    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--project=medvision-test",
            "--region=europe-west4",
            "--no_auth",
            "--dry_run=True",
            "--temp_location=gs://medvision-bucket/tmp",
            "--staging_location=gs://medvision-bucket/staging",
            "--sdk_location=container",
            "--sdk_container_image=europe-docker.pkg.dev/medvision-test/beam/medvision:1",
            "--machine_type=n2-standard-4",
            "--max_num_workers=50",
        ]
    )
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, config, get_source("demo").list_cases(demo_root)[:2])
    job = pipeline.run().job
    assert job.proto.type_.name == "JOB_TYPE_BATCH"
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert {"PlanCases", "CutUnits/SlicePairs/ExtractSlices", "SharedSplits", "WritePairs"} <= names


def test_building_the_graph_runs_no_bytecode_inference_of_the_steps(tmp_path, demo_root, monkeypatch):
    """The steps declare their output type: Beam's inference of their `process` cost 0.05-0.35 s each, in
    every run and test pipeline."""
    from apache_beam.typehints import trivial_inference

    inferred, infer = [], trivial_inference.infer_return_type
    monkeypatch.setattr(
        trivial_inference,
        "infer_return_type",
        lambda fn, *args, **kwargs: inferred.append(fn) or infer(fn, *args, **kwargs),
    )
    config = BuildConfig(sources=(SourceSpec("demo", demo_root),), output=str(tmp_path / "out"))
    build_graph(beam.Pipeline(), config, get_source("demo").list_cases(demo_root)[:2])
    assert inferred  # the patch is seen: the graph's lambdas are still inferred
    dofns = [getattr(fn, "__self__", None) for fn in inferred]
    dofns = [getattr(dofn, "_fn", dofn) for dofn in dofns]  # inside Beam's exception-handling wrapper
    assert not [dofn for dofn in dofns if type(dofn).__module__ == "pipeline.stages"]
