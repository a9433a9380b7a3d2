"""Medical Segmentation Decathlon (MSD) layout: `Task<NN>_<Name>/{dataset.json, imagesTr/, labelsTr/}`.

Also the generic adapter for user data in this layout: `training` entries may name NIfTI,
MHA/NRRD files, DICOM series folders (an image path ending in `/`) or archived series
(.zip, .tar, .tar.gz, .tgz); labels may be NIfTI, MHA/NRRD or a DICOM SEG (.dcm).

Cite: Antonelli M. et al., "The Medical Segmentation Decathlon", Nature Communications 13, 4128 (2022).

Label names and modalities come from each task's `dataset.json`; a multi-modality task
(BrainTumour, Prostate) stores 4D images whose axis 3 is the channel, split into one
sequence per channel. The `training` list of `dataset.json` names the cases, which skips the
macOS `._*` files that ship inside the archives. `imagesTs/` has no labels and is not used.
"""
from __future__ import annotations

import json
import posixpath

from pipeline import storage
from pipeline.sources.base import Source, SourceError, SourceInfo, case_stem
from transforms.case import CaseRef, SequenceRef
from transforms.errors import Reason

LICENCE = "CC-BY-SA-4.0"
# CT windows by MSD task name; every other CT task is abdominal soft tissue.
CT_WINDOW_BY_TASK = {"Lung": "lung"}
# Tumour/lesion size targets by task name (MedVision's T/L tasks on MSD).
LESION_LABELS_BY_TASK = {"BrainTumour": (1, 2, 3), "Colon": (1,), "HepaticVessel": (2,), "Liver": (2,),
                         "Lung": (1,), "Pancreas": (2,)}


def find_task_roots(root: str) -> list[str]:
    """`root` itself when it holds dataset.json, else its `*/dataset.json` subfolders."""
    if storage.exists(storage.join(root, "dataset.json")):
        return [root.rstrip("/")]
    roots = [storage.dirname(path) for path in storage.glob(storage.join(root, "*", "dataset.json"))]
    if not roots:
        raise SourceError(f"no dataset.json in {root} or its subfolders: not an MSD-layout root")
    return roots


def read_dataset_json(task_root: str) -> dict:
    uri = storage.join(task_root, "dataset.json")
    try:
        return json.loads(storage.read_bytes(uri))
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot read {uri}: {exc}") from exc


def modality_kind(name: str) -> str:
    return "CT" if name.strip().upper() == "CT" else "MRI"


def sequences_of(meta: dict, task_name: str) -> tuple[SequenceRef, ...]:
    """One sequence per entry of `modality`; channels only when there is more than one."""
    modalities = sorted(((int(k), v) for k, v in meta.get("modality", {"0": "CT"}).items()))
    window = next((w for key, w in CT_WINDOW_BY_TASK.items() if key in task_name), None)
    multi = len(modalities) > 1
    return tuple(
        SequenceRef(name=name, modality=modality_kind(name), channel=index if multi else None, ct_window=window)
        for index, name in modalities
    )


def labels_of(meta: dict) -> tuple[tuple[int, str], ...]:
    return tuple(sorted((int(k), v) for k, v in meta.get("labels", {}).items() if int(k) != 0))


def task_lesion_labels(task_name: str) -> tuple[int, ...]:
    """T/L target labels of an MSD task folder such as `Task03_Liver`."""
    return LESION_LABELS_BY_TASK.get(task_name.partition("_")[2], ())


def list_task(task_root: str, dataset: str, licence: str, lesion_labels: tuple[int, ...]) -> list[CaseRef]:
    """The labelled training cases of one MSD-layout task folder.

    A malformed `training` entry becomes a case with a `listing_error`, quarantined by the
    pipeline like any other bad input; it never stops the listing.
    """
    meta = read_dataset_json(task_root)
    task_name = storage.basename(task_root)
    try:
        sequences, labels = sequences_of(meta, task_name), labels_of(meta)
    except (AttributeError, TypeError, ValueError) as exc:
        raise SourceError(f"{storage.join(task_root, 'dataset.json')}: bad modality or labels map ({exc})") from exc
    release = meta.get("release") if isinstance(meta.get("release"), str) else None
    cases = []
    for number, entry in enumerate(meta.get("training", [])):
        fields = dict(dataset=dataset, sequences=sequences, labels=labels, lesion_labels=lesion_labels,
                      licence=licence, redistributable=True, dataset_version=release)
        try:
            image, label = (safe_relative(entry[key]) for key in ("image", "label"))
        except (KeyError, TypeError, ValueError) as exc:
            reason = Reason.UNSAFE_PATH if isinstance(exc, ValueError) else Reason.BAD_LISTING
            case_id = f"{task_name}/training[{number}]"
            cases.append(CaseRef(case_id=case_id, subject_id=case_id, image_uri=storage.join(task_root, "dataset.json"),
                                 mask_uri="", listing_error=(reason.value, f"training entry {entry!r}: {exc}"),
                                 **fields))
            continue
        case_id = f"{task_name}/{case_stem(image)}"
        cases.append(CaseRef(case_id=case_id, subject_id=case_id, image_uri=storage.join(task_root, image),
                             mask_uri=storage.join(task_root, label), **fields))
    return cases


def safe_relative(path: str) -> str:
    """A path inside the task folder: no absolute paths, no `..`; raises ValueError otherwise."""
    if not isinstance(path, str):
        raise TypeError(f"path must be a string, got {type(path).__name__}")
    cleaned = posixpath.normpath(path.removeprefix("./"))
    if posixpath.isabs(cleaned) or cleaned == ".." or cleaned.startswith("../") or "://" in cleaned:
        raise ValueError(f"path {path!r} leaves the dataset folder")
    return cleaned + "/" if path.endswith("/") else cleaned  # a trailing '/' names a DICOM series folder


class MsdSource(Source):
    info = SourceInfo(
        name="msd",
        anatomy="brain, heart, liver, hippocampus, prostate, lung, pancreas, hepatic vessels, spleen, colon",
        modalities=("CT", "MRI"),
        tasks=("detection", "tumor_lesion_size"),
        licence=LICENCE,
        redistributable=True,
        citation="Antonelli et al., The Medical Segmentation Decathlon, Nat Commun 13, 4128 (2022)",
    )

    def list_cases(self, root: str) -> list[CaseRef]:
        cases = [case for task_root in find_task_roots(root)
                 for case in list_task(task_root, "msd", LICENCE, task_lesion_labels(storage.basename(task_root)))]
        return sorted(cases, key=lambda case: case.case_id)
