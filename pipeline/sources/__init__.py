"""Source adapters, one module per dataset, registered by name."""
from __future__ import annotations

from pipeline.sources.base import Source, SourceError, SourceInfo
from pipeline.sources.ceph_biometrics_400 import CephBiometrics400Source
from pipeline.sources.demo import DemoSource
from pipeline.sources.feta24 import Feta24Source
from pipeline.sources.msd import MsdSource

SOURCES: dict[str, Source] = {
    source.info.name: source
    for source in (DemoSource(), MsdSource(), CephBiometrics400Source(), Feta24Source())
}


def get_source(name: str) -> Source:
    """The adapter called `name`; raises SourceError listing the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise SourceError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}") from None


__all__ = ["SOURCES", "Source", "SourceError", "SourceInfo", "get_source"]
