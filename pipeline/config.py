"""Build configuration: parsed and validated before any graph is built.

The CLI's own options become a frozen `BuildConfig` (plain values: safe to pickle into DoFns);
every argument the CLI does not know is passed through to Beam's PipelineOptions.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

from schemas.prompts import PROMPT_STYLES
from schemas.tables import SCHEMA_VERSION, TASKS
from transforms import boxes, ids, intensity
from transforms.caseref import PEAK_BYTES_PER_VOXEL, ReadPolicy
from transforms.medvision import CONVENTIONS
from transforms.planes import SpacingMode, parse_spacing_mode

if TYPE_CHECKING:
    from pipeline.casework import LoadSettings

DEFAULT_SPLIT_SALT = "medvision-v1"
DEFAULT_TARGET_FILE_MB = 256
DEFAULT_CASE_TIMEOUT_S = 600.0  # to copy, hash and decode one case: far above what a 1 GB volume takes
DEFAULT_MAX_VOLUME_MB = 4096  # memory one case may take to decode (~430 Mvoxels of int16)
# A case cut where it was planned saves a decode; with several DirectRunner workers, bigger cases still
# spread over them, as one of 32 Mvoxels (512x512x128) is already a long single step on one core
# (benchmarks/stage_times.py). One worker has nobody to spread to: it cuts every case where planned.
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


def absolute_location(location: str) -> str:
    """Local paths made absolute (workers may run elsewhere); URIs kept as they are."""
    return location if "://" in location else os.path.abspath(location)


HashPolicy = Literal["always", "when_given", "never"]
_FIELD_DEFAULT: Any = object()  # argparse's default is the field's


@dataclasses.dataclass(frozen=True, kw_only=True)
class Option:
    """How a `BuildConfig` field meets the command line and the parameter hash.

    `cli_default` is argparse's default when it differs from the field's (None: resolved later);
    `from_cli` turns the parsed value into the field's; `hashed` says whether the field shapes the
    pairs (`always`; `when_given`: only when set, so builds without it keep their sample ids;
    `never`: it changes which pairs are made or how they are run, not what a pair is), and
    `hash_key`/`hash_value` how it enters `output_params`.
    """

    flag: str
    help: str
    hashed: HashPolicy
    unit: str = ""
    argparse: dict = dataclasses.field(default_factory=dict)
    cli_default: Any = _FIELD_DEFAULT
    from_cli: Callable[[Any], Any] | None = None
    hash_key: str | None = None
    hash_value: Callable[[Any], Any] | None = None


def option(default: Any, flag: str, help: str, *, hashed: HashPolicy = "never", **declaration: Any) -> Any:
    """A `BuildConfig` field with its `Option`: the one place an option is declared."""
    keys = {f.name for f in dataclasses.fields(Option)}
    argparse_kwargs = {key: value for key, value in declaration.items() if key not in keys}
    own = {key: value for key, value in declaration.items() if key in keys}
    spec = Option(flag=flag, help=help, hashed=hashed, argparse=argparse_kwargs, **own)
    return dataclasses.field(default=default, metadata={"option": spec})


def options() -> list[tuple[str, Option]]:
    """(field name, option) of every build option, in declaration order."""
    return [(field.name, field.metadata["option"]) for field in dataclasses.fields(BuildConfig)]


def _absolute_sources(specs) -> tuple[SourceSpec, ...]:
    return tuple(SourceSpec(spec.name, spec.root and absolute_location(spec.root)) for spec in specs)


def _case_ids(text: str) -> tuple[str, ...]:
    return tuple(case for case in text.split(",") if case)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BuildConfig:
    """The build's options (plain values, safe to pickle into DoFns); each field declares its flag, default,
    unit, help and place in the parameter hash (`Option`), from which argparse and `output_params` derive."""

    sources: tuple[SourceSpec, ...] = option(
        (),
        "--source",
        "source adapter and its data root (repeatable)",
        action="append",
        type=SourceSpec.parse,
        required=True,
        metavar="NAME[=ROOT]",
        from_cli=_absolute_sources,
    )
    output: str = option(
        "",
        "--output",
        "new or empty output location (path, gs://, s3://)",
        required=True,
        from_cli=absolute_location,
    )
    spacing: SpacingMode = option(
        "finest",
        "--spacing",
        "pixel size: finest (default; finest in-plane spacing per plane), native, or mm",
        hashed="always",
        unit="mm",
        type=_spacing,
        cli_default=None,
        hash_value=str,
    )
    conventions: str = option(
        "default",
        "--conventions",
        "ground-truth conventions: default, or medvision (the published benchmark's: native grid, raw RAS+ "
        "display, its box target and single-instance filter; see README)",
        hashed="always",
        choices=sorted(CONVENTIONS),
    )
    prompt_style: str = option(
        "default",
        "--prompt-style",
        "template set of the prompt and answer columns: default (states our pixel-edge frame) or medvision "
        "(the benchmark's published templates and answer formats; see README)",
        hashed="always",
        choices=PROMPT_STYLES,
    )
    max_cases: Optional[int] = option(
        None, "--max-cases", "use only the first N cases of each source", type=_positive_int
    )
    cases: Optional[tuple[str, ...]] = option(
        None, "--cases", "comma-separated case ids to build (others are skipped)", type=_case_ids
    )
    lesion_label_names: tuple[str, ...] = option(
        (),
        "--lesion-labels",
        "labels whose lesions the tumor_lesion_size task measures, by their names in the dataset "
        "(dataset.json); for every source without built-in targets, and instead of msd's and nnunet's",
        hashed="when_given",
        type=_user_option("parse_label_names"),
        metavar="NAME[,NAME...]",
        hash_key="lesion_labels",
        hash_value=list,
    )
    subject_regex: Optional[str] = option(
        None,
        "--subject-regex",
        "nnunet: group 1 of this regex, searched in each case identifier, is the subject, so cases of one "
        "patient share a split (default: each case is its own subject)",
        hashed="when_given",
        type=_user_option("parse_subject_regex"),
        metavar="REGEX",
    )
    tasks: tuple[str, ...] = option(
        TASKS,
        "--tasks",
        f"make only these tasks' pairs ({', '.join(TASKS)}; default all): the same rows, sample_ids "
        "included, as a build of every task",
        type=_tasks,
        metavar="TASK[,TASK...]",
    )
    dry_run: bool = option(
        False,
        "--dry-run",
        "list cases and estimated slices and pairs per dataset; write nothing",
        action="store_true",
    )
    dry_run_sample: int = option(
        2,
        "--dry-run-sample",
        "cases built in memory by --dry-run to estimate pairs per task, per group of each dataset (the cases "
        "of one case-id folder with the same kinds of targets)",
        type=_positive_int,
    )
    split_salt: str = option(
        DEFAULT_SPLIT_SALT, "--split-salt", "salt of the subject-level split hash", hashed="always"
    )
    target_file_mb: int = option(
        DEFAULT_TARGET_FILE_MB,
        "--target-file-mb",
        "approximate size of each Parquet file",
        unit="MB",
        type=_positive_int,
    )
    max_volume_mb: float = option(
        DEFAULT_MAX_VOLUME_MB,
        "--max-volume-mb",
        "memory budget of one case in MB: a volume whose header declares more voxels than this allows "
        f"({PEAK_BYTES_PER_VOXEL} bytes per int16 voxel) is refused (too_large) before it is decompressed",
        unit="MB",
        type=_positive_float,
    )
    case_timeout_s: float = option(
        DEFAULT_CASE_TIMEOUT_S,
        "--case-timeout-s",
        "wall-time limit to copy, hash and decode one case; a case past it is quarantined (timeout), checked "
        "between chunks, files and slabs",
        unit="s",
        type=_positive_float,
    )
    allow_uneven_dicom_spacing: bool = option(
        False,
        "--allow-uneven-dicom-spacing",
        "resample unevenly spaced DICOM series to their median gap (linear, flagged in provenance) instead "
        "of quarantining them",
        hashed="always",
        action="store_true",
    )
    gcs_anonymous: bool = option(
        False,
        "--gcs-anonymous",
        "read and write gs:// without credentials (public buckets; the storage emulator named by "
        "STORAGE_EMULATOR_HOST)",
        action="store_true",
    )
    publish: bool = option(
        False,
        "--publish",
        "a public release: rows of sources that may not be redistributed carry no pixels (image_mode "
        "'pointer'; source URI, sha256 and slice spec kept)",
        action="store_true",
    )
    max_failure_fraction: float = option(
        1.0,
        "--max-failure-fraction",
        "fail the run when a dataset quarantines more than this fraction of its cases",
        type=_fraction,
    )
    cut_here_below_mvoxels: Optional[float] = option(
        None,
        "--cut-here-below-mvoxels",
        "cases decoded to fewer Mvoxels are cut where they were planned (one decode); larger ones spread "
        "their work units over workers (a decode per unit). Default: "
        f"every case on a one-worker DirectRunner, {DIRECT_RUNNER_CUT_HERE_BELOW_MVOXELS:g} on one with more "
        "workers, 0 (all spread) on the other runners, where it would cost a second pass of the pairs before "
        "the write",
        unit="Mvoxels",
        type=_non_negative_float,
    )

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
            max_voxels=int(self.max_volume_mb * 2**20 / PEAK_BYTES_PER_VOXEL),
            allow_uneven_slices=self.allow_uneven_dicom_spacing,
            max_read_seconds=self.case_timeout_s,
        )

    @property
    def load_settings(self) -> LoadSettings:
        from pipeline.casework import LoadSettings  # the imaging stack: not needed to parse options

        return LoadSettings(
            spacing=self.spacing,
            split_salt=self.split_salt,
            params_hash=self.params_hash,
            policy=self.read_policy,
            publish=self.publish,
            conventions=self.conventions,
            prompt_style=self.prompt_style,
            cut_here_below_voxels=(self.cut_here_below_mvoxels or 0) * 1e6,
        )

    def for_runner(self, runner: Optional[str], direct_workers: int = 1) -> "BuildConfig":
        """With `cut_here_below_mvoxels` set: as given, else every case (inf) on a DirectRunner of one
        worker, 32 on one of several (`direct_workers`), and 0 (every case spreads) on the others. There,
        the pairs of a case cut where it was planned would exist before every plan is done, which the
        write's keys and the shared splits need: a runner would have to materialise them, PNGs included,
        once more before the write's shuffle."""
        if self.cut_here_below_mvoxels is not None:
            return self
        default = 0.0
        if runner in DIRECT_RUNNERS:
            default = math.inf if direct_workers == 1 else DIRECT_RUNNER_CUT_HERE_BELOW_MVOXELS
        return dataclasses.replace(self, cut_here_below_mvoxels=default)

    @property
    def work_dir(self) -> str:
        return self.output.rstrip("/") + "/_work"

    def output_params(self) -> dict:
        """The parameters that shape every pair; their hash is part of each sample id: the options declared
        `hashed`, then what the code fixes (connectivity, display, windows, id and schema versions)."""
        params = {}
        for name, spec in options():
            value = getattr(self, name)
            if spec.hashed == "always" or (spec.hashed == "when_given" and value):
                params[spec.hash_key or name] = spec.hash_value(value) if spec.hash_value else value
        return params | {
            "connectivity": boxes.CONNECTIVITY,
            "display": CONVENTIONS[self.conventions].display,
            "ct_windows_hu": intensity.CT_WINDOWS_HU,
            "percentile_window": list(intensity.PERCENTILE_WINDOW),
            "sample_id": ids.SAMPLE_ID_VERSION,
            "schema": SCHEMA_VERSION,
        }

    @property
    def params_hash(self) -> str:
        return ids.params_hash(self.output_params())


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """`build`'s options, from the `BuildConfig` declarations."""
    for field in dataclasses.fields(BuildConfig):
        spec = field.metadata["option"]
        default = field.default if spec.cli_default is _FIELD_DEFAULT else spec.cli_default
        unit = f" [{spec.unit}]" if spec.unit else ""
        kwargs = {"dest": field.name, "help": spec.help + unit, **spec.argparse}
        if not kwargs.get("required") and kwargs.get("action") != "append":
            kwargs["default"] = default
        parser.add_argument(spec.flag, **kwargs)


def resolved_spacing(spacing: SpacingMode | None, conventions: str) -> SpacingMode:
    """`--spacing` if given, else the grid the conventions fix, else `finest`."""
    return spacing or CONVENTIONS[conventions].spacing or "finest"


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The `BuildConfig` of parsed `build` arguments (`--spacing` resolved against the conventions)."""
    values = {}
    for name, spec in options():
        value = getattr(args, name)
        values[name] = spec.from_cli(value) if spec.from_cli else value
    values["spacing"] = resolved_spacing(args.spacing, args.conventions)
    return BuildConfig(**values)
