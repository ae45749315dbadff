"""The quality gate on small local frames: drop, fail and warn, and the validation log."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
from dataclasses import replace

import great_expectations as gx
import pytest
from pyspark.sql import functions as F

from quality.gates import build_gate
from quality.suites import Check, Suite, default_suites
from spark.gates import GateFailure, GateOutcome
from spark.settings import load_profile

pytestmark = pytest.mark.unit

expect = gx.expectations
COLUMNS = (
    "event_id string, rating long, position_s double, duration_s double, reasons array<string>"
)
ROWS = [
    ("e1", 5, 10.0, 100.0, []),
    ("e2", 0, 10.0, 100.0, []),  # rating out of range
    ("e3", None, 200.0, 100.0, []),  # position past duration
    ("e4", 9, 300.0, 100.0, []),  # both
    ("e5", 1, None, 100.0, []),
    ("e5", 3, 50.0, None, []),  # duplicate event id
]


@pytest.fixture
def workspace(unique_name, tmp_path, monkeypatch):
    """A workspace per test (Delta skips a txnVersion at or below one already written),
    its lake on local disk: unit tests never need the stack."""
    monkeypatch.setenv("REELHOUSE_LAKE_ROOT", (tmp_path / "lake").as_uri())
    monkeypatch.setenv("REELHOUSE_CHECKPOINT_ROOT", (tmp_path / "checkpoints").as_uri())
    return load_profile("local", f"unit-quality-{unique_name}")


@pytest.fixture
def batch(spark):
    return spark.createDataFrame(ROWS, COLUMNS)


def _suite(*checks: Check, allows_drop: bool = True) -> dict[str, Suite]:
    return {"silver.events": Suite("silver.events", checks, allows_drop=allows_drop)}


def _rating(action: str) -> Check:
    return Check(
        name="silver_rating_in_range",
        action=action,
        expectation=expect.ExpectColumnValuesToBeBetween(column="rating", min_value=1, max_value=5),
        description="1 to 5 stars",
    )


def _position() -> Check:
    return Check(
        name="silver_position_within_duration",
        action="drop",
        expectation=expect.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="duration_s",
            column_B="position_s",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
        description="position never past the runtime",
    )


def _unique(action: str) -> Check:
    return Check(
        name="silver_event_id_unique",
        action=action,
        expectation=expect.ExpectColumnValuesToBeUnique(column="event_id"),
        description="one row per event",
    )


QUERY_ID = "sql.streaming.queryId"


@pytest.fixture(autouse=True)
def in_a_streaming_query(spark):
    """The gate runs as ``foreachBatch`` runs it: on a thread that knows its query's id."""
    spark.sparkContext.setLocalProperty(QUERY_ID, "unit-query")
    yield
    spark.sparkContext.setLocalProperty(QUERY_ID, None)


def _events(spark, workspace, table: str, batch_id: int):
    location = workspace.lake.table_location("quality.validation_events")
    return (
        spark.read.format("delta")
        .load(location)
        .filter((F.col("table") == table) & (F.col("batch_id") == batch_id))
    )


def test_drop_quarantines_exactly_the_violating_rows_with_the_check_name(spark, workspace, batch):
    gate = build_gate(workspace, "run-drop", _suite(_rating("drop"), _position()))

    outcome = gate("silver.events", batch, 1)
    outcome.settle()

    rejected = {row.event_id: list(row.reasons) for row in outcome.rejected.collect()}
    assert rejected == {
        "e2": ["silver_rating_in_range"],
        "e3": ["silver_position_within_duration"],
        "e4": ["silver_rating_in_range", "silver_position_within_duration"],
    }
    assert sorted(row.event_id for row in outcome.promote.collect()) == ["e1", "e5", "e5"]
    assert outcome.rejected.columns == batch.columns  # every input column, reasons replaced
    # What silver's dedupe asks before the gate runs: the same rows, by the same predicates.
    flagged = gate.with_drops("silver.events", batch, "_dropped")
    assert flagged.columns == [*batch.columns, "_dropped"]
    assert sorted(row.event_id for row in flagged.collect() if row._dropped) == ["e2", "e3", "e4"]
    recorded = {
        row.expectation: (row.action, row.success, row.element_count, row.unexpected_count)
        for row in _events(spark, workspace, "silver.events", 1).collect()
    }
    dropped = Counter(reason for reasons in rejected.values() for reason in reasons)
    assert recorded == {
        "silver_rating_in_range": ("drop", False, 6, dropped["silver_rating_in_range"]),
        "silver_position_within_duration": (
            "drop",
            False,
            6,
            dropped["silver_position_within_duration"],
        ),
    }


