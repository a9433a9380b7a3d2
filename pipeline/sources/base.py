"""What every source adapter provides: facts about its dataset and a listing of its cases."""

from __future__ import annotations

import abc
import dataclasses
import posixpath

from transforms.caseref import CaseRef


@dataclasses.dataclass(frozen=True, kw_only=True)
class SourceInfo:
    """Facts shown by `medvision-pipeline sources` and recorded in provenance."""

    name: str
    anatomy: str
    modalities: tuple[str, ...]
    tasks: tuple[str, ...]
    licence: str
    redistributable: bool
    citation: str


class Source(abc.ABC):
    """A dataset adapter: turns the dataset's raw layout under a root URI into `CaseRef`s."""

    info: SourceInfo
    layout: str = ""  # the expected raw layout below the root, in words (`sources`, listing errors)

    @abc.abstractmethod
    def list_cases(self, root: str) -> list[CaseRef]:
        """Every case under `root` (local path, gs:// or s3://), sorted by case id."""

    def default_root(self) -> str | None:
        """Where the source's data is when the user names no root (only built-in sources have one)."""
        return None

    def listing_writes(self, root: str) -> str | None:
        """None when listing `root` only reads; else a sentence saying what listing would write there first
        (the demo generates its data), and `--dry-run`, which writes nothing, skips the source with it.
        Raises SourceError for a root the source cannot use."""
        return None


class SourceError(ValueError):
    """A source root that cannot be listed (wrong layout, unreadable index): a usage error."""


# Longest first: `.nii.gz` before `.gz`-less forms, `.tar.gz` before `.tar`.
VOLUME_SUFFIXES = (".nii.gz", ".tar.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".tgz", ".zip", ".tar", ".dcm")


def case_stem(relative_path: str) -> str:
    """A file or series name without its volume/archive suffix: `imagesTr/la_003.nii.gz` -> `la_003`."""
    name = posixpath.basename(relative_path.rstrip("/"))
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
