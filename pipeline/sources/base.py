"""What every source adapter provides: facts about its dataset and a listing of its cases."""
from __future__ import annotations

import abc
import dataclasses

from transforms.case import CaseRef


@dataclasses.dataclass(frozen=True)
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

    @abc.abstractmethod
    def list_cases(self, root: str) -> list[CaseRef]:
        """Every case under `root` (local path, gs:// or s3://), sorted by case id."""

    def default_root(self) -> str | None:
        """Where the source's data is when the user names no root (only built-in sources have one)."""
        return None


class SourceError(ValueError):
    """A source root that cannot be listed (wrong layout, unreadable index): a usage error."""
