"""Which other file an image header makes its reader open (NRRD `data file:`, MetaImage `ElementDataFile`).

A header names its voxel file itself; left to the reader, it can name any file the worker can read
(`/proc/self/environ`, a key next to the dataset). So the pipeline reads the header first and
decides: the voxels follow the header (attached), or one relative file below the header's folder
(`x.mhd` + `x.raw`, `x.nhdr` + `x.raw.gz`), which is then confined, localized and hashed like any
input. Everything else (absolute paths, `..`, `LIST`, numbered file patterns) is `unsafe_path`.
"""

from __future__ import annotations

import posixpath
import re

from transforms.errors import PipelineError, Reason

HEADER_MAX_BYTES = 1 << 16  # a header longer than this is refused, not searched further
NRRD_SUFFIXES = (".nrrd", ".nhdr")
METAIMAGE_SUFFIXES = (".mha", ".mhd")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def _field_name(key: str) -> str:
    """Field names compared the way a lenient reader might: case, spaces and punctuation ignored."""
    return _NOT_ALNUM.sub("", key.lower())


def _nrrd_header_lines(head: bytes, uri: str) -> list[str]:
    if not head.startswith(b"NRRD"):
        raise PipelineError(Reason.UNREADABLE, "not a NRRD file (no NRRD magic)", uri)
    text = head.decode("latin-1").replace("\r\n", "\n")
    header, blank, _ = text.partition("\n\n")
    if not blank and len(head) >= HEADER_MAX_BYTES:
        raise PipelineError(Reason.UNREADABLE, f"NRRD header longer than {HEADER_MAX_BYTES} bytes", uri)
    return header.split("\n")[1:]


def _nrrd_data_file(head: bytes, uri: str) -> str | None:
    values = [
        value.strip()
        for key, value in (
            line.partition(":")[::2]
            for line in _nrrd_header_lines(head, uri)
            if not line.startswith("#") and ":=" not in line
        )  # comments and key/value pairs name no file
        if _field_name(key) == "datafile"
    ]
    if not values:
        return None
    if len(values) > 1 or values[0].upper().startswith("LIST") or len(values[0].split()) > 1:
        raise PipelineError(
            Reason.UNSAFE_PATH, "NRRD 'data file' names several files; only one file next to the header is read", uri
        )
    return values[0]


_METAIMAGE_FIELD = re.compile(r"^([^=:]*)[=:](.*)$")  # MetaIO takes '=' and ':' as separators


def _metaimage_data_file(head: bytes, uri: str) -> str | None:
    for line in head.decode("latin-1").splitlines():
        field = _METAIMAGE_FIELD.match(line)
        if field and _field_name(field[1]) == "elementdatafile":  # the last field: the voxels follow it
            value = field[2].strip()
            if value.upper() == "LOCAL":
                return None
            if value.upper().startswith("LIST") or "%" in value or len(value.split()) > 1:
                raise PipelineError(
                    Reason.UNSAFE_PATH,
                    "MetaImage 'ElementDataFile' names several files; only one file next to the header is read",
                    uri,
                )
            return value
    raise PipelineError(
        Reason.UNREADABLE, f"MetaImage header without ElementDataFile in its first {HEADER_MAX_BYTES} bytes", uri
    )


def relative_below(name: str, uri: str) -> str:
    """`name` as a relative path that stays below the header's folder; raises `unsafe_path` otherwise."""
    cleaned = posixpath.normpath(name)
    parts = cleaned.split("/")
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or "://" in name
        or posixpath.isabs(cleaned)
        or ".." in parts
        or cleaned == "."
    ):
        raise PipelineError(
            Reason.UNSAFE_PATH,
            "header names a data file outside its folder (absolute path, "
            "'..' or a URI); only files next to the header are read",
            uri,
        )
    return cleaned


def may_name_data_file(uri: str) -> bool:
    """Whether a file of this type has a header that can name a data file (NRRD, MetaImage)."""
    return uri.lower().endswith(NRRD_SUFFIXES + METAIMAGE_SUFFIXES)


def data_file_of(head: bytes, uri: str) -> str | None:
    """The data file a header at `uri` makes its reader open (relative to the header's folder), or None
    when its voxels follow the header. `head` is the file's first `HEADER_MAX_BYTES` bytes.

    Raises `PipelineError`: `unsafe_path` for a data file outside the folder or several data files,
    `unreadable` for a header that cannot be parsed.
    """
    lowered = uri.lower()
    if not may_name_data_file(uri):
        return None
    name = _nrrd_data_file(head, uri) if lowered.endswith(NRRD_SUFFIXES) else _metaimage_data_file(head, uri)
    if name is None:
        if lowered.endswith(".nhdr"):
            raise PipelineError(Reason.UNREADABLE, "detached NRRD header (.nhdr) without a 'data file' field", uri)
        return None
    return relative_below(name, uri)
