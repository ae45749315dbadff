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


def _is_interruption(spark, python_error: str) -> bool:
    """Spark's own verdict on the text a failed ``foreachBatch`` hands the JVM: was the
    batch interrupted by its query's stop (True), or did it fail?"""
    jvm = spark._jvm
    error = jvm.py4j.Py4JException(python_error)
    streams = jvm.org.apache.spark.sql.execution.streaming.runtime.StreamExecution
    return streams.isInterruptionException(error, spark._jsc.sc())


def test_a_call_the_stop_interrupts_ends_the_batch_in_one_line_spark_reads_as_a_stop(
    spark, tmp_path
):
    inside, errors = threading.Event(), []

    def write_batch(batch, batch_id):
        inside.set()
        query = spark.streams.get(spark.sparkContext.getLocalProperty("sql.streaming.queryId"))
        deadline = time.monotonic() + 60
        while query.isActive and time.monotonic() < deadline:
            time.sleep(0.1)
        batch.count()  # the stop has interrupted this thread: the call raises

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
    assert query.exception() is None
    assert len(errors) == 1
    last_line = errors[0].strip().splitlines()[-1]
    assert last_line.startswith(
        "spark.jobs.layers.BatchStopped: batch 0: py4j.protocol.Py4JJavaError: "
        "An error occurred while calling o"
    ), errors[0]
    assert "Interrupt" in last_line, errors[0]
    # No JVM stack trace: a few lines Spark matches at once, where the Java trace
    # overflowed the query thread's stack.
    assert len(errors[0]) < 2000 and "\tat " not in errors[0], errors[0]
    assert _is_interruption(spark, errors[0])


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
