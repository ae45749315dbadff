"""The quality gate inside the real bronze, silver and gold queries."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter

import great_expectations as gx
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from quality.gates import build_gate
from quality.suites import Check, Suite, default_suites
from quality.validation_log import gate_summary
from spark.gates import GateFailure
from spark.jobs.gold import DAILY_TOTALS, GOLD_CHECKPOINT
from spark.jobs.layers import Trigger
from spark.run import RunError, run_layers
from spark.transforms.gold import KEYS
from tests.conftest import expected_quarantine_reasons, produce_records
from tests.integration.conftest import (
    GATED_RUN,
    driver_time_zone,
    recent_simulation,
    workspace_of,
)
from tests.integration.gold_truth import assert_gold_equals_truth

pytestmark = pytest.mark.integration

STRICT_CHECK = "strict_no_play_events"


def _table(spark, profile, name):
    return spark.read.format("delta").load(profile.lake.table_location(name))


def _committed_batches(spark, profile, query: str) -> set[int]:
    """The micro-batches a query committed, from its checkpoint (on whichever filesystem)."""
    jvm = spark.sparkContext._jvm
    commits = jvm.org.apache.hadoop.fs.Path(f"{profile.lake.checkpoint_location(query)}/commits")
    filesystem = commits.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    names = [status.getPath().getName() for status in filesystem.listStatus(commits)]
    return {int(name) for name in names if name.isdigit()}


def test_every_batch_of_every_gated_table_is_recorded(spark, gated):
    events = _table(spark, gated, "quality.validation_events")
    recorded = {
        (row.table, row.batch_id): row.checks
        for row in events.groupBy("table", "batch_id").agg(F.count("*").alias("checks")).collect()
    }
    suites = default_suites()
    expected = {
        (table, batch_id): len(suites[table].checks)
        for table, query in [("bronze.events", "bronze_events"), ("silver.events", "silver_events")]
        for batch_id in _committed_batches(spark, gated, query)
    }
    assert len(_committed_batches(spark, gated, "bronze_events")) >= 3
    assert {key: checks for key, checks in recorded.items() if key[0] not in KEYS} == expected
    # Gold: a batch with events records every table; one with only late records (the
    # quarantine's files outlast silver's) daily_totals alone; one with neither nothing.
    gold_batches: dict[int, set[str]] = {}
    for (table, batch_id), checks in recorded.items():
        if table in KEYS:
            assert checks == len(suites[table].checks), table
            gold_batches.setdefault(batch_id, set()).add(table)
    assert set(gold_batches) <= _committed_batches(spark, gated, GOLD_CHECKPOINT)
    assert all(tables in (set(KEYS), {DAILY_TOTALS}) for tables in gold_batches.values())
    assert sum(tables == set(KEYS) for tables in gold_batches.values()) >= 2
    # Only silver's drop checks met faults (they quarantine them); nothing warned or failed.
    failed = events.filter(~F.col("success")).select("table", "action").distinct().collect()
    assert {(row.table, row.action) for row in failed} == {("silver.events", "drop")}
    assert events.select("run_id").distinct().collect()[0].run_id == GATED_RUN


def test_gold_over_several_batches_equals_the_ground_truth(spark, gated, gated_simulation):
    """Gold's batches recompute what each new silver file touches (a day's previous day, a
    session's earlier events, an hour's other events) and end equal to the whole truth."""
    assert len(_committed_batches(spark, gated, "silver_events")) >= 2
    assert len(_committed_batches(spark, gated, GOLD_CHECKPOINT)) >= 2
    assert_gold_equals_truth(spark, gated, gated_simulation.truth)


def test_quarantine_per_expectation_equals_the_injected_faults(spark, gated, gated_simulation):
    quarantine = _table(spark, gated, "silver.quarantine")
    reasons = Counter(tuple(row.reasons) for row in quarantine.select("reasons").collect())
    expected = expected_quarantine_reasons(gated_simulation)
    assert reasons == expected
    silver_checks = set(default_suites()["silver.events"].by_name)
    by_check = {reason: count for (reason,), count in expected.items() if reason in silver_checks}
    assert len(by_check) >= 5, by_check  # the faults reach several checks
    # The gate's own record says the same: unexpected rows per check = quarantined rows.
    events = _table(spark, gated, "quality.validation_events")
    unexpected = {
        row.expectation: row.rows
        for row in events.where((F.col("table") == "silver.events") & (F.col("action") == "drop"))
        .groupBy("expectation")
        .agg(F.sum("unexpected_count").alias("rows"))
        .collect()
        if row.rows
    }
    assert unexpected == by_check
    # No clean event is quarantined: silver holds exactly the clean events.
    clean = {payload["event_id"] for payload in gated_simulation.clean_payloads}
    assert {row.event_id for row in _table(spark, gated, "silver.events").collect()} == clean


def _with_check(table: str, check: Check) -> dict[str, Suite]:
    """The default suites, ``table``'s with one more check."""
    suites = dict(default_suites())
    suites[table] = dataclasses.replace(suites[table], checks=(*suites[table].checks, check))
    return suites


