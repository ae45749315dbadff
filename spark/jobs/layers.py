"""The bronze and silver streaming jobs: source -> transforms -> sink, as streaming queries."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from py4j.protocol import Py4JJavaError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark.catalog import BRONZE_EVENTS, SILVER_EVENTS, SILVER_QUARANTINE, ensure_table
from spark.gates import Gate, PromoteEverything
from spark.io.delta import append_idempotent, refuse_a_lost_checkpoint
from spark.io.leftovers import clear_unfinished_first_offsets
from spark.jobs.steps import step
from spark.settings import Profile
from spark.transforms.events import (
    BROADCAST_ROWS_LIMIT,
    DUPLICATE,
    LATENESS_BOUND_S,
    MAX_FUTURE_S,
    MAX_PAST_S,
    REJECTED,
    mark_duplicates,
    parse_events,
    silver_columns,
    to_bronze,
    to_quarantine,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trigger:
    """``available-now`` processes what is there and stops; ``continuous`` runs until stopped."""

    mode: str = "available-now"
    interval: str = "5 seconds"

    def options(self) -> dict:
        if self.mode == "available-now":
            return {"availableNow": True}
        if self.mode == "continuous":
            return {"processingTime": self.interval}
        raise ValueError(f"trigger must be 'available-now' or 'continuous', got {self.mode!r}")


def query_name(profile: Profile, table: str) -> str:
    """Stable per workspace and table: names the checkpoint and the Delta txnAppId."""
    return f"{profile.workspace}.{table}"


def start_foreach_batch(
    source: DataFrame,
    write_batch,
    profile: Profile,
    checkpoint: str,
    name: str,
    trigger: Trigger,
    appends_to: str | None = None,
) -> StreamingQuery:
    """Start ``source`` with ``write_batch`` per micro-batch, checkpointed under ``checkpoint``.

    ``appends_to``: the table its batches append to as ``name`` (``append_idempotent``);
    the query is refused when that table holds batches its checkpoint does not know."""
    location = profile.lake.checkpoint_location(checkpoint)
    clear_unfinished_first_offsets(source.sparkSession, location)
    if appends_to:
        refuse_a_lost_checkpoint(source.sparkSession, location, appends_to, name)
    return (
        source.writeStream.foreachBatch(stopped_in_one_line(source.sparkSession, write_batch))
        .option("checkpointLocation", location)
        .queryName(name)
        .trigger(**trigger.options())
        .start()
    )


# The Java exceptions by which Spark tells a micro-batch its query's stop interrupted from
# one that failed (``StreamExecution.isInterruptionException`` in Spark 4.2). A stop also
# cancels the query's running jobs first: a Spark call can then fail with a SparkException
# naming the query's job group as cancelled, which Spark reads as a stop too.
INTERRUPTIONS = (
    "java.lang.InterruptedException",
    "java.io.InterruptedIOException",
    "java.nio.channels.ClosedByInterruptException",
)
CANCELLATION = "org.apache.spark.SparkException"


class BatchStopped(RuntimeError):
    """A micro-batch's Spark call was interrupted because its query is stopping."""


def stopped_in_one_line(spark: SparkSession, write_batch):
    """``write_batch``, raising a Spark call its query's stop interrupted as one line.

    Spark looks for the interruption in the Python error's text with the pattern
    ``py4j.protocol.Py4JJavaError: An error occurred while calling((.|\\n)*)(<exception>)``,
    which Java's regex engine matches by recursion, a few frames per character: over the
    JVM stack trace a Py4J error carries (thousands of characters) the query's thread
    overflows its stack, and Spark prints a ``StackOverflowError`` of a thousand lines where
    the query simply stopped. The one line keeps what Spark reads: the call and the
    interruption, or the cancellation of the query's job group. Any other error, and an
    interruption while the query is not stopping, passes through unchanged.
    """

    def run(batch: DataFrame, batch_id: int) -> None:
        try:
            write_batch(batch, batch_id)
        except Exception as error:
            interruption = _interruption_by_stop(spark, error)
            if interruption is None:
                raise
            raise BatchStopped(f"batch {batch_id}: {interruption}") from None

    return run


