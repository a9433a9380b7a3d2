"""Writers that store one phantom as a DICOM series or an MHA/NRRD file (tests only)."""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def _lps_geometry(affine_ras):
    """(origin, unit directions of i/j/k, spacings) in LPS."""
    linear = LPS_FROM_RAS @ affine_ras[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    return LPS_FROM_RAS @ affine_ras[:3, 3], linear / spacing, spacing


def write_itk(path, array_ijk: np.ndarray, affine_ras: np.ndarray) -> str:
    """An MHA/NRRD file (by extension) holding `array_ijk` on the grid of `affine_ras`."""
    origin, directions, spacing = _lps_geometry(affine_ras)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)))
    image.SetOrigin(tuple(origin))
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple(directions.ravel()))
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    sitk.WriteImage(image, str(path))
    return str(path)


def _ct_dataset(sop_class: str, rows: int, columns: int) -> Dataset:
    """A CT image dataset with file meta, UIDs and a signed 16-bit monochrome pixel format."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SOPClassUID, dataset.Modality = sop_class, "CT"
    dataset.Rows, dataset.Columns = rows, columns
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 1
    return dataset


def write_dicom_series(
    folder,
    array_ijk: np.ndarray,
    affine_ras: np.ndarray,
    *,
    slope=1.0,
    intercept=-1024.0,
    skip_slices=(),
    duplicate_slice=None,
    drop_tag=None,
) -> str:
    """A CT series, one file per k-slice, InstanceNumber deliberately reversed (never sort by it).

    Faults on request: `skip_slices` leaves slices out, `duplicate_slice` writes one slice twice,
    `drop_tag` deletes a tag from every file. Patient tags are filled to prove they never leak.
    """
    origin, directions, spacing = _lps_geometry(affine_ras)
    os.makedirs(folder, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    n_slices = array_ijk.shape[2]
    slices = [k for k in range(n_slices) if k not in skip_slices]
    if duplicate_slice is not None:
        slices.append(duplicate_slice)
    for number, k in enumerate(slices):
        dataset = _ct_dataset(CTImageStorage, array_ijk.shape[1], array_ijk.shape[0])
        dataset.PatientName, dataset.PatientID, dataset.SeriesDescription = "Secret^Patient", "MRN-12345", "private"
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.InstanceNumber = n_slices - k
        position = origin + directions[:, 2] * spacing[2] * k
        dataset.ImagePositionPatient = [f"{v:.6f}" for v in position]
        dataset.ImageOrientationPatient = [f"{v:.8f}" for v in (*directions[:, 0], *directions[:, 1])]
        dataset.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # between rows, between columns
        dataset.SliceThickness = f"{spacing[2]:.6f}"
        dataset.RescaleSlope, dataset.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        stored = np.rint((array_ijk[:, :, k].T - intercept) / slope).astype(np.int16)
        dataset.PixelData = stored.tobytes()
        if drop_tag:
            delattr(dataset, drop_tag)
        dataset.save_as(os.path.join(folder, f"IM{number:04d}.dcm"), enforce_file_format=True)
    return str(folder)


def write_enhanced_multiframe(
    path, array_ijk: np.ndarray, affine_ras: np.ndarray, *, slope=2.0, intercept=-1000.0
) -> str:
    """One enhanced (multi-frame) CT object: geometry and rescale in functional groups, frames shuffled."""
    from pydicom.uid import EnhancedCTImageStorage

    origin, directions, spacing = _lps_geometry(affine_ras)
    order = np.random.default_rng(0).permutation(array_ijk.shape[2])  # frames need not be stored in order
    dataset = _ct_dataset(EnhancedCTImageStorage, array_ijk.shape[1], array_ijk.shape[0])
    dataset.SeriesInstanceUID, dataset.StudyInstanceUID = generate_uid(), generate_uid()
    dataset.NumberOfFrames = len(order)
    shared = Dataset()
    orientation, measures, transform = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [f"{v:.8f}" for v in (*directions[:, 0], *directions[:, 1])]
    measures.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
    measures.SliceThickness = f"{spacing[2]:.6f}"
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = f"{slope:g}", f"{intercept:g}", "HU"
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    shared.PixelValueTransformationSequence = [transform]
    dataset.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in order:
        group, position = Dataset(), Dataset()
        position.ImagePositionPatient = [f"{v:.6f}" for v in origin + directions[:, 2] * spacing[2] * k]
        group.PlanePositionSequence = [position]
        frames.append(group)
    dataset.PerFrameFunctionalGroupsSequence = frames
    stored = [np.rint((array_ijk[:, :, k].T - intercept) / slope).astype(np.int16) for k in order]
    dataset.PixelData = np.stack(stored).tobytes()
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    dataset.save_as(str(path), enforce_file_format=True)
    return str(path)
