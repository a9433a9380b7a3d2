"""Shared fixtures: NIfTI phantom writers, a tiny MSD-layout dataset and the demo data."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pipeline.sources import demo
from transforms.phantoms import Cuboid, Ellipsoid, centred_affine, intensities, rasterize


# --- NIfTI files ------------------------------------------------------------------------------

def write_nifti(path, array, affine) -> str:
    """Write a .nii.gz with sform and qform set; returns the path as str."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(demo.nifti_gz_bytes(array, affine))
    return str(path)


BRAIN_MSD_LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}


def brain_case(seed: int, orientation: str = "LPS", spacing=(1.0, 1.2, 1.5)):
    """A 4-channel brain-tumour-like 4D image (channels last) and its 3-label map."""
    shape = (40, 36, 30)
    affine = centred_affine(shape, orientation, spacing)
    structures = (Ellipsoid(1, (0.0, 0.0, 0.0), (12.0, 10.0, 9.0)), Cuboid(2, (-4.0, -4.0, -4.0), (4.0, 4.0, 4.0)),
                  Cuboid(3, (-2.0, -2.0, -2.0), (2.0, 2.0, 2.0)))
    labels = rasterize(shape, affine, structures)
    channels = [intensities(labels, {1: 300.0 + 50 * c, 2: 600.0, 3: 900.0}, 100.0, 10.0, seed + c) for c in range(4)]
    return np.stack(channels, axis=-1).astype(np.int16), labels, affine


def make_msd_task(root, n_cases: int = 3, broken: str | None = None) -> str:
    """An MSD BrainTumour-style task folder (4D images, dataset.json, macOS '._' debris).

    `broken` = 'unknown_label' puts label 7 (not in dataset.json) into the last case's mask.
    """
    task = os.path.join(str(root), "Task01_BrainTumour")
    training = []
    for index in range(n_cases):
        name = f"BRATS_{index + 1:03d}.nii.gz"
        image, labels, affine = brain_case(seed=10 * index)
        if broken == "unknown_label" and index == n_cases - 1:
            labels[labels == 3] = 7
        write_nifti(os.path.join(task, "imagesTr", name), image, affine)
        write_nifti(os.path.join(task, "labelsTr", name), labels, affine)
        with open(os.path.join(task, "imagesTr", "._" + name), "wb") as handle:
            handle.write(b"\x00\x05\x16\x07 macOS resource fork")
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {"name": "BRATS", "licence": "CC-BY-SA 4.0", "tensorImageSize": "4D",
            "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}, "labels": BRAIN_MSD_LABELS,
            "numTraining": n_cases, "training": training, "test": []}
    with open(os.path.join(task, "dataset.json"), "w") as handle:
        json.dump(meta, handle)
    return task


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> str:
    """The demo dataset, generated once per test session at the demo's default root.

    The default root follows XDG_CACHE_HOME, pointed here at a temporary folder so tests
    never write into the user's cache.
    """
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    root = demo.DemoSource().default_root()
    demo.generate(root)
    return root


@pytest.fixture
def msd_task(tmp_path) -> str:
    return make_msd_task(tmp_path / "msd", broken="unknown_label")
