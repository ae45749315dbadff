"""Gold business metrics as pure functions of silver events.

Each function takes (a slice of) ``silver.events`` and returns one gold table's rows.
Definitions (also in the README, "Gold metrics"):

- title_popularity: per region, UTC hour and title: ``plays`` = play events,
  ``unique_viewers`` = distinct users with a play, ``watch_minutes`` = sum of
  ``played_s`` / 60 of the title's events in that hour (an event's seconds count in its
  own hour, the end of the segment they measure). A row exists for every title with any
  event in the hour; its ``title_name`` and ``genre`` are those of the latest of them
  that has one.
- sessions: per ``session_id``: the user, region and device type of its first event,
  first and last event time, ``duration_s`` = last - first,
  ``titles_watched`` = distinct titles played, ``completed`` = any complete event. A
  session spans at most two UTC dates (the gold job reads a batch's days and their
  neighbours).
- session_stats: per region, device type and UTC day of session start: count, average,
  median and p90 of ``duration_s``; percentiles are exact with linear interpolation
  between closest ranks (Spark's ``percentile``).
- traffic_by_hour: per region, local date and local (wall-clock) hour: events and distinct
  users; the hour repeated when daylight saving time ends holds both of its hours.
- user_engagement: per user and UTC day: watch minutes, completions, distinct sessions,
  recommendation clicks and ``score = watch_minutes + 10 * completions + 2 * sessions
  + 5 * rec_clicks``.
- regional_trends: per region, genre and UTC day with plays: plays, the previous day's
  plays (0 if none), ``change`` = plays - previous, ``change_pct`` = change / previous, a
  fraction (null when the previous day had none). A day without plays has no row.
- daily_totals: per UTC day: ``events`` = silver's events that happened that day (what
  the other tables aggregate), ``late_excluded`` = records that happened that day and
  arrived past silver's lateness bound, so no gold table counts them (in
  ``silver.quarantine`` with reason ``late_arrival``, each record once, a redelivered
  copy too). A day has a row once it has either.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

# The silver columns the metrics read.
INPUT_COLUMNS = (
    "event_id",
    "event_type",
    "event_ts",
    "event_date",
    "event_hour",
    "local_date",
    "local_hour",
    "region",
    "device_type",
    "user_id",
    "session_id",
    "title_id",
    "title_name",
    "genre",
    "played_s",
)

ENGAGEMENT_WEIGHTS = {"watch_minutes": 1.0, "completions": 10.0, "sessions": 2.0, "rec_clicks": 5.0}

# Gold table -> its key columns (the MERGE condition).
KEYS: dict[str, tuple[str, ...]] = {
    "gold.title_popularity": ("region", "event_hour", "title_id"),
    "gold.sessions": ("session_id",),
    "gold.session_stats": ("region", "device_type", "day"),
    "gold.traffic_by_hour": ("region", "local_date", "local_hour"),
    "gold.user_engagement": ("user_id", "day"),
    "gold.regional_trends": ("region", "genre", "day"),
    "gold.daily_totals": ("day",),
}

# Gold table -> its date column (the partition column of the partitioned ones). A micro-
# batch recomputes rows whose dates are among its days and the days next to them, and so
# are the dates of the rows they replace: the date is part of the key, follows from it
# (an hour's date), or is a session's first day (a session spans at most two days).
DATES: dict[str, str] = {
    "gold.title_popularity": "event_date",
    "gold.sessions": "start_date",
    "gold.session_stats": "day",
    "gold.traffic_by_hour": "local_date",
    "gold.user_engagement": "day",
    "gold.regional_trends": "day",
    "gold.daily_totals": "day",
}


# Sums and averages of doubles depend on the order of their terms, and so would on how
# silver happened to be split into files and batches: gold sums them as exact decimals
# (to the nanosecond), so a replayed or re-split run gives the very same numbers.
_EXACT = "decimal(38, 9)"


def _watch_minutes() -> F.Column:
    played = F.coalesce(F.col("played_s"), F.lit(0.0)).cast(_EXACT)
    return F.sum(played).cast("double") / 60.0


def _order() -> F.Column:
    """Events in time order, ties by event id: a group's first or latest event is the same
    in every batch and every run (Spark's ``first`` takes whichever row comes first)."""
    return F.struct("event_ts", "event_id")


def _latest(column: str) -> F.Column:
    """``column`` of the latest event that has one (a search may name a title only by id)."""
    return F.max_by(column, F.when(F.col(column).isNotNull(), _order()))


def title_popularity(events: DataFrame) -> DataFrame:
    """Plays, unique viewers and watch minutes per region, hour and title."""
    is_play = F.col("event_type") == "play"
    return (
        events.filter(F.col("title_id").isNotNull())
        .groupBy("region", "event_hour", "title_id")
        .agg(
            _latest("title_name").alias("title_name"),
            _latest("genre").alias("genre"),
            F.count(F.when(is_play, 1)).alias("plays"),
            F.count_distinct(F.when(is_play, F.col("user_id"))).alias("unique_viewers"),
            _watch_minutes().alias("watch_minutes"),
        )
        .withColumn("event_date", F.to_date("event_hour"))
    )


def sessions(events: DataFrame) -> DataFrame:
    """One row per session: start, end, duration, titles watched, completed."""
    first = F.min_by(F.struct("user_id", "region", "device_type"), _order())
    return (
        events.groupBy("session_id")
        .agg(
            first["user_id"].alias("user_id"),
            first["region"].alias("region"),
            first["device_type"].alias("device_type"),
            F.min("event_ts").alias("start_ts"),
            F.max("event_ts").alias("end_ts"),
            F.count_distinct(F.when(F.col("event_type") == "play", F.col("title_id"))).alias(
                "titles_watched"
            ),
            F.max(F.col("event_type") == "complete").alias("completed"),
        )
        .withColumn(
            "duration_s",
            (F.unix_micros("end_ts") - F.unix_micros("start_ts")).cast("double") / 1e6,
        )
        .withColumn("start_date", F.to_date("start_ts"))
    )


def session_stats(session_rows: DataFrame) -> DataFrame:
    """Average, median and p90 session duration per region, device type and day."""
    return session_rows.groupBy("region", "device_type", F.col("start_date").alias("day")).agg(
        F.count("*").alias("sessions"),
        F.avg(F.col("duration_s").cast(_EXACT)).cast("double").alias("avg_duration_s"),
        F.percentile("duration_s", F.lit(0.5)).alias("median_duration_s"),
        F.percentile("duration_s", F.lit(0.9)).alias("p90_duration_s"),
    )


def traffic_by_hour(events: DataFrame) -> DataFrame:
    """Events and active users per region and local hour; peak hours follow from it."""
    return events.groupBy("region", "local_date", "local_hour").agg(
        F.count("*").alias("events"),
        F.count_distinct("user_id").alias("active_users"),
    )


def user_engagement(events: DataFrame) -> DataFrame:
    """Engagement inputs and score per user and day."""
    weights = ENGAGEMENT_WEIGHTS
    daily = events.groupBy("user_id", F.col("event_date").alias("day")).agg(
        _watch_minutes().alias("watch_minutes"),
        F.count(F.when(F.col("event_type") == "complete", 1)).alias("completions"),
        F.count_distinct("session_id").alias("sessions"),
        F.count(F.when(F.col("event_type") == "recommendation_click", 1)).alias("rec_clicks"),
    )
    score = (
        F.lit(weights["watch_minutes"]) * F.col("watch_minutes")
        + F.lit(weights["completions"]) * F.col("completions")
        + F.lit(weights["sessions"]) * F.col("sessions")
        + F.lit(weights["rec_clicks"]) * F.col("rec_clicks")
    )
    return daily.withColumn("score", score)


def regional_trends(events: DataFrame) -> DataFrame:
    """Plays per region, genre and day, with the change from the day before."""
    plays = (
        events.filter(F.col("event_type") == "play")
        .groupBy("region", "genre", F.col("event_date").alias("day"))
        .agg(F.count("*").alias("plays"))
    )
    previous = plays.select(
        "region",
        "genre",
        F.date_add("day", 1).alias("day"),
        F.col("plays").alias("previous_day_plays"),
    )
    return (
        plays.join(previous, ["region", "genre", "day"], "left")
        .withColumn("previous_day_plays", F.coalesce("previous_day_plays", F.lit(0)).cast("long"))
        .withColumn("change", F.col("plays") - F.col("previous_day_plays"))
        .withColumn(
            "change_pct",
            F.when(
                F.col("previous_day_plays") > 0,
                F.col("change") / F.col("previous_day_plays"),
            ),
        )
    )


def daily_totals(events: DataFrame, late: DataFrame, days: DataFrame) -> DataFrame:
    """Per UTC day of ``days`` (a ``day`` column): the events gold counts and the records
    excluded as late. ``late``: the quarantined late records, parsed (``event_date``)."""
    counted = events.groupBy(F.col("event_date").alias("day")).agg(F.count("*").alias("events"))
    excluded = late.groupBy(F.col("event_date").alias("day")).agg(
        F.count("*").alias("late_excluded")
    )
    return (
        days.join(counted, "day", "left")
        .join(excluded, "day", "left")
        .select(
            "day",
            F.coalesce("events", F.lit(0)).alias("events"),
            F.coalesce("late_excluded", F.lit(0)).alias("late_excluded"),
        )
        .filter((F.col("events") > 0) | (F.col("late_excluded") > 0))
    )


def peak_hours(traffic: DataFrame) -> DataFrame:
    """The busiest local hour of each region (ties: the earlier hour)."""
    totals = traffic.groupBy("region", "local_hour").agg(F.sum("events").alias("events"))
    rank = Window.partitionBy("region").orderBy(F.desc("events"), F.asc("local_hour"))
    return totals.withColumn("rank", F.row_number().over(rank)).filter("rank = 1").drop("rank")
