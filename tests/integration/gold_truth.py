"""Gold tables against the simulator's ground truth, as the tests compare them."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import functions as F


def _table(spark, profile, name):
    return spark.read.format("delta").load(profile.lake.table_location(name))


def _microseconds(row: dict) -> dict:
    """The truth's session start and end with all six digits (``isoformat`` leaves them out
    when they are zero), as the test formats gold's."""
    moments = {
        field: datetime.fromisoformat(row[field]).isoformat(timespec="microseconds")
        for field in ("start", "end")
        if field in row
    }
    return {**row, **moments}


def _close(actual, expected, key) -> None:
    for field, value in expected.items():
        got = actual[field]
        if isinstance(value, float) or isinstance(got, float):
            assert got is not None and abs(got - value) <= 1e-9, (key, field, got, value)
        else:
            assert got == value, (key, field, got, value)


def _rows(frame, columns):
    return [row.asDict() for row in frame.select(*columns).collect()]


def assert_gold_equals_truth(spark, profile, truth: dict) -> None:
    """Every gold table of ``profile``'s workspace equals the simulator's ground truth:
    counts exactly, averages and percentiles within 1e-9."""
    utc_hour = F.concat(F.date_format("event_hour", "yyyy-MM-dd'T'HH:mm:ss"), F.lit("+00:00"))

    def utc_moment(column: str):
        return F.concat(F.date_format(column, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"), F.lit("+00:00"))

    checks = {
        "gold.title_popularity": (
            lambda t: t.select(
                utc_hour.alias("hour"),
                "region",
                "title_id",
                "plays",
                "unique_viewers",
                "watch_minutes",
            ),
            ("region", "hour", "title_id"),
        ),
        "gold.sessions": (
            lambda t: t.select(
                "session_id",
                "user_id",
                "region",
                "device_type",
                utc_moment("start_ts").alias("start"),
                utc_moment("end_ts").alias("end"),
                "duration_s",
                "titles_watched",
                "completed",
            ),
            ("session_id",),
        ),
        "gold.session_stats": (
            lambda t: t.select(
                "region",
                "device_type",
                F.col("day").cast("string").alias("day"),
                "sessions",
                "avg_duration_s",
                "median_duration_s",
                "p90_duration_s",
            ),
            ("region", "device_type", "day"),
        ),
        "gold.traffic_by_hour": (
            lambda t: t.select(
                "region",
                F.col("local_date").cast("string").alias("local_date"),
                "local_hour",
                "events",
                "active_users",
            ),
            ("region", "local_date", "local_hour"),
        ),
        "gold.user_engagement": (
            lambda t: t.select(
                "user_id",
                F.col("day").cast("string").alias("day"),
                "watch_minutes",
                "completions",
                "sessions",
                "rec_clicks",
                "score",
            ),
            ("user_id", "day"),
        ),
        "gold.regional_trends": (
            lambda t: t.select(
                "region",
                "genre",
                F.col("day").cast("string").alias("day"),
                "plays",
                "previous_day_plays",
                "change",
                "change_pct",
            ),
            ("region", "genre", "day"),
        ),
        "gold.daily_totals": (
            lambda t: t.select(F.col("day").cast("string").alias("day"), "events", "late_excluded"),
            ("day",),
        ),
    }
    for table, (shape, keys) in checks.items():
        shaped = shape(_table(spark, profile, table))
        rows = _rows(shaped, shaped.columns)
        actual = {tuple(r[k] for k in keys): r for r in rows}
        expected_rows = [_microseconds(row) for row in truth[table.split(".")[1]]]
        # One row a key (no duplicate hidden by the dict), every one the truth has.
        assert len(rows) == len(actual) == len(expected_rows), table
        for expected in expected_rows:
            key = tuple(expected[k] for k in keys)
            assert key in actual, (table, key)
            assert set(expected) <= set(actual[key]), (table, set(expected) - set(actual[key]))
            _close(actual[key], expected, (table, key))
