"""``python -m spark.run``'s arguments (the layers named, the micro-batch interval) and signals."""

from __future__ import annotations

import functools
import logging
import re
import threading

import pytest

from spark import run
from spark.run import parse_interval, parse_layers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("1s", "1 second"),
        ("5s", "5 seconds"),
        (" 10 s ", "10 seconds"),
        ("500ms", "500 milliseconds"),
        ("1m", "1 minute"),
        ("5 seconds", "5 seconds"),
        ("1 second", "1 second"),
        ("05 minutes", "5 minutes"),
        ("250 milliseconds", "250 milliseconds"),
    ],
)
def test_an_interval_becomes_the_text_spark_and_the_log_read(text, interval):
    assert parse_interval(text) == interval


@pytest.mark.parametrize(
    "text", ["", "5", "five seconds", "-1s", "1h", "1.5s", "5 secs", "5 sseconds"]
)
def test_a_malformed_interval_is_named(text):
    message = f"must look like 5s, 500ms, 1m or 5 seconds, got {text!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_interval(text)


@pytest.mark.parametrize("text", ["1441m", "86401s", "99999999999999999999s"])
def test_an_interval_longer_than_a_day_is_named(text):
    with pytest.raises(ValueError, match=re.escape(f"must be at most a day (1440m), got {text!r}")):
        parse_interval(text)


def test_layers_run_in_medallion_order_once_each():
    assert parse_layers("gold, bronze,silver,bronze") == ["bronze", "silver", "gold"]


def test_a_second_signal_exits_at_once_and_the_first_only_asks_to_stop(
    monkeypatch, capsys, request
):
    exits = []
    monkeypatch.setattr(run.os, "_exit", exits.append)
    # The first signal quiets Py4J's logger for the rest of the process; the tests after
    # this one keep its level.
    py4j = logging.getLogger("py4j.clientserver")
    request.addfinalizer(functools.partial(py4j.setLevel, py4j.level))
    stop = threading.Event()

    run._stopping(stop)
    assert stop.is_set() and exits == []

    run._stopping(stop)
    assert exits == [run.INTERRUPTED]
    assert capsys.readouterr().err.startswith("error: interrupted again: ")
    assert py4j.level == logging.CRITICAL


def test_offsets_of_another_workspace_s_topic_are_refused_before_a_jvm_starts(monkeypatch, capsys):
    def no_session(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr(run, "lake_session", no_session)
    monkeypatch.setenv("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"main.viewing-events": {"0": 4}}')
    assert run.main(["--workspace", "other", "--layers", "bronze"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: source.starting_offsets gives offsets of topic 'main.viewing-events', but this"
        " workspace reads 'other.viewing-events'; name that topic (with its workspace), or"
        " start from earliest or latest"
    ), error


def test_a_batch_functions_own_error_is_the_summary(spark, tmp_path):
    """A batch function's error reaches Python wrapped in the JVM's streaming error, its
    traceback inside; the summary is the error it raised, not the wrapping."""
    from pyspark.errors import StreamingQueryException

    spark.range(3).write.parquet(str(tmp_path / "source"))

    def fail(batch, batch_id):
        raise RuntimeError("injected failure")

    query = (
        spark.readStream.schema("id long")
        .parquet(str(tmp_path / "source"))
        .writeStream.foreachBatch(fail)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    with pytest.raises(StreamingQueryException) as failed:
        query.awaitTermination()
    assert run.summarize_error(failed.value) == "RuntimeError: injected failure"


def test_a_streaming_failure_is_summarized_without_the_query_ids():
    error = RuntimeError(
        "[STREAM_FAILED] Query [id = 7, runId = 8] terminated with exception: assertion"
        " failed: If startingOffsets contains specific offsets, you must specify all"
        " TopicPartitions.\n\tat scala.Predef$.assert(Predef.scala:279)"
    )
    assert run.summarize_error(error) == (
        "assertion failed: If startingOffsets contains specific offsets, you must specify all"
        " TopicPartitions."
    )


def test_a_py4j_error_is_summarized_by_its_java_reason_not_the_method_called():
    error = RuntimeError(
        "An error occurred while calling z:io.delta.tables.DeltaTable.isDeltaTable.\n"
        ": org.apache.spark.sql.delta.DeltaFileNotFoundException: [DELTA_TRUNCATED_TRANSACTION_LOG]"
        " .../_delta_log/00000000000000000000.json: Unable to reconstruct state at version 1\n"
        "\tat org.apache.spark.sql.delta.DeltaErrorsBase.truncatedTransactionLogException"
    )
    assert run.summarize_error(error) == (
        "org.apache.spark.sql.delta.DeltaFileNotFoundException: [DELTA_TRUNCATED_TRANSACTION_LOG]"
        " .../_delta_log/00000000000000000000.json: Unable to reconstruct state at version 1"
    )
