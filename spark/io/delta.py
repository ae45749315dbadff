"""Delta sinks used inside ``foreachBatch``: idempotent appends keyed by the batch id."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession


class CheckpointLost(RuntimeError):
    """A query would start again from batch 0 into a table that holds its earlier batches."""


def append_idempotent(frame: DataFrame, location: str, app_id: str, batch_id: int) -> None:
    """Append ``frame`` once per (app_id, batch_id), however often the batch is replayed.

    Delta records ``txnAppId``/``txnVersion`` in the commit and skips a write whose
    version it has already committed, which makes multi-table ``foreachBatch`` writes
    exactly-once across driver crashes.
    """
    (
        frame.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", batch_id)
        .save(location)
    )


def committed_version(spark: SparkSession, location: str, app_id: str) -> int | None:
    """The last ``txnVersion`` that ``app_id`` committed to the Delta table at
    ``location``; None when it committed none, or there is no table."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, location):
        return None
    jvm = spark._jvm
    none = jvm.scala.Option.empty()
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, location)
    found = log.update(False, none, none).transactions().get(app_id)
    return int(found.get()) if found.isDefined() else None


def refuse_a_lost_checkpoint(
    spark: SparkSession, checkpoint: str, location: str, app_id: str
) -> None:
    """Raise CheckpointLost when a query without a batch in ``checkpoint`` writes, as
    ``app_id``, into a table that holds batches of ``app_id`` already.

    Its checkpoint was deleted, or ``lake.checkpoint_root`` changed: the query would start
    from its first offsets again, as batch 0, and Delta would skip every batch up to the
    last one committed as written already, records never written among them."""
    offsets = spark._jvm.org.apache.hadoop.fs.Path(f"{checkpoint}/offsets")
    filesystem = offsets.getFileSystem(spark._jsc.hadoopConfiguration())
    if filesystem.exists(offsets) and any(
        status.getPath().getName().isdigit() for status in filesystem.listStatus(offsets)
    ):
        return
    version = committed_version(spark, location, app_id)
    if version is not None:
        raise CheckpointLost(
            f"{location} holds batches 0-{version} of {app_id}, but its checkpoint"
            f" {checkpoint} has none (deleted, or lake.checkpoint_root changed): started"
            " again, it would skip as written every batch up to that one, and lose the"
            " records of its own among them; restore the checkpoint (silver's tables can"
            " also be rebuilt from bronze by the replay flow)"
        )
