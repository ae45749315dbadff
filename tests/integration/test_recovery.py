"""Exactly-once under kill -9 of the driver: the run ``crash_run`` killed again and again,
finished, equals the uninterrupted ``reference`` run, table for table.

The kill -9 run started with ``test_layers`` and ran meanwhile; this test runs after the
others, and the tests that stop a service after it (conftest).
"""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from spark.settings import load_profile
from spark.transforms import gold

pytestmark = pytest.mark.integration


def test_kill_9_of_the_driver_loses_and_doubles_nothing(spark, reference, crash_run):
    outcome = crash_run.result()
    print("\n".join(outcome.phases))  # shown on failure
    kills = outcome.kills
    final = outcome.final
    assert final is not None and final.returncode == 0, final and final.stderr[-2000:]
    assert kills.count("bronze") + kills.count("silver") >= 5, outcome.phases
    assert {"bronze", "silver", "gold merge"} <= set(kills), outcome.phases
    assert kills.count("gold") + kills.count("gold merge") >= 3, outcome.phases

    crash = load_profile("local", crash_run.workspace)
    for name, ignore in (
        ("bronze.events", ["ingest_ts", "ingest_date", "topic"]),
        ("silver.events", ["ingest_ts"]),
        (
            "silver.quarantine",
            ["ingest_ts", "quarantined_ts", "quarantine_date", "batch_id", "topic"],
        ),
        *[(name, []) for name in gold.KEYS],
    ):
        expected = _comparable(_table(spark, reference, name).drop(*ignore))
        actual = _comparable(_table(spark, crash, name).drop(*ignore))
        assert actual.count() == expected.count(), name
        assert actual.exceptAll(expected).count() == 0, name
        assert expected.exceptAll(actual).count() == 0, name
    # The last driver's summary counts the rows its tables hold, each record once (the
    # query's own progress counts gated bronze's two reads of a batch).
    bronze_rows = _table(spark, reference, "bronze.events").count()
    assert f"bronze.events {bronze_rows:,} rows" in final.stdout, final.stdout
    for name in gold.KEYS:  # created in one commit with its properties, kill or not
        expected, actual = _detail(spark, reference, name), _detail(spark, crash, name)
        assert actual["description"] == expected["description"], name
        assert actual["properties"].keys() == expected["properties"].keys(), name


def _table(spark, profile, name):
    return spark.read.format("delta").load(profile.lake.table_location(name))


def _detail(spark, profile, name) -> dict:
    location = profile.lake.table_location(name)
    return spark.sql(f"DESCRIBE DETAIL delta.`{location}`").first().asDict()


def _comparable(frame):
    # Set operations do not take MAP columns; the JSON text of a map compares the same.
    if "extras" in frame.columns:
        frame = frame.withColumn("extras", F.to_json("extras"))
    return frame
