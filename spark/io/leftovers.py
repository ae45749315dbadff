"""What a driver killed at the wrong moment leaves behind, cleared before a job starts.

Each function deletes only what no committed state refers to, so nothing accepted is lost.
"""

from __future__ import annotations

import logging
import re

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_VERSION_FILE = re.compile(r"\d{20}\.")


def clear_unfinished_first_offsets(spark: SparkSession, checkpoint: str) -> list[str]:
    """Delete what a driver killed while writing a query's very first offsets left behind.

    Spark writes ``offsets/0`` as a hidden temporary file, then renames it. A driver
    killed in between leaves ``offsets/.0.<uuid>.tmp`` and no batch file, and Spark then
    refuses the checkpoint for good (``STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY``: a
    query without batches needs an empty ``offsets``). Only in that state (no batch file
    at all) are the temporary files deleted: no batch was planned, so nothing is lost.
    Returns the names deleted.
    """
    offsets, filesystem = _path(spark, f"{checkpoint}/offsets")
    if not filesystem.exists(offsets):
        return []
    names = [status.getPath().getName() for status in filesystem.listStatus(offsets)]
    if _batches(names):
        return []
    unfinished = [name for name in names if name.startswith(".") and name.endswith(".tmp")]
    for name in unfinished:
        filesystem.delete(spark._jvm.org.apache.hadoop.fs.Path(offsets, name), False)
    if unfinished:
        log.warning("%s/offsets: deleted %s left by a killed driver", checkpoint, unfinished)
    return unfinished


def batch_files(spark: SparkSession, folder: str) -> list[str]:
    """The batch files (``7``) of a checkpoint's log folder (``offsets``, ``commits``)."""
    path, filesystem = _path(spark, folder)
    if not filesystem.exists(path):
        return []
    return _batches([status.getPath().getName() for status in filesystem.listStatus(path)])


def _batches(names: list[str]) -> list[str]:
    return [name for name in names if name.isdigit()]


def clear_uncommitted_delta_log(spark: SparkSession, table: str) -> list[str]:
    """Delete a table's ``_delta_log`` directory when it holds no commit.

    Delta creates the directory, writes the first commit as a hidden temporary file
    (``.00000000000000000000.json.<uuid>.tmp``), then renames it. A driver killed in
    between leaves ``_delta_log`` empty or holding only that temporary file, and Delta
    then neither reads the table nor creates it (``DELTA_TABLE_NOT_FOUND`` on
    ``CREATE TABLE``). A table exists only once a version file (``<20 digits>.json``,
    a checkpoint) or ``_last_checkpoint`` does; without one, nothing was ever
    committed, so the directory goes. Returns the names it held.
    """
    delta_log, filesystem = _path(spark, f"{table}/_delta_log")
    if not filesystem.exists(delta_log):
        return []
    files = _files(filesystem, delta_log)
    names = [path.getName() for path in files]
    if _committed(names):
        return []
    # Another run may be creating the table at this moment (its first commit a temporary
    # file still): its files go one by one first, so that its rename can no longer land a
    # commit, and the folder only if still no commit appeared meanwhile.
    for path in files:
        filesystem.delete(path, False)
    if _files(filesystem, delta_log):  # a run creating the table now: its, to finish
        return []
    # Its (empty) subfolders (Delta makes _staged_commits), then itself, none recursively:
    # a commit renamed into the folder after the listing above keeps it, the delete failing.
    try:
        for status in filesystem.listStatus(delta_log):
            if status.isDirectory():
                filesystem.delete(status.getPath(), False)
        filesystem.delete(delta_log, False)
    except Py4JJavaError:
        if _committed([path.getName() for path in _files(filesystem, delta_log)]):
            return []
        raise
    log.warning("%s: deleted a _delta_log without commits (a killed driver's): %s", table, names)
    return names


def _committed(names: list[str]) -> bool:
    return any(_VERSION_FILE.match(name) or name == "_last_checkpoint" for name in names)


def _files(filesystem, folder) -> list:
    """The paths of every file below ``folder``."""
    paths = []
    files = filesystem.listFiles(folder, True)
    while files.hasNext():
        paths.append(files.next().getPath())
    return paths


def _path(spark: SparkSession, location: str):
    path = spark._jvm.org.apache.hadoop.fs.Path(location)
    return path, path.getFileSystem(spark._jsc.hadoopConfiguration())
