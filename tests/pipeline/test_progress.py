"""Progress of a local run: the markers workers leave, what the driver counts from them, the line it prints."""

from __future__ import annotations

import io
import os
import re

from pipeline.progress import Progress, ProgressLine, ProgressMarks, read_progress


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_markers_count_cases_units_and_rows(tmp_path):
    marks = ProgressMarks(str(tmp_path))
    marks.case_done("Task01/a", units=3)
    marks.case_done("Task01/b", units=2)
    marks.unit_done("Task01/a#0")
    marks.rows_written("out/part-0.parquet", 40)
    marks.rows_written("out/part-1.parquet", 2)
    assert read_progress(str(tmp_path)) == Progress(cases=2, units_planned=5, units_done=1, rows=42)


def test_retried_work_is_counted_once(tmp_path):
    marks = ProgressMarks(str(tmp_path))
    marks.case_done("a", units=3)
    marks.case_done("a", units=3)
    marks.unit_done("a#0")
    marks.unit_done("a#0")
    marks.rows_written("part-0.parquet", 10)
    marks.rows_written("part-0.parquet", 12)  # a rewritten file: its last count stands
    assert read_progress(str(tmp_path)) == Progress(cases=1, units_planned=3, units_done=1, rows=12)


def test_marks_without_a_folder_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ProgressMarks().case_done("a", units=1)
    ProgressMarks().rows_written("part.parquet", 5)
    assert os.listdir(tmp_path) == []


def test_an_empty_folder_reads_as_nothing_done(tmp_path):
    assert read_progress(str(tmp_path / "absent")) == Progress(0, 0, 0, 0)


def test_a_marker_being_written_counts_its_case_but_not_its_number(tmp_path):
    marks = ProgressMarks(str(tmp_path))
    marks.case_done("a", units=4)
    (tmp_path / "cases" / "half-written").write_text("")
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "torn").write_text("1x")
    assert read_progress(str(tmp_path)) == Progress(cases=2, units_planned=4, units_done=0, rows=0)


def test_the_line_states_counts_against_totals(tmp_path):
    marks = ProgressMarks(str(tmp_path))
    marks.case_done("a", units=4)
    marks.unit_done("a#1")
    marks.rows_written("part.parquet", 7)
    stream = io.StringIO()
    with ProgressLine(str(tmp_path), total_cases=3, stream=stream, interval_s=3600):
        pass  # the thread waits out its interval: only the closing line is printed
    assert re.fullmatch(r"\nprogress: 1/3 cases loaded, 1/4 units cut, 7 rows written, \d+ s\n", stream.getvalue())


def test_an_unchanged_line_is_not_repeated_and_a_terminal_overwrites_it(tmp_path):
    stream = TtyStream()
    line = ProgressLine(str(tmp_path), total_cases=1, stream=stream)
    line._print()
    line._print()
    ProgressMarks(str(tmp_path)).case_done("a", units=1)
    line._print()
    printed = stream.getvalue()
    assert printed.count("\r") == 2
    assert printed.startswith("\rprogress: 0/1 cases loaded") and "\rprogress: 1/1 cases loaded" in printed
