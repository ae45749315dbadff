"""The one place a SparkSession is built."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pyspark.sql import SparkSession

from spark.settings import BLOB_SERVICE_TYPE, Profile

_DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Jars come from spark.jars (the project's Maven cache); never resolve at run time.
    "spark.jars.ivySettings": "",
}
# A driver runs the same plans every micro-batch (three layers, their gates, Delta's
# own queries): its generated classes must stay cached. With Spark's default of 100
# entries they are evicted before their next batch and compiled again: a warm gold
# batch compiled 450 classes, 14 with this (silver: 151 against 9).
ENGINE_CONF = {"spark.sql.codegen.cache.maxEntries": "2000"}
# Silver's event_date and event_hour, gold's days and the local hours' conversion read
# timestamps in the session's time zone, which is the driver's clock unless set: the lake's
# keys are UTC on every profile and driver (a profile may not set another zone).
TIME_ZONE = {"spark.sql.session.timeZone": "UTC"}


# Secrets this project hands to Spark: Event Hubs connection strings (SharedAccessKey=),
# SAS tokens (sig=), storage account keys, client secrets, and the JAAS strings that carry
# them. Keys matching REDACT_KEYS and values matching REDACT_VALUES are masked in the UI,
# event log, explain output and error messages.
REDACT_KEYS = (
    r"(?i)secret|password|token|access[.]?key|account[.]key|sasl[.]jaas[.]config"
    r"|connection[.]?string|credential"
)
REDACT_VALUES = (
    r"(?i)(SharedAccessKey=[^;\"\s]+|SharedAccessSignature[^;\"]*|sig=[^&;\"\s]+"
    # A JAAS value in quotes may hold an escaped quote or backslash (\" \\).
    r"|AccountKey=[^;\"\s]+|password=\"(?:[^\"\\]|\\.)*\"|clientSecret=\"(?:[^\"\\]|\\.)*\")"
)
REDACTION_CONF = {
    "spark.redaction.regex": REDACT_KEYS,
    "spark.redaction.string.regex": REDACT_VALUES,
    "spark.sql.redaction.options.regex": REDACT_KEYS + r"|url",
    "spark.sql.redaction.string.regex": REDACT_VALUES,
}
# Every JVM of the job (driver and executors) runs with these, before any a profile adds.
# Whole-stage code generation puts silver's parse and checks into one generated method
# larger than HotSpot's 8,000-byte limit for JIT compilation, and such a method stays in
# the bytecode interpreter: 1M events, parse_events 34 s interpreted against 25.5 s
# compiled (noop write, the same machine and session).
JVM_OPTIONS = "-XX:-DontCompileHugeMethods"
_JAVA_OPTIONS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")
# hadoop-azure's logger of a listed path's time it cannot parse.
LISTED_DATES_LOGGER = "org.apache.hadoop.fs.azurebfs.utils.DateTimeUtils"

# Redaction settings a running session takes at run time (the SQL ones).
_RUNTIME_REDACTION = ("spark.sql.redaction.options.regex", "spark.sql.redaction.string.regex")


def build_spark_session(profile: Profile, app_name: str = "reelhouse") -> SparkSession:
    """Build (or return the running) SparkSession configured by ``profile``."""
    builder = SparkSession.builder.appName(app_name).master(profile.spark_master)
    conf = {**_DELTA_CONF, **ENGINE_CONF, **REDACTION_CONF, **profile.spark_conf, **TIME_ZONE}
    for key in _JAVA_OPTIONS:
        conf[key] = f"{JVM_OPTIONS} {profile.spark_conf.get(key, '')}".strip()
    for key, value in conf.items():
        if value != "":
            builder = builder.config(key, value)
    for key, value in profile.lake.storage_conf.items():
        builder = builder.config(f"spark.hadoop.{key}", value)
    _ensure_local_event_log_dir(conf)
    session = builder.getOrCreate()
    # getOrCreate may return a running session: hand it this profile's storage settings
    # (Spark copies session settings into every Hadoop configuration it builds).
    for key, value in profile.lake.storage_conf.items():
        session.conf.set(key, value)
    for key in _RUNTIME_REDACTION:
        session.conf.set(key, REDACTION_CONF[key])
    for key, value in TIME_ZONE.items():
        session.conf.set(key, value)
    session.sparkContext.setLogLevel("WARN")
    if profile.lake.storage_conf.get(BLOB_SERVICE_TYPE, "").upper() == "BLOB":
        _quiet_folder_dates(session)
    _jvm_leaves_sigterm_to_python(session)
    return session


def _quiet_folder_dates(session: SparkSession) -> None:
    """Over the Blob endpoint (Azurite), a listing returns each folder as a prefix without a
    Last-Modified time; hadoop-azure 3.5.0 logs ``ERROR DateTimeUtils: Failed to parse the
    date null`` for every one and takes 0. VACUUM lists a table's root that way (its
    ``_delta_log`` and partition folders: three errors for a table with two partitions) and
    deletes a folder only when no file in it is kept, whatever its time. Files carry their
    times, so only this driver's (and local executors') logger is turned off, not the times.
    """
    jvm = session.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        LISTED_DATES_LOGGER, jvm.org.apache.logging.log4j.Level.OFF
    )


def _jvm_leaves_sigterm_to_python(session: SparkSession) -> None:
    """The Python driver stops the JVM it launched, not the other way round.

    PySpark starts its JVM ignoring SIGINT, so Ctrl-C reaches the driver only. SIGTERM is
    as often sent to a whole process group or service (systemd's default stop, ``timeout``,
    ``kill -- -PGID``, a shell's ``kill %1``): the JVM's shutdown hooks then stopped the
    SparkContext under the driver's own graceful stop of its queries, which ended in a
    ``Cannot call methods on a stopped SparkContext`` traceback and exit code 1. The JVM
    now ignores SIGTERM; it exits when the driver does (PySpark's gateway exits when its
    stdin pipe closes), and SIGKILL still kills it. A JVM this process did not launch is
    left as it is.
    """
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None or getattr(gateway, "proc", None) is None:
        return
    jvm = session.sparkContext._jvm
    jvm.sun.misc.Signal.handle(jvm.sun.misc.Signal("TERM"), jvm.sun.misc.SignalHandler.SIG_IGN)


def _ensure_local_event_log_dir(conf: dict[str, str]) -> None:
    """Spark checks that its event log folder exists and never creates it: on a fresh
    machine a session with the event log on would not start. Create a local one."""
    if conf.get("spark.eventLog.enabled", "").strip().lower() != "true":
        return
    folder = conf.get("spark.eventLog.dir") or "file:/tmp/spark-events"
    parts = urlsplit(folder)
    if parts.scheme in ("", "file"):
        Path(parts.path).mkdir(parents=True, exist_ok=True)
