"""The names the layers give their Spark jobs, step by step."""

from __future__ import annotations

import pytest

from spark.jobs.steps import JOB_DESCRIPTION, step

pytestmark = pytest.mark.unit

BATCH = "main.silver.events id = 5d0c runId = 9e1a batch = 0"


def test_a_step_follows_the_batch_description_and_gives_it_back(spark):
    context = spark.sparkContext
    context.setLocalProperty(JOB_DESCRIPTION, BATCH)  # as a streaming query sets it
    try:
        with step(spark, "silver: gate"):
            assert context.getLocalProperty(JOB_DESCRIPTION) == f"{BATCH} | silver: gate"
            with step(spark, "count"):
                assert (
                    context.getLocalProperty(JOB_DESCRIPTION) == f"{BATCH} | silver: gate | count"
                )
            assert context.getLocalProperty(JOB_DESCRIPTION) == f"{BATCH} | silver: gate"
        with pytest.raises(RuntimeError), step(spark, "silver: write"):
            raise RuntimeError("the write failed")
        assert context.getLocalProperty(JOB_DESCRIPTION) == BATCH
    finally:
        context.setLocalProperty(JOB_DESCRIPTION, None)


def test_a_step_outside_a_query_is_the_whole_description(spark):
    context = spark.sparkContext
    with step(spark, "gold: days touched"):
        assert context.getLocalProperty(JOB_DESCRIPTION) == "gold: days touched"
    assert context.getLocalProperty(JOB_DESCRIPTION) is None
