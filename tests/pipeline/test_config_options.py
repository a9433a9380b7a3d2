"""Build options are declared once (`pipeline.config.BuildConfig` fields with their `Option`): the CLI and the
parameter hash derive from the declarations, and every option is classified here by whether it shapes the pairs."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from pipeline.config import BuildConfig, SourceSpec, add_build_arguments, config_from_args, options

BASE = BuildConfig(sources=(SourceSpec("demo", None),), output="/tmp/medvision-out")

# Each option: (fields changed from BASE, whether that changes what a pair is, hence its sample_id). An option
# missing here fails `test_every_option_is_classified`: a new option must say whether it shapes the pairs.
CHANGES = {
    "sources": ({"sources": (SourceSpec("msd", "/data/Task09_Spleen"),)}, False),
    "output": ({"output": "/tmp/elsewhere"}, False),
    "spacing": ({"spacing": 0.5}, True),
    "conventions": ({"conventions": "medvision", "spacing": "native"}, True),
    "prompt_style": ({"prompt_style": "medvision"}, True),
    "max_cases": ({"max_cases": 3}, False),
    "cases": ({"cases": ("Task01_DemoCT/demo_ct_00",)}, False),
    "lesion_label_names": ({"lesion_label_names": ("tumor",)}, True),
    "subject_regex": ({"subject_regex": "^(p[0-9]+)_", "sources": (SourceSpec("nnunet", "/data/raw"),)}, True),
    "tasks": ({"tasks": ("detection",)}, False),
    "dry_run": ({"dry_run": True}, False),
    "dry_run_sample": ({"dry_run_sample": 5}, False),
    "split_salt": ({"split_salt": "another-salt"}, True),
    "target_file_mb": ({"target_file_mb": 64}, False),
    "max_volume_mb": ({"max_volume_mb": 512.0}, False),
    "case_timeout_s": ({"case_timeout_s": 30.0}, False),
    "allow_uneven_dicom_spacing": ({"allow_uneven_dicom_spacing": True}, True),
    "gcs_anonymous": ({"gcs_anonymous": True}, False),
    "publish": ({"publish": True}, False),
    "max_failure_fraction": ({"max_failure_fraction": 0.1}, False),
    "cut_here_below_mvoxels": ({"cut_here_below_mvoxels": 0.0}, False),
}


def test_every_option_is_classified():
    assert [name for name, _ in options()] == list(CHANGES)


@pytest.mark.parametrize("name", list(CHANGES))
def test_an_option_changes_the_parameter_hash_exactly_when_it_shapes_the_pairs(name):
    changed, shapes_pairs = CHANGES[name]
    # an option changed alongside another is compared with a base that already has the other change
    base = dataclasses.replace(BASE, **{key: value for key, value in changed.items() if key != name})
    other = dataclasses.replace(base, **{name: changed[name]})
    assert (other.params_hash != base.params_hash) == shapes_pairs
    spec = dict(options())[name]
    assert (spec.hashed != "never") == shapes_pairs, f"{name} is declared hashed={spec.hashed}"


def test_an_option_given_only_when_set_leaves_the_ids_of_builds_without_it():
    for name, spec in options():
        if spec.hashed == "when_given":
            assert (spec.hash_key or name) not in BASE.output_params()


def test_the_command_line_is_derived_from_the_declarations():
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)
    flags = [option for action in parser._actions for option in action.option_strings if option not in ("-h", "--help")]
    assert flags == [spec.flag for _, spec in options()]
    defaults = config_from_args(parser.parse_args(["--source", "demo", "--output", "/tmp/medvision-out"]))
    assert defaults == BASE


def test_settings_are_keyword_only():
    with pytest.raises(TypeError):
        BuildConfig((SourceSpec("demo", None),), "/tmp/medvision-out")


@pytest.mark.parametrize(
    "runner, workers, expected",
    [
        ("DirectRunner", 1, float("inf")),  # one worker has nobody to spread a case to: one decode per case
        (None, 1, float("inf")),
        ("DirectRunner", 2, 32.0),
        ("DirectRunner", 0, 32.0),  # Beam's 0: as many workers as cores
        ("DataflowRunner", 1, 0.0),
        ("PortableRunner", 1, 0.0),
    ],
)
def test_where_cases_are_cut_defaults_to_the_runner_and_its_workers(runner, workers, expected):
    assert BASE.for_runner(runner, workers).cut_here_below_mvoxels == expected
    given = dataclasses.replace(BASE, cut_here_below_mvoxels=5.0)
    assert given.for_runner(runner, workers).cut_here_below_mvoxels == 5.0