def test_fail_raises_naming_the_check_and_the_batch(spark, workspace, batch):
    gate = build_gate(workspace, "run-fail", _suite(_unique("fail"), _rating("warn")))

    with pytest.raises(GateFailure) as failure:
        gate("silver.events", batch, 7)

    message = str(failure.value)
    assert "silver_event_id_unique" in message and "batch 7" in message
    assert "silver_rating_in_range" not in message  # a warn check never stops a batch
    recorded = {
        row.expectation: (row.success, row.unexpected_count)
        for row in _events(spark, workspace, "silver.events", 7).collect()
    }
    assert recorded == {"silver_event_id_unique": (False, 2), "silver_rating_in_range": (False, 2)}


def test_a_stopped_batch_and_its_passing_replay_are_both_on_record(spark, workspace, batch):
    strict = build_gate(workspace, "run-strict", _suite(_rating("fail")))
    with pytest.raises(GateFailure):
        strict("silver.events", batch, 8)

    relaxed = build_gate(workspace, "run-relaxed", _suite(_rating("warn")))
    relaxed("silver.events", batch, 8).settle()
    relaxed("silver.events", batch, 8).settle()  # a replay of the passing batch: once

    recorded = _events(spark, workspace, "silver.events", 8).collect()
    assert sorted((row.run_id, row.action, row.success) for row in recorded) == [
        ("run-relaxed", "warn", False),
        ("run-strict", "fail", False),
    ]


def test_batches_gated_outside_a_query_are_all_on_record(spark, workspace, batch):
    """Without a streaming query's id a writer is its table alone, and batch ids start
    from 0 in every run: a second run's batch 9 is recorded, not skipped as the first's."""
    spark.sparkContext.setLocalProperty(QUERY_ID, None)
    for run in ("run-first", "run-second"):
        build_gate(workspace, run, _suite(_rating("warn")))("silver.events", batch, 9).settle()

    recorded = _events(spark, workspace, "silver.events", 9).collect()
    assert sorted(row.run_id for row in recorded) == ["run-first", "run-second"]


def test_warn_promotes_everything_and_records_the_unexpected_count(spark, workspace, batch):
    gate = build_gate(workspace, "run-warn", _suite(_rating("warn"), _unique("warn")))

    outcome = gate("silver.events", batch, 3)
    outcome.settle()

    assert outcome.rejected is None
    assert outcome.promote.count() == len(ROWS)
    rows = _events(spark, workspace, "silver.events", 3).collect()
    assert {row.expectation: row.unexpected_count for row in rows} == {
        "silver_rating_in_range": 2,
        "silver_event_id_unique": 2,
    }
    rating = next(row for row in rows if row.expectation == "silver_rating_in_range")
    assert sorted(rating.unexpected_examples) == ["0", "9"]
    assert {row.run_id for row in rows} == {"run-warn"}
    assert all(row.duration_ms >= 0 and row.validated_ts is not None for row in rows)


def test_a_replayed_batch_is_recorded_once_per_table(spark, workspace, batch):
    gate = build_gate(
        workspace,
        "run-replay",
        {
            "silver.events": Suite("silver.events", (_rating("warn"),)),
            "gold.sessions": Suite("gold.sessions", (_unique("warn"),)),
        },
    )
    for _ in range(2):
        gate("silver.events", batch, 11).settle()
    gate("gold.sessions", batch, 11).settle()  # the same batch id for another table: its own

    assert _events(spark, workspace, "silver.events", 11).count() == 1
    assert _events(spark, workspace, "gold.sessions", 11).count() == 1


def _gold_gate(workspace, run_id: str):
    return build_gate(
        workspace,
        run_id,
        {
            "gold.sessions": Suite("gold.sessions", (_unique("warn"),)),
            "gold.session_stats": Suite("gold.session_stats", (_rating("fail"),)),
            "gold.traffic_by_hour": Suite("gold.traffic_by_hour", (_rating("warn"),)),
        },
    )


def _commits(spark, workspace) -> int:
    from delta.tables import DeltaTable

    location = workspace.lake.table_location("quality.validation_events")
    return DeltaTable.forPath(spark, location).history().count()


