"""The expectation suites that gate every layer promotion, one per gated table.

Each check reads as one line of policy: its name (recorded as the reason and in
``quality.validation_events``), its action, the Great Expectations expectation and a
sentence a reviewer can check against the data contract.

Actions:

- ``warn``: promote the batch, record the failure.
- ``drop``: rows violating the expectation go to quarantine with the check's name as
  reason; the rest is promoted. Only for tables whose job quarantines (silver).
- ``fail``: raise ``GateFailure`` naming the check and the batch; nothing of the batch
  is promoted and the query stops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import great_expectations as gx
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from quality.rows import supports_rows
from spark import contract
from spark.settings import Profile
from spark.transforms.events import MAX_FUTURE_S, MAX_PAST_S
from spark.transforms.gold import KEYS

ACTIONS = ("warn", "drop", "fail")
MAX_BRONZE_VALUE_BYTES = 1024 * 1024
MAX_PLAYED_S = contract.properties()["played_s"]["maximum"]
EARLIEST_KAFKA_TIMESTAMP = datetime(2000, 1, 1)

# Columns a suite derives for validation (never promoted).
ARRIVAL_LAG_S = "arrival_lag_s"
PLAYS_IN_HOUR = "plays_in_hour"
SILVER_PLAYS_IN_HOUR = "silver_plays_in_hour"
VALUE_BYTES = "value_bytes"

expect = gx.expectations


@dataclass
class Check:
    """One expectation and what happens to a batch that does not meet it."""

    name: str
    action: str
    expectation: gx.expectations.Expectation
    description: str

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"check {self.name}: action must be one of {ACTIONS}")
        # The name travels with the expectation, so a result finds its check again.
        self.expectation.meta = {**(self.expectation.meta or {}), "check": self.name}


@dataclass
class Suite:
    """The checks of one table; ``derive`` makes the frame they read from a batch (adding
    the columns some checks compare, or keeping only the columns the checks read)."""

    table: str
    checks: tuple[Check, ...]
    derive: Callable[[DataFrame, Profile], DataFrame] | None = None
    derived_columns: tuple[str, ...] = ()
    allows_drop: bool = False
    description: str = ""
    by_name: dict[str, Check] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = {check.name: check for check in self.checks}
        if len(self.by_name) != len(self.checks):
            raise ValueError(f"suite {self.name}: check names must be unique")
        if not self.allows_drop:
            dropping = [check.name for check in self.checks if check.action == "drop"]
            if dropping:
                raise ValueError(
                    f"suite {self.name}: {self.table} keeps every row; "
                    f"checks {dropping} may warn or fail, not drop"
                )
        unknown = [
            check.name
            for check in self.checks
            if check.action == "drop" and not supports_rows(check.expectation)
        ]
        if unknown:
            raise ValueError(f"suite {self.name}: drop checks {unknown} have no row predicate")
        # The gate counts, samples and drops the rows its own predicate finds, and takes a
        # met check for one without unexpected rows: it knows neither setting.
        relaxed = [
            check.name
            for check in self.checks
            if getattr(check.expectation, "mostly", 1) != 1
            or getattr(check.expectation, "row_condition", None)
        ]
        if relaxed:
            raise ValueError(
                f"suite {self.name}: checks {relaxed} set mostly or row_condition;"
                " a check applies to every row of the batch"
            )

    @property
    def name(self) -> str:
        """``silver.events`` -> ``silver_events``."""
        return self.table.replace(".", "_")

    def expectation_suite(
        self, checks: tuple[Check, ...] | list[Check] | None = None, name: str = "", notes=None
    ) -> gx.ExpectationSuite:
        """Great Expectations' suite of ``checks`` (default: all). Copies: a context assigns
        ids to what it holds, and suites outlive contexts. Given whole: adding expectations
        one by one replaces one of the same type on the same column (played_s at least 0,
        then at most a day: only the second stayed)."""
        return gx.ExpectationSuite(
            name=name or self.name,
            notes=notes,
            expectations=[
                check.expectation.copy(deep=True)
                for check in (self.checks if checks is None else checks)
            ],
        )


# --- bronze.events: every record is kept, so checks warn or fail ---------------------


def _bronze_facts(batch: DataFrame, profile: Profile) -> DataFrame:
    return batch.select(
        "partition", "offset", "kafka_timestamp", F.length("value").alias(VALUE_BYTES)
    )


BRONZE_EVENTS = Suite(
    table="bronze.events",
    description="Kafka records as received, before any parsing. Checked on each record's "
    "coordinates, arrival time and payload size, not its payload.",
    # The checks read four numbers per record: only those are cached for validation (not
    # the payloads), and the write reads the batch itself.
    derive=_bronze_facts,
    derived_columns=(VALUE_BYTES,),
    checks=(
        Check(
            name="bronze_value_present",
            action="warn",
            expectation=expect.ExpectColumnValuesToNotBeNull(column=VALUE_BYTES),
            description="Every record has a payload (silver quarantines empty ones).",
        ),
        Check(
            name="bronze_value_at_most_1_mib",
            action="warn",
            expectation=expect.ExpectColumnValuesToBeBetween(
                column=VALUE_BYTES, max_value=MAX_BRONZE_VALUE_BYTES
            ),
            description="A payload is at most 1 MiB (silver quarantines anything over 64 KiB).",
        ),
        Check(
            name="bronze_partition_offset_unique",
            action="fail",
            expectation=expect.ExpectCompoundColumnsToBeUnique(column_list=["partition", "offset"]),
            description="No Kafka record appears twice in one batch: exactly-once starts here.",
        ),
        Check(
            name="bronze_kafka_timestamp_present",
            action="fail",
            expectation=expect.ExpectColumnValuesToNotBeNull(column="kafka_timestamp"),
            description="Every record has an arrival time; silver's lateness rules need it.",
        ),
        Check(
            name="bronze_kafka_timestamp_after_2000",
            action="warn",
            expectation=expect.ExpectColumnValuesToBeBetween(
                column="kafka_timestamp", min_value=EARLIEST_KAFKA_TIMESTAMP
            ),
            description="Arrival times are after 2000-01-01 (a broker clock gone wrong if not).",
        ),
    ),
)


# --- silver.events: row-level checks drop, uniqueness fails ---------------------------

_ENUM_FIELDS = ("event_type", "device_type", "region", "network", "genre")
_FORMATTED_FIELDS = tuple(name for name, spec in contract.properties().items() if "pattern" in spec)


# (column, check-name suffix, lower bound, strict, meaning) of the contract's ranges.
_NUMERIC_RULES = (
    ("position_s", "not_negative", 0, False, "is not negative"),
    ("duration_s", "positive", 0, True, "is more than zero seconds"),
    ("played_s", "not_negative", 0, False, "is not negative"),
    ("bitrate_kbps", "not_negative", 0, False, "is not negative"),
    ("rec_row", "at_least_1", 1, False, "counts rows from 1"),
    ("rec_rank", "at_least_1", 1, False, "counts ranks from 1"),
)


def _with_arrival_lag(batch: DataFrame, profile: Profile) -> DataFrame:
    lag_us = F.unix_micros("kafka_timestamp") - F.unix_micros("event_ts")
    return batch.withColumn(ARRIVAL_LAG_S, lag_us.cast("double") / 1e6)


SILVER_EVENTS = Suite(
    table="silver.events",
    description="Parsed, typed, deduplicated events. Every column rule of the contract is "
    "a drop check here: its failing rows go to silver.quarantine with its name as reason.",
    allows_drop=True,
    derive=_with_arrival_lag,
    derived_columns=(ARRIVAL_LAG_S,),
    checks=(
        *(
            Check(
                name=f"silver_{name}_present",
                action="drop",
                expectation=expect.ExpectColumnValuesToNotBeNull(column=name),
                description=f"{name} is required by the event contract.",
            )
            for name in contract.required_fields()
        ),
        *(
            Check(
                name=f"silver_{name}_in_contract",
                action="drop",
                expectation=expect.ExpectColumnValuesToBeInSet(
                    column=name, value_set=list(contract.enum_values(name))
                ),
                description=f"{name}, where present, is one of the contract's values.",
            )
            for name in _ENUM_FIELDS
        ),
        *(
            Check(
                name=f"silver_{name}_format",
                action="drop",
                expectation=expect.ExpectColumnValuesToMatchRegex(
                    column=name, regex=contract.spark_pattern(name)
                ),
                description=f"{name}, where present, matches the contract's pattern.",
            )
            for name in _FORMATTED_FIELDS
        ),
        Check(
            name="silver_event_ts_near_arrival",
            action="drop",
            expectation=expect.ExpectColumnValuesToBeBetween(
                column=ARRIVAL_LAG_S, min_value=-MAX_FUTURE_S, max_value=MAX_PAST_S
            ),
            description="event_ts lies within [Kafka timestamp - 30 days, "
            "Kafka timestamp + 5 minutes]; arrival_lag_s = Kafka timestamp - event_ts.",
        ),
        Check(
            name="silver_position_within_duration",
            action="drop",
            expectation=expect.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="duration_s",
                column_B="position_s",
                or_equal=True,
                ignore_row_if="either_value_is_missing",
            ),
            description="A playback position is never past the title's runtime.",
        ),
        *(
            Check(
                name=f"silver_{name}_{label}",
                action="drop",
                expectation=expect.ExpectColumnValuesToBeBetween(
                    column=name, min_value=low, strict_min=strict
                ),
                description=f"{name}, where present, {meaning}.",
            )
            for name, label, low, strict, meaning in _NUMERIC_RULES
        ),
        Check(
            name="silver_played_s_at_most_1_day",
            action="drop",
            expectation=expect.ExpectColumnValuesToBeBetween(
                column="played_s", max_value=MAX_PLAYED_S
            ),
            description="played_s, where present, is at most a day (86,400 s): gold sums it "
            "exactly, and one absurd value must not stop gold.",
        ),
        Check(
            name="silver_rating_in_range",
            action="drop",
            expectation=expect.ExpectColumnValuesToBeBetween(
                column="rating", min_value=1, max_value=5
            ),
            description="A rating, where present, is 1 to 5 stars.",
        ),
        Check(
            name="silver_event_id_unique",
            action="fail",
            expectation=expect.ExpectColumnValuesToBeUnique(column="event_id"),
            description="An event id appears once in the batch: silver's dedupe worked.",
        ),
    ),
)


# --- gold: keys unique and metrics non-negative (fail); popularity reconciles (warn) ---

_METRICS: dict[str, tuple[str, ...]] = {
    "gold.title_popularity": ("plays", "unique_viewers", "watch_minutes"),
    "gold.sessions": ("duration_s", "titles_watched"),
    "gold.session_stats": ("sessions", "avg_duration_s", "median_duration_s", "p90_duration_s"),
    "gold.traffic_by_hour": ("events", "active_users"),
    "gold.user_engagement": ("watch_minutes", "completions", "sessions", "rec_clicks", "score"),
    "gold.regional_trends": ("plays", "previous_day_plays"),
    "gold.daily_totals": ("events", "late_excluded"),
}


def _gold_checks(table: str) -> tuple[Check, ...]:
    prefix = table.replace(".", "_")
    keys = KEYS[table]
    return (
        Check(
            name=f"{prefix}_keys_unique",
            action="fail",
            expectation=(
                expect.ExpectCompoundColumnsToBeUnique(
                    column_list=list(keys), ignore_row_if="never"
                )
                if len(keys) > 1
                else expect.ExpectColumnValuesToBeUnique(column=keys[0])
            ),
            description=f"One row per ({', '.join(keys)}): the MERGE key is unique.",
        ),
        *(
            Check(
                name=f"{prefix}_{metric}_not_negative",
                action="fail",
                expectation=expect.ExpectColumnValuesToBeBetween(column=metric, min_value=0),
                description=f"{metric} counts or measures something: it is never negative.",
            )
            for metric in _METRICS[table]
        ),
    )


def _with_silver_plays(batch: DataFrame, profile: Profile) -> DataFrame:
    """Plays per (region, event_hour) in the batch and in silver, beside every row.

    Silver is read for the batch's days only (its partitions, ``event_date``, the UTC date
    of ``event_hour``), not for every day it holds: a continuous run's reconciliation
    costs as much after months as on its first day.
    """
    hour = ["region", "event_hour"]
    hours = batch.select(*hour).distinct()
    days = [
        row.day for row in hours.select(F.to_date("event_hour").alias("day")).distinct().collect()
    ]
    silver = batch.sparkSession.read.format("delta").load(
        profile.lake.table_location("silver.events")
    )
    silver_plays = (
        silver.filter(F.col("event_date").isin(days) & (F.col("event_type") == "play"))
        .join(hours, hour, "left_semi")
        .groupBy(*hour)
        .agg(F.count("*").alias(SILVER_PLAYS_IN_HOUR))
    )
    return (
        batch.withColumn(PLAYS_IN_HOUR, F.sum("plays").over(Window.partitionBy(*hour)))
        .join(silver_plays, hour, "left")
        .withColumn(SILVER_PLAYS_IN_HOUR, F.coalesce(SILVER_PLAYS_IN_HOUR, F.lit(0)))
    )


def _gold_suite(table: str) -> Suite:
    if table != "gold.title_popularity":
        return Suite(table=table, checks=_gold_checks(table))
    reconciliation = Check(
        name="gold_title_popularity_plays_match_silver",
        action="warn",
        expectation=expect.ExpectColumnPairValuesToBeEqual(
            column_A=PLAYS_IN_HOUR, column_B=SILVER_PLAYS_IN_HOUR
        ),
        description="Per (region, event_hour) the plays of all titles equal the play events in "
        "silver (counted per title row; silver may have grown since, hence warn).",
    )
    return Suite(
        table=table,
        checks=(*_gold_checks(table), reconciliation),
        derive=_with_silver_plays,
        derived_columns=(PLAYS_IN_HOUR, SILVER_PLAYS_IN_HOUR),
    )


def default_suites() -> Mapping[str, Suite]:
    """Every gated table's suite, by table name."""
    suites = [BRONZE_EVENTS, SILVER_EVENTS, *(_gold_suite(table) for table in KEYS)]
    return {suite.table: suite for suite in suites}
