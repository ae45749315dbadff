"""The gold job: silver -> every gold table, by recomputing the keys each micro-batch touched.

Silver is append-only, so a micro-batch can only change the gold rows whose keys it
contains. For each batch the job collects those keys, recomputes their rows exactly
from silver (session_stats from gold.sessions as the batch's sessions update it; a late
event inside silver's lateness bound updates its own window), passes every table's rows
through its gate, and only then MERGEs them into the gold tables. Recomputing is
deterministic, and every MERGE carries ``txnAppId``/``txnVersion``, so a replayed batch
after a crash changes nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark.catalog import (
    RECORD_AS_RECEIVED,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
    create_table_with_rows,
    ensure_table,
    gold_spec,
)
from spark.gates import Gate, PromoteEverything
from spark.jobs.layers import Trigger, query_name, start_foreach_batch
from spark.jobs.steps import step
from spark.settings import Profile
from spark.transforms import gold
from spark.transforms.events import MAX_PAST_S, parse_events

log = logging.getLogger(__name__)

_TXN_APP = "spark.databricks.delta.write.txnAppId"
_TXN_VERSION = "spark.databricks.delta.write.txnVersion"
# Tables whose recomputed rows are every row of the batch's near days: their MERGE also
# deletes the rows of those days it did not recompute (a group no session starts in any
# more).
_WHOLE_DAYS = frozenset({"gold.session_stats"})
DAILY_TOTALS = "gold.daily_totals"
LATE = "late_arrival"
# The silver columns a batch's keys come from.
_TOUCHED = (
    "session_id",
    "region",
    "event_hour",
    "event_date",
    "local_date",
    "local_hour",
    "user_id",
    "genre",
)
# The query reads silver.events and silver.quarantine's late records. Its first version
# ("gold") read silver.events alone, and a checkpoint cannot take a second source: on a
# workspace gold ran on before, the query starts on this checkpoint and recomputes every
# day from silver once (see ``gold_writer``: merging again is safe). replay deletes both.
GOLD_CHECKPOINT = "gold_v2"


def start_gold(
    spark: SparkSession, profile: Profile, trigger: Trigger, gate: Gate | None = None
) -> StreamingQuery:
    """``silver.events`` (and the late records of ``silver.quarantine``) -> the gold
    tables, exactly once."""
    gate = gate or PromoteEverything()
    silver_location = ensure_table(spark, profile, SILVER_EVENTS)
    quarantine_location = ensure_table(spark, profile, SILVER_QUARANTINE)
    name = query_name(profile, "gold")

    def write_batch(batch: DataFrame, batch_id: int) -> None:
        session = batch.sparkSession  # this query's own session: its conf is ours alone
        writer = gold_writer(name, session.sparkContext.getLocalProperty("sql.streaming.queryId"))
        silver = session.read.format("delta").load(silver_location)
        rows = batch.persist()
        touched = rows.filter(~F.col("late")).drop("late", "late_date")
        outcomes, window, computed = [], None, {}
        try:
            with step(session, "gold: days touched"):
                dated = rows.select(
                    F.when(F.col("late"), F.col("late_date"))
                    .otherwise(F.col("event_date"))
                    .alias("day"),
                    (~F.col("late")).alias("counted"),
                ).distinct()
                dated = dated.collect()
                if not dated:
                    return
            # The days the batch's events touched and their neighbours (every table but
            # daily_totals), and the days of its events and late records (daily_totals).
            days = _near_days([row.day for row in dated if row.counted])
            totals_days = sorted({row.day for row in dated})
            # Read once: every table but session_stats recomputes from it.
            read_days = sorted(set(days) | set(totals_days))
            window = silver.filter(F.col("event_date").isin(read_days))
            window = window.select(*gold.INPUT_COLUMNS).persist()
            sessions_location = profile.lake.table_location("gold.sessions")

            def merged_sessions() -> DataFrame:
                # gold.sessions as its MERGE will leave it, before any MERGE: the near
                # days' sessions, the recomputed ones replacing what the table holds.
                recomputed = computed["gold.sessions"]
                if not DeltaTable.isDeltaTable(session, sessions_location):
                    return recomputed
                held = session.read.format("delta").load(sessions_location)
                held = held.filter(F.col("start_date").isin(days))
                return held.join(recomputed, "session_id", "left_anti").unionByName(recomputed)

            def totals() -> DataFrame:
                late = _late_records(session, quarantine_location, totals_days)
                listed = session.createDataFrame([(day,) for day in totals_days], "day date")
                return gold.daily_totals(window, late, listed)

            # The other tables read the near days alone: a session of a late record's day
            # would otherwise be recomputed from a day its MERGE does not match.
            near = window if read_days == days else window.filter(F.col("event_date").isin(days))
            # Late records alone touch no other table's keys.
            recomputations = _recomputed(near, touched, merged_sessions, days) if days else {}
            recomputations[DAILY_TOTALS] = totals
            # Every table is validated before any is merged: a gate that fails on the last
            # table promotes nothing of the batch. The tables' validation events are
            # one commit, written after the MERGEs.
            with gate.recorded_together("gold", batch_id):
                for table, recompute in recomputations.items():
                    computed[table] = recompute().persist()
                    with step(session, f"{table}: gate"):  # its first job computes it
                        outcome = gate(table, computed[table], batch_id)  # warn or fail only
                    outcomes.append((table, outcome))
                for table, outcome in outcomes:
                    with step(session, f"{table}: merge"):
                        _merge(
                            session,
                            profile,
                            table,
                            outcome.promote,
                            f"{writer}.{table}",
                            batch_id,
                            totals_days if table == DAILY_TOTALS else days,
                        )
            for _, outcome in outcomes:
                outcome.settle()
        finally:
            for computed_rows in computed.values():
                computed_rows.unpersist()
            if window is not None:
                window.unpersist()
            rows.unpersist()

    return start_foreach_batch(
        _gold_source(spark, profile, silver_location, quarantine_location),
        write_batch,
        profile,
        GOLD_CHECKPOINT,
        name,
        trigger,
    )


def _gold_source(
    spark: SparkSession, profile: Profile, silver_location: str, quarantine_location: str
) -> DataFrame:
    """Silver's events (the keys they touch) and, as rows marked ``late`` with only a
    ``late_date``, the records silver quarantined as late: each triggers a recount of its
    day's ``late_excluded``, even in a batch without a new event of that day."""
    options = profile.lake.stream_options()
    events = spark.readStream.format("delta").options(**options).load(silver_location)
    events = events.select(
        *_TOUCHED, F.lit(False).alias("late"), F.lit(None).cast("date").alias("late_date")
    )
    quarantine = spark.readStream.format("delta").options(**options).load(quarantine_location)
    late = parse_events(_as_received(quarantine.filter(F.array_contains("reasons", LATE))))
    # Silver judged it late by its time, so it has a date; one without (a parser that came
    # to read it otherwise) has no day to count it on, and would stop every batch.
    late = late.filter(F.col("event_date").isNotNull()).select(
        *[F.lit(None).cast(events.schema[column].dataType).alias(column) for column in _TOUCHED],
        F.lit(True).alias("late"),
        F.col("event_date").alias("late_date"),
    )
    return events.unionByName(late)


