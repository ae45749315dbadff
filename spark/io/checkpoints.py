"""Checkpoint housekeeping before a streaming query starts."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def clear_unfinished_first_offsets(spark: SparkSession, checkpoint: str) -> list[str]:
    """Delete what a driver killed while writing a query's very first offsets left behind.

    Spark writes ``offsets/0`` as a hidden temporary file, then renames it. A driver
    killed in between leaves ``offsets/.0.<uuid>.tmp`` and no batch file, and Spark then
    refuses the checkpoint for good (``STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY``: a
    query without batches needs an empty ``offsets``). Only in that state (no batch file
    at all) are the temporary files deleted: no batch was planned, so nothing is lost.
    Returns the names deleted.
    """
    jvm = spark._jvm
    offsets = jvm.org.apache.hadoop.fs.Path(f"{checkpoint}/offsets")
    filesystem = offsets.getFileSystem(spark._jsc.hadoopConfiguration())
    if not filesystem.exists(offsets):
        return []
    names = [status.getPath().getName() for status in filesystem.listStatus(offsets)]
    if any(name.isdigit() for name in names):
        return []
    unfinished = [name for name in names if name.startswith(".") and name.endswith(".tmp")]
    for name in unfinished:
        filesystem.delete(jvm.org.apache.hadoop.fs.Path(offsets, name), False)
    if unfinished:
        log.warning("%s/offsets: deleted %s left by a killed driver", checkpoint, unfinished)
    return unfinished
