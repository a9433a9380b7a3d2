"""Medical Segmentation Decathlon (MSD) layout: `Task<NN>_<Name>/{dataset.json, imagesTr/, labelsTr/}`.

Also the generic adapter for user data in this layout: `training` entries may name NIfTI,
MHA/NRRD files, DICOM series folders (an image path ending in `/`) or archived series
(.zip, .tar, .tar.gz, .tgz); labels may be NIfTI, MHA/NRRD or a DICOM SEG (.dcm).

Cite: Antonelli M. et al., "The Medical Segmentation Decathlon", Nature Communications 13, 4128 (2022).

Label names and modalities come from each task's `dataset.json`; a multi-modality task
(BrainTumour, Prostate) stores 4D images whose axis 3 is the channel, split into one
sequence per channel. The `training` list of `dataset.json` names the cases, which skips the
macOS `._*` files that ship inside the archives. `imagesTs/` has no labels and is not used.

A `dataset.json` that cannot be used (not JSON, a `modality`, `labels` or `training` field of the
wrong form) quarantines its task as one `bad_listing` case; a malformed `training` entry quarantines
that entry. Neither stops the other tasks. Messages say which field is wrong, never quote it.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Optional

from pipeline import storage
from pipeline.sources.base import Source, SourceError, SourceInfo, case_stem
from transforms.caseref import CaseRef, LabelName, ListingError, SequenceRef
from transforms.errors import PipelineError, Reason

LICENCE = "CC-BY-SA-4.0"
# CT windows by MSD task name; every other CT task is abdominal soft tissue.
CT_WINDOW_BY_TASK = {"Lung": "lung"}
# Tumour/lesion size targets by task name (MedVision's T/L tasks on MSD).
LESION_LABELS_BY_TASK = {
    "BrainTumour": (1, 2, 3),
    "Colon": (1,),
    "HepaticVessel": (2,),
    "Liver": (2,),
    "Lung": (1,),
    "Pancreas": (2,),
}


def find_task_roots(root: str) -> list[str]:
    """`root` itself when it holds dataset.json, else its `*/dataset.json` subfolders."""
    if storage.exists(storage.join(root, "dataset.json")):
        return [root.rstrip("/")]
    roots = [storage.dirname(path) for path in storage.glob(storage.join(root, "*", "dataset.json"))]
    if not roots:
        raise SourceError(f"no dataset.json in {root} or its subfolders: not an MSD-layout root")
    return roots


class TaskError(ValueError):
    """A task's dataset.json that cannot be used; the message names the field, not its content."""


# Files a listing found but cannot read: the task's problem, not the storage's (which is retried).
UNREADABLE_INDEX = (IsADirectoryError, NotADirectoryError, FileNotFoundError, PermissionError)
WHOLE_NUMBER = re.compile(r"\s*[0-9]+\s*")
MAX_LABEL_VALUE = 2**31 - 1


