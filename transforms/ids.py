"""Stable identities: sample ids, parameter hashes and subject-level splits (SPEC §6).

These hashes are a versioned contract: changing a formula changes every id and split,
so each formula carries a version string that is part of what is hashed.
"""
from __future__ import annotations

import hashlib
import json

SAMPLE_ID_VERSION = "sample-id-v1"
SPLIT_VERSION = "split-v1"
TRAIN_PER_MILLE = 700


def _digest(*parts: object) -> str:
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def params_hash(params: dict) -> str:
    """16 hex digits identifying the parameters that shape the output (canonical JSON)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def sample_id(dataset: str, case_id: str, sequence: str, plane: str, slice_index: int,
              task: str, target: str, params: str) -> str:
    """32 hex digits, unique per pair; the same inputs and parameters always give the same id."""
    return _digest(SAMPLE_ID_VERSION, dataset, case_id, sequence, plane, slice_index, task, target, params)[:32]


def subject_split(dataset: str, subject_id: str, salt: str, official: str | None = None) -> str:
    """'train' or 'test' for a whole subject; the dataset's official split wins where it exists."""
    if official is not None:
        return official
    bucket = int(_digest(SPLIT_VERSION, salt, dataset, subject_id), 16) % 1000
    return "train" if bucket < TRAIN_PER_MILLE else "test"