def _strict_suites():
    """A deliberately impossible rule: silver must not see play events."""
    return _with_check(
        "silver.events",
        Check(
            name=STRICT_CHECK,
            action="fail",
            expectation=gx.expectations.ExpectColumnValuesToNotBeInSet(
                column="event_type", value_set=["play"]
            ),
            description="A deliberately impossible rule: silver must not see play events.",
        ),
    )


STRICT_GOLD_CHECK = "strict_no_plays_in_trends"


def _strict_gold_suites():
    """Gold's last table (gold.regional_trends, merged last) refuses any play."""
    return _with_check(
        "gold.regional_trends",
        Check(
            name=STRICT_GOLD_CHECK,
            action="fail",
            expectation=gx.expectations.ExpectColumnValuesToBeBetween(column="plays", max_value=0),
            description="A deliberately impossible rule: no genre is ever played.",
        ),
    )


def _failed_checks(spark, workspace, run_id: str) -> str:
    failed = (
        _table(spark, workspace, "quality.validation_events")
        .filter((F.col("run_id") == run_id) & ~F.col("success"))
        .select("expectation")
        .collect()
    )
    return ",".join(row.expectation for row in failed)


def _count(spark, location: str) -> int:
    return spark.read.format("delta").load(location).count()


def test_a_failed_batch_promotes_nothing_until_the_suite_is_relaxed(stack, spark, profile):
    strict = workspace_of(profile, f"strict-{uuid.uuid4().hex[:6]}")
    simulation = recent_simulation(1_000, seed=9)
    produce_records(strict, simulation.records, partitions=2)

    with pytest.raises(RunError) as stopped:
        run_layers(
            spark,
            strict,
            ["bronze", "silver"],
            Trigger(),
            gate=build_gate(strict, "run-strict", _strict_suites()),
        )
    assert "layer silver failed" in str(stopped.value)
    # RunError keeps the first line of the JVM error; the gate's message is in its cause.
    cause = str(stopped.value.__context__)
    assert f"GateFailure: quality gate failed for silver.events batch 0: {STRICT_CHECK}" in cause
    assert _table(spark, strict, "bronze.events").count() == 1_000
    assert _table(spark, strict, "silver.events").count() == 0
    assert _table(spark, strict, "silver.quarantine").count() == 0
    failure = (
        _table(spark, strict, "quality.validation_events")
        .filter((F.col("table") == "silver.events") & (F.col("expectation") == STRICT_CHECK))
        .collect()
    )
    assert [(row.batch_id, row.action, row.success) for row in failure] == [(0, "fail", False)]
    assert failure[0].unexpected_count > 0

    run_layers(spark, strict, ["silver"], Trigger(), gate=build_gate(strict, "run-relaxed"))
    relaxed = (
        _table(spark, strict, "quality.validation_events")
        .filter((F.col("table") == "silver.events") & (F.col("batch_id") == 0))
        .select("run_id")
        .distinct()
        .collect()
    )
    assert sorted(row.run_id for row in relaxed) == ["run-relaxed", "run-strict"]

    # Gold's last table fails: no gold table takes anything of the batch.
    with pytest.raises(RunError, match="layer gold failed"):
        run_layers(
            spark,
            strict,
            ["gold"],
            Trigger(),
            gate=build_gate(strict, "run-strict-gold", _strict_gold_suites()),
        )
    assert STRICT_GOLD_CHECK in str(_failed_checks(spark, strict, "run-strict-gold"))
    for table in KEYS:
        location = strict.lake.table_location(table)
        assert not DeltaTable.isDeltaTable(spark, location) or _count(spark, location) == 0, table

    run_layers(spark, strict, ["gold"], Trigger(), gate=build_gate(strict, "run-relaxed"))

    silver = _table(spark, strict, "silver.events")
    clean_ids = {payload["event_id"] for payload in simulation.clean_payloads}
    silver_ids = [row.event_id for row in silver.select("event_id").collect()]
    assert len(silver_ids) == len(clean_ids) == 1_000 and set(silver_ids) == clean_ids
    assert _table(spark, strict, "silver.quarantine").count() == 0
    plays = silver.filter(F.col("event_type") == "play").count()
    gold_plays = _table(spark, strict, "gold.title_popularity").agg(F.sum("plays")).first()[0]
    assert gold_plays == plays > 0


