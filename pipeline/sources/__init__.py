"""Source adapters, one module per dataset, registered by name."""

from __future__ import annotations

from pipeline.sources.abdomenatlas import AbdomenAtlasSource
from pipeline.sources.abdomenct_1k import AbdomenCT1KSource
from pipeline.sources.acdc import AcdcSource
from pipeline.sources.amos22 import Amos22Source
from pipeline.sources.autopet_iii import AutoPet3Source
from pipeline.sources.base import Source, SourceError, SourceInfo
from pipeline.sources.bcv15 import Bcv15Source
from pipeline.sources.brats24 import Brats24Source
from pipeline.sources.camus import CamusSource
from pipeline.sources.ceph_biometrics_400 import CephBiometrics400Source
from pipeline.sources.crossmoda import CrossModaSource
from pipeline.sources.demo import DemoSource
from pipeline.sources.feta24 import Feta24Source
from pipeline.sources.flare22 import Flare22Source
from pipeline.sources.hntsmrg24 import Hntsmrg24Source
from pipeline.sources.isles24 import Isles24Source
from pipeline.sources.kipa22 import Kipa22Source
from pipeline.sources.kits23 import Kits23Source
from pipeline.sources.msd import MsdSource
from pipeline.sources.nnunet import NnunetSource
from pipeline.sources.oaizib_cm import OaizibCmSource
from pipeline.sources.skm_tea import SkmTeaSource
from pipeline.sources.toothfairy2 import ToothFairy2Source
from pipeline.sources.topcow24 import TopCow24Source
from pipeline.sources.totalsegmentator import TotalSegmentatorSource

# The 22 MedVision sources, then the built-in demo.
MEDVISION_SOURCES: tuple[Source, ...] = (
    AbdomenAtlasSource(),
    AbdomenCT1KSource(),
    AcdcSource(),
    Amos22Source(),
    AutoPet3Source(),
    Bcv15Source(),
    Brats24Source(),
    CamusSource(),
    CephBiometrics400Source(),
    CrossModaSource(),
    Feta24Source(),
    Flare22Source(),
    Hntsmrg24Source(),
    Isles24Source(),
    Kipa22Source(),
    Kits23Source(),
    MsdSource(),
    OaizibCmSource(),
    SkmTeaSource(),
    ToothFairy2Source(),
    TopCow24Source(),
    TotalSegmentatorSource(),
)
# Then the adapter of user datasets in nnU-Net's raw layout, and the built-in demo.
SOURCES: dict[str, Source] = {source.info.name: source for source in (*MEDVISION_SOURCES, NnunetSource(), DemoSource())}


def get_source(name: str) -> Source:
    """The adapter called `name`; raises SourceError listing the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise SourceError(f"unknown source {name!r}; known: {', '.join(sorted(SOURCES))}") from None


__all__ = ["MEDVISION_SOURCES", "SOURCES", "Source", "SourceError", "SourceInfo", "get_source"]
