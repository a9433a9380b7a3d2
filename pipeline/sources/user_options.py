"""Listing options a user gives for their own data: T/L target labels by name, and how cases group into subjects.

`--lesion-labels NAME[,NAME...]` names the labels whose components the tumour/lesion size task measures.
It applies to every source of the run without built-in T/L targets, and replaces those of the sources
that take user targets anyway (`msd`, `nnunet`); names are matched ignoring case and separators
(`Left-Kidney` ~ `left kidney`). A name no applicable source has is a usage error listing the names there are.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from pipeline.sources import get_source
from pipeline.sources.base import Source, SourceError
from pipeline.sources.nnunet import NnunetSource
from transforms.caseref import CaseRef, label_name_key

# Sources whose own T/L targets `--lesion-labels` replaces (MSD's are fixed by task name).
OVERRIDDEN_TARGETS = ("msd", "nnunet")
SHOWN_NAMES = 40


def parse_label_names(text: str) -> tuple[str, ...]:
    """'tumor, cyst' -> ('tumor', 'cyst'); raises ValueError when it names nothing."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise ValueError(f"--lesion-labels takes NAME[,NAME...] (label names from dataset.json), got {text!r}")
    return names


def parse_subject_regex(text: str) -> str:
    """A regex with at least one group (the subject); raises ValueError otherwise."""
    try:
        groups = re.compile(text).groups
    except re.error as exc:
        raise ValueError(f"--subject-regex is not a regular expression ({exc})") from None
    if groups < 1:
        raise ValueError("--subject-regex needs a group naming the subject, e.g. '^(patient[0-9]+)_'")
    return text


def takes_user_targets(source: Source) -> bool:
    return source.info.name in OVERRIDDEN_TARGETS or "tumor_lesion_size" not in source.info.tasks


def configured_source(name: str, subject_regex: Optional[str]) -> Source:
    """The adapter called `name`, grouping subjects by `subject_regex` where it takes one (nnunet)."""
    source = get_source(name)
    return NnunetSource(subject_regex) if isinstance(source, NnunetSource) and subject_regex else source


@dataclasses.dataclass(kw_only=True)
class LesionTargets:
    """`--lesion-labels` applied source by source, remembering which names were found."""

    names: tuple[str, ...]
    matched: set[str] = dataclasses.field(default_factory=set)
    known: set[str] = dataclasses.field(default_factory=set)
    applicable: list[str] = dataclasses.field(default_factory=list)

    def apply(self, source: Source, cases: list[CaseRef]) -> list[CaseRef]:
        """The cases with their T/L targets set to their labels named by `names` (where the source takes them)."""
        if not self.names or not takes_user_targets(source):
            return cases
        self.applicable.append(source.info.name)
        wanted = {label_name_key(name): name for name in self.names}
        chosen = []
        for case in cases:
            self.known.update(name for _, name in case.labels)
            named = [
                (value, wanted[label_name_key(name)]) for value, name in case.labels if label_name_key(name) in wanted
            ]
            self.matched.update(name for _, name in named)
            chosen.append(dataclasses.replace(case, lesion_labels=tuple(value for value, _ in named)))
        return chosen

    def check(self) -> None:
        """Raise SourceError when a name matched no label of any source it applies to."""
        missing = [name for name in self.names if name not in self.matched]
        if not missing:
            return
        if not self.applicable:
            raise SourceError(
                "--lesion-labels applies to sources without built-in T/L targets (and msd, nnunet); this run has none"
            )
        shown = sorted(self.known, key=str.lower)
        more = f", ... ({len(shown)} in all)" if len(shown) > SHOWN_NAMES else ""
        raise SourceError(
            f"--lesion-labels names no label of {', '.join(sorted(set(self.applicable)))}: "
            f"{', '.join(map(repr, missing))}; their labels are: "
            f"{', '.join(map(repr, shown[:SHOWN_NAMES])) or '(none)'}{more}"
        )
