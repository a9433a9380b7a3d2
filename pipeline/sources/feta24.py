"""FeTA 2024 (fetal brain MRI, Zurich): tissue segmentation and biometry from landmark masks.

Cite: Payette K. et al., "An automatic multi-tissue human fetal brain segmentation benchmark
using the Fetal Tissue Annotation Dataset", Scientific Data 8, 167 (2021); FeTA 2024 biometry.

Raw layout (feta_2.4/):
    sub-<NNN>/anat/sub-<NNN>_rec-<recon>_T2w.nii.gz  and  _dseg.nii.gz        (original space)
    derivatives/biometry/sub-<NNN>/anat/sub-<NNN>_rec-<recon>_meas.nii.gz      (re-aligned space)
    derivatives/biometry/sub-<NNN>/anat/sub-<NNN>_rec-<recon>_trf.txt          (ITK transform)

Each subject gives a detection case (T2w + dseg) and, when it has biometry, a biometry case:
the T2w resampled onto the `meas` grid through the transform, with the five distances drawn
from the `meas` mask, whose label L holds the two voxels of one measurement. Both cases share
the subject, so they share the split. Not redistributable: publish pointer rows only.

Unsure (sources.yaml): label 1 = LCC and 2 = HV (the biometry README's list says the reverse);
the transform is read in ITK's resampling convention (it maps re-aligned points to original
points), which is what registering the original onto the re-aligned space produces.
"""

from __future__ import annotations

import re

from pipeline import storage
from pipeline.sources.base import Source, SourceError, SourceInfo
from transforms.caseref import CaseRef, LabelName, LandmarkPair, LandmarkSpec, RealignSpec, SequenceRef
from transforms.landmarks import LandmarkSpace, Measurement

LICENCE = "LicenseRef-FeTA-Synapse-data-use-terms"
TISSUE_LABELS = tuple(
    LabelName(value, name)
    for value, name in enumerate(
        (
            "external cerebrospinal fluid",
            "grey matter",
            "white matter",
            "ventricles",
            "cerebellum",
            "deep grey matter",
            "brainstem",
        ),
        start=1,
    )
)
# the biometry mask's label of each measurement, its two points, and the stored axis whose larger index
# makes the first point
LANDMARK_PAIRS = tuple(
    LandmarkPair(*pair)
    for pair in ((1, "P1", "P2", 1), (2, "P3", "P4", 2), (3, "P5", "P6", 0), (4, "P7", "P8", 0), (5, "P9", "P10", 0))
)
MEASUREMENTS = (
    Measurement("L-1-2", "distance", ("P1", "P2"), "sagittal", "length of corpus callosum (LCC)"),
    Measurement("L-3-4", "distance", ("P3", "P4"), "sagittal", "height of vermis (HV)"),
    Measurement("L-5-6", "distance", ("P5", "P6"), "axial", "brain biparietal diameter (bBIP)"),
    Measurement("L-7-8", "distance", ("P7", "P8"), "axial", "skull biparietal diameter (sBIP)"),
    Measurement("L-9-10", "distance", ("P9", "P10"), "coronal", "transverse cerebellar diameter (TCD)"),
)
IMAGE_PATTERN = re.compile(r"(sub-[^_/]+)_rec-([^_/]+)_T2w\.nii\.gz$")


def list_feta(root: str, dataset: str) -> list[CaseRef]:
    """Detection and biometry cases of every `sub-*/anat/*_T2w.nii.gz` under `root`."""
    images = storage.glob(storage.join(root, "sub-*", "anat", "*_T2w.nii.gz"))
    if not images:
        raise SourceError(f"no sub-*/anat/*_T2w.nii.gz under {root}: not a FeTA root")
    biometry = set(storage.glob(storage.join(root, "derivatives", "biometry", "sub-*", "anat", "*_meas.nii.gz")))
    cases = []
    for image_uri in images:
        match = IMAGE_PATTERN.search(image_uri)
        if not match:
            continue
        subject, recon = match.groups()
        stem = f"{subject}_rec-{recon}"
        t2w = (SequenceRef("T2w", "MRI"),)
        # beside the image: a `_T2w.` in a folder name above it must not move the mask elsewhere
        mask_uri = storage.join(storage.dirname(image_uri), f"{stem}_dseg.nii.gz")
        cases.append(
            CaseRef(
                dataset=dataset,
                case_id=stem,
                subject_id=subject,
                image_uri=image_uri,
                mask_uri=mask_uri,
                sequences=t2w,
                labels=TISSUE_LABELS,
                licence=LICENCE,
                redistributable=False,
            )
        )
        folder = storage.join(root, "derivatives", "biometry", subject, "anat")
        meas_uri = storage.join(folder, f"{stem}_meas.nii.gz")
        if meas_uri in biometry:
            cases.append(
                CaseRef(
                    dataset=dataset,
                    case_id=f"{stem}/biometry",
                    subject_id=subject,
                    image_uri=image_uri,
                    mask_uri="",
                    sequences=t2w,
                    labels=(),
                    licence=LICENCE,
                    redistributable=False,
                    realign=RealignSpec(reference_uri=meas_uri, transform_uri=storage.join(folder, f"{stem}_trf.txt")),
                    landmarks=LandmarkSpec(
                        uri=meas_uri,
                        reader="label_pairs",
                        space=LandmarkSpace("voxel"),
                        measurements=MEASUREMENTS,
                        pairs=LANDMARK_PAIRS,
                    ),
                )
            )
    return sorted(cases, key=lambda case: case.case_id)


class Feta24Source(Source):
    info = SourceInfo(
        name="feta24",
        anatomy="fetal brain",
        modalities=("MRI",),
        tasks=("detection", "angle_distance"),
        licence=LICENCE,
        redistributable=False,
        citation="Payette et al., Fetal Tissue Annotation Dataset, Sci Data 8, 167 (2021); FeTA 2024 biometry",
    )
    layout = "sub-NNN/anat/…_T2w.nii.gz, _dseg; derivatives/biometry/…_{meas.nii.gz,trf.txt}"

    def list_cases(self, root: str) -> list[CaseRef]:
        return list_feta(root, self.info.name)