def _interruption_by_stop(spark: SparkSession, error: BaseException) -> str | None:
    """``py4j.protocol.Py4JJavaError: An error occurred while calling o156.count.
    (java.lang.InterruptedException)`` when a Spark call in ``error``'s chain was interrupted
    (or its job cancelled with the query's job group) and this thread's streaming query is
    stopping; None otherwise. The chain is read as Python prints it, which is what Spark
    reads: a cause, or the context unless it was suppressed (``raise ... from None``)."""
    try:
        context = spark.sparkContext
        query_id = context.getLocalProperty("sql.streaming.queryId")
        query = spark.streams.get(query_id) if query_id else None
        if query is None or query.isActive:
            return None
        group = context.getLocalProperty("spark.jobGroup.id")
        chain: BaseException | None = error
        seen: set[int] = set()
        while chain is not None and id(chain) not in seen:  # a chain may loop
            seen.add(id(chain))
            if isinstance(chain, Py4JJavaError):
                text = str(chain)
                call = text.splitlines()[0]
                for name in INTERRUPTIONS:
                    if name in text:
                        return f"py4j.protocol.Py4JJavaError: {call} ({name})"
                cancelled = _cancellation(text, group)
                if cancelled:
                    return f"py4j.protocol.Py4JJavaError: {call} ({cancelled})"
            if chain.__cause__ is not None:
                chain = chain.__cause__
            else:
                chain = None if chain.__suppress_context__ else chain.__context__
    except Exception:  # the JVM is going away: the error as it is
        return None
    return None


def _cancellation(text: str, group: str | None) -> str | None:
    """The line of a Py4J error's text saying a job of ``group`` was cancelled."""
    if not group:
        return None
    for line in text.splitlines():
        line = line.strip().removeprefix("Caused by:").removeprefix(":").strip()
        if line.startswith(CANCELLATION) and "cancelled" in line and group in line:
            return line
    return None


def start_bronze(
    spark: SparkSession, profile: Profile, trigger: Trigger, gate: Gate | None = None
) -> StreamingQuery:
    """Kafka -> ``bronze.events``: every record as received, exactly once."""
    gate = gate or PromoteEverything()
    location = ensure_table(spark, profile, BRONZE_EVENTS)
    name = query_name(profile, BRONZE_EVENTS.name)
    records = spark.readStream.format("kafka").options(**profile.source.spark_options()).load()

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        # Bronze keeps every record: its gate may warn or fail, never drop.
        with step(spark, "bronze: gate"):
            outcome = gate(BRONZE_EVENTS.name, batch, batch_id)
        with step(spark, "bronze: write"):
            append_idempotent(outcome.promote, location, name, batch_id)
        outcome.settle()

    return start_foreach_batch(
        to_bronze(records), write_batch, profile, "bronze_events", name, trigger, location
    )


