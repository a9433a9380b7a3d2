"""A synthetic finished build for `mix`: pairs in the build's layout and schemas, written with pyarrow
(no imaging), with several datasets, tasks and splits, subjects of many pairs, and two subjects of two
datasets that share one image volume. Used by tests/consumers/test_mix.py and benchmarks/mix_scaling.py."""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from schemas.tables import TASKS, schema_for

SHARED_VOLUME = "shared-volume"
ROW_GROUP_ROWS = 4096


def png_of(seed: int, side_px: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side_px, side_px), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _split_of(dataset: str, subject: int) -> str:
    if subject == 0:  # the subjects sharing SHARED_VOLUME: train in every dataset
        return "train"
    return "train" if int(hashlib.md5(f"{dataset}/{subject}".encode()).hexdigest(), 16) % 10 < 7 else "test"


def _rows(dataset: str, task: str, subjects: np.ndarray, first_id: int, pngs: list[bytes]) -> pa.Table:
    schema = schema_for(task)
    n = len(subjects)
    ids = [hashlib.md5(f"{dataset}/{task}/{first_id + i}".encode()).hexdigest() for i in range(n)]
    images = [{"bytes": pngs[(first_id + i) % len(pngs)], "path": None} for i in range(n)]
    columns = {
        "sample_id": ids,
        "case_id": [f"case_{s}" for s in subjects],
        "subject_id": [f"subj_{s}" for s in subjects],
        "image": images,
        "image_mode": ["pixels"] * n,
        "volume_hash": [SHARED_VOLUME if s == 0 else f"{dataset}/vol_{s}" for s in subjects],
        "prompt": [f"{task} question {i}" for i in ids],
        "answer": [f"{task} answer {i}" for i in ids],
        "provenance": [{"licence": "CC0-1.0"}] * n,
    }
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_synthetic_build(
    root: str, n_pairs: int, n_datasets: int = 3, pairs_per_subject: int = 40, png_side_px: int = 16, seed: int = 0
) -> dict:
    """Write about `n_pairs` pairs under `root` (with `_SUCCESS`): dataset k holds a share ∝ k + 1, spread
    over the three tasks; returns {(dataset, task, split): rows}."""
    pngs = [png_of(seed + i, png_side_px) for i in range(64)]
    weights = np.arange(1, n_datasets + 1) / sum(range(1, n_datasets + 1))
    written, first_id = {}, 0
    for index, weight in enumerate(weights):
        dataset = f"synth{index}"
        for task in TASKS:
            n_task = max(1, int(n_pairs * weight / len(TASKS)))
            subjects = np.arange(n_task) // pairs_per_subject
            splits = np.array([_split_of(dataset, s) for s in range(subjects.max() + 1)])[subjects]
            for split in ("train", "test"):
                mine = subjects[splits == split]
                if not len(mine):
                    continue
                folder = os.path.join(root, f"dataset={dataset}", f"task={task}", f"split={split}")
                os.makedirs(folder, exist_ok=True)
                with pq.ParquetWriter(os.path.join(folder, "part-00000-of-00001.parquet"), schema_for(task)) as out:
                    for start in range(0, len(mine), ROW_GROUP_ROWS):
                        chunk = mine[start : start + ROW_GROUP_ROWS]
                        out.write_table(_rows(dataset, task, chunk, first_id, pngs))
                        first_id += len(chunk)
                written[dataset, task, split] = len(mine)
    open(os.path.join(root, "_SUCCESS"), "w").close()
    return written
