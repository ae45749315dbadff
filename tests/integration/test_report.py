"""The quality report in a real headless Chromium: no console errors, charts drawn,
links resolve, and a title name holding ``<script>`` shown as text."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from local_stack.simulate.world import SCRIPT_TITLE
from tests.integration.conftest import GATED_RUN

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def report(spark, gated):
    """The report of the session's gated run (``gated``: every layer, faults injected)."""
    from quality.report import build_report

    return build_report(spark, gated, GATED_RUN)


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are required (make setup installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,2400",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _distinct_colours(png: bytes) -> int:
    """Distinct RGB(A) pixel values of a non-interlaced 8-bit PNG (no imaging library)."""
    width, height, depth, colour_type = struct.unpack(">IIBB", png[16:26])
    assert depth == 8 and colour_type in (2, 6)
    channels = 3 if colour_type == 2 else 4
    data, position = b"", 8
    while position < len(png):
        length = struct.unpack(">I", png[position : position + 4])[0]
        kind = png[position + 4 : position + 8]
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    raw = zlib.decompress(data)
    stride = width * channels
    colours, previous = set(), bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        filter_type, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, up_left = previous[i], previous[i - channels] if i >= channels else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                guess = left + up - up_left
                distances = (abs(guess - left), abs(guess - up), abs(guess - up_left))
                line[i] = (line[i] + (left, up, up_left)[distances.index(min(distances))]) & 0xFF
        colours.update(bytes(line[i : i + channels]) for i in range(0, stride, channels * 7))
        previous = line
    return len(colours)


def test_report_renders_offline_with_text_safe_values(report, browser):
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "reelhouse quality report" in body
    assert "Daily totals (UTC)" in body and "excluded as late" in body
    assert SCRIPT_TITLE in body  # shown as text...
    assert browser.execute_script("return document.querySelectorAll('td script').length") == 0
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []

    for chart in ("chart-pass-rate", "chart-sessions"):
        marks = browser.execute_script(
            f"return document.querySelectorAll('#{chart} svg path, #{chart} svg rect').length"
        )
        assert marks > 5, chart
        image = browser.find_element(By.ID, chart).screenshot_as_png
        assert _distinct_colours(image) > 3, f"{chart} looks blank"

    browser.find_element(By.LINK_TEXT, "suites").click()
    assert browser.current_url.endswith("suites.html")
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert "silver.events" in headings and "bronze.events" in headings
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_summary_links_to_data_docs_pages_that_render_offline(report, browser):
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    links = [
        element.get_attribute("href")
        for element in browser.find_elements(By.CSS_SELECTOR, "a[href^='data_docs/']")
    ]
    # The index, then a suite page per gated table and its latest validated batch.
    from quality.suites import default_suites

    assert len(links) == 1 + 2 * len(default_suites()) == 1 + 2 * 9, links
    browser.get_log("browser")
    for link in links:
        assert Path(unquote(urlparse(link).path)).is_file(), link
        browser.get(link)
        assert "Great Expectations" in browser.title, link
        text = browser.find_element(By.TAG_NAME, "body").text
        assert "Expectation" in text, link
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == [], (link, severe)
    # Bootstrap's stylesheet and scripts came from the vendored copies, not a CDN.
    assert browser.execute_script("return typeof jQuery !== 'undefined'")
    assert browser.execute_script(
        "return getComputedStyle(document.querySelector('.container-fluid')).paddingLeft"
    ) not in ("", "0px")

    browser.get(report.as_uri())
    browser.find_element(By.LINK_TEXT, "Data Docs").click()
    suites = browser.find_elements(By.CSS_SELECTOR, "a[href*='expectations/']")
    assert len(suites) >= 8


def test_a_workspace_without_tables_is_named_not_reported(stack, spark, profile):
    """A mistyped workspace, or one whose layers never ran: one line, and no empty report
    that reads as healthy."""
    from quality.report import ReportError, build_report, report_dir
    from tests.integration.conftest import workspace_of

    empty = workspace_of(profile, "no-tables")
    with pytest.raises(ReportError) as refused:
        build_report(spark, empty)
    assert str(refused.value).startswith(
        f"workspace {empty.workspace!r} has no tables at {empty.lake.root}: nothing to report"
    )
    assert not report_dir(empty).exists()


class _Frames:
    def __init__(self, **frames):
        self.frames = {name.replace("__", "."): frame for name, frame in frames.items()}

    def get(self, name):
        return self.frames.get(name)


def test_the_quarantine_shows_its_top_reasons_and_says_how_many_there_are(spark):
    from quality.report import TOP_REASONS, _quarantine_section

    rows = [
        ([f"reason_{reason:02d}"], f"payload-{reason}-{copy}".encode())
        for reason in range(TOP_REASONS + 2)
        for copy in range(reason + 1)
    ]
    quarantine = spark.createDataFrame(rows, "reasons array<string>, value binary")
    section = _quarantine_section(_Frames(silver__quarantine=quarantine))

    assert f"The {TOP_REASONS} most frequent of {TOP_REASONS + 2} reasons." in section
    top = TOP_REASONS + 1
    assert f"<td>reason_{top}</td><td>{top + 1}</td><td>payload-{top}-0 | payload-{top}-1" in (
        section
    )
    assert "reason_01" not in section and "reason_00" not in section


def test_the_session_duration_chart_keeps_its_empty_bins(spark):
    from quality.report import _gold_section

    sessions = spark.createDataFrame([(300.0,), (2_100.0,), (2_200.0,)], "duration_s double")
    charts: list = []
    _gold_section(_Frames(gold__sessions=sessions), charts)

    ((_, chart),) = charts
    assert chart["data"]["values"] == [
        {"minutes": 0, "sessions": 1},
        {"minutes": 10, "sessions": 0},
        {"minutes": 20, "sessions": 0},
        {"minutes": 30, "sessions": 2},
    ]


def test_an_empty_quarantine_says_nothing_was_quarantined(spark):
    from quality.report import _quarantine_section

    quarantine = spark.createDataFrame([], "reasons array<string>, value binary")
    assert _quarantine_section(_Frames(silver__quarantine=quarantine)) == (
        "<h2>Quarantine</h2><p>Nothing quarantined.</p>"
    )


def test_a_tombstone_s_quarantine_example_says_it_had_no_value(spark):
    from quality.report import _quarantine_section

    quarantine = spark.createDataFrame(
        [(["empty_payload"], None)], "reasons array<string>, value binary"
    )
    section = _quarantine_section(_Frames(silver__quarantine=quarantine))
    assert "<td>empty_payload</td><td>1</td><td>(no value)</td>" in section
