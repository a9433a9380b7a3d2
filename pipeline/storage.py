"""Object storage: local paths, gs:// and s3:// behind one small API.

- local paths and s3:// go through Beam's filesystems (S3 endpoint and keys are Beam's
  `--s3_*` pipeline options, which Beam hands to every worker);
- gs:// goes through gcsfs. Beam's own GCS client probes Google's default credentials with
  retries (tens of seconds in every process) before it falls back to anonymous access; gcsfs is told
  once, by `configure`, whether to use default credentials or anonymous access
  (`--gcs-anonymous`, e.g. for public buckets or the storage emulator, which gcsfs finds
  through STORAGE_EMULATOR_HOST).

Native readers (nibabel, SimpleITK, pydicom) need real files, so remote objects are copied
into a temporary folder of their own (one folder per object: two objects that share a stem,
e.g. `x.nii` and `x.nii.gz`, must never meet in one folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import os
import posixpath
import shutil
import stat
import tempfile
import uuid
from typing import Iterator, Optional

from transforms import archives, deadline, detached
from transforms.errors import PipelineError, Reason

COPY_CHUNK_BYTES = 8 << 20
DEFAULT_MAX_INPUT_BYTES = 4 << 30  # bytes of one input (a file, an archive expanded, a folder)
# Bytes as stored: Beam would otherwise gunzip `*.gz` objects on the fly.
RAW = "uncompressed"  # apache_beam.io.filesystem.CompressionTypes.UNCOMPRESSED
GCS = "gs://"
# gcsfs 2026.x probes each bucket for hierarchical namespaces over TLS (a minute where that fails).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def _filesystems():
    """Beam's FileSystems, imported on first use: Beam takes about a second to import, and listing
    sources or parsing options must not pay it."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


@dataclasses.dataclass(frozen=True)
class StorageSettings:
    """How workers reach object storage; plain values, so DoFns can carry it."""

    gcs_anonymous: bool = False
    gcs_project: Optional[str] = None


_settings = StorageSettings()


def configure(settings: StorageSettings) -> None:
    """Set this process's storage settings (the driver at start, each DoFn in `setup`)."""
    global _settings
    if settings != _settings:
        _settings = settings
        gcs_filesystem.cache_clear()


class MissingDependency(RuntimeError):
    """A package that a storage scheme needs is not installed (a one-line usage error, not a traceback)."""


# The module each scheme needs and the package that provides it (both install with this tool).
SCHEME_MODULES = {GCS: ("gcsfs", "gcsfs"), "s3://": ("boto3", "boto3")}


def _missing(uri: str, package: str) -> MissingDependency:
    scheme = uri.split("://", 1)[0]
    return MissingDependency(
        f"{scheme}:// locations need the Python package {package}, which is not installed in "
        f"this environment: pip install {package} (or reinstall this tool: pip install .)"
    )


def require_scheme(uri: str) -> None:
    """Raise MissingDependency when the package that `uri`'s scheme needs cannot be imported."""
    for scheme, (module, package) in SCHEME_MODULES.items():
        if uri.startswith(scheme) and importlib.util.find_spec(module) is None:
            raise _missing(uri, package)


@functools.lru_cache(maxsize=1)
def gcs_filesystem():
    """This process's gcsfs filesystem, built from the configured settings."""
    try:
        import gcsfs
    except ImportError as exc:
        raise _missing(GCS, "gcsfs") from exc

    token = "anon" if _settings.gcs_anonymous else None
    return gcsfs.GCSFileSystem(token=token, project=_settings.gcs_project)


def _is_gcs(uri: str) -> bool:
    return uri.startswith(GCS)


def _gcs_path(uri: str) -> str:
    return uri[len(GCS) :]


def is_remote(uri: str) -> bool:
    return "://" in uri


def join(base: str, *parts: str) -> str:
    """Join path parts under a local path or a URI."""
    if not parts:
        return base
    if is_remote(base):
        return posixpath.join(base, *parts)
    return _filesystems().join(base, *parts)


