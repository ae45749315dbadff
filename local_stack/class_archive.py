"""The Spark driver's class-data-sharing archive: the JVM classes a driver loads, mapped
from one file instead of read and verified from jars at every start.

``python -m local_stack.class_archive`` (``make setup``) runs a small Spark workload
(Delta create, append, MERGE, a streaming ``foreachBatch`` query, silver's parse) in a JVM
started with ``-XX:ArchiveClassesAtExit`` (JDK 13+ dynamic archive). The local profile
then starts its drivers with ``-XX:SharedArchiveFile`` when the archive exists. Measured
on 2 cores: a session alone, 10.5 s without the archive, 6.0-7.3 s with it; a session and
a first Delta write and read, 27.5-31.4 s against 19.6-22.4 s.

The archive is named after what it depends on (the java binary, the pyspark version and
its jars), so a changed JDK or Spark gets a new one. A JVM that cannot use an archive (a
different classpath) starts without it, as it would without the option; its warning is
turned off so that no JVM line reaches a command's output. A JVM maps a truncated archive
to its death (SIGBUS), so setup records the archive's size beside it and a driver maps it
only while it still has that size; ``make setup`` rebuilds one that does not.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from local_stack.settings import JVM_CACHE

log = logging.getLogger(__name__)

ARCHIVE_DIR = JVM_CACHE / "class-archive"
QUIET = "-Xlog:cds=off,cds+dynamic=off"
DUMP_TIMEOUT_S = 600
_WARNED: set[Path] = set()


def archive_path() -> Path | None:
    """Where the archive for this machine's java and pyspark lives; None without java."""
    java = shutil.which("java")
    if java is None:
        return None
    import pyspark

    java_binary = Path(java).resolve()
    jars = sorted(path.name for path in (Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    key = "\n".join(
        [str(java_binary), str(java_binary.stat().st_mtime_ns), pyspark.__version__, *jars]
    )
    return ARCHIVE_DIR / f"driver-{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsa"


def driver_options() -> str:
    """The driver's JVM options that map the archive, or "" when there is none (or it is
    no longer the size it was built with: warned about once per process)."""
    path = archive_path()
    if path is None or not path.is_file():
        return ""
    damage = _damage(path)
    if damage:
        if path not in _WARNED:
            _WARNED.add(path)
            log.warning(
                "class archive %s %s: Spark drivers start without it (slower);"
                " `make setup` rebuilds it",
                path,
                damage,
            )
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}"


def size_record(path: Path) -> Path:
    """Where the size ``path`` was built with is kept."""
    return path.with_name(path.name + ".bytes")


def _damage(path: Path) -> str | None:
    """What is wrong with the archive at ``path``, or None when it is as built."""
    try:
        built = int(size_record(path).read_text().strip())
    except (OSError, ValueError):
        return "has no record of its size (built before sizes were recorded, or damaged)"
    size = path.stat().st_size
    return None if size == built else f"is {size} bytes, built with {built}"


def build() -> Path | None:
    """Dump the archive if this machine has none yet; returns its path."""
    path = archive_path()
    if path is None:
        print("class archive skipped: no java on PATH")
        return None
    if path.is_file():
        damage = _damage(path)
        if damage is None:
            print(f"class archive ready: {path}")
            return path
        print(f"class archive {path} {damage}: building it again")
    ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    try:
        _run("--workload", partial, "not built")
        # A JVM maps an archive it cannot read to its death (a truncated one: SIGBUS), so
        # a driver starts on it once before any other does.
        _run("--check", partial, "unusable")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    for stale in [*ARCHIVE_DIR.glob("driver-*.jsa"), *ARCHIVE_DIR.glob("driver-*.jsa.bytes")]:
        stale.unlink()
    # The size first: an archive without its record is never mapped.
    size_record(path).write_text(f"{partial.stat().st_size}\n")
    partial.rename(path)
    print(f"class archive built: {path} ({path.stat().st_size // 2**20} MiB)")
    return path


def _run(step: str, archive: Path, failure: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "local_stack.class_archive", step, str(archive)],
        capture_output=True,
        text=True,
        timeout=DUMP_TIMEOUT_S,
    )
    if completed.returncode != 0 or not archive.is_file():
        lines = (completed.stderr + completed.stdout).strip().splitlines()
        raise RuntimeError(f"class archive {failure}: {(lines or ['no message'])[-1]}")


