"""Object storage through Beam's filesystems: local paths, gs:// and s3:// alike.

Native readers (nibabel, SimpleITK, pydicom) need real files, so remote objects are copied
into a temporary folder of their own (one folder per object: two objects that share a stem,
e.g. `x.nii` and `x.nii.gz`, must never meet in one folder).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import tempfile
from typing import Iterator

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems

COPY_CHUNK_BYTES = 8 << 20
# Bytes as stored: Beam would otherwise gunzip `*.gz` objects on the fly.
RAW = CompressionTypes.UNCOMPRESSED


def join(base: str, *parts: str) -> str:
    """Join path parts under a local path or a URI."""
    return FileSystems.join(base, *parts) if parts else base


def basename(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/"))


def dirname(uri: str) -> str:
    return FileSystems.split(uri.rstrip("/"))[0]


def exists(uri: str) -> bool:
    return FileSystems.exists(uri)


def glob(pattern: str) -> list[str]:
    """Sorted paths matching a glob pattern (an empty list when nothing matches)."""
    try:
        result = FileSystems.match([pattern])[0]
    except BeamIOError:
        return []
    return sorted(m.path for m in result.metadata_list)


def is_remote(uri: str) -> bool:
    return "://" in uri


def is_empty_location(uri: str) -> bool:
    """True when nothing exists at or anywhere below `uri` (a new or empty output location)."""
    if not is_remote(uri):
        return not os.path.exists(uri) or (os.path.isdir(uri) and not os.listdir(uri))
    return not exists(uri) and not glob(join(uri, "**"))


def read_bytes(uri: str) -> bytes:
    with FileSystems.open(uri, compression_type=RAW) as handle:
        return handle.read()


def create(uri: str):
    """A writable binary handle for a new object (parent folders are created as needed)."""
    return FileSystems.create(uri, compression_type=RAW)


def write_bytes(uri: str, data: bytes) -> None:
    with create(uri) as handle:
        handle.write(data)


def rename(source: str, destination: str) -> None:
    """Move an object; local parent folders are created (object stores have none)."""
    if not is_remote(destination):
        os.makedirs(os.path.dirname(destination), exist_ok=True)
    FileSystems.rename([source], [destination])


@contextlib.contextmanager
def localized(uri: str) -> Iterator[tuple[str, str]]:
    """Yield (local path, sha256 hex) of the object at `uri`, copied into a private temp folder.

    The copy keeps the object's file name (readers pick formats by extension) and is removed
    on exit. A local file is still hashed but not copied.
    """
    if uri.endswith("/"):
        with localized_folder(uri) as copy:
            yield copy
        return
    if not exists(uri):
        raise FileNotFoundError(2, "No such file", uri)
    if not is_remote(uri):
        yield uri, sha256_of(uri)
        return
    folder = tempfile.mkdtemp(prefix="medvision-")
    try:
        local_path = os.path.join(folder, basename(uri))
        digest = hashlib.sha256()
        with FileSystems.open(uri, compression_type=RAW) as source, open(local_path, "wb") as target:
            for chunk in iter(lambda: source.read(COPY_CHUNK_BYTES), b""):
                digest.update(chunk)
                target.write(chunk)
        yield local_path, digest.hexdigest()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def localized_folder(uri: str) -> Iterator[tuple[str, str]]:
    """Yield (local folder, sha256) for every object directly under `uri` (a DICOM series folder).

    The digest covers the sorted (name, sha256) pairs, so it changes when any file does.
    """
    members = [path for path in glob(join(uri.rstrip("/"), "*")) if not path.endswith("/")]
    if not members:
        raise FileNotFoundError(2, "No files in folder", uri)
    folder = tempfile.mkdtemp(prefix="medvision-")
    try:
        listing = hashlib.sha256()
        for path in members:
            with localized(path) as (local_path, digest):
                shutil.copyfile(local_path, os.path.join(folder, basename(path)))
            listing.update(f"{basename(path)}\x1f{digest}\n".encode())
        yield folder, listing.hexdigest()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sha256_of(uri: str) -> str:
    """sha256 hex of an object's bytes, streamed."""
    digest = hashlib.sha256()
    with FileSystems.open(uri, compression_type=RAW) as handle:
        for chunk in iter(lambda: handle.read(COPY_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