def test_tables_recorded_together_are_one_commit_once_per_batch(spark, workspace, batch):
    gate = _gold_gate(workspace, "run-together")
    gate("gold.sessions", batch, 4).settle()  # creates the log: commits counted from here
    before = _commits(spark, workspace)

    for _ in range(2):  # the second time is a replay of batch 5
        with gate.recorded_together("gold", 5):
            outcomes = [
                gate(table, batch, 5) for table in ("gold.sessions", "gold.traffic_by_hour")
            ]
            assert not any(outcome.recorded.done() for outcome in outcomes)  # kept until the end
        for outcome in outcomes:
            outcome.settle()

    assert _commits(spark, workspace) == before + 1
    assert _events(spark, workspace, "gold.sessions", 5).count() == 1
    assert _events(spark, workspace, "gold.traffic_by_hour", 5).count() == 1


def test_a_gate_failing_inside_a_block_records_the_tables_validated_so_far(spark, workspace, batch):
    gate = _gold_gate(workspace, "run-together-fails")

    failing = pytest.raises(GateFailure, match="gold.session_stats batch 6")
    with failing, gate.recorded_together("gold", 6):
        gate("gold.sessions", batch, 6)
        gate("gold.session_stats", batch, 6)  # rating out of range: fail
        gate("gold.traffic_by_hour", batch, 6)  # never reached

    assert _events(spark, workspace, "gold.sessions", 6).count() == 1
    failed = _events(spark, workspace, "gold.session_stats", 6).collect()
    assert [(row.expectation, row.success) for row in failed] == [("silver_rating_in_range", False)]
    assert _events(spark, workspace, "gold.traffic_by_hour", 6).count() == 0