def _check(archive: Path) -> None:
    """A session on the archive answers a query."""
    import dataclasses

    from spark.session import build_spark_session
    from spark.settings import load_profile

    profile = load_profile("local", "class-archive")
    conf = dict(profile.spark_conf)
    options = conf.get("spark.driver.extraJavaOptions", "").replace(driver_options(), "")
    crash_log = Path(tempfile.gettempdir()) / "reelhouse-class-archive-hs_err_%p.log"
    conf["spark.driver.extraJavaOptions"] = (
        f"{options} -XX:SharedArchiveFile={archive} {QUIET} -XX:ErrorFile={crash_log}"
    )
    spark = build_spark_session(dataclasses.replace(profile, spark_conf=conf))
    try:
        if spark.range(10).selectExpr("sum(id)").first()[0] != 45:
            sys.exit("a session on the archive gave a wrong sum")
    finally:
        spark.stop()


def _workload(archive: Path) -> None:
    """What a driver of this project loads: a session as the local profile builds it, Delta
    writes, a MERGE, a streaming foreachBatch query and silver's parse, on local disk."""
    import dataclasses

    from pyspark import SparkContext
    from pyspark.sql import functions as F

    from local_stack.simulate.simulation import SimulationRequest, simulate
    from spark.session import build_spark_session
    from spark.settings import load_profile
    from spark.transforms.events import parse_events

    folder = Path(tempfile.mkdtemp(prefix="reelhouse-class-archive-"))
    profile = load_profile("local", "class-archive")
    conf = dict(profile.spark_conf)
    options = conf.get("spark.driver.extraJavaOptions", "").replace(driver_options(), "")
    conf["spark.driver.extraJavaOptions"] = f"{options} -XX:ArchiveClassesAtExit={archive}"
    lake = dataclasses.replace(profile.lake, root=folder.as_uri(), storage_conf={})
    spark = build_spark_session(dataclasses.replace(profile, spark_conf=conf, lake=lake))
    try:
        from delta.tables import DeltaTable

        table = str(folder / "table")
        records = simulate(SimulationRequest(events=200, seed=1, with_truth=False)).records
        bronze = spark.createDataFrame(
            [(r.key, r.value, "warm-up", 0, offset) for offset, r in enumerate(records)],
            "key binary, value binary, topic string, partition int, offset long",
        ).withColumn("kafka_timestamp", F.current_timestamp())
        parsed = parse_events(bronze).drop("extras")
        parsed.write.format("delta").partitionBy("event_date").save(table)
        (
            DeltaTable.forPath(spark, table)
            .alias("target")
            .merge(parsed.alias("source"), "target.offset = source.offset")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )

        def write_batch(batch, batch_id):
            batch.groupBy("region").count().write.format("delta").mode("append").save(
                str(folder / "counts")
            )

        query = (
            spark.readStream.format("delta")
            .load(table)
            .writeStream.foreachBatch(write_batch)
            .option("checkpointLocation", str(folder / "checkpoint"))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        spark.read.format("delta").load(str(folder / "counts")).collect()
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)
    # The JVM writes the archive as it exits, which it does when its stdin closes.
    process = SparkContext._gateway.proc
    process.stdin.close()
    code = process.wait(timeout=DUMP_TIMEOUT_S)
    if code != 0:
        sys.exit(f"the JVM exited with {code} while writing the archive")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--workload"] and len(sys.argv) == 3:
        _workload(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["--check"] and len(sys.argv) == 3:
        _check(Path(sys.argv[2]))
    elif len(sys.argv) == 1:
        try:
            build()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            # An optimisation, never a reason for setup to fail: drivers start without it.
            print(f"warning: {error}; Spark drivers start without a class archive")
    else:
        sys.exit("usage: python -m local_stack.class_archive")
