"""The promotion-gate hook: how a quality package gates every micro-batch of a layer.

``spark`` does not know which checks run: a package registers a gate factory under
the ``reelhouse.gates`` entry point (``quality`` does), and the jobs call the gate inside
``foreachBatch`` before they write to the next layer. With no gate registered, every
row is promoted.
"""

from __future__ import annotations

from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Protocol

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark.settings import Profile

ENTRY_POINT_GROUP = "reelhouse.gates"


class GateFailure(RuntimeError):
    """A ``fail`` expectation was violated: nothing of the batch may be promoted."""


@dataclass
class GateOutcome:
    """What a gate decided for one micro-batch."""

    promote: DataFrame  # rows to write to the table
    rejected: DataFrame | None = None  # rows to quarantine, with a ``reasons`` array column
    recorded: Future | None = None  # the gate's record of the batch, written meanwhile

    def settle(self) -> None:
        """Wait until the gate's record of the batch is written (raise if it failed).

        Jobs call it after their own writes, before ``foreachBatch`` returns: a batch
        the query commits is on record.
        """
        if self.recorded is not None:
            self.recorded.result()


class Gate(Protocol):
    def __call__(self, table: str, batch: DataFrame, batch_id: int) -> GateOutcome:
        """Validate ``batch`` bound for ``table``; raise GateFailure to stop promotion."""
        ...

    def with_drops(self, table: str, batch: DataFrame, column: str) -> DataFrame:
        """``batch`` with a boolean ``column``: true for the rows this gate would drop from
        it bound for ``table`` (never null); for a job choosing among copies of an event
        before it gates the one it keeps."""
        ...

    def recorded_together(self, name: str, batch_id: int) -> AbstractContextManager:
        """Keep the records of the gate calls made inside (by this thread) until the block
        ends, then write them as one, as ``name``'s batch ``batch_id``: for a job that
        gates several tables per micro-batch."""
        ...


class PromoteEverything:
    """The gate used when no quality package is installed."""

    def __call__(self, table: str, batch: DataFrame, batch_id: int) -> GateOutcome:
        return GateOutcome(promote=batch, rejected=None)

    def with_drops(self, table: str, batch: DataFrame, column: str) -> DataFrame:
        return batch.withColumn(column, F.lit(False))

    def recorded_together(self, name: str, batch_id: int) -> AbstractContextManager:
        return nullcontext()


def load_gate(profile: Profile, run_id: str) -> Gate:
    """The registered gate for this profile and run (or one that promotes everything)."""
    factories = list(entry_points(group=ENTRY_POINT_GROUP))
    if not factories:
        return PromoteEverything()
    return factories[0].load()(profile, run_id)


def with_reason(rejected: DataFrame, reason: str) -> DataFrame:
    """Mark rejected rows with one reason code (the gate's expectation name)."""
    return rejected.withColumn("reasons", F.array(F.lit(reason)))
