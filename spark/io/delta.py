"""Delta sinks used inside ``foreachBatch``: idempotent appends keyed by the batch id."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from spark.io.leftovers import batch_files


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
    """Raise CheckpointLost when the query's checkpoint and the table it appends to as
    ``app_id`` do not belong together, which would lose records without an error.

    A batch N is planned (``offsets/N``), appended (``txnVersion`` N), then committed
    (``commits/N``): a checkpoint and its table agree while the table's last batch lies
    between the checkpoint's last committed and its last planned one. Otherwise:

    - the checkpoint has no batch but the table has (the checkpoint was deleted, or
      ``lake.checkpoint_root`` changed): the query would start from its first offsets
      again as batch 0, and Delta would skip every batch up to the table's last as
      written already, records never written among them;
    - the table has batches the checkpoint never planned (an older copy of the checkpoint
      restored): the query would plan them again over other offsets, and Delta would skip
      them as written, the records new in them lost;
    - the checkpoint committed batches the table does not hold (the table deleted or an
      older copy restored, or ``lake.root`` changed without the checkpoints): the query
      would go on after them, and their records would never reach this table."""
    planned = _last_batch(spark, f"{checkpoint}/offsets")
    committed = _last_batch(spark, f"{checkpoint}/commits")
    version = committed_version(spark, location, app_id)
    if planned is None and version is not None:
        raise CheckpointLost(
            f"{location} holds batches 0-{version} of {app_id}, but its checkpoint"
            f" {checkpoint} has none (deleted, or lake.checkpoint_root changed): started"
            " again, it would skip as written every batch up to that one, and lose the"
            " records of its own among them; restore the checkpoint (silver's tables can"
            " also be rebuilt from bronze by the replay flow)"
        )
    if version is not None and planned is not None and version > planned:
        raise CheckpointLost(
            f"{location} holds batches 0-{version} of {app_id}, but its checkpoint"
            f" {checkpoint} planned batches up to {planned} only (an older copy of it?):"
            f" started, it would plan batches {planned + 1}-{version} again over other"
            " offsets and skip them as written, losing the records new in them; restore"
            f" the checkpoint that wrote batch {version}"
        )
    if committed is not None and (version is None or version < committed):
        holds = "no batch" if version is None else f"batches 0-{version} only"
        raise CheckpointLost(
            f"{location} holds {holds} of {app_id}, but its checkpoint {checkpoint}"
            f" committed batches up to {committed} (the table deleted or an older copy of it"
            " restored, or lake.root changed without lake.checkpoint_root): started, it would"
            " go on after them, and their records would never reach this table; point"
            " lake.root back to the table, or restore it (silver's tables can also be rebuilt"
            " from bronze by the replay flow)"
        )


def _last_batch(spark: SparkSession, folder: str) -> int | None:
    """The highest batch id among a checkpoint log's files (``offsets/7``), None if none."""
    return max(map(int, batch_files(spark, folder)), default=None)