def test_drop_rows_equal_the_unexpected_count_for_every_supported_kind(spark, workspace):
    rows = [
        ("a", 1, 1.0, 2.0, None),
        ("b", None, 3.0, 2.0, "x"),
        (None, 7, None, 2.0, "AB"),
        ("zz", 5, 2.0, None, "A1"),
        ("c", 0, None, None, "Q"),
    ]
    frame = spark.createDataFrame(
        rows, "code string, score long, low double, high double, tag string"
    )
    checks = [
        ("code_present", expect.ExpectColumnValuesToNotBeNull(column="code")),
        (
            "code_known",
            expect.ExpectColumnValuesToBeInSet(column="code", value_set=["a", "b", "c"]),
        ),
        ("tag_format", expect.ExpectColumnValuesToMatchRegex(column="tag", regex="^[A-Z]{2}$")),
        (
            "score_between",
            expect.ExpectColumnValuesToBeBetween(column="score", min_value=1, max_value=5),
        ),
        (
            "score_strictly_between",
            expect.ExpectColumnValuesToBeBetween(
                column="score", min_value=1, max_value=5, strict_min=True, strict_max=True
            ),
        ),
        ("score_at_least_1", expect.ExpectColumnValuesToBeBetween(column="score", min_value=1)),
        (
            "high_above_low_both",
            expect.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high", column_B="low", ignore_row_if="both_values_are_missing"
            ),
        ),
        (
            "high_above_low_either",
            expect.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high", column_B="low", ignore_row_if="either_value_is_missing"
            ),
        ),
    ]
    suite = Suite(
        "silver.events",
        tuple(Check(name, "drop", expectation, name) for name, expectation in checks),
        allows_drop=True,
    )
    gate = build_gate(workspace, "run-kinds", {"silver.events": suite})

    outcome = gate("silver.events", frame, 21)
    outcome.settle()

    dropped = Counter(reason for row in outcome.rejected.collect() for reason in row.reasons)
    events = {
        row.expectation: row for row in _events(spark, workspace, "silver.events", 21).collect()
    }
    recorded = {name: row.unexpected_count for name, row in events.items()}
    assert {name: dropped.get(name, 0) for name in recorded} == recorded
    # Counted and sampled by the gate's own predicates: exactly what Great Expectations,
    # asked for every unexpected row, reports.
    context = gx.get_context(mode="ephemeral")
    gx_batch = (
        context.data_sources.add_spark(name="kinds")
        .add_dataframe_asset(name="kinds")
        .add_batch_definition_whole_dataframe(name="whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    for name, expectation in checks:
        complete = gx_batch.validate(expectation, result_format="COMPLETE").result
        assert complete["unexpected_count"] == recorded[name], name
        unexpected = [str(value) for value in complete["unexpected_list"]]
        assert events[name].unexpected_examples, name
        assert set(events[name].unexpected_examples) <= set(unexpected), name
    assert recorded == {
        "code_present": 1,
        "code_known": 1,
        "tag_format": 3,
        "score_between": 2,
        "score_strictly_between": 4,
        "score_at_least_1": 1,
        "high_above_low_both": 1,  # a null on one side compares as unknown, not unexpected
        "high_above_low_either": 1,
    }


def test_silver_quarantines_watch_time_gold_could_not_sum(spark, workspace):
    """A day of play at most per event: one absurd played_s (1e300, which the exact sums
    of gold's watch minutes cannot hold) is quarantined, not a batch gold fails forever."""
    check = default_suites()["silver.events"].by_name["silver_played_s_at_most_1_day"]
    frame = spark.createDataFrame(
        [(1, 30.0), (2, 86_400.0), (3, 86_400.5), (4, 1e300), (5, None)], "id int, played_s double"
    )
    suite = Suite("silver.events", (check,), allows_drop=True)
    outcome = build_gate(workspace, "run-played", {"silver.events": suite})(
        "silver.events", frame, 4
    )
    outcome.settle()
    assert sorted(row.id for row in outcome.rejected.collect()) == [3, 4]
    assert sorted(row.id for row in outcome.promote.collect()) == [1, 2, 5]


def test_silver_quarantines_an_id_with_a_final_line_break(spark, workspace):
    """The contract's patterns end in ``$``, the end of the string in JSON Schema; Java's
    ``$`` (Spark's rlike, Great Expectations' Spark check) also matches before a final line
    break, so "u-000123\\n" passed as a user id and counted in gold as another user."""
    checks = default_suites()["silver.events"].by_name
    suite = Suite(
        "silver.events",
        (checks["silver_user_id_format"], checks["silver_session_id_format"]),
        allows_drop=True,
    )
    session = "s-0123456789abcdef"
    frame = spark.createDataFrame(
        [
            (1, "u-000123", session),
            (2, "u-000123\n", session),
            (3, "u-000123", f"{session}\r\n"),
            (4, "u-000123\nu-000124", session),
        ],
        "id int, user_id string, session_id string",
    )
    outcome = build_gate(workspace, "run-line-break", {"silver.events": suite})(
        "silver.events", frame, 5
    )
    outcome.settle()
    assert sorted(row.id for row in outcome.promote.collect()) == [1]
    assert sorted(row.id for row in outcome.rejected.collect()) == [2, 3, 4]


def test_default_suites_gate_every_table_and_only_silver_drops():
    suites = default_suites()
    assert set(suites) == {
        "bronze.events",
        "silver.events",
        "gold.title_popularity",
        "gold.sessions",
        "gold.session_stats",
        "gold.traffic_by_hour",
        "gold.user_engagement",
        "gold.regional_trends",
        "gold.daily_totals",
    }
    for table, suite in suites.items():
        actions = {check.action for check in suite.checks}
        assert actions <= (
            {"warn", "drop", "fail"} if table == "silver.events" else {"warn", "fail"}
        )
    with pytest.raises(ValueError, match="keeps every row"):
        Suite("bronze.events", (_rating("drop"),))


# Great Expectations deprecates row conditions written as strings; the suite refuses any.
@pytest.mark.filterwarnings("ignore:Passing a string to the row_condition")
@pytest.mark.parametrize("relaxation", [{"mostly": 0.5}, {"row_condition": 'event_type=="play"'}])
def test_a_check_that_spares_some_rows_is_refused(relaxation):
    expectation = expect.ExpectColumnValuesToBeBetween(
        column="rating", min_value=1, max_value=5, **relaxation
    )
    check = Check("silver_rating_in_range", "drop", expectation, "1 to 5 stars")

    for action in ("drop", "warn", "fail"):
        with pytest.raises(ValueError, match=r"checks \['silver_rating_in_range'\] set mostly"):
            Suite("silver.events", (replace(check, action=action),), allows_drop=True)


def test_settle_raises_what_recording_the_batch_raised():
    recorded = Future()
    recorded.set_exception(OSError("validation log unreachable"))

    with pytest.raises(OSError, match="validation log unreachable"):
        GateOutcome(promote=None, recorded=recorded).settle()
