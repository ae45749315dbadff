"""The quality report's summary says what its tables hold, before anything is drawn."""

from __future__ import annotations

import pytest

from quality import report

pytestmark = pytest.mark.unit


class _NoValidations:
    """A workspace whose layers wrote rows but whose gates recorded nothing (yet)."""

    def get(self, name):
        return None

    def count(self, name):
        return 10 if name == "bronze.events" else 0


def test_a_workspace_with_no_validation_yet_is_not_called_healthy():
    section = report._layer_section(_NoValidations())
    assert "No batch validated yet." in section
    assert "Healthy" not in section and "Attention" not in section


class _SilverBehind:
    """Silver read 1,094 of bronze's 1,294 records: 1,000 promoted, 94 quarantined."""

    def get(self, name):
        return None

    def count(self, name):
        return {"bronze.events": 1294, "silver.events": 1000, "silver.quarantine": 94}[name]


def test_silver_s_rows_in_are_what_it_read_and_the_rest_is_not_read_yet():
    section = report._layer_section(_SilverBehind())
    cells = "".join(f"<td>{cell}</td>" for cell in ("silver.events", 0, 1094, 1000, 94, 200, 0))
    assert cells in section


def test_chart_libraries_missing_are_named_before_a_jvm_starts(monkeypatch, tmp_path, capsys):
    def no_session(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr("spark.io.preflight.lake_session", no_session)
    missing = tmp_path / "vega.min.js"
    monkeypatch.setitem(report.CHART_LIBRARIES, "vega.min.js", missing)
    assert report.main(["--workspace", "main"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {missing} is missing; run `make setup`"


def test_data_docs_assets_missing_are_named_before_a_jvm_starts(monkeypatch, tmp_path, capsys):
    def no_session(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    from quality import data_docs

    monkeypatch.setattr("spark.io.preflight.lake_session", no_session)
    missing = tmp_path / "bootstrap.min.css"
    url = next(iter(data_docs.VENDORED))
    monkeypatch.setitem(data_docs.VENDORED, url, missing)
    assert report.main(["--workspace", "main"]) == 1
    assert capsys.readouterr().err.strip() == f"error: {missing} is missing; run `make setup`"


def test_each_profile_s_report_has_a_folder_of_its_own(azure_environment):
    from spark.settings import load_profile

    local, azure = (report.report_dir(load_profile(name, "main")) for name in ("local", "azure"))
    assert (local.name, azure.name) == ("main", "azure.main")
    assert local.parent == azure.parent


def test_top_titles_are_counted_per_title_under_its_name_and_only_if_played(spark):
    """An hour in which no event named a title has its plays under no name, and a row may
    hold watch minutes and no plays: neither splits a title nor ranks one never played."""
    from datetime import datetime

    hour = datetime(2026, 11, 1, 10)
    rows = [
        ("eu", hour, "t1", "Alpha", 2),
        ("eu", hour.replace(hour=11), "t1", None, 3),
        ("eu", hour, "t2", "Beta", 4),
        ("eu", hour, "t3", "Gamma", 0),
    ]
    popularity = spark.createDataFrame(
        rows, "region string, event_hour timestamp, title_id string, title_name string, plays long"
    )

    class _Popularity:
        def get(self, name):
            return popularity if name == "gold.title_popularity" else None

    section = report._gold_section(_Popularity(), [])
    cells = [
        "".join(f"<td>{cell}</td>" for cell in row)
        for row in (("eu", 1, "Alpha", 5), ("eu", 2, "Beta", 4))
    ]
    assert "".join(f"<tr>{row}</tr>" for row in cells) in section
    assert "Gamma" not in section


@pytest.mark.parametrize(
    ("passed", "validations", "shown"),
    [
        (1999, 2000, "1,999 of 2,000 (99.9 %)"),  # not rounded up to 100.0 %
        (2000, 2000, "2,000 of 2,000 (100.0 %)"),
        (1, 3, "1 of 3 (33.3 %)"),
        (2, 3, "2 of 3 (66.6 %)"),
        (0, 5, "0 of 5 (0.0 %)"),
    ],
)
def test_an_expectation_that_failed_once_never_reads_100_percent(passed, validations, shown):
    assert report._passed(passed, validations) == shown
