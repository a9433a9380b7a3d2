"""Stable identities: sample ids, parameter hashes and subject-level splits (SPEC §6).

These hashes are a versioned contract: changing a formula changes every id and split,
so each formula carries a version string that is part of what is hashed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, NamedTuple

import numpy as np

SAMPLE_ID_VERSION = "sample-id-v1"
SPLIT_VERSION = "split-v1"
TRAIN_PER_MILLE = 700


# Parts are joined by SEPARATOR after escaping SEPARATOR and ESCAPE inside them, so no two lists of parts
# give one text whatever the names contain; a name without either (both are control characters) is left
# as it is, so its ids and splits keep the values they had before the escaping.
SEPARATOR, ESCAPE = "\x1f", "\x1e"


def _escaped(part: object) -> str:
    return str(part).replace(ESCAPE, ESCAPE + ESCAPE).replace(SEPARATOR, ESCAPE + "s")


def _digest(*parts: object) -> str:
    text = SEPARATOR.join(_escaped(part) for part in parts)
    # surrogatepass: a name decoded from non-UTF-8 bytes (surrogate escapes) still hashes, distinctly
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def params_hash(params: dict) -> str:
    """16 hex digits identifying the parameters that shape the output (canonical JSON)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def sample_id(
    dataset: str, case_id: str, sequence: str, plane: str, slice_index: int, task: str, target: str, params: str
) -> str:
    """32 hex digits, unique per pair; the same inputs and parameters always give the same id."""
    return _digest(SAMPLE_ID_VERSION, dataset, case_id, sequence, plane, slice_index, task, target, params)[:32]


SPLITS = ("train", "validation", "test")  # validation only where a source has an official one


def subject_split(dataset: str, subject_id: str, salt: str, official: str | None = None) -> str:
    """'train' or 'test' for a whole subject; the dataset's official split (may be 'validation') wins."""
    if official is not None:
        return official
    bucket = int(_digest(SPLIT_VERSION, salt, dataset, subject_id), 16) % 1000
    return "train" if bucket < TRAIN_PER_MILLE else "test"


VOLUME_HASH_VERSION = "volume-hash-v1"
GEOMETRY_DECIMALS = 2  # affines agree to 0.01 mm across re-encodings of one scan


def volume_hash(array, affine_ras) -> str:
    """32 hex digits identifying a decoded image volume: canonical voxels (float32) and geometry.

    The same scan re-distributed by two datasets (another container, dtype or axis order) hashes
    the same once decoded into the canonical frame; any voxel or geometry change differs.
    """
    digest = hashlib.blake2b(digest_size=16)
    geometry = np.round(np.asarray(affine_ras, dtype=np.float64), GEOMETRY_DECIMALS) + 0.0  # no -0.0
    digest.update(f"{VOLUME_HASH_VERSION}\x1f{tuple(array.shape)}\x1f{geometry.tolist()}".encode())
    for plane in array:  # converted one plane at a time: never a float32 copy of a whole int16 volume
        digest.update(np.ascontiguousarray(plane, dtype=np.float32).tobytes())
    return digest.hexdigest()


class Membership(NamedTuple):
    """A subject's split as one of its volumes shows it (the input of `shared_split_overrides`)."""

    volume_hash: str
    dataset: str
    subject_id: str
    split: str
    official: bool  # the split is the dataset's official one


def shared_split_overrides(members: Iterable[Membership]) -> dict[tuple[str, str], str]:
    """Subjects that share a volume (across datasets) must share a split; returns the changes.

    Subjects linked by any
    chain of shared hashes form one group. The group's split is an official split of a member
    if one has it (the first by (dataset, subject)), else the split of its first member;
    returns {(dataset, subject): split} for members whose split changes.
    """
    parent: dict = {}

    def root(node):
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    splits: dict[tuple[str, str], str] = {}
    official: dict[tuple[str, str], bool] = {}
    for volume, dataset, subject, split, is_official in members:
        subject_key = (dataset, subject)
        splits[subject_key] = split
        official[subject_key] = official.get(subject_key, False) or bool(is_official)
        parent[root(subject_key)] = root(("volume", volume, ""))  # 3-tuple: never a (dataset, subject) key
    groups: dict = {}
    for subject_key in splits:
        groups.setdefault(root(subject_key), []).append(subject_key)
    changes = {}
    for subjects in groups.values():
        ordered = sorted(subjects)
        chosen = splits[next((key for key in ordered if official[key]), ordered[0])]
        changes.update({key: chosen for key in ordered if splits[key] != chosen})
    return changes
