"""Safe extraction of a DICOM series delivered as one archive (.zip, .tar, .tar.gz, .tgz).

An archive is hostile input: a member may be named `/etc/x` or `../../x`, be a link or a device,
or decompress to far more than its size on disk. Every member is checked before it is written:
regular files and folders only, relative names that stay inside the destination, and a cap on
the total bytes written that is enforced while streaming (a lying header cannot get past it).
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile

from transforms import deadline
from transforms.errors import PipelineError, Reason

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_MEMBERS = 100_000
CHUNK_BYTES = 1 << 20


def is_archive(uri: str) -> bool:
    return uri.lower().endswith(ARCHIVE_SUFFIXES)


def safe_member_path(destination: str, name: str, uri: str) -> str:
    """Where member `name` goes under `destination`; refuses absolute names and any `..` escape."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts:
        raise PipelineError(Reason.UNSAFE_PATH, f"archive member {name!r} would be written outside its folder", uri)
    return os.path.join(destination, *[part for part in parts if part not in ("", ".")])


class _Budget:
    """Counts bytes and members written; raises `too_large` past the caps."""

    def __init__(self, max_bytes: int, uri: str):
        self.left, self.members, self.uri = max_bytes, 0, uri

    def add_member(self) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise PipelineError(Reason.TOO_LARGE, f"archive has more than {MAX_MEMBERS} members", self.uri)

    def copy(self, source, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "xb") as target:  # "x": a repeated name cannot overwrite an earlier member
            for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                deadline.check()
                self.left -= len(chunk)
                if self.left < 0:
                    raise PipelineError(
                        Reason.TOO_LARGE, "archive expands beyond the memory budget (--max-volume-mb)", self.uri
                    )
                target.write(chunk)


def _extract_zip(path: str, destination: str, budget: _Budget, uri: str) -> None:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            budget.add_member()
            target = safe_member_path(destination, info.filename, uri)
            mode = info.external_attr >> 16
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
            elif mode and not stat.S_ISREG(mode):
                raise PipelineError(Reason.UNSAFE_PATH, f"archive member {info.filename!r} is a link or device", uri)
            else:
                with archive.open(info) as source:
                    budget.copy(source, target)


def _extract_tar(path: str, destination: str, budget: _Budget, uri: str) -> None:
    with tarfile.open(path, "r|*") as archive:  # streamed: members are checked as they arrive
        for member in archive:
            budget.add_member()
            target = safe_member_path(destination, member.name, uri)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
            elif not member.isfile():
                raise PipelineError(Reason.UNSAFE_PATH, f"archive member {member.name!r} is a link or device", uri)
            else:
                budget.copy(archive.extractfile(member), target)


def extract(path: str, destination: str, uri: str, max_bytes: int) -> str:
    """Extract the archive at `path` into `destination`; return the folder holding the files.

    A single top folder in the archive (`series/IM1.dcm ...`) is stepped into.
    """
    budget = _Budget(max_bytes, uri)
    try:
        if uri.lower().endswith(".zip"):
            _extract_zip(path, destination, budget, uri)
        else:
            _extract_tar(path, destination, budget, uri)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise PipelineError(Reason.UNREADABLE, f"broken archive ({type(exc).__name__})", uri) from exc
    return _content_root(destination)


def _content_root(folder: str) -> str:
    entries = os.listdir(folder)
    while len(entries) == 1 and os.path.isdir(os.path.join(folder, entries[0])):
        folder = os.path.join(folder, entries[0])
        entries = os.listdir(folder)
    return folder