def read_dataset_json(task_root: str) -> dict:
    """The task's dataset.json as a dict; raises TaskError when it is not a readable JSON object."""
    uri = storage.join(task_root, "dataset.json")
    try:
        meta = json.loads(storage.read_listing(uri, task_root))
    except PipelineError as exc:  # a link out of the task, a FIFO or device, an oversized file
        raise TaskError(f"cannot be read ({exc.reason.value})") from exc
    except UNREADABLE_INDEX as exc:
        raise TaskError(f"cannot be read ({type(exc).__name__})") from exc
    except OSError as exc:
        raise SourceError(f"cannot read {uri}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise TaskError(f"is not valid JSON (line {exc.lineno}, column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise TaskError("is not UTF-8 text") from exc
    except (ValueError, RecursionError) as exc:  # numbers past Python's digit limit, nesting past its stack
        raise TaskError(f"cannot be parsed ({type(exc).__name__})") from exc
    if not isinstance(meta, dict):
        raise TaskError("is not a JSON object")
    return meta


def modality_kind(name: str) -> str:
    return "CT" if name.strip().upper() == "CT" else "MRI"


def _numbered(meta: dict, field: str, default: dict) -> list[tuple[int, str]]:
    """(number, name) pairs of a `{"0": "name", ...}` field, sorted; raises TaskError when it is not one."""
    mapping = meta.get(field, default)
    if not isinstance(mapping, dict):
        raise TaskError(f"field {field!r} is not an object")
    pairs = []
    for position, (key, name) in enumerate(mapping.items(), 1):
        if not isinstance(key, str) or not WHOLE_NUMBER.fullmatch(key) or int(key) > MAX_LABEL_VALUE:
            raise TaskError(
                f"field {field!r}: key {position} of {len(mapping)} is not a whole number from 0 to {MAX_LABEL_VALUE}"
            )
        if not isinstance(name, str):
            raise TaskError(f"field {field!r}: the name of key {position} of {len(mapping)} is not a string")
        pairs.append((int(key), name))
    if len({number for number, _ in pairs}) != len(pairs):
        raise TaskError(f"field {field!r}: two keys give one number")
    return sorted(pairs)


def sequences_of(meta: dict, task_name: str) -> tuple[SequenceRef, ...]:
    """One sequence per entry of `modality`; channels only when there is more than one."""
    modalities = _numbered(meta, "modality", {"0": "CT"})
    if not modalities:
        raise TaskError("field 'modality' names no channel")
    window = next((w for key, w in CT_WINDOW_BY_TASK.items() if key in task_name), None)
    multi = len(modalities) > 1
    return tuple(
        SequenceRef(name=name, modality=modality_kind(name), channel=index if multi else None, ct_window=window)
        for index, name in modalities
    )


def labels_of(meta: dict) -> tuple[LabelName, ...]:
    """(value, name) of the task's labels, background (0) excluded; names are made unique per
    label map when the listing is checked (`listing.checked_cases`)."""
    return tuple(LabelName(value, name) for value, name in _numbered(meta, "labels", {}) if value != 0)


def training_entries(meta: dict) -> list:
    training = meta.get("training", [])
    if not isinstance(training, list):
        raise TaskError("field 'training' is not a list")
    return training


def task_lesion_labels(task_name: str) -> tuple[int, ...]:
    """T/L target labels of an MSD task folder such as `Task03_Liver`."""
    return LESION_LABELS_BY_TASK.get(task_name.partition("_")[2], ())


def list_task(task_root: str, dataset: str, licence: str, lesion_labels: tuple[int, ...]) -> list[CaseRef]:
    """The labelled training cases of one MSD-layout task folder.

    A malformed `training` entry becomes a case with a `listing_error`, quarantined by the
    pipeline like any other bad input; a dataset.json that cannot be used becomes one such case
    for the whole task (its id is the task folder's name). Neither stops the listing.
    """
    task_name = storage.basename(task_root)
    index_uri = storage.join(task_root, "dataset.json")
    try:
        meta = read_dataset_json(task_root)
        sequences, labels, training = sequences_of(meta, task_name), labels_of(meta), training_entries(meta)
    except TaskError as exc:
        error = ListingError(Reason.BAD_LISTING.value, f"dataset.json {exc}; no case of this task was listed")
        return [
            CaseRef(
                dataset=dataset,
                case_id=task_name,
                subject_id=task_name,
                image_uri=index_uri,
                mask_uri="",
                sequences=(),
                labels=(),
                licence=licence,
                listing_error=error,
            )
        ]
    release = meta.get("release") if isinstance(meta.get("release"), str) else None
    cases = []
    for number, entry in enumerate(training):
        listing_error: Optional[ListingError] = None  # a malformed entry
        try:
            image, label = (safe_relative(entry[key]) for key in ("image", "label"))
        except (KeyError, TypeError, ValueError) as exc:
            reason = Reason.UNSAFE_PATH if isinstance(exc, ValueError) else Reason.BAD_LISTING
            problem = (
                "a path leaves the task folder or is no file name"
                if isinstance(exc, ValueError)
                else "not an object with string 'image' and 'label' paths"
            )
            case_id, image_uri, mask_uri = f"{task_name}/training[{number}]", index_uri, ""
            listing_error = ListingError(reason.value, f"dataset.json training entry {number}: {problem}")
        else:
            case_id = f"{task_name}/{case_stem(image)}"
            image_uri, mask_uri = storage.join(task_root, image), storage.join(task_root, label)
        cases.append(
            CaseRef(
                dataset=dataset,
                case_id=case_id,
                subject_id=case_id,
                image_uri=image_uri,
                mask_uri=mask_uri,
                sequences=sequences,
                labels=labels,
                lesion_labels=lesion_labels,
                licence=licence,
                redistributable=True,
                dataset_version=release,
                listing_error=listing_error,
            )
        )
    return cases


def safe_relative(path: str) -> str:
    """A path inside the task folder: no absolute paths, no `..`, not the folder itself, no NUL;
    raises ValueError otherwise (TypeError when it is not a string)."""
    if not isinstance(path, str):
        raise TypeError(f"path must be a string, got {type(path).__name__}")
    cleaned = posixpath.normpath(path.removeprefix("./"))
    if posixpath.isabs(cleaned) or cleaned == ".." or cleaned.startswith("../") or "://" in cleaned:
        raise ValueError("the path leaves the dataset folder")
    if cleaned == "." or "\0" in cleaned:
        raise ValueError("the path names no file")
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
    layout = "Task*/dataset.json, imagesTr/, labelsTr/ (a task folder or a folder of tasks)"

    def list_cases(self, root: str) -> list[CaseRef]:
        cases = [
            case
            for task_root in find_task_roots(root)
            for case in list_task(task_root, "msd", LICENCE, task_lesion_labels(storage.basename(task_root)))
        ]
        return sorted(cases, key=lambda case: case.case_id)