def start_silver(
    spark: SparkSession, profile: Profile, trigger: Trigger, gate: Gate | None = None
) -> StreamingQuery:
    """``bronze.events`` -> ``silver.events`` + ``silver.quarantine``, exactly once."""
    gate = gate or PromoteEverything()
    bronze_location = ensure_table(spark, profile, BRONZE_EVENTS)
    silver_location = ensure_table(spark, profile, SILVER_EVENTS)
    quarantine_location = ensure_table(spark, profile, SILVER_QUARANTINE)
    name = query_name(profile, SILVER_EVENTS.name)
    # A copy the gate would drop does not shadow a good copy of the same event (a gate
    # registered by another package before ``Gate.with_drops`` existed: the first copy).
    rejected_copies = (
        (lambda copies: gate.with_drops(SILVER_EVENTS.name, copies, REJECTED))
        if hasattr(gate, "with_drops")
        else None
    )

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        parsed = parse_events(batch).persist()
        marked = None
        try:
            valid = parsed.filter(F.size("reasons") == 0)
            with step(spark, "silver: parse"):  # the first job computes the cache
                seen, rows = _silver_ids_near(spark, silver_location, valid)
            marked = mark_duplicates(
                valid, seen, rejected_copies, broadcast=rows <= BROADCAST_ROWS_LIMIT
            ).persist()
            duplicates = marked.filter("duplicate_of_earlier").withColumn(
                "reasons", F.array(F.lit(DUPLICATE))
            )
            rejected = parsed.filter(F.size("reasons") > 0).unionByName(
                duplicates.drop("duplicate_of_earlier")
            )
            candidates = marked.filter(~F.col("duplicate_of_earlier")).drop("duplicate_of_earlier")
            with step(spark, "silver: gate"):  # its first job marks the duplicates
                outcome = gate(SILVER_EVENTS.name, candidates, batch_id)
            if outcome.rejected is not None:
                rejected = rejected.unionByName(outcome.rejected.select(*rejected.columns))
            promoted = outcome.promote.select(*silver_columns())
            # Quarantine first, silver last: on a replay, silver (the dedup reference)
            # holds no copy of the batch's events but their own, which mark_duplicates
            # does not count, so every record is classified alike. A batch with nothing to
            # quarantine commits nothing there (a replay finds nothing again): an empty
            # idempotent append still costs a commit and Delta's "was this batch
            # committed?" job, 1.65 s warm, against 0.07 s to look.
            with step(spark, "silver: quarantine"):
                if not rejected.isEmpty():
                    append_idempotent(
                        to_quarantine(rejected, "silver", batch_id),
                        quarantine_location,
                        f"{name}.quarantine",
                        batch_id,
                    )
            with step(spark, "silver: write"):
                append_idempotent(promoted, silver_location, name, batch_id)
            outcome.settle()
        finally:
            # Also when the gate stops the batch: a cache left behind slows every later plan.
            if marked is not None:
                marked.unpersist()
            parsed.unpersist()

    source = (
        spark.readStream.format("delta")
        .options(**profile.lake.stream_options())
        .load(bronze_location)
    )
    return start_foreach_batch(
        source, write_batch, profile, "silver_events", name, trigger, silver_location
    )


def _silver_ids_near(
    spark: SparkSession, silver_location: str, valid: DataFrame
) -> tuple[DataFrame, int]:
    """Event ids already in silver whose event time is within the dedup watermark of the
    batch, with their Kafka coordinates, and the batch's rows (counted in the same pass)."""
    # Rows outside [arrival - 30 days, arrival + 5 min] never reach silver (the silver
    # suite drops them): they must not widen the window to decades of silver.
    near = F.col("event_ts").between(
        F.col("kafka_timestamp") - F.expr(f"INTERVAL {MAX_PAST_S} SECONDS"),
        F.col("kafka_timestamp") + F.expr(f"INTERVAL {MAX_FUTURE_S} SECONDS"),
    )
    # As microseconds since the epoch, not Python datetimes: PySpark hands timestamps to
    # Python in the driver process's time zone, and their dates would then not be
    # event_date's (UTC) on a laptop east or west of UTC.
    near_micros = F.when(near, F.unix_micros("event_ts"))
    bounds = valid.agg(
        F.min(near_micros).alias("low"),
        F.max(near_micros).alias("high"),
        F.count(F.lit(1)).alias("rows"),
    ).first()
    ids = spark.read.format("delta").load(silver_location)
    copies = ["event_id", "partition", "offset"]  # a replayed batch's own are no duplicates
    if bounds["low"] is None:
        return ids.select(*copies).limit(0), bounds["rows"]
    margin_us = LATENESS_BOUND_S * 1_000_000
    low = F.timestamp_micros(F.lit(bounds["low"] - margin_us))
    high = F.timestamp_micros(F.lit(bounds["high"] + margin_us))
    near_ids = ids.filter(
        F.col("event_date").between(F.to_date(low), F.to_date(high))
        & F.col("event_ts").between(low, high)
    ).select(*copies)
    return near_ids, bounds["rows"]
