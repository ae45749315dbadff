"""``quality.validation_events``: one row per expectation per validated micro-batch."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import datetime

from pyspark.sql import SparkSession

from spark.catalog import QUALITY_VALIDATION_EVENTS, ensure_table
from spark.io.delta import append_idempotent
from spark.settings import Profile


@dataclass(frozen=True)
class ValidationEvent:
    """The outcome of one expectation on one batch, in the table's column order."""

    run_id: str
    table: str
    batch_id: int
    expectation: str
    action: str
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_examples: list[str]
    validated_ts: datetime
    duration_ms: int


def ensure_validation_log(spark: SparkSession, profile: Profile) -> str:
    """Create ``quality.validation_events`` if needed; return its location."""
    return ensure_table(spark, profile, QUALITY_VALIDATION_EVENTS)


def record_validation(
    spark: SparkSession,
    profile: Profile,
    writer: str,
    batch_id: int,
    events: list[ValidationEvent],
    once: bool = True,
) -> None:
    """Append the batch's events once per (writer, batch_id), however often it is replayed;
    with ``once=False`` (a batch its gate stopped), as one more attempt.

    One Delta ``txnAppId`` per writer: a gated table, or a job that records its tables
    together (``gold``), with its streaming query's id (``quality.gates._writer``): batch
    ids of different queries never shadow each other. A stopped batch promoted nothing and
    its query stops; each attempt is kept, and none takes the place of the passing one a
    restart makes after the cause is fixed (which an idempotent append would skip).
    """
    frame = spark.createDataFrame(
        [astuple(event) for event in events], QUALITY_VALIDATION_EVENTS.schema
    )
    location = profile.lake.table_location(QUALITY_VALIDATION_EVENTS.name)
    if once:
        append_idempotent(frame, location, f"{profile.workspace}.quality.{writer}", batch_id)
    else:
        frame.write.format("delta").mode("append").save(location)


def stopped_batch():
    """A recorded check that stopped its batch: a ``fail`` check not met, or a ``drop``
    check that could not run (it cannot say which rows to drop: no count of them)."""
    from pyspark.sql import functions as F

    return ~F.col("success") & (
        (F.col("action") == "fail")
        | ((F.col("action") == "drop") & F.col("unexpected_count").isNull())
    )


def gate_summary(spark: SparkSession, profile: Profile, run_id: str) -> list[dict]:
    """Per gated table, for one run: batches validated, checks run and checks not met by
    what they did (``warn`` promoted anyway, ``drop`` quarantined rows, ``fail`` stopped
    the batch: a ``fail`` check not met, or a ``drop`` check that could not run)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    location = profile.lake.table_location(QUALITY_VALIDATION_EVENTS.name)
    if not DeltaTable.isDeltaTable(spark, location):
        return []
    not_met = ~F.col("success") | (F.coalesce("unexpected_count", F.lit(0)) > 0)
    rows = (
        spark.read.format("delta")
        .load(location)
        .where(F.col("run_id") == run_id)
        .groupBy("table")
        .agg(
            F.countDistinct("batch_id").alias("batches"),
            F.count("*").alias("checks"),
            *[
                F.sum((not_met & ~stopped_batch() & (F.col("action") == action)).cast("int")).alias(
                    action
                )
                for action in ("warn", "drop")
            ],
            F.sum(stopped_batch().cast("int")).alias("fail"),
        )
        .orderBy("table")
        .collect()
    )
    return [row.asDict() for row in rows]
