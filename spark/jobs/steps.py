"""Names for the Spark jobs of each step of a micro-batch, as the Spark UI lists them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession

# SparkContext.SPARK_JOB_DESCRIPTION: a job's description in the UI and its REST API.
JOB_DESCRIPTION = "spark.job.description"


@contextmanager
def step(spark: SparkSession, name: str) -> Iterator[None]:
    """Describe the Spark jobs this thread starts inside the block as ``name``, after the
    description they had: a streaming query's (its name, id and batch), an outer step's.

    So the Spark UI and ``python -m bench.profile`` say which step of which batch each job
    belongs to (``... batch = 0 | silver: gate | validate``). Only the description
    changes: the job group, by which a stopping query cancels its jobs, stays the query's.
    """
    context = spark.sparkContext
    outer = context.getLocalProperty(JOB_DESCRIPTION)
    context.setLocalProperty(JOB_DESCRIPTION, f"{outer} | {name}" if outer else name)
    try:
        yield
    finally:
        context.setLocalProperty(JOB_DESCRIPTION, outer)
