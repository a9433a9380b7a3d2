"""The pure parts of a training mixture (`medvision-pipeline mix`): subject groups, the validation carve,
quotas, the conversational columns and the mixture's card. I/O lives in `consumers/mix.py`.

A subject is `(dataset, subject_id)`. Subjects that share an image volume (`volume_hash`) form one group,
as in the build's split, so a scan never reaches two splits of the mixture.
"""

from __future__ import annotations

import hashlib
import math

import pyarrow as pa
import yaml

from consumers.card import Markdown, code_span, markdown_line, markdown_table

MIX_SPLITS = ("train", "validation", "test")
# An official split wins over a carve: a group seen as test in any input stays test.
SPLIT_PRIORITY = {"test": 0, "validation": 1, "train": 2}

CONTENT_TYPE = pa.list_(pa.struct([pa.field("type", pa.string()), pa.field("text", pa.string())]))
MESSAGES_TYPE = pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", CONTENT_TYPE)]))


def seeded_key(seed: int, *parts: str) -> str:
    """A stable order key for `parts` under `seed` (md5 hex, as DuckDB's `md5` computes it in SQL)."""
    return hashlib.md5(f"{seed}/{'/'.join(parts)}".encode()).hexdigest()


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, item):
        self.parent.setdefault(item, item)
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a, b) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


def subject_groups(subject_volumes, subject_splits, seed: int) -> list[dict]:
    """One row per subject: {dataset, subject_id, group, group_split}.

    subject_volumes: (dataset, subject_id, volume_hash) triples; subjects sharing a volume hash are joined.
    subject_splits: (dataset, subject_id, input split) triples; a group takes the most binding split of
    its members (test, then validation, then train), and its rows from other splits are dropped by the
    caller. `group` numbers the groups in a seeded order (a hash of the group's first subject): the carve's.
    """
    union = _UnionFind()
    by_volume: dict = {}
    for dataset, subject_id, volume in subject_volumes:
        subject = (dataset, subject_id)
        union.find(subject)
        if volume is not None:
            union.union(subject, by_volume.setdefault(volume, subject))
    split_of: dict = {}
    for dataset, subject_id, split in subject_splits:
        root = union.find((dataset, subject_id))
        split_of[root] = min(split, split_of.get(root, split), key=SPLIT_PRIORITY.__getitem__)
    roots = sorted({union.find(subject) for subject in union.parent}, key=lambda r: seeded_key(seed, *r))
    number = {root: index for index, root in enumerate(roots)}
    return [
        {
            "dataset": subject[0],
            "subject_id": subject[1],
            "group": number[union.find(subject)],
            "group_split": split_of.get(union.find(subject), "train"),
        }
        for subject in sorted(union.parent)
    ]


def apportion(total: int, weights: dict[str, int]) -> dict[str, int]:
    """`total` split over the keys in proportion to their weights (largest remainders, ties by key);
    no key gets more than its weight."""
    mass = sum(weights.values())
    if mass == 0 or total <= 0:
        return {key: 0 for key in weights}
    total = min(total, mass)
    exact = {key: total * weight / mass for key, weight in weights.items()}
    shares = {key: math.floor(value) for key, value in exact.items()}
    for key in sorted(weights, key=lambda k: (shares[k] - exact[k], k))[: total - sum(shares.values())]:
        shares[key] += 1
    return shares


def carve_validation(group_counts, quotas: dict[str, int]) -> set[int]:
    """The train groups that become validation: per dataset (sorted), whole groups in group order until
    the dataset's carved pairs reach its quota. A group carved for one dataset counts for every dataset
    it holds pairs of.

    group_counts: (group, dataset, pairs) of train groups, in group order.
    quotas: pairs to carve per dataset (after its official validation pairs).
    """
    members: dict[int, list] = {}
    order: dict[str, list[int]] = {}
    for group, dataset, pairs in group_counts:
        members.setdefault(group, []).append((dataset, pairs))
        order.setdefault(dataset, []).append(group)
    carved, carved_pairs = set(), dict.fromkeys(order, 0)
    for dataset in sorted(quotas):
        for group in order.get(dataset, []):
            if carved_pairs[dataset] >= quotas[dataset]:
                break
            if group not in carved:
                carved.add(group)
                for member, pairs in members[group]:
                    carved_pairs[member] += pairs
    return carved


def conversation(prompt: str, answer: str) -> list[dict]:
    """The `messages` of one pair, as TRL's VLM SFT and Hugging Face processors take them: the image
    placeholder then the prompt in the user turn, the answer in the assistant turn."""
    return [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": prompt}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


def messages_array(prompts: pa.Array, answers: pa.Array) -> pa.Array:
    """`conversation` of every (prompt, answer), as one Arrow column of MESSAGES_TYPE."""
    return pa.array([conversation(p, a) for p, a in zip(prompts.to_pylist(), answers.to_pylist())], MESSAGES_TYPE)


def front_matter(licences: list[str]) -> dict:
    """The card's YAML header: the three splits as Hugging Face `configs` data files."""
    files = [{"split": split, "path": f"{split}/*.parquet"} for split in MIX_SPLITS]
    return {
        "configs": [{"config_name": "default", "data_files": files}],
        "tags": ["medical", "medvision", "sft"],
        "license_details": ", ".join(licences) or "unknown",
    }


def mixture_card(summary: dict) -> str:
    """The mixture's README.md: counts per split, dataset and task, subjects, the exact command, the
    inputs, the dropped rows, and how to load it. `summary` is what `consumers.mix.mix` returns."""
    counts = [(r["split"], r["dataset"], r["task"], f"{r['pairs']:,}") for r in summary["counts"]]
    totals = [
        (split, f"{summary['pairs'][split]:,}", f"{summary['subjects'][split]:,}", summary["shards"][split])
        for split in MIX_SPLITS
    ]
    dropped = [(markdown_line(reason), f"{n:,}") for reason, n in summary["dropped"].items()]
    lines = [
        "---",
        yaml.safe_dump(front_matter(summary["licences"]), sort_keys=False).strip(),
        "---",
        "",
        "# MedVision pairs: a training mixture",
        "",
        "Made from finished `medvision-pipeline` builds by:",
        "",
        "```",
        summary["command"],
        "```",
        "",
        f"Seed {code_span(summary['seed'])}; a subject (and every subject sharing an image volume with it) "
        "is in one split only; validation subjects were carved from train, stratified by dataset.",
        "",
        "## Splits",
        "",
    ]
    lines += markdown_table(("split", "pairs", "subjects", "shards"), totals)
    lines += ["", "## Pairs per dataset and task", ""]
    lines += markdown_table(("split", "dataset", "task", "pairs"), counts)
    lines += ["", "## Inputs", ""] + [f"- {code_span(uri)}" for uri in summary["inputs"]]
    lines += ["", "## Left out", ""] + (markdown_table(("reason", "pairs"), dropped) if dropped else ["nothing"])
    lines += [
        "",
        "## Loading",
        "",
        "```python",
        "import datasets",
        'mix = datasets.load_dataset("parquet", data_dir="THIS_FOLDER")  # train, validation, test',
        'mix["train"][0]["messages"], mix["train"][0]["images"]',
        "```",
        "",
    ]
    return "\n".join(str(line) if isinstance(line, Markdown) else line for line in lines)
