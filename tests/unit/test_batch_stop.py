"""A micro-batch its query's stop interrupts ends in one line Spark reads as a stop."""

from __future__ import annotations

import threading
import time
import traceback

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors import StreamingQueryException

from spark.jobs.layers import BatchStopped, stopped_in_one_line

pytestmark = pytest.mark.unit


def _is_interruption(spark, python_error: str, group: str | None = None) -> bool:
    """Spark's own verdict on the text a failed ``foreachBatch`` hands the JVM: was the
    batch interrupted by its query's stop (True), or did it fail? ``group``: the query's
    job group, which Spark reads from the thread that judges."""
    jvm = spark._jvm
    error = jvm.py4j.Py4JException(python_error)
    streams = jvm.org.apache.spark.sql.execution.streaming.runtime.StreamExecution
    spark.sparkContext.setLocalProperty("spark.jobGroup.id", group or "no-group")
    try:
        return streams.isInterruptionException(error, spark._jsc.sc())
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)


def _stop_during_a_batch(spark, tmp_path, after_the_stop) -> tuple[object, list[str], str]:
    """Stop a query while its first batch runs; the batch then calls ``after_the_stop(
    batch, job_group)``. Returns the stopped query, the batch's errors as Spark reads them,
    and the query's job group."""
    inside, errors, groups = threading.Event(), [], []

    def write_batch(batch, batch_id):
        inside.set()
        context = spark.sparkContext
        groups.append(context.getLocalProperty("spark.jobGroup.id"))
        query = spark.streams.get(context.getLocalProperty("sql.streaming.queryId"))
        deadline = time.monotonic() + 60
        while query.isActive and time.monotonic() < deadline:
            time.sleep(0.1)
        after_the_stop(batch, groups[0])

    stopping = stopped_in_one_line(spark, write_batch)

    def as_spark_sees_it(batch, batch_id):
        try:
            stopping(batch, batch_id)
        except Exception:
            errors.append(traceback.format_exc())
            raise

    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 1)
        .load()
        .writeStream.foreachBatch(as_spark_sees_it)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .start()
    )
    try:
        assert inside.wait(60), "no micro-batch started"
    finally:
        query.stop()
    return query, errors, groups[0]


def _assert_one_line(error: str) -> str:
    last_line = error.strip().splitlines()[-1]
    assert last_line.startswith(
        "spark.jobs.layers.BatchStopped: batch 0: py4j.protocol.Py4JJavaError: "
        "An error occurred while calling o"
    ), error
    # No JVM stack trace: a few lines Spark matches at once, where the Java trace
    # overflowed the query thread's stack.
    assert len(error) < 2000 and "\tat " not in error, error
    return last_line


def test_a_call_the_stop_interrupts_ends_the_batch_in_one_line_spark_reads_as_a_stop(
    spark, tmp_path
):
    def count(batch, group):
        batch.count()  # the stop has interrupted this thread: the call raises

    query, errors, group = _stop_during_a_batch(spark, tmp_path, count)
    assert query.exception() is None
    assert len(errors) == 1
    assert "Interrupt" in _assert_one_line(errors[0]), errors[0]
    assert _is_interruption(spark, errors[0], group)


def test_a_job_the_stop_cancelled_ends_the_batch_in_one_line_spark_reads_as_a_stop(spark, tmp_path):
    """A stop cancels the query's jobs before it interrupts its thread: a running job can
    fail as cancelled with the query's job group, not as interrupted."""

    def cancelled(batch, group):
        message = f"Job 7 cancelled part of cancelled job group {group}"
        cause = spark._jvm.org.apache.spark.SparkException(message)
        raise Py4JJavaError("An error occurred while calling o42.count.\n", cause)

    query, errors, group = _stop_during_a_batch(spark, tmp_path, cancelled)
    assert query.exception() is None
    assert len(errors) == 1
    last_line = _assert_one_line(errors[0])
    cancellation = f"Job 7 cancelled part of cancelled job group {group}"
    assert last_line.endswith(f"(org.apache.spark.SparkException: {cancellation})"), last_line
    assert _is_interruption(spark, errors[0], group)
    assert not _is_interruption(spark, errors[0], "another-query's-group")


def test_a_cancellation_under_another_exception_is_found_on_its_caused_by_line():
    from spark.jobs.layers import _cancellation

    text = (
        "An error occurred while calling o9.save.\n: java.lang.RuntimeException: write failed\n"
        "\tat x.y(Z.java:1)\nCaused by: org.apache.spark.SparkException: Job 7 cancelled"
        " Query q [id = 1, runId = r-42] was stopped\n\tat a.b(C.java:2)"
    )
    assert _cancellation(text, "r-42") == (
        "org.apache.spark.SparkException: Job 7 cancelled"
        " Query q [id = 1, runId = r-42] was stopped"
    )
    assert _cancellation(text, "another-run") is None and _cancellation(text, None) is None


def test_an_error_raised_from_none_over_an_interruption_is_the_batchs_failure(spark, tmp_path):
    """``raise ... from None`` hides the interruption from the printed error Spark reads:
    the batch failed as it said, and the one-line rewrite must not make it a stop."""

    def refused(batch, group):
        try:
            batch.count()  # interrupted
        except Py4JJavaError:
            raise RuntimeError("the gate refused the batch") from None

    query, errors, group = _stop_during_a_batch(spark, tmp_path, refused)
    assert "the gate refused the batch" in str(query.exception())
    assert len(errors) == 1
    assert errors[0].strip().splitlines()[-1] == "RuntimeError: the gate refused the batch"
    assert not _is_interruption(spark, errors[0], group)


def test_an_interruption_in_a_running_query_fails_it_unchanged(spark, tmp_path):
    """Not stopping: the batch's error, interruption or not, is the query's failure, as
    the batch raised it (Spark then does not read it as a stop)."""
    errors = []

    def write_batch(batch, batch_id):
        raise Py4JJavaError(
            "An error occurred while calling o7.count.\n",
            spark._jvm.java.lang.InterruptedException("not from a stop"),
        )

    stopping = stopped_in_one_line(spark, write_batch)

    def as_spark_sees_it(batch, batch_id):
        try:
            stopping(batch, batch_id)
        except Exception as error:
            errors.append(error)
            raise

    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 1)
        .load()
        .writeStream.foreachBatch(as_spark_sees_it)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .start()
    )
    try:
        with pytest.raises(StreamingQueryException, match="not from a stop"):
            query.awaitTermination(60)  # ends by itself: it failed
    finally:
        query.stop()
    assert query.exception() is not None
    assert len(errors) == 1 and isinstance(errors[0], Py4JJavaError), errors


def test_other_errors_and_interruptions_outside_a_stopping_query_pass_unchanged(spark):
    interrupted = Py4JJavaError(
        "An error occurred while calling o7.count.\n", spark._jvm.java.lang.InterruptedException()
    )
    for error in (ValueError("not a stop"), interrupted):

        def write_batch(batch, batch_id, error=error):
            raise error

        with pytest.raises(type(error)) as raised:
            stopped_in_one_line(spark, write_batch)(spark.range(1), 3)
        assert raised.value is error and not isinstance(raised.value, BatchStopped)
