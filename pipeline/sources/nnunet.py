"""nnU-Net v2 raw datasets: any segmentation dataset in `DatasetNNN_Name/{dataset.json, imagesTr/, labelsTr/}`.

Cite: Isensee F. et al., "nnU-Net: a self-configuring method for deep learning-based biomedical image
segmentation", Nature Methods 18, 203-211 (2021).

The root is one dataset folder or a folder of them (nnU-Net's `nnUNet_raw`). From `dataset.json`:
`channel_names` (or the older `modality`) names the channels, `labels` maps each name to its value,
`file_ending` is the one file type of the dataset, `numTraining` is checked against the listing (a
mismatch is logged). Files: `imagesTr/{case}_{XXXX}{ending}` (XXXX: the channel, 0000 first) and
`labelsTr/{case}{ending}`, or, as nnU-Net also allows, a `dataset` object naming each case's
`images` and `label` paths inside the dataset folder. `imagesTs/` has no labels and is not used.

Each channel is its own case (`{folder}/{case}_{XXXX}`; `{folder}/{case}` when there is one channel),
one sequence named after the channel, with the case's label map; channels of a case share its subject.
The subject is `{folder}/{case}`, or `{folder}/{group 1}` of `--subject-regex` searched in the case
identifier, so that cases of one patient share a split.

Endings: 3D `.nii.gz`, `.nii`, `.nrrd`, `.mha`; 2D `.png`, `.bmp`, `.tif` (nnU-Net's natural-image
reader), read as greyscale rasters with 1 mm pixels: nnU-Net's 2D files carry no spacing (nor does
nnU-Net use one), so sizes of 2D cases are in pixels. A channel named CT is windowed as CT; other 3D
channels are listed as MRI, 2D ones as `image`.

T/L targets come from `--lesion-labels` (label names). Region-based labels (a label whose value is a
list of values, trained as overlapping regions) are refused: the pipeline measures label values.

Hostile input: a `dataset.json` that cannot be used quarantines its dataset as one `bad_listing` case;
a file of `imagesTr/` or `labelsTr/` that is not a case file of the dataset's ending, a path leaving
the dataset folder, or a case without its label or one of its channels is its own quarantined case.
Messages name the field or file, never quote a field's content.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
from typing import Optional

from pipeline import storage
from pipeline.sources.base import Source, SourceError, SourceInfo
from pipeline.sources.layout import usable
from pipeline.sources.msd import MAX_LABEL_VALUE, TaskError, read_dataset_json, safe_relative
from transforms.caseref import CaseRef, LabelName, ListingError, PlanarGeometry, SequenceRef
from transforms.errors import Reason

LOG = logging.getLogger(__name__)
NAME = "nnunet"
VOLUME_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")
RASTER_ENDINGS = (".png", ".bmp", ".tif")
ENDINGS = VOLUME_ENDINGS + RASTER_ENDINGS
# Rows run posterior and columns to the patient's left: an axial raster displays as stored.
RASTER_GEOMETRY = PlanarGeometry(axes="LPS", spacing_mm_col_row=(1.0, 1.0))
CHANNEL_FILE = re.compile(r"(?P<case>.+)_(?P<channel>[0-9]{4})\Z")
IMAGES, LABELS = "imagesTr", "labelsTr"
MAX_CHANNELS = 64  # every channel is a case: a dataset.json naming millions must not list millions per case


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetMeta:
    """What a dataset.json says, checked: channels and labels as (number, name), background excluded."""

    channels: tuple[tuple[int, str], ...]
    labels: tuple[LabelName, ...]
    file_ending: str
    num_training: Optional[int]
    licence: str
    release: Optional[str]


def channels_of(meta: dict) -> tuple[tuple[int, str], ...]:
    """(index, name) of `channel_names` (or `modality`): indices 0..n-1, as nnU-Net numbers the files."""
    field = "channel_names" if "channel_names" in meta else "modality"
    mapping = meta.get(field)
    if not isinstance(mapping, dict) or not mapping:
        raise TaskError("has no 'channel_names' object naming at least one channel")
    channels = []
    for position, (key, name) in enumerate(mapping.items(), 1):
        if not isinstance(key, str) or not key.strip().isdigit() or not isinstance(name, str):
            raise TaskError(f"field {field!r}: entry {position} is not a channel number with a string name")
        channels.append((int(key), name))
    if len(channels) > MAX_CHANNELS:
        raise TaskError(f"field {field!r} names more than {MAX_CHANNELS} channels")
    if sorted(index for index, _ in channels) != list(range(len(channels))):
        raise TaskError(f"field {field!r}: channels must be numbered 0 to {len(channels) - 1}, once each")
    return tuple(sorted(channels))


def labels_of(meta: dict) -> tuple[LabelName, ...]:
    """(value, name) of `labels` (name -> value), background (0) excluded; region-based labels refused."""
    mapping = meta.get("labels")
    if not isinstance(mapping, dict):
        raise TaskError("field 'labels' is not an object of label name -> value")
    pairs = []
    for position, (name, value) in enumerate(mapping.items(), 1):
        if isinstance(value, list):
            raise TaskError(
                f"field 'labels': entry {position} of {len(mapping)} is a region (a list of values); "
                "region-based labels are not supported: give each label value its own name"
            )
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_LABEL_VALUE:
            raise TaskError(
                f"field 'labels': the value of entry {position} of {len(mapping)} is not a whole "
                f"number from 0 to {MAX_LABEL_VALUE}"
            )
        pairs.append((value, name))
    if len({value for value, _ in pairs}) != len(pairs):
        raise TaskError("field 'labels': two names give one value")
    return tuple(LabelName(value, name) for value, name in sorted(pairs) if value != 0)


def parse_meta(meta: dict) -> DatasetMeta:
    ending = meta.get("file_ending")
    if not isinstance(ending, str) or ending.lower() not in ENDINGS:
        raise TaskError(f"field 'file_ending' is missing or not one of {', '.join(ENDINGS)}")
    count = meta.get("numTraining")
    licence = next((meta[key] for key in ("licence", "license") if isinstance(meta.get(key), str)), "unknown")
    return DatasetMeta(
        channels=channels_of(meta),
        labels=labels_of(meta),
        file_ending=ending,
        num_training=count if isinstance(count, int) and not isinstance(count, bool) else None,
        licence=licence,
        release=meta.get("release") if isinstance(meta.get("release"), str) else None,
    )


def find_dataset_roots(root: str) -> list[str]:
    """`root` itself when it holds dataset.json, else its `*/dataset.json` subfolders."""
    if storage.exists(storage.join(root, "dataset.json")):
        return [root.rstrip("/")]
    roots = [storage.dirname(path) for path in storage.glob(storage.join(root, "*", "dataset.json"))]
    if not roots:
        raise SourceError(
            f"no dataset.json in {root} or its subfolders: expected an nnU-Net raw dataset "
            "(DatasetNNN_Name/ holding dataset.json, imagesTr/ and labelsTr/)"
        )
    return roots


@dataclasses.dataclass(frozen=True, kw_only=True)
class CaseFiles:
    """One nnU-Net case: its image per channel index and its label, as paths inside the dataset folder."""

    images: dict[int, str]
    label: Optional[str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stray:
    """A listed file or entry that is no usable case file: quarantined under its own id."""

    name: str
    reason: Reason
    why: str


def folder_cases(paths: list[str], meta: DatasetMeta) -> tuple[dict[str, CaseFiles], list[Stray]]:
    """Cases from the files directly in imagesTr/ and labelsTr/ (as nnU-Net lists them)."""
    ending, channels = meta.file_ending, dict(meta.channels)
    images: collections.defaultdict[str, dict[int, str]] = collections.defaultdict(dict)  # case -> channel -> path
    labels, strays = {}, []
    for path in paths:
        folder, _, name = path.partition("/")
        if folder not in (IMAGES, LABELS) or "/" in name:
            continue
        stem = name[: -len(ending)] if name.endswith(ending) else None
        match = CHANNEL_FILE.match(stem) if stem and folder == IMAGES else None
        if folder == LABELS and stem:
            labels[stem] = path
        elif match and int(match["channel"]) in channels:
            images[match["case"]][int(match["channel"])] = path
        else:
            expected = (
                f"{{case}}_{{XXXX}}{ending}, XXXX a channel of channel_names"
                if folder == IMAGES
                else f"{{case}}{ending}"
            )
            strays.append(
                Stray(
                    name=path,
                    reason=Reason.BAD_LISTING,
                    why=f"not a case file of this dataset: {folder}/ holds {expected} (file_ending)",
                )
            )
    cases = {case: CaseFiles(images=images.get(case, {}), label=labels.get(case)) for case in {*images, *labels}}
    return cases, strays


def entry_cases(entries: object, meta: DatasetMeta) -> tuple[dict[str, CaseFiles], list[Stray]]:
    """Cases from a `dataset` object: {case: {"images": [path per channel], "label": path}}."""
    if not isinstance(entries, dict):
        raise TaskError("field 'dataset' is not an object of case -> files")
    cases, strays = {}, []
    for position, (case, entry) in enumerate(entries.items()):
        name = f"dataset[{position}]"
        try:
            images, label = entry["images"], entry["label"]
            if not isinstance(images, list) or len(images) != len(meta.channels):
                raise TypeError("one image per channel expected")
            paths = [safe_relative(path) for path in (*images, label)]
        except (KeyError, TypeError, ValueError) as exc:
            unsafe = isinstance(exc, ValueError)
            strays.append(
                Stray(
                    name=name,
                    reason=Reason.UNSAFE_PATH if unsafe else Reason.BAD_LISTING,
                    why=f"dataset.json {name}: "
                    + (
                        "a path leaves the dataset folder or names no file"
                        if unsafe
                        else "not an object with 'images' (one path per channel) and a 'label' path"
                    ),
                )
            )
            continue
        cases[case] = CaseFiles(images=dict(enumerate(paths[:-1])), label=paths[-1])
    return cases, strays


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetListing:
    """One dataset folder being listed: where it is, what its dataset.json says, how subjects group."""

    root: str
    meta: DatasetMeta
    subject_regex: Optional[re.Pattern]

    @property
    def folder(self) -> str:
        return storage.basename(self.root)

    def case_refs(self, case: str, files: CaseFiles) -> list[CaseRef]:
        """One CaseRef per channel; a missing file or an ungrouped subject is a listing error."""
        subject, error = self.subject_of(case)
        if error is None and files.label is None:
            error = ListingError(
                Reason.MISSING_FILE.value, f"case {case} has no {LABELS}/{case}{self.meta.file_ending}"
            )
        multi = len(self.meta.channels) > 1
        refs = []
        for index, channel in self.meta.channels:
            case_id = f"{self.folder}/{case}_{index:04d}" if multi else f"{self.folder}/{case}"
            image = files.images.get(index)
            missing = (
                None
                if image
                else ListingError(Reason.MISSING_FILE.value, f"case {case} has no image of channel {index:04d}")
            )
            refs.append(
                CaseRef(
                    case_id=case_id,
                    subject_id=subject,
                    sequences=(self.sequence(channel),),
                    image_uri=storage.join(self.root, image) if image else storage.join(self.root, IMAGES),
                    mask_uri=storage.join(self.root, files.label) if files.label and not (error or missing) else "",
                    listing_error=error or missing,
                    **self.shared_fields(),
                )
            )
        return refs

    def subject_of(self, case: str) -> tuple[str, Optional[ListingError]]:
        default = f"{self.folder}/{case}"
        if self.subject_regex is None:
            return default, None
        match = self.subject_regex.search(case)
        if not match or not match.group(1):
            return default, ListingError(
                Reason.BAD_LISTING.value,
                "the case identifier does not match --subject-regex (its first "
                "group must name the subject): fix the pattern so that every case is grouped",
            )
        return f"{self.folder}/{match.group(1)}", None

    def sequence(self, channel: str) -> SequenceRef:
        if channel.strip().upper() == "CT":
            return SequenceRef(channel, "CT")
        return SequenceRef(channel, "image" if self.planar else "MRI")

    @property
    def planar(self) -> Optional[PlanarGeometry]:
        return RASTER_GEOMETRY if self.meta.file_ending.lower() in RASTER_ENDINGS else None

    def shared_fields(self) -> dict:
        return dict(
            dataset=NAME,
            labels=self.meta.labels,
            licence=self.meta.licence,
            redistributable=False,
            dataset_version=self.meta.release,
            planar=self.planar,
        )

    def stray_ref(self, stray: Stray) -> CaseRef:
        case_id = f"{self.folder}/{stray.name}"
        return CaseRef(
            case_id=case_id,
            subject_id=case_id,
            image_uri=storage.join(self.root, "dataset.json"),
            mask_uri="",
            sequences=(),
            listing_error=ListingError(stray.reason.value, stray.why),
            **{**self.shared_fields(), "labels": ()},
        )


def list_dataset(root: str, subject_regex: Optional[re.Pattern] = None) -> list[CaseRef]:
    """The labelled training cases of one nnU-Net dataset folder; a dataset.json that cannot be used is one
    `bad_listing` case named after the folder."""
    folder = storage.basename(root)
    try:
        raw = read_dataset_json(root)
        meta = parse_meta(raw)
        if "dataset" in raw:
            cases, strays = entry_cases(raw["dataset"], meta)
        else:
            cases, strays = folder_cases(usable(storage.list_tree(root)), meta)
    except TaskError as exc:
        error = ListingError(Reason.BAD_LISTING.value, f"dataset.json {exc}; no case of this dataset was listed")
        return [
            CaseRef(
                dataset=NAME,
                case_id=folder,
                subject_id=folder,
                image_uri=storage.join(root, "dataset.json"),
                mask_uri="",
                sequences=(),
                labels=(),
                redistributable=False,
                listing_error=error,
            )
        ]
    if meta.num_training is not None and meta.num_training != len(cases):
        LOG.warning(
            "%s: dataset.json says numTraining %d, the listing found %d cases", folder, meta.num_training, len(cases)
        )
    listing = DatasetListing(root=root, meta=meta, subject_regex=subject_regex)
    refs = [ref for case in sorted(cases) for ref in listing.case_refs(case, cases[case])]
    return refs + [listing.stray_ref(stray) for stray in strays]


class NnunetSource(Source):
    info = SourceInfo(
        name=NAME,
        anatomy="any (your nnU-Net v2 raw dataset)",
        modalities=("CT", "MRI", "2D"),
        tasks=("detection", "tumor_lesion_size"),
        licence="from dataset.json",
        redistributable=False,
        citation="Isensee et al., nnU-Net, Nat Methods 18, 203-211 (2021); cite the dataset itself too",
    )
    layout = "Dataset*/dataset.json, imagesTr/{case}_{XXXX}{ending}, labelsTr/{case}{ending} (a dataset or nnUNet_raw)"

    def __init__(self, subject_regex: Optional[str] = None):
        self.subject_regex = re.compile(subject_regex) if subject_regex else None

    def list_cases(self, root: str) -> list[CaseRef]:
        cases = [
            case for dataset_root in find_dataset_roots(root) for case in list_dataset(dataset_root, self.subject_regex)
        ]
        return sorted(cases, key=lambda case: case.case_id)
