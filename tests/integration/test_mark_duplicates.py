"""Silver's choice among an event's copies, with Kafka coordinates broadcast or joined by
shuffle (a batch above ``BROADCAST_ROWS_LIMIT`` rows)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from spark.transforms.events import REJECTED, mark_duplicates

pytestmark = pytest.mark.integration

# (event_id, partition, offset) on one topic.
ROWS = [
    ("a", 0, 5),  # the gate would reject this copy: the later good one is kept
    ("a", 1, 2),
    ("b", 0, 1),  # the first of three good copies is kept
    ("b", 0, 3),
    ("b", 1, 0),
    ("c", 0, 2),  # already in silver
    ("d", 1, 1),  # the only copy
    ("e", 1, 4),  # in silver as itself: a replayed batch's own event, no duplicate
    (None, 1, 3),  # no id: a copy of nothing
]
DUPLICATES = {(0, 5), (0, 3), (1, 0), (0, 2)}


def _marked(spark, broadcast: bool):
    events = spark.createDataFrame(
        [(event_id, "events", partition, offset) for event_id, partition, offset in ROWS],
        "event_id string, topic string, partition int, offset bigint",
    )
    seen = spark.createDataFrame(  # silver's copies
        [("c", 1, 7), ("e", 1, 4)], "event_id string, partition int, offset bigint"
    )

    def with_rejected(copies):
        return copies.withColumn(REJECTED, (F.col("partition") == 0) & (F.col("offset") == 5))

    return mark_duplicates(events, seen, with_rejected, broadcast=broadcast)


@pytest.mark.parametrize("broadcast", [True, False], ids=["broadcast", "shuffle"])
def test_each_event_keeps_one_copy_the_gate_would_not_reject(spark, broadcast):
    rows = _marked(spark, broadcast).collect()

    assert len(rows) == len(ROWS)
    assert {(row.partition, row.offset) for row in rows if row.duplicate_of_earlier} == DUPLICATES


def test_a_batch_above_the_limit_broadcasts_nothing_spark_would_not(spark):
    """With Spark's own broadcasts off, only the hints could broadcast."""
    thresholds = (
        "spark.sql.autoBroadcastJoinThreshold",
        "spark.sql.adaptive.autoBroadcastJoinThreshold",
    )
    before = {key: spark.conf.get(key, None) for key in thresholds}
    try:
        for key in thresholds:
            spark.conf.set(key, "-1")
        plans = {
            broadcast: _marked(spark, broadcast)._jdf.queryExecution().executedPlan().toString()
            for broadcast in (True, False)
        }
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
    assert plans[True].count("BroadcastExchange") == 2
    assert "Broadcast" not in plans[False]
