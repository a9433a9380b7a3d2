"""Build configuration: parsed and validated before any graph is built.

The CLI's own options become a frozen `BuildConfig` (plain values: safe to pickle into DoFns);
every argument the CLI does not know is passed through to Beam's PipelineOptions.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from typing import TYPE_CHECKING, Optional

from schemas.tables import SCHEMA_VERSION, TASKS
from transforms import boxes, ids, intensity
from transforms.caseref import PEAK_BYTES_PER_VOXEL, ReadPolicy
from transforms.medvision import CONVENTIONS
from transforms.planes import SpacingMode, parse_spacing_mode
from transforms.prompts import PROMPT_STYLES

if TYPE_CHECKING:
    from pipeline.casework import LoadSettings

DEFAULT_SPLIT_SALT = "medvision-v1"
DEFAULT_TARGET_FILE_MB = 256
DEFAULT_CASE_TIMEOUT_S = 600.0  # to copy, hash and decode one case (a 1 GB volume takes ~30 s)
DEFAULT_MAX_VOLUME_MB = 4096  # memory one case may take to decode (~430 Mvoxels of int16)
# The DirectRunner keeps every pair in memory between steps anyway, so a case cut where it was planned
# costs nothing more there and saves a decode. Bigger cases still spread: one of 32 Mvoxels
# (512x512x128) takes about 20 s to plan and cut on one core.
DIRECT_RUNNER_CUT_HERE_BELOW_MVOXELS = 32.0
DIRECT_RUNNERS = (None, "DirectRunner", "direct")


class UsageError(ValueError):
    """A command line or configuration the tool cannot run with (exit code 2)."""


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """`--source NAME[=ROOT]`: an adapter and where its raw data lives (None: the adapter's default)."""

    name: str
    root: Optional[str]

    @classmethod
    def parse(cls, text: str) -> "SourceSpec":
        name, _, root = text.partition("=")
        hint = unknown_source_hint(name.strip().lower())
        if hint:
            raise argparse.ArgumentTypeError(hint)
        if not name or (_ and not root):
            raise argparse.ArgumentTypeError(
                f"--source takes NAME or NAME=ROOT (the folder holding the data), got {text!r}"
            )
        return cls(name.strip().lower(), root or None)


def unknown_source_hint(name: str) -> str:
    """'' for a known adapter name; else a sentence naming the closest ones (`kits` -> kits23)."""
    from pipeline.sources import SOURCES  # the adapters' facts only: no imaging library

    if name in SOURCES:
        return ""
    close = [known for known in sorted(SOURCES) if name and known.startswith(name)]
    close = close or difflib.get_close_matches(name, sorted(SOURCES), n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"unknown source {name!r}: {hint}`medvision-pipeline sources` lists the {len(SOURCES)} adapters"


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    sources: tuple[SourceSpec, ...]
    output: str
    spacing: SpacingMode = "finest"
    max_cases: Optional[int] = None
    cases: Optional[tuple[str, ...]] = None
    dry_run: bool = False
    dry_run_sample: int = 2
    split_salt: str = DEFAULT_SPLIT_SALT
    target_file_mb: int = DEFAULT_TARGET_FILE_MB
    max_volume_mb: float = DEFAULT_MAX_VOLUME_MB
    case_timeout_s: float = DEFAULT_CASE_TIMEOUT_S
    max_failure_fraction: float = 1.0
    gcs_anonymous: bool = False
    allow_uneven_dicom_spacing: bool = False
    publish: bool = False  # pointer rows (no pixels) for sources that may not be redistributed
    conventions: str = "default"  # a transforms.medvision.CONVENTIONS entry
    prompt_style: str = "default"  # a transforms.prompts.PROMPT_STYLES entry
    # Cases decoded to fewer Mvoxels are cut where they were planned (`LoadSettings`); None: `for_runner`.
    cut_here_below_mvoxels: Optional[float] = None
    lesion_label_names: tuple[str, ...] = ()  # `--lesion-labels`: T/L targets by name (`sources.user_options`)
    subject_regex: Optional[str] = None  # `--subject-regex`: group 1 of an nnunet case identifier is its subject
    # `--tasks`: the tasks whose pairs are made. A subset of a full build's rows, ids unchanged: not hashed.
    tasks: tuple[str, ...] = TASKS

    def __post_init__(self):
        fixed = CONVENTIONS[self.conventions].spacing
        if fixed is not None and self.spacing != fixed:
            raise UsageError(f"--conventions {self.conventions} uses the {fixed} grid; drop --spacing {self.spacing}")
        if self.subject_regex and all(spec.name != "nnunet" for spec in self.sources):
            raise UsageError("--subject-regex groups the cases of --source nnunet, which this build does not read")

    @property
    def read_policy(self) -> ReadPolicy:
        """The memory budget as int16-equivalent voxels (`PEAK_BYTES_PER_VOXEL` each), and the DICOM spacing
        tolerance."""
        return ReadPolicy(
            int(self.max_volume_mb * 2**20 / PEAK_BYTES_PER_VOXEL), self.allow_uneven_dicom_spacing, self.case_timeout_s
        )

    @property
    def load_settings(self) -> LoadSettings:
        from pipeline.casework import LoadSettings  # the imaging stack: not needed to parse options

        return LoadSettings(
            self.spacing,
            self.split_salt,
            self.params_hash,
            self.read_policy,
            self.publish,
            self.conventions,
            self.prompt_style,
            cut_here_below_voxels=(self.cut_here_below_mvoxels or 0) * 1e6,
        )

    def for_runner(self, runner: Optional[str]) -> "BuildConfig":
        """With `cut_here_below_mvoxels` set: as given, else 32 on the DirectRunner and 0 (every case
        spreads) on the others. There, the pairs of a case cut where it was planned would exist before
        every plan is done, which the write's keys and the shared splits need: a runner would have to
        materialise them, PNGs included, once more before the write's shuffle."""
        if self.cut_here_below_mvoxels is not None:
            return self
        default = DIRECT_RUNNER_CUT_HERE_BELOW_MVOXELS if runner in DIRECT_RUNNERS else 0.0
        return dataclasses.replace(self, cut_here_below_mvoxels=default)

    @property
    def work_dir(self) -> str:
        return self.output.rstrip("/") + "/_work"

    def output_params(self) -> dict:
        """The parameters that shape every pair; their hash is part of each sample id. The user's T/L targets
        and subject grouping enter only when given, so builds without them keep their ids."""
        return self.user_listing_params() | {
            "spacing": str(self.spacing),
            "allow_uneven_dicom_spacing": self.allow_uneven_dicom_spacing,
            "split_salt": self.split_salt,
            "conventions": self.conventions,
            "connectivity": boxes.CONNECTIVITY,
            "display": CONVENTIONS[self.conventions].display,
            "prompt_style": self.prompt_style,
            "ct_windows_hu": intensity.CT_WINDOWS_HU,
            "percentile_window": list(intensity.PERCENTILE_WINDOW),
            "sample_id": ids.SAMPLE_ID_VERSION,
            "schema": SCHEMA_VERSION,
        }

    def user_listing_params(self) -> dict:
        params = {"lesion_labels": list(self.lesion_label_names)} if self.lesion_label_names else {}
        return params | ({"subject_regex": self.subject_regex} if self.subject_regex else {})

    @property
    def params_hash(self) -> str:
        return ids.params_hash(self.output_params())


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return value


def _spacing(text: str) -> SpacingMode:
    try:
        return parse_spacing_mode(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _user_option(parser_name: str):
    """An argparse type from a `pipeline.sources.user_options` parser raising ValueError, keeping its message;
    imported when the option is given, so that `--help` does not import every adapter."""

    def checked(text: str):
        from pipeline.sources import user_options

        try:
            return getattr(user_options, parser_name)(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return checked


def _tasks(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(task.strip() for task in text.split(",") if task.strip()))
    unknown = [task for task in chosen if task not in TASKS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown task {', '.join(unknown) or repr(text)}: the tasks are {', '.join(TASKS)}"
        )
    return tuple(task for task in TASKS if task in chosen)


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        dest="sources",
        action="append",
        type=SourceSpec.parse,
        required=True,
        metavar="NAME[=ROOT]",
        help="source adapter and its data root (repeatable)",
    )
    parser.add_argument("--output", required=True, help="new or empty output location (path, gs://, s3://)")
    parser.add_argument(
        "--spacing",
        type=_spacing,
        help="pixel size: finest (default; finest in-plane spacing per plane), native, or mm",
    )
    parser.add_argument(
        "--conventions",
        choices=sorted(CONVENTIONS),
        default="default",
        help="ground-truth conventions: default, or medvision (the published benchmark's: native "
        "grid, raw RAS+ display, its box target and single-instance filter; see README)",
    )
    parser.add_argument(
        "--prompt-style",
        choices=PROMPT_STYLES,
        default="default",
        help="template set of the prompt and answer columns: default (states our pixel-edge frame) "
        "or medvision (the benchmark's published templates and answer formats; see README)",
    )
    parser.add_argument("--max-cases", type=_positive_int, help="use only the first N cases of each source")
    parser.add_argument(
        "--cases",
        type=lambda t: tuple(c for c in t.split(",") if c),
        help="comma-separated case ids to build (others are skipped)",
    )
    parser.add_argument(
        "--lesion-labels",
        dest="lesion_label_names",
        type=_user_option("parse_label_names"),
        default=(),
        metavar="NAME[,NAME...]",
        help="labels whose lesions the tumor_lesion_size task measures, by their names in the "
        "dataset (dataset.json); for every source without built-in targets, and instead of "
        "msd's and nnunet's",
    )
    parser.add_argument(
        "--subject-regex",
        type=_user_option("parse_subject_regex"),
        metavar="REGEX",
        help="nnunet: group 1 of this regex, searched in each case identifier, is the subject, so "
        "cases of one patient share a split (default: each case is its own subject)",
    )
    parser.add_argument(
        "--tasks",
        type=_tasks,
        default=TASKS,
        metavar="TASK[,TASK...]",
        help=f"make only these tasks' pairs ({', '.join(TASKS)}; default all): the same rows, "
        "sample_ids included, as a build of every task",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list cases and estimated slices and pairs per dataset; write nothing"
    )
    parser.add_argument(
        "--dry-run-sample",
        type=_positive_int,
        default=2,
        help="cases built in memory by --dry-run to estimate pairs per task, per group of each "
        "dataset (the cases of one case-id folder with the same kinds of targets)",
    )
    parser.add_argument("--split-salt", default=DEFAULT_SPLIT_SALT, help="salt of the subject-level split hash")
    parser.add_argument(
        "--target-file-mb",
        type=_positive_int,
        default=DEFAULT_TARGET_FILE_MB,
        help="approximate size of each Parquet file",
    )
    parser.add_argument(
        "--max-volume-mb",
        type=_positive_float,
        default=DEFAULT_MAX_VOLUME_MB,
        help="memory budget of one case in MB: a volume whose header declares more voxels than "
        f"this allows ({PEAK_BYTES_PER_VOXEL} bytes per int16 voxel) is refused (too_large) "
        "before it is decompressed",
    )
    parser.add_argument(
        "--case-timeout-s",
        type=_positive_float,
        default=DEFAULT_CASE_TIMEOUT_S,
        help="wall-time limit to copy, hash and decode one case; a case past it is quarantined "
        "(timeout), checked between chunks, files and slabs",
    )
    parser.add_argument(
        "--allow-uneven-dicom-spacing",
        action="store_true",
        help="resample unevenly spaced DICOM series to their median gap (linear, flagged in "
        "provenance) instead of quarantining them",
    )
    parser.add_argument(
        "--gcs-anonymous",
        action="store_true",
        help="read and write gs:// without credentials (public buckets; the storage emulator "
        "named by STORAGE_EMULATOR_HOST)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="a public release: rows of sources that may not be redistributed carry no pixels "
        "(image_mode 'pointer'; source URI, sha256 and slice spec kept)",
    )
    parser.add_argument(
        "--max-failure-fraction",
        type=_fraction,
        default=1.0,
        help="fail the run when a dataset quarantines more than this fraction of its cases",
    )
    parser.add_argument(
        "--cut-here-below-mvoxels",
        type=_non_negative_float,
        help="cases decoded to fewer Mvoxels are cut where they were planned (one decode); "
        "larger ones spread their work units over workers (a decode per unit). Default: "
        f"{DIRECT_RUNNER_CUT_HERE_BELOW_MVOXELS:g} on the DirectRunner, 0 (all spread) on "
        "the others, where it would cost a second pass of the pairs before the write",
    )


def absolute_location(location: str) -> str:
    """Local paths made absolute (workers may run elsewhere); URIs kept as they are."""
    return location if "://" in location else os.path.abspath(location)


def resolved_spacing(spacing: SpacingMode | None, conventions: str) -> SpacingMode:
    """`--spacing` if given, else the grid the conventions fix, else `finest`."""
    return spacing or CONVENTIONS[conventions].spacing or "finest"


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    return BuildConfig(
        sources=tuple(SourceSpec(s.name, s.root and absolute_location(s.root)) for s in args.sources),
        output=absolute_location(args.output),
        spacing=resolved_spacing(args.spacing, args.conventions),
        max_cases=args.max_cases,
        cases=args.cases,
        dry_run=args.dry_run,
        dry_run_sample=args.dry_run_sample,
        split_salt=args.split_salt,
        target_file_mb=args.target_file_mb,
        max_volume_mb=args.max_volume_mb,
        case_timeout_s=args.case_timeout_s,
        max_failure_fraction=args.max_failure_fraction,
        gcs_anonymous=args.gcs_anonymous,
        allow_uneven_dicom_spacing=args.allow_uneven_dicom_spacing,
        publish=args.publish,
        conventions=args.conventions,
        prompt_style=args.prompt_style,
        cut_here_below_mvoxels=args.cut_here_below_mvoxels,
        lesion_label_names=args.lesion_label_names,
        subject_regex=args.subject_regex,
        tasks=args.tasks,
    )
