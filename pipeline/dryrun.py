"""`--dry-run`: what a build would do, without writing anything.

One JSON line per case (ids, sequences, slices estimated from the header alone), then one
summary line per dataset: cases, subjects, listing errors, estimated slices, and pairs per
task estimated by building `--dry-run-sample` cases of each group in memory with the build's own
code and scaling each group's mean to its case count. A group is the cases of one folder of the
case ids (an MSD task, the demo's parts) with the same kinds of targets (lesions, landmarks), so a
dataset mixing cephalograms and CTs is sampled in both.
"""

from __future__ import annotations

import collections

from pipeline import casework, storage
from pipeline.config import BuildConfig
from transforms.caseref import CaseRef
from transforms.errors import PipelineError, Reason
from transforms.nifti import header_spatial_shape
from transforms.planes import SLICE_AXIS, planes_of

HEADER_READ_BYTES = 1 << 16  # enough compressed bytes to hold a NIfTI-1 or NIfTI-2 header


def nifti_header_shape(uri: str, root: str = "") -> tuple[int, int, int]:
    """Spatial shape from a NIfTI header, reading only the first bytes of the object (confined to `root`)."""
    with storage.open_input(uri, root) as handle:
        return header_spatial_shape(handle.read(HEADER_READ_BYTES), gzipped=uri.endswith(".gz"))


def estimated_slices(case: CaseRef) -> int:
    """Upper bound of the slices a case yields: every slice of every plane and sequence."""
    if case.planar is not None:
        return len(case.sequences)  # a 2D image is one slice
    shape = nifti_header_shape(case.realign.reference_uri if case.realign else case.image_uri, case.source_root)
    return len(case.sequences) * sum(shape[SLICE_AXIS[plane]] for plane in planes_of(shape, case.planes))


def case_line(case: CaseRef) -> dict:
    line: dict[str, object] = {
        "dataset": case.dataset,
        "case_id": case.case_id,
        "subject_id": case.subject_id,
        "sequences": [s.name for s in case.sequences],
    }
    if case.listing_error:
        line["error"] = f"{case.listing_error[0]}: {case.listing_error[1]}"
        return line
    try:
        line["estimated_slices"] = estimated_slices(case)
    except FileNotFoundError:  # named as a build names it
        line["error"] = f"{Reason.MISSING_FILE.value}: the image file is not there"
    except Exception as exc:  # a dry run reports unreadable or non-NIfTI headers instead of stopping
        line["error"] = str(exc) if isinstance(exc, PipelineError) else f"header not readable ({type(exc).__name__})"
    return line


def sample_group(case: CaseRef) -> tuple:
    """Cases expected to yield alike: the folder of the case id, and the kinds of targets."""
    folder = case.case_id.split("/", 1)[0] if "/" in case.case_id else ""
    return folder, bool(case.lesion_labels), case.landmarks is not None


def sampled_pairs(cases: list[CaseRef], config: BuildConfig) -> tuple[int, collections.Counter]:
    """(cases built, estimated pairs per task for every listable case): the first `config.dry_run_sample`
    cases of each group are built, and each group's mean scaled to its size (a group none of whose
    samples built takes the mean of the others)."""
    groups = collections.defaultdict(list)
    for case in cases:
        if not case.listing_error:
            groups[sample_group(case)].append(case)
    built, means, unsampled = 0, [], 0
    for members in groups.values():
        pairs, n = _built_pairs(members[: config.dry_run_sample], config)
        built += n
        if n:
            means.append((collections.Counter({task: count / n for task, count in pairs.items()}), len(members)))
        else:
            unsampled += len(members)
    estimate: collections.Counter[str] = collections.Counter()
    for mean, size in means:
        estimate.update({task: value * size for task, value in mean.items()})
    if unsampled and means:
        sampled = sum(size for _, size in means)
        estimate.update({task: value / sampled * unsampled for task, value in list(estimate.items())})
    return built, estimate


def _built_pairs(cases: list[CaseRef], config: BuildConfig) -> tuple[collections.Counter, int]:
    """Pairs per task of the cases built in memory, and how many built (a bad case is skipped)."""
    built, pairs = 0, collections.Counter[str]()
    for case in cases:
        try:
            records, _ = casework.slice_records(case, config.load_settings)
            case_pairs = casework.pair_counts(records)  # the records are cut here
        except PipelineError:
            continue
        built += 1
        pairs += case_pairs
    return pairs, built


def dataset_summary(dataset: str, cases: list[CaseRef], lines: list[dict], config: BuildConfig) -> dict:
    built, pairs = sampled_pairs(cases, config)
    usable = sum(1 for case in cases if not case.listing_error)
    return {
        "summary": dataset,
        "cases": len(cases),
        "subjects": len({case.subject_id for case in cases}),
        "listing_errors": len(cases) - usable,
        "estimated_slices": sum(line.get("estimated_slices", 0) for line in lines),
        "cases_without_estimate": sum(1 for line in lines if "estimated_slices" not in line),
        "sampled_cases": built,
        "estimated_pairs": {task: round(n) for task, n in sorted(pairs.items()) if task in config.tasks},
    }


def dry_run_report(cases: list[CaseRef], config: BuildConfig) -> list[dict]:
    """Per-case lines, then one summary line per dataset."""
    lines = [case_line(case) for case in cases]
    by_dataset = collections.defaultdict(list)
    for case, line in zip(cases, lines):
        by_dataset[case.dataset].append((case, line))
    summaries = [
        dataset_summary(dataset, [c for c, _ in pairs], [line for _, line in pairs], config)
        for dataset, pairs in by_dataset.items()
    ]
    return lines + summaries
