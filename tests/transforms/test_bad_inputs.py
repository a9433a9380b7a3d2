"""Bad input is quarantined with a reason and loses nothing else; I/O failures are left to the runner."""

from __future__ import annotations

import glob
import json
import os

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamPipeline

from pipeline.cli import main
from pipeline.stages import Guarded
from tests.conftest import brain_case, make_msd_task, write_nifti
from transforms.caseref import CaseRef, SequenceRef
from transforms.intensity import percentile_window, to_uint8
from transforms.loading import load_nifti_case
from transforms.phantoms import grid_affine
from transforms.slicing import extract_slices


def quarantine_rows(output):
    files = glob.glob(os.path.join(output, "quarantine", "*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_leftovers_of_a_failed_run_are_not_overwritten(tmp_path, capsys):
    output = tmp_path / "out"
    leftover = output / "quarantine" / "part-00000-of-00001.parquet"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"from an earlier run")
    assert main(["build", "--source", "msd=" + str(tmp_path), "--output", str(output)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert leftover.read_bytes() == b"from an earlier run"


class _FlakyStorage(beam.DoFn):
    def process(self, element):
        raise ConnectionResetError("network blip")


def test_io_errors_fail_the_bundle_for_a_retry_instead_of_quarantining():
    with pytest.raises(Exception, match="network blip"):
        with BeamPipeline() as pipeline:
            _ = pipeline | beam.Create([1]) | Guarded("load", _FlakyStorage())


def test_nan_voxels_do_not_blacken_a_percentile_window():
    volume = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    volume[0, 0, 0] = np.nan
    window = percentile_window(volume)
    assert np.isfinite([window.low, window.high]).all() and window.low < window.high
    pixels = to_uint8(volume[5], window)
    assert pixels.min() < 128 < pixels.max()


def test_labels_lost_to_coarse_spacing_are_reported(tmp_path):
    shape = (40, 40, 10)
    affine = grid_affine("RAS", (0.5, 0.5, 2.0))
    labels = np.zeros(shape, np.uint8)
    labels[5:35, 5:35, 3:6] = 1
    labels[20, 5:35, 3:6] = 2  # a plate one voxel (0.5 mm) thick
    image_path = write_nifti(tmp_path / "img.nii.gz", labels.astype(np.int16), affine)
    mask_path = write_nifti(tmp_path / "seg.nii.gz", labels, affine)
    case = CaseRef("t", "c", "c", image_path, mask_path, (SequenceRef("CT", "CT"),), ((1, "organ"), (2, "plate")))
    loaded = load_nifti_case(case, image_path, mask_path)
    assert not any(c.labels_lost for c in extract_slices(loaded, "finest"))
    lost = {(c.plane, c.labels_lost) for c in extract_slices(loaded, 2.0) if c.labels_lost}
    assert ("axial", (2,)) in lost


def test_msd_listing_problems_and_empty_cases_are_quarantined(tmp_path):
    task = make_msd_task(tmp_path / "msd", n_cases=2)
    image, _, affine = brain_case(seed=5)
    write_nifti(os.path.join(task, "imagesTr", "BRATS_009.nii.gz"), image, affine)
    write_nifti(os.path.join(task, "labelsTr", "BRATS_009.nii.gz"), np.zeros(image.shape[:3], np.uint8), affine)
    meta_path = os.path.join(task, "dataset.json")
    meta = json.load(open(meta_path))
    meta["training"] += [
        {"image": "./imagesTr/BRATS_009.nii.gz", "label": "./labelsTr/BRATS_009.nii.gz"},  # empty mask
        {"image": "../../etc/passwd", "label": "./labelsTr/BRATS_001.nii.gz"},  # traversal
        {"image": "./imagesTr/BRATS_002.nii.gz"},  # no label
        {"image": "./imagesTr/BRATS_404.nii.gz", "label": "./labelsTr/BRATS_404.nii.gz"},  # missing files
    ]
    json.dump(meta, open(meta_path, "w"))
    output = str(tmp_path / "out")
    assert main(["build", "--source", f"msd={task}", "--output", output]) == 0
    reasons = sorted((q["case_id"], q["reason"]) for q in quarantine_rows(output))
    assert reasons == [
        ("Task01_BrainTumour/BRATS_009", "empty_case"),
        ("Task01_BrainTumour/BRATS_404", "missing_file"),
        ("Task01_BrainTumour/training[3]", "unsafe_path"),
        ("Task01_BrainTumour/training[4]", "bad_listing"),
    ]
    stats = json.load(open(os.path.join(output, "stats.json")))
    assert stats["cases"]["msd"] == {"listed": 6, "with_pairs": 2}


def test_dataflow_cannot_be_given_local_paths(tmp_path, msd_task, capsys):
    argv = ["build", "--source", f"msd={msd_task}", "--output", str(tmp_path / "o"), "--runner", "DataflowRunner"]
    assert main(argv) == 2
    assert "cannot read local paths" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_window_maps_to_rounded_clipped_bytes_with_non_finite_voxels_at_the_ends(dtype):
    """to_uint8 against its definition: round(255 (v - low) / (high - low)) clipped to 0..255; NaN and -inf
    give 0, +inf and the largest finite values 255."""
    from transforms.intensity import Window

    window = Window("w", -160.0, 240.0)
    values = np.random.default_rng(7).normal(40.0, 300.0, 4000).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        values[:5] = [np.nan, np.inf, -np.inf, np.finfo(dtype).max, -np.finfo(dtype).max]
    with np.errstate(over="ignore"):  # float64 extremes overflow float32 to inf, as intended
        expected = [
            0
            if np.isnan(v)
            else int(
                min(255, max(0, np.rint(np.float32(np.float32(v) - np.float32(-160.0)) * np.float32(255.0 / 400.0))))
            )
            for v in values
        ]
        assert to_uint8(values.reshape(40, 100), window).ravel().tolist() == expected


def test_window_rounds_ties_to_even_as_numpy_does():
    """The cast rounds in OpenCV: x.5 must go to the even neighbour, as np.rint (the pixels' definition)."""
    from transforms.intensity import Window

    ties = np.arange(256, dtype=np.float32) + np.float32(0.5)
    pixels = to_uint8(ties[:255].reshape(15, 17), Window("identity", 0.0, 255.0)).ravel()
    assert pixels.tolist() == np.rint(ties[:255]).astype(int).tolist()
