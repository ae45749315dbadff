"""Table maintenance and replay: compaction, vacuum, checkpoints, downstream reset."""

from __future__ import annotations

import logging
import numbers
import re

from pyspark.sql import SparkSession

from spark.catalog import TABLES, drop_registrations
from spark.settings import Profile

log = logging.getLogger(__name__)

MIN_VACUUM_RETENTION_HOURS = 168  # a week: never remove files a reader may still need
MAX_VACUUM_RETENTION_HOURS = 24 * 366 * 100  # a century: beyond, VACUUM has nothing to do

# What replay rebuilds from bronze, and the checkpoints that feed it.
DOWNSTREAM_OF_BRONZE = {
    "tables": [spec.name for spec in TABLES if spec.layer in ("silver", "gold")],
    # "gold": the gold query's checkpoint before it read the quarantine too (GOLD_CHECKPOINT).
    "checkpoints": ["silver_events", "gold", "gold_v2"],
}


def optimize_tables(spark: SparkSession, profile: Profile) -> dict[str, dict]:
    """Compact small files (Delta OPTIMIZE) of every existing table."""
    from delta.tables import DeltaTable

    results = {}
    for spec in TABLES:
        location = profile.lake.table_location(spec.name)
        if DeltaTable.isDeltaTable(spark, location):
            metrics = DeltaTable.forPath(spark, location).optimize().executeCompaction()
            row = metrics.select("metrics.numFilesAdded", "metrics.numFilesRemoved").first()
            results[spec.name] = {"files_added": row[0], "files_removed": row[1]}
    return results


def check_retention(retention_hours) -> int:
    """A whole number of hours from the floor (168) to a century; ValueError in one line."""
    whole = isinstance(retention_hours, numbers.Integral) or (
        isinstance(retention_hours, float) and retention_hours.is_integer()
    )
    if isinstance(retention_hours, bool) or not whole:
        raise ValueError(f"retention_hours={retention_hours!r} is not a whole number of hours")
    retention_hours = int(retention_hours)
    if retention_hours < MIN_VACUUM_RETENTION_HOURS:
        raise ValueError(
            f"retention_hours={retention_hours} is below the floor of"
            f" {MIN_VACUUM_RETENTION_HOURS} hours"
        )
    if retention_hours > MAX_VACUUM_RETENTION_HOURS:
        # Not str() of a huge number: Python refuses over 4,300 digits.
        shown = retention_hours if retention_hours < 10**15 else "a number over 10^15"
        raise ValueError(
            f"retention_hours={shown} is more than a century ({MAX_VACUUM_RETENTION_HOURS} hours)"
        )
    return retention_hours


# Delta 4 ignores VACUUM's retention argument (unless 0; its internal setting
# spark.databricks.delta.vacuum.retentionWindowIgnore.enabled, on by default) and keeps the
# files this table property says (default a week), as it bounds time travel by it; Delta
# requires it to be at most the log's retention (default 30 days).
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"
LOG_RETENTION_PROPERTY = "delta.logRetentionDuration"
_DEFAULT_HOURS = {RETENTION_PROPERTY: 168.0, LOG_RETENTION_PROPERTY: 720.0}
_INTERVAL_PART = re.compile(r"(\d+)\s*(week|day|hour|minute|second)s?", re.IGNORECASE)
_UNIT_HOURS = {"week": 168.0, "day": 24.0, "hour": 1.0, "minute": 1 / 60, "second": 1 / 3600}


def interval_hours(properties: dict, name: str) -> float | None:
    """A Delta interval property (``interval 30 days``, ``interval 1 week 2 days``) in
    hours, Delta's default when unset; None for a form this does not read."""
    value = properties.get(name)
    if value is None:
        return _DEFAULT_HOURS[name]
    text = value.strip().lower().removeprefix("interval")
    parts = _INTERVAL_PART.findall(text)
    if not parts or _INTERVAL_PART.sub("", text).strip():
        return None
    return sum(int(number) * _UNIT_HOURS[unit.lower()] for number, unit in parts)


def retention_changes(properties: dict, retention_hours: int) -> dict[str, str]:
    """The table properties to set so that VACUUM keeps ``retention_hours``: the files'
    retention, and beside it the log's. Delta checks the files' retention against the log's
    given in the same statement, or else against the default (30 days), not the table's:
    the log's is raised to the files' when shorter, and over 30 days goes along as it is."""
    wanted = f"interval {retention_hours} hours"
    log_hours = interval_hours(properties, LOG_RETENTION_PROPERTY)  # unset: 720
    log_short = log_hours is not None and log_hours < retention_hours  # or lowered by hand
    if interval_hours(properties, RETENTION_PROPERTY) == retention_hours and not log_short:
        return {}
    changes = {RETENTION_PROPERTY: wanted}
    if log_short:
        changes[LOG_RETENTION_PROPERTY] = wanted
    elif retention_hours > _DEFAULT_HOURS[LOG_RETENTION_PROPERTY]:
        # Set (unset would be short), and longer or a form not read here: Delta judges it.
        changes[LOG_RETENTION_PROPERTY] = properties[LOG_RETENTION_PROPERTY]
    return changes