def basename(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/"))


def dirname(uri: str) -> str:
    return posixpath.dirname(uri.rstrip("/")) if is_remote(uri) else os.path.dirname(uri.rstrip("/"))


def exists(uri: str) -> bool:
    if _is_gcs(uri):
        return gcs_filesystem().exists(_gcs_path(uri))
    return _filesystems().exists(uri)


def is_folder(uri: str) -> bool:
    """A local directory, or a gs:// prefix with objects below it (a DICOM series named without '/')."""
    if _is_gcs(uri):
        return gcs_filesystem().isdir(_gcs_path(uri))
    return not is_remote(uri) and os.path.isdir(uri)


def glob(pattern: str) -> list[str]:
    """Sorted paths of files matching a glob pattern (`**` crosses folders); empty when none match."""
    if _is_gcs(pattern):
        # detail=True types each match from the listing itself: no per-path call that could
        # fail and silently drop a file
        matches = gcs_filesystem().glob(_gcs_path(pattern), detail=True)
        return sorted(GCS + path for path, info in matches.items() if info.get("type") == "file")
    # A failed listing raises (BeamIOError): it must not read as "no files" and quarantine good cases.
    return sorted(m.path for m in _filesystems().match([pattern])[0].metadata_list)


def list_tree(root: str) -> list[str]:
    """Root-relative paths ('/'-separated) of every file below `root`, sorted; a failed listing raises."""
    base = root.rstrip("/")
    if _is_gcs(base):
        paths = [GCS + path for path in gcs_filesystem().find(_gcs_path(base))]
    elif is_remote(base):
        paths = [m.path for m in _filesystems().match([base + "/**"])[0].metadata_list]
    else:
        paths = [
            os.path.join(folder, name).replace(os.sep, "/") for folder, _, names in os.walk(base) for name in names
        ]
    prefix = base + "/"
    return sorted(path[len(prefix) :] for path in paths if path.startswith(prefix))


def is_empty_location(uri: str) -> bool:
    """True when nothing exists at or anywhere below `uri` (a new or empty output location)."""
    if not is_remote(uri):
        return not os.path.exists(uri) or (os.path.isdir(uri) and not os.listdir(uri))
    return not exists(uri) and not glob(join(uri, "**"))


def open_read(uri: str):
    """A readable, seekable binary handle on the object's stored bytes."""
    if _is_gcs(uri):
        return gcs_filesystem().open(_gcs_path(uri), "rb")
    return _filesystems().open(uri, compression_type=RAW)


def create(uri: str):
    """A writable binary handle for a new object (parent folders are created as needed)."""
    if _is_gcs(uri):
        return gcs_filesystem().open(_gcs_path(uri), "wb")
    return _filesystems().create(uri, compression_type=RAW)


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as handle:
        return handle.read()


def write_bytes(uri: str, data: bytes) -> None:
    with create(uri) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_create(uri: str, temp_dir: str):
    """A writable handle whose object appears at `uri` only once the writer finished without error.

    Local files are written under `temp_dir` and renamed. For object stores the bytes are
    spooled to a local temporary file and uploaded only after the block succeeds: their
    writers publish whatever was written when a handle closes, even after an error. A failed
    upload deletes what it may have published; a retry rewrites the same name.
    """
    if is_remote(uri):
        with tempfile.TemporaryFile() as spool:
            yield spool
            spool.seek(0)
            _upload(spool, uri)
        return
    temp_uri = join(temp_dir, f"{uuid.uuid4().hex}.{basename(uri)}")
    with create(temp_uri) as handle:
        yield handle
    rename(temp_uri, uri)


def _upload(source, uri: str) -> None:
    """Copy a file to an object; on failure, abandon the upload instead of publishing part of it."""
    target = create(uri)
    try:
        shutil.copyfileobj(source, target, COPY_CHUNK_BYTES)
    except BaseException:
        if hasattr(target, "discard"):  # gcsfs: drop the unfinished upload, nothing is published
            target.discard()
        else:  # Beam's writers publish on close; remove what this attempt published
            with contextlib.suppress(Exception):
                target.close()
                delete(uri)
        raise
    target.close()


def delete(uri: str) -> None:
    delete_many([uri])


def delete_many(uris: list[str]) -> None:
    """Delete objects in batches (gcsfs and Beam's S3 batch them): a build's scratch holds one spill object
    per slice-step bundle, too many to delete one request at a time."""
    gcs = [_gcs_path(uri) for uri in uris if _is_gcs(uri)]
    others = [uri for uri in uris if not _is_gcs(uri)]
    if gcs:
        gcs_filesystem().rm(gcs)
    if others:
        _filesystems().delete(others)


def rename(source: str, destination: str) -> None:
    """Move an object; local parent folders are created (object stores have none)."""
    if _is_gcs(source):
        gcs_filesystem().mv(_gcs_path(source), _gcs_path(destination))
        return
    if not is_remote(destination):
        os.makedirs(os.path.dirname(destination), exist_ok=True)
    _filesystems().rename([source], [destination])


def inside_root(uri: str, root: str) -> bool:
    """Whether `uri` names something at or below `root`, lexically (no `..` or `.` segment in between).

    Object stores have no links, so this is their whole confinement; local paths are also checked
    after links are resolved (`_check_links_stay_inside`).
    """
    base, path = root.rstrip("/"), uri.rstrip("/")
    if path != base and not path.startswith(base + "/"):
        return False
    return not {".", ".."} & set(path[len(base) :].split("/"))


def _check_links_stay_inside(path: str, root: str) -> None:
    """`unsafe_path` unless the path, its links resolved, is inside `root`'s own resolved path."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise PipelineError(
            Reason.UNSAFE_PATH, "a link leads outside the source root; only files inside it are read", path
        )


def check_confined(uri: str, root: str) -> None:
    """Refuse (`unsafe_path`) an input outside the source root, or a local link that leads out of it.
    An empty `root` confines nothing (library use; every build sets it)."""
    if not root:
        return
    if not inside_root(uri, root):
        raise PipelineError(Reason.UNSAFE_PATH, "input is not inside the source root", uri)
    if not is_remote(uri):
        _check_links_stay_inside(uri, root)


def _open_local_regular(path: str, max_bytes: int):
    """A binary handle on a local regular file of at most `max_bytes`; FIFOs, devices and sockets are
    refused before they are opened (a FIFO would block the read forever, a device never ends)."""
    kind = os.stat(path)
    if not stat.S_ISREG(kind.st_mode):
        raise PipelineError(Reason.UNSAFE_PATH, "not a regular file (a FIFO, device, socket or folder)", path)
    # O_NONBLOCK: should the path become a FIFO after the check, opening it still returns at once.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    handle = os.fdopen(descriptor, "rb")
    kind = os.fstat(descriptor)
    if not stat.S_ISREG(kind.st_mode):
        handle.close()
        raise PipelineError(Reason.UNSAFE_PATH, "not a regular file (a FIFO, device, socket or folder)", path)
    _check_size(kind.st_size, max_bytes, path)
    return handle


def _check_size(n_bytes: int, max_bytes: int, uri: str) -> None:
    if n_bytes > max_bytes:
        raise PipelineError(
            Reason.TOO_LARGE, f"input holds {n_bytes:,} bytes, over the budget of {max_bytes:,} (--max-volume-mb)", uri
        )


def open_input(uri: str, root: str = "", max_bytes: int = DEFAULT_MAX_INPUT_BYTES):
    """A binary handle on one input file, confined like `localized` (for reading a header in place)."""
    check_confined(uri, root)
    return _open_local_regular(uri, max_bytes) if not is_remote(uri) else open_read(uri)


LISTING_MAX_BYTES = 64 << 20  # a dataset.json or meta.csv of 22 sources is at most a few MB


def read_listing(uri: str, root: str = "", max_bytes: int = LISTING_MAX_BYTES) -> bytes:
    """The bytes of a file that lists cases (dataset.json, meta.csv), read while listing: confined to the
    source root like every input, and at most `max_bytes` (`too_large`): a link to /dev/zero or a FIFO
    named dataset.json cannot stall or exhaust the driver."""
    with open_input(uri, root, max_bytes) as handle:
        data = handle.read(max_bytes + 1)
    _check_size(len(data), max_bytes, uri)
    return data


def object_size(uri: str) -> int:
    """Stored bytes of one object (a metadata call, no read); FileNotFoundError when it does not exist."""
    if _is_gcs(uri):
        return int(gcs_filesystem().size(_gcs_path(uri)))
    found = _filesystems().match([uri])[0].metadata_list
    if not found:
        raise FileNotFoundError(2, "No such file", uri)
    return int(found[0].size_in_bytes)


@contextlib.contextmanager
def localized(uri: str, max_bytes: int = DEFAULT_MAX_INPUT_BYTES, root: str = "") -> Iterator[tuple[str, str]]:
    """Yield (local path, sha256 hex) of the object at `uri`, copied into a private temp folder.

    The copy keeps the object's file name (readers pick formats by extension) and is removed
    on exit. A local file is still hashed but not copied. A URI ending in `/` is a folder
    (a DICOM series) and is copied whole; an archive (.zip, .tar, .tar.gz, .tgz) is a series
    too, extracted safely (at most `max_bytes`) and yielded as its folder. A file, or a folder's
    files together, holding more than `max_bytes` is `too_large`.

    Confinement (`root`): nothing outside the source root is read, whatever a link or a header
    says: links are followed only while they stay inside it, only regular files are opened, and a
    detached image header (`transforms.detached`) brings its one data file along, hashed with it.
    A missing object raises FileNotFoundError; any other I/O error propagates, so that the runner retries.
    """
    check_confined(uri, root)
    if uri.endswith("/") or is_folder(uri):
        with localized_folder(uri, max_bytes, root) as copy:
            yield copy
        return
    if archives.is_archive(uri):
        with localized_archive(uri, max_bytes) as copy:
            yield copy
        return
    with localized_image_file(uri, max_bytes, root) as copy:
        yield copy


@contextlib.contextmanager
def localized_file(uri: str, max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> Iterator[tuple[str, str]]:
    """Yield (local path, sha256 hex) of one object of at most `max_bytes`: a local regular file as it is
    (hashed), a remote one copied into a private temp folder (removed on exit)."""
    if not is_remote(uri):
        with _open_local_regular(uri, max_bytes) as handle:
            digest = _sha256_stream(handle)
        yield uri, digest
        return
    _check_size(object_size(uri), max_bytes, uri)  # one metadata call: existence and size
    folder = tempfile.mkdtemp(prefix="medvision-")
    try:
        local_path = os.path.join(folder, basename(uri))
        with open_read(uri) as source, open(local_path, "wb") as target:
            digest = _copy_counted(source, target, max_bytes, uri)
        yield local_path, digest
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy_counted(source, target, max_bytes: int, uri: str) -> str:
    """Copy and hash, stopping at `max_bytes` (an object may grow after its size was listed)."""
    digest, copied = hashlib.sha256(), 0
    for chunk in iter(lambda: source.read(COPY_CHUNK_BYTES), b""):
        deadline.check()
        copied += len(chunk)
        _check_size(copied, max_bytes, uri)
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest()


def _sha256_stream(handle) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(COPY_CHUNK_BYTES), b""):
        deadline.check()
        digest.update(chunk)
    return digest.hexdigest()


def _read_head(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(detached.HEADER_MAX_BYTES)


@contextlib.contextmanager
def localized_image_file(uri: str, max_bytes: int, root: str = "") -> Iterator[tuple[str, str]]:
    """`localized_file`, and for a detached image header (NRRD `data file`, MetaImage `ElementDataFile`)
    its data file too, confined and placed where the header names it; the sha256 covers both."""
    with localized_file(uri, max_bytes) as (path, digest):
        name = detached.data_file_of(_read_head(path), uri) if detached.may_name_data_file(uri) else None
        if name is None:
            yield path, digest
            return
        data_uri = join(dirname(uri), name)
        check_confined(data_uri, root)
        target = os.path.join(os.path.dirname(path), *name.split("/"))
        if is_remote(uri):  # the header's copy sits in its own temp folder: the data goes next to it
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _check_size(object_size(data_uri), max_bytes, data_uri)
            with open_read(data_uri) as source, open(target, "wb") as copy:
                data_digest = _copy_counted(source, copy, max_bytes, data_uri)
        else:  # the reader finds it where it is: checked above, inside the root
            with _open_local_regular(data_uri, max_bytes) as handle:
                data_digest = _sha256_stream(handle)
        yield path, hashlib.sha256(f"{digest}\x1f{name}\x1f{data_digest}".encode()).hexdigest()


@contextlib.contextmanager
def localized_archive(uri: str, max_bytes: int) -> Iterator[tuple[str, str]]:
    """Yield (extracted folder, sha256 of the archive) for an archived series."""
    with localized_file(uri, max_bytes) as (path, digest):
        folder = tempfile.mkdtemp(prefix="medvision-")
        try:
            yield archives.extract(path, folder, uri, max_bytes), digest
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def localized_folder(uri: str, max_bytes: int = DEFAULT_MAX_INPUT_BYTES, root: str = "") -> Iterator[tuple[str, str]]:
    """Yield (local folder, sha256) for every object directly under `uri` (a DICOM series folder),
    at most `max_bytes` together.

    The digest covers the sorted (name, sha256) pairs, so it changes when any file does.
    """
    members = glob(join(uri.rstrip("/"), "*"))
    if not members:
        raise FileNotFoundError(2, "No files in folder", uri)
    folder = tempfile.mkdtemp(prefix="medvision-")
    try:
        listing, left = hashlib.sha256(), max_bytes
        for path in members:
            check_confined(path, root)
            with localized_file(path, left) as (local_path, digest):
                left -= os.path.getsize(local_path)
                shutil.copyfile(local_path, os.path.join(folder, basename(path)))
            listing.update(f"{basename(path)}\x1f{digest}\n".encode())
        yield folder, listing.hexdigest()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sha256_of(uri: str) -> str:
    """sha256 hex of an object's bytes, streamed."""
    with open_read(uri) as handle:
        return _sha256_stream(handle)
