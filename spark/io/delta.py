"""Delta sinks used inside ``foreachBatch``: idempotent appends keyed by the batch id."""

from __future__ import annotations

from pyspark.sql import DataFrame


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