def vacuum_changes(properties: dict, retention_hours: int | None) -> dict[str, str]:
    """The table properties to set before a VACUUM: for ``retention_hours``, as
    ``retention_changes`` says; without one (the nightly run), none unless the table keeps
    its files less than the floor (a week), then the floor's. A table whose retention was
    raised on purpose (30 days for time travel, or for a stream stopped a while) keeps it
    night after night."""
    if retention_hours is not None:
        return retention_changes(properties, check_retention(retention_hours))
    kept = interval_hours(properties, RETENTION_PROPERTY)
    if kept is None:
        raise UnreadRetention(
            f"{RETENTION_PROPERTY} = {properties.get(RETENTION_PROPERTY)!r} is not a form this"
            " run reads (weeks, days, hours, minutes, seconds): not vacuumed, since it may be"
            f" under the floor of {MIN_VACUUM_RETENTION_HOURS} hours; set it, or give"
            " retention_hours"
        )
    if kept >= MIN_VACUUM_RETENTION_HOURS:
        return {}
    return retention_changes(properties, MIN_VACUUM_RETENTION_HOURS)


class UnreadRetention(ValueError):
    """A table's retention property in a form ``interval_hours`` does not read."""


def vacuum_tables(
    spark: SparkSession, profile: Profile, retention_hours: int | None = None
) -> list[str]:
    """VACUUM every existing table, never below the retention floor: a given retention
    becomes each table's ``delta.deletedFileRetentionDuration`` first (a metadata commit,
    when it changes), which is what Delta's VACUUM keeps files by; without one, each table
    keeps its own (``vacuum_changes``)."""
    from delta.tables import DeltaTable

    if retention_hours is not None:
        retention_hours = check_retention(retention_hours)
    done = []
    for spec in TABLES:
        location = profile.lake.table_location(spec.name)
        if DeltaTable.isDeltaTable(spark, location):
            table = DeltaTable.forPath(spark, location)
            try:
                changes = vacuum_changes(table.detail().first()["properties"], retention_hours)
            except UnreadRetention as error:  # the other tables are still vacuumed
                log.warning("%s: %s", spec.name, error)
                continue
            if changes:
                settings = ", ".join(f"'{name}' = '{value}'" for name, value in changes.items())
                spark.sql(f"ALTER TABLE delta.`{location}` SET TBLPROPERTIES ({settings})")
            table.vacuum()
            done.append(spec.name)
    return done


def checkpoint_tables(spark: SparkSession, profile: Profile) -> list[str]:
    """Write a Delta log checkpoint for every existing table (faster snapshot loading)."""
    from delta.tables import DeltaTable

    done = []
    for spec in TABLES:
        location = profile.lake.table_location(spec.name)
        if DeltaTable.isDeltaTable(spark, location):
            log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(
                spark._jsparkSession, location
            )
            log.checkpoint()
            done.append(spec.name)
    return done


def reset_downstream(spark: SparkSession, profile: Profile) -> list[str]:
    """Delete silver and gold tables and their checkpoints so they rebuild from bronze.

    Refused, with nothing deleted, when the workspace has no ``bronze.events`` to rebuild
    them from (a mistyped workspace, or one whose bronze never ran)."""
    from delta.tables import DeltaTable

    bronze = profile.lake.table_location("bronze.events")
    if not DeltaTable.isDeltaTable(spark, bronze):
        raise RuntimeError(
            f"workspace {profile.workspace!r} has no bronze.events at {bronze}: nothing to"
            " replay silver and gold from; nothing was deleted"
        )
    # The names first: a managed table of one of them is refused before anything is deleted.
    drop_registrations(spark, DOWNSTREAM_OF_BRONZE["tables"])
    removed = []
    # The checkpoints before the tables: a replay killed in between leaves tables without
    # checkpoints, which the layers refuse naming the replay flow, to be run again.
    paths = [profile.lake.checkpoint_location(name) for name in DOWNSTREAM_OF_BRONZE["checkpoints"]]
    paths += [profile.lake.table_location(name) for name in DOWNSTREAM_OF_BRONZE["tables"]]
    jvm = spark._jvm
    configuration = spark._jsc.hadoopConfiguration()
    for path in paths:
        hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
        filesystem = hadoop_path.getFileSystem(configuration)
        if filesystem.exists(hadoop_path):
            filesystem.delete(hadoop_path, True)
            removed.append(path)
    return removed