def _as_received(quarantined: DataFrame) -> DataFrame:
    """Quarantined records as bronze holds them, for silver's parser."""
    return quarantined.select(*RECORD_AS_RECEIVED)


def _late_records(session: SparkSession, quarantine_location: str, days: list) -> DataFrame:
    """The records of ``days`` silver quarantined as late, parsed as silver parsed them.

    A late record arrived at most ``MAX_PAST_S`` (30 days) after it happened (later is
    another reason), so only records that arrived from the first day to 31 days after the
    last are read: the quarantine keeps statistics on ``kafka_timestamp``, and Delta skips
    the other files (its partitions are the quarantine's own dates, which a replay moves).
    """
    low = min(days)
    high = max(days) + timedelta(days=MAX_PAST_S // 86400 + 1)
    quarantine = session.read.format("delta").load(quarantine_location)
    late = quarantine.filter(
        F.array_contains("reasons", LATE)
        & (F.col("kafka_timestamp") >= F.lit(low).cast("timestamp"))
        & (F.col("kafka_timestamp") < F.lit(high).cast("timestamp"))
    )
    return parse_events(_as_received(late)).filter(F.col("event_date").isin(days))


def gold_writer(name: str, query_id: str | None) -> str:
    """Who MERGEs a gold batch, for Delta's ``txnAppId``: the job and its streaming query.

    A query keeps its id across restarts from its checkpoint, so a replayed batch is
    skipped as committed. A query started on a new checkpoint (the old one deleted, the
    tables kept) counts its batches from 0 again under a new id: its batches are merged,
    where under the job's name alone every batch up to the old query's last would be
    skipped, and the rows silver gained since would never reach gold. Merging again is
    safe: a batch's rows are recomputed from silver, so a MERGE that repeats one changes
    nothing. Without the id (PySpark's threads not pinned, or a batch run outside a query)
    a batch would be skipped as above: it is refused instead.
    """
    if not query_id:
        raise RuntimeError(
            f"{name}: a gold batch needs its streaming query's id (sql.streaming.queryId);"
            " run gold as a streaming query, with PYSPARK_PIN_THREAD unset or true"
        )
    return f"{name}.{query_id}"


def _near_days(dates: list) -> list:
    """The days every recomputed row can depend on: the touched days and the days next
    to them (sessions cross midnight; trends compare with the day before)."""
    return sorted({day + timedelta(days=delta) for day in dates for delta in (-1, 0, 1)})


def _recomputed(
    window: DataFrame,
    touched: DataFrame,
    merged_sessions: Callable[[], DataFrame],
    days: list,
) -> dict[str, Callable[[], DataFrame]]:
    """Each gold table's rows for the keys the batch touched, in the order they are
    computed: built when called, so session_stats can read the batch's sessions."""
    hours = touched.select("region", "event_hour").distinct()
    session_ids = touched.select("session_id").distinct()
    slots = touched.select("region", "local_date", "local_hour").distinct()
    user_days = touched.select("user_id", F.col("event_date")).distinct()
    genre_days = (
        touched.filter(F.col("genre").isNotNull())
        .select(
            "region",
            "genre",
            F.explode(F.array(F.col("event_date"), F.date_add("event_date", 1))).alias("day"),
        )
        .distinct()
    )

    def session_stats() -> DataFrame:
        # Every (region, device type, day) of the near days, from gold.sessions as merged
        # with this batch's sessions: one row per session, so the statistics need not
        # aggregate the days' events into sessions again (1M events, warm: 7.8 s
        # recomputing them, 1.6 s reading them). All of the days, not
        # only the groups the batch's sessions start in now: a late first event moves a
        # session's start to the day before, and the group it left must be recomputed
        # too (or deleted, when it held that session alone; see _WHOLE_DAYS).
        return gold.session_stats(merged_sessions().filter(F.col("start_date").isin(days)))

    return {
        "gold.title_popularity": lambda: gold.title_popularity(
            window.join(hours, ["region", "event_hour"], "left_semi")
        ),
        "gold.sessions": lambda: gold.sessions(window.join(session_ids, "session_id", "left_semi")),
        "gold.session_stats": session_stats,
        "gold.traffic_by_hour": lambda: gold.traffic_by_hour(
            window.join(slots, ["region", "local_date", "local_hour"], "left_semi")
        ),
        "gold.user_engagement": lambda: gold.user_engagement(
            window.join(user_days, ["user_id", "event_date"], "left_semi")
        ),
        "gold.regional_trends": lambda: gold.regional_trends(window).join(
            genre_days, ["region", "genre", "day"], "left_semi"
        ),
    }


def merge_condition(table: str, days: list) -> str:
    """The MERGE condition of a gold table's recomputed rows: their key, and a date among
    ``days``, the batch's days and the days next to them.

    The date is a predicate on the target alone: Delta reads only the files that can hold
    those days (the partitions of the partitioned tables), not the whole table, so a
    MERGE costs as much on the hundredth day as on the first (a 120-day title_popularity
    of 3.5M rows: 4.3-5.4 s scanning every file, 2.7-3.3 s with the date).
    """
    keys = " AND ".join(f"target.`{key}` <=> source.`{key}`" for key in gold.KEYS[table])
    return f"{keys} AND {_on_days(table, days)}"


def _on_days(table: str, days: list) -> str:
    listed = ", ".join(f"DATE'{day.isoformat()}'" for day in sorted(days))
    return f"target.`{gold.DATES[table]}` IN ({listed})"


def _merge(
    session: SparkSession,
    profile: Profile,
    table: str,
    rows: DataFrame,
    app_id: str,
    batch_id: int,
    days: list,
) -> None:
    location = profile.lake.table_location(table)
    exists = DeltaTable.isDeltaTable(session, location)
    if exists and table not in _WHOLE_DAYS and rows.isEmpty():
        # Nothing to update or insert (a batch of events without a title has no
        # title_popularity rows, one without a genre no regional_trends rows): the MERGE
        # would change nothing and still cost a commit and Delta's "was this batch
        # committed?" job, about 1.8 s. A replay that finds rows (silver has grown since)
        # merges them.
        log.info("gold batch %s: no rows for %s", batch_id, table)
        return
    session.conf.set(_TXN_APP, app_id)
    session.conf.set(_TXN_VERSION, str(batch_id))
    try:
        if not exists:
            # Nothing to match in a table not there yet: the table, its properties and
            # the rows are one commit with the batch's transaction (a driver killed
            # before it leaves no table). A replay finds the table and skips the MERGE
            # below as committed.
            log.info("gold batch %s: creating %s", batch_id, table)
            create_table_with_rows(session, profile, gold_spec(table), rows)
            log.info("gold batch %s: created %s", batch_id, table)
            return
        condition = merge_condition(table, days)
        merge = (
            DeltaTable.forPath(session, location)
            .alias("target")
            .merge(rows.alias("source"), condition)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
        )
        if table in _WHOLE_DAYS:
            merge = merge.whenNotMatchedBySourceDelete(condition=_on_days(table, days))
        # Logged on either side: a crash test knows whether a kill landed inside the MERGE.
        log.info("gold batch %s: merging %s", batch_id, table)
        merge.execute()
        log.info("gold batch %s: merged %s", batch_id, table)
    finally:
        session.conf.unset(_TXN_APP)
        session.conf.unset(_TXN_VERSION)