@pytest.fixture
def driver_in_tokyo():
    """The driver process on a laptop's clock nine hours east of UTC."""
    with driver_time_zone("Asia/Tokyo"):
        yield


def test_a_drop_check_that_cannot_run_stops_its_batch_on_record(
    stack, spark, profile, driver_in_tokyo
):
    """A drop check on a column the batch lacks cannot say which rows to drop: the batch
    stops with Great Expectations' error, is recorded as stopped at the right UTC time
    (whatever the driver's clock), and the report says a gate stopped a batch."""
    from quality.report import _layer_section, _Tables

    renamed = workspace_of(profile, f"raised-{uuid.uuid4().hex[:6]}")
    suite = Suite(
        table="silver.events",
        allows_drop=True,
        checks=(
            Check(
                name="silver_renamed_present",
                action="drop",
                expectation=gx.expectations.ExpectColumnValuesToNotBeNull(column="renamed"),
                description="a column the batch does not have",
            ),
        ),
    )
    gate = build_gate(renamed, "run-raised", {"silver.events": suite})
    batch = spark.createDataFrame([(1,), (None,)], "x int")

    with pytest.raises(GateFailure) as stopped:
        gate("silver.events", batch, 0)
    assert str(stopped.value).startswith(
        "quality gate failed for silver.events batch 0: silver_renamed_present ("
    )
    assert "renamed" in str(stopped.value).split("silver_renamed_present", 1)[1]

    record = _table(spark, renamed, "quality.validation_events").select(
        "action",
        "success",
        "unexpected_count",
        (F.unix_timestamp(F.current_timestamp()) - F.unix_timestamp("validated_ts")).alias("age"),
    )
    ((action, success, unexpected, age),) = record.collect()
    assert (action, success, unexpected) == ("drop", False, None)
    assert 0 <= age < 600, age
    assert "Attention: a gate stopped at least one batch." in _layer_section(
        _Tables(spark, renamed)
    )
    # The flow's summary counts it as stopping the batch, not as quarantining rows.
    assert gate_summary(spark, renamed, "run-raised") == [
        {"table": "silver.events", "batches": 1, "checks": 1, "warn": 0, "drop": 0, "fail": 1}
    ]
