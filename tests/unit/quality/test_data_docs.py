"""Data Docs from recorded validations: one page per suite and batch, offline, escaped."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import unquote

import pytest

from quality.data_docs import RecordedCheck, build_data_docs
from quality.suites import default_suites

pytestmark = pytest.mark.unit

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _recorded(suites, batches: int) -> list[RecordedCheck]:
    start = datetime(2026, 11, 25, 1, 0, 0)
    rows = []
    for batch in range(batches):
        for check in suites["silver.events"].checks:
            failed = check.name == "silver_region_in_contract" and batch == batches - 1
            rows.append(
                RecordedCheck(
                    run_id="run-1",
                    table="silver.events",
                    batch_id=batch,
                    expectation=check.name,
                    success=not failed,
                    element_count=100,
                    unexpected_count=2 if failed else 0,
                    unexpected_examples=[PAYLOAD, "narnia"] if failed else [],
                    validated_ts=start + timedelta(minutes=batch),
                )
            )
    rows.append(
        RecordedCheck("run-1", "silver.events", 0, "a_check_since_removed", False, 1, 1, [], start)
    )
    return rows


def test_pages_for_every_suite_and_batch_work_offline_and_escape_the_data(tmp_path):
    suites = default_suites()
    docs = build_data_docs(tmp_path / "docs", suites, _recorded(suites, batches=3))
    site = tmp_path / "docs"

    assert docs.index.exists()
    assert set(docs.suite_pages) == set(suites)
    assert all((site / page).exists() for page in docs.suite_pages.values())
    assert list(docs.latest_validation) == ["silver.events"]
    latest = site / unquote(docs.latest_validation["silver.events"])
    assert latest.exists() and "batch-2" in latest.name
    assert len(list((site / "validations").rglob("*.html"))) == 3

    page = latest.read_text()
    # Every check, two of one type on one column (played_s) among them.
    assert _statistics(page)[0] == len(suites["silver.events"].checks)
    assert "&lt;script&gt;alert(" in page
    assert PAYLOAD not in page and "<img src=x" not in page
    suite_page = (site / docs.suite_pages["silver.events"]).read_text()
    assert "silver_region_in_contract" in suite_page and "drop" in suite_page

    loaded = re.compile(r'<(?:script|link|img)\b[^>]*?\b(?:src|href)="([^"]+)"')
    for html_file in site.rglob("*.html"):
        for url in loaded.findall(html_file.read_text()):
            assert not url.startswith(("http:", "https:", "//")), (html_file.name, url)
            target = (html_file.parent / unquote(url.split("?")[0])).resolve()
            assert target.exists(), (html_file.name, url)


def test_a_check_that_could_not_run_shows_its_error_escaped(tmp_path):
    """The gate records such a check with no counts and its error as the one example."""
    suites = default_suites()
    start = datetime(2026, 11, 25, 1, 0, 0)
    rows = [
        RecordedCheck(
            "run-1",
            "silver.events",
            0,
            check.name,
            check.name != "silver_region_in_contract",
            None if check.name == "silver_region_in_contract" else 10,
            None if check.name == "silver_region_in_contract" else 0,
            ["Column 'region' <missing>"] if check.name == "silver_region_in_contract" else [],
            start,
        )
        for check in suites["silver.events"].checks
    ]
    docs = build_data_docs(tmp_path / "docs", suites, rows)
    page = (tmp_path / "docs" / unquote(docs.latest_validation["silver.events"])).read_text()
    assert "raised an exception" in page
    assert "Column 'region' &lt;missing&gt;" in page and "<missing>" not in page


def test_a_table_keeps_only_its_latest_batches(tmp_path, monkeypatch):
    import quality.data_docs as data_docs

    monkeypatch.setattr(data_docs, "MAX_BATCHES_PER_TABLE", 2)
    suites = default_suites()
    docs = build_data_docs(tmp_path / "docs", suites, _recorded(suites, batches=4))
    pages = sorted(p.name for p in (tmp_path / "docs" / "validations").rglob("*.html"))
    assert pages == ["batch-2.html", "batch-3.html"]
    assert "batch-3" in docs.latest_validation["silver.events"]


def test_a_site_that_fails_to_build_leaves_the_last_one_whole(tmp_path, monkeypatch):
    from quality import data_docs

    suites = default_suites()
    site = tmp_path / "docs"
    first = build_data_docs(site, suites, _recorded(suites, batches=1))
    pages = sorted(path.relative_to(site) for path in site.rglob("*.html"))
    url = next(iter(data_docs.VENDORED))
    monkeypatch.setitem(data_docs.VENDORED, url, tmp_path / "gone.css")

    with pytest.raises(data_docs.DataDocsError, match=r"gone.css is missing; run `make setup`"):
        build_data_docs(site, suites, _recorded(suites, batches=2))
    assert sorted(path.relative_to(site) for path in site.rglob("*.html")) == pages
    assert first.index.exists()
    assert [path.name for path in tmp_path.iterdir()] == ["docs"]


def test_each_attempt_of_a_stopped_batch_has_a_page_of_its_own(tmp_path):
    """A gate that stops a batch records that attempt; a flow run retried after the fix
    (the same run id) records the passing one. Their checks are not merged into one result."""
    suites = default_suites()
    checks = suites["silver.events"].checks
    stopped_at = datetime(2026, 11, 25, 1, 0, 0)
    passed_at = stopped_at + timedelta(minutes=5)
    rows = [
        RecordedCheck(
            "run-1",
            "silver.events",
            3,
            check.name,
            check.name != "silver_event_id_unique",
            100,
            0,
            [],
            stopped_at,
        )
        for check in checks
    ] + [
        RecordedCheck("run-1", "silver.events", 3, check.name, True, 100, 0, [], passed_at)
        for check in checks
    ]
    docs = build_data_docs(tmp_path / "docs", suites, rows)
    site = tmp_path / "docs"

    pages = sorted(path.name for path in (site / "validations").rglob("*.html"))
    assert pages == ["batch-3-attempt-1-of-2.html", "batch-3-attempt-2-of-2.html"]
    latest = (site / unquote(docs.latest_validation["silver.events"])).read_text()
    assert "attempt-2-of-2" in docs.latest_validation["silver.events"]
    first = next((site / "validations").rglob("batch-3-attempt-1-of-2.html")).read_text()
    # (evaluated, unsuccessful) per page: merged, the page counted every check twice.
    assert _statistics(latest) == (len(checks), 0)
    assert _statistics(first) == (len(checks), 1)


def _statistics(page: str) -> tuple[int, int]:
    cell = r"</div></td><td[^>]*><div[^>]*>(\d+)<"
    evaluated = re.search("Evaluated Expectations" + cell, page)
    unsuccessful = re.search("Unsuccessful Expectations" + cell, page)
    return int(evaluated.group(1)), int(unsuccessful.group(1))


def test_the_latest_batches_keep_every_attempt(tmp_path, monkeypatch):
    """The cap counts batches, as the report picks them, not pages."""
    import quality.data_docs as data_docs

    monkeypatch.setattr(data_docs, "MAX_BATCHES_PER_TABLE", 2)
    suites = default_suites()
    rows = _recorded(suites, batches=4)
    retried = [row for row in rows if row.batch_id == 3]
    rows += [replace(row, validated_ts=row.validated_ts + timedelta(seconds=30)) for row in retried]
    build_data_docs(tmp_path / "docs", suites, rows)

    pages = sorted(p.name for p in (tmp_path / "docs" / "validations").rglob("*.html"))
    assert pages == ["batch-2.html", "batch-3-attempt-1-of-2.html", "batch-3-attempt-2-of-2.html"]
