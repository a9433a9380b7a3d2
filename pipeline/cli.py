"""`medvision-pipeline`: build the dataset, list the sources.

    medvision-pipeline build --source demo --output ./out/run1
    medvision-pipeline build --source msd=gs://bucket/Task09_Spleen --output gs://bucket/out/run7 \
        --runner DataflowRunner --project P --region R --temp_location gs://bucket/tmp
    medvision-pipeline sources

Arguments `build` does not know are Beam pipeline options. Misuse prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from pipeline.config import UsageError, add_build_arguments, config_from_args
from pipeline.run import FailureFractionError, ReconcileError, build
from pipeline.sources import SOURCES
from pipeline.version import __version__

USAGE_EXIT = 2
FAILED_EXIT = 1


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message):
        raise UsageError(message)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medvision-pipeline", description="Quantitative medical-imaging pairs for VLMs.")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    build = commands.add_parser("build", help="build pairs from sources into Parquet")
    add_build_arguments(build)
    commands.add_parser("sources", help="list the source adapters, their tasks and licences")
    return parser


def print_sources() -> None:
    columns = ("name", "anatomy", "modalities", "tasks", "licence", "redistributable")
    table = [columns] + [
        (i.name, i.anatomy, ",".join(i.modalities), ",".join(i.tasks), i.licence, str(i.redistributable).lower())
        for i in (source.info for source in SOURCES.values())
    ]
    widths = [max(len(row[c]) for row in table) for c in range(len(columns))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def print_summary(stats: dict, output: str) -> None:
    print(f"output: {output}")
    for dataset, cases in stats["cases"].items():
        print(f"{dataset}: {cases['listed']} cases listed, {cases['with_pairs']} with pairs")
    for row in stats["rows"]:
        print(f"  {row['dataset']}/{row['task']}/{row['split']}: {row['rows']} rows")
    print(f"quarantined: {stats['total_quarantined']}")
    for q in stats["quarantine"]:
        print(f"  {q['dataset']}/{q['stage']}/{q['reason']}: {q['rows']}")
    print(f"total rows: {stats['total_rows']} in {stats['wall_seconds']} s")


def main(argv: list[str] | None = None) -> int:
    try:
        args, beam_args = make_parser().parse_known_args(argv)
        if args.command == "sources":
            print_sources()
            return 0
        config = config_from_args(args)
        result = build(config, beam_args)
    except UsageError as exc:
        print(f"medvision-pipeline: error: {exc}", file=sys.stderr)
        return USAGE_EXIT
    except (FailureFractionError, ReconcileError) as exc:
        print(f"medvision-pipeline: build failed: {exc}", file=sys.stderr)
        return FAILED_EXIT
    if "dry_run" in result:
        for line in result["dry_run"]:
            print(json.dumps(line))
        return 0
    print_summary(result, config.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
