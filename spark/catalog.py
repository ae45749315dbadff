"""The tables of the lakehouse: names, schemas, partitioning, descriptions, properties."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from spark import contract
from spark.io.leftovers import clear_uncommitted_delta_log
from spark.settings import Profile, SettingsError

OWNER = "reelhouse-data-platform"


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    schema: T.StructType | None  # None: known from the first batch (gold)
    partition_by: tuple[str, ...]
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def layer(self) -> str:
        return self.name.split(".")[0]


def _silver_schema() -> T.StructType:
    event_fields = [
        T.StructField(f.name, T.TimestampType() if f.name == "event_ts" else f.dataType, True)
        for f in contract.spark_schema().fields
    ]
    return T.StructType(
        [
            *event_fields,
            T.StructField("event_date", T.DateType()),
            T.StructField("event_hour", T.TimestampType()),
            T.StructField("local_date", T.DateType()),
            T.StructField("local_hour", T.IntegerType()),
            T.StructField("extras", T.MapType(T.StringType(), T.StringType())),
            T.StructField("partition", T.IntegerType()),
            T.StructField("offset", T.LongType()),
            T.StructField("kafka_timestamp", T.TimestampType()),
            T.StructField("ingest_ts", T.TimestampType()),
        ]
    )


def _stats_on(*columns: str) -> dict[str, str]:
    """Delta keeps min/max/null-count statistics for data skipping on these columns only.

    By default it keeps them on the first 32 columns, computed for every row written:
    silver's write of 1M events took 14.1-14.6 s with them, 12.1 s with its six.
    Partition columns are pruned without statistics.
    """
    return {"delta.dataSkippingStatsColumns": ",".join(columns)}


# A Kafka record as bronze keeps it: shared by bronze and the quarantine.
_RECORD_AS_RECEIVED = (
    T.StructField("key", T.BinaryType()),
    T.StructField("value", T.BinaryType()),
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("kafka_timestamp", T.TimestampType()),
    T.StructField("ingest_ts", T.TimestampType()),
)

RECORD_AS_RECEIVED = tuple(field.name for field in _RECORD_AS_RECEIVED)

BRONZE_EVENTS = TableSpec(
    name="bronze.events",
    description="Every Kafka record exactly as received (key and value bytes) with its topic, "
    "partition, offset, Kafka timestamp and ingest time. Append-only.",
    schema=T.StructType([*_RECORD_AS_RECEIVED, T.StructField("ingest_date", T.DateType())]),
    partition_by=("ingest_date",),
    properties={
        "delta.appendOnly": "true",
        **_stats_on("partition", "offset", "kafka_timestamp", "ingest_ts"),
    },
)

SILVER_EVENTS = TableSpec(
    name="silver.events",
    description="Viewing events parsed with the contract, validated, deduplicated by event_id; "
    "event_ts in UTC plus event date/hour and the region's local date/hour.",
    schema=_silver_schema(),
    partition_by=("event_date",),
    # event_ts: deduplication reads silver by event time; ids: lookups of one event,
    # user or title.
    properties=_stats_on(
        "event_ts", "event_hour", "event_id", "user_id", "title_id", "kafka_timestamp"
    ),
)

SILVER_QUARANTINE = TableSpec(
    name="silver.quarantine",
    description="Records rejected on their way to silver: raw payload, bronze coordinates "
    "and the list of reason codes.",
    schema=T.StructType(
        [
            T.StructField("layer", T.StringType()),
            T.StructField("batch_id", T.LongType()),
            T.StructField("event_id", T.StringType()),
            T.StructField("reasons", T.ArrayType(T.StringType())),
            *_RECORD_AS_RECEIVED,
            T.StructField("quarantined_ts", T.TimestampType()),
            T.StructField("quarantine_date", T.DateType()),
        ]
    ),
    partition_by=("quarantine_date",),
    properties=_stats_on("batch_id", "event_id", "partition", "offset", "kafka_timestamp"),
)

GOLD_PROPERTIES = {
    "delta.checkpointInterval": "20",
    "delta.autoOptimize.optimizeWrite": "true",
    "delta.autoOptimize.autoCompact": "true",
}

GOLD_TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "gold.title_popularity",
        "Plays, unique viewers and watch minutes per region, "
        "UTC hour and title (most streamed titles by region).",
        None,
        ("event_date",),
        GOLD_PROPERTIES,
    ),
    TableSpec(
        "gold.sessions",
        "One row per viewing session: start, end, duration, titles watched, completed.",
        None,
        ("start_date",),
        GOLD_PROPERTIES,
    ),
    TableSpec(
        "gold.session_stats",
        "Average, median and p90 session duration per region, device type and day.",
        None,
        (),
        GOLD_PROPERTIES,
    ),
    TableSpec(
        "gold.traffic_by_hour",
        "Events and active users per region and local hour.",
        None,
        (),
        GOLD_PROPERTIES,
    ),
    TableSpec(
        "gold.user_engagement",
        "Engagement score and its inputs per user and day.",
        None,
        ("day",),
        GOLD_PROPERTIES,
    ),
    TableSpec(
        "gold.regional_trends",
        "Plays per region, genre and day with day-over-day change.",
        None,
        (),
        GOLD_PROPERTIES,
    ),
    TableSpec(
        "gold.daily_totals",
        "Events counted per UTC day, and the records of that day excluded as arriving "
        "past silver's lateness bound (quarantined as late_arrival).",
        None,
        (),
        GOLD_PROPERTIES,
    ),
)

QUALITY_VALIDATION_EVENTS = TableSpec(
    name="quality.validation_events",
    description="One row per expectation per validated micro-batch of a gated table: its "
    "action (warn, drop, fail), success, element and unexpected counts, a few unexpected "
    "values, when it ran and how long the batch's validation took. Append-only.",
    schema=T.StructType(
        [
            T.StructField("run_id", T.StringType()),
            T.StructField("table", T.StringType()),
            T.StructField("batch_id", T.LongType()),
            T.StructField("expectation", T.StringType()),
            T.StructField("action", T.StringType()),
            T.StructField("success", T.BooleanType()),
            T.StructField("element_count", T.LongType()),
            T.StructField("unexpected_count", T.LongType()),
            T.StructField("unexpected_examples", T.ArrayType(T.StringType())),
            T.StructField("validated_ts", T.TimestampType()),
            T.StructField("duration_ms", T.LongType()),
        ]
    ),
    partition_by=(),
    properties={"delta.appendOnly": "true"},
)

TABLES: tuple[TableSpec, ...] = (
    BRONZE_EVENTS,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
    *GOLD_TABLES,
    QUALITY_VALIDATION_EVENTS,
)


def ensure_table(spark: SparkSession, profile: Profile, spec: TableSpec) -> str:
    """Create the empty Delta table at its location if needed and register it by name.

    The table, its columns, partitioning, description and properties are one commit. For
    specs with a schema; gold's tables are created by their first batch
    (``create_table_with_rows``).
    """
    if spec.schema is None:
        raise ValueError(f"{spec.name} is created with its first batch's rows")
    location = profile.lake.table_location(spec.name)
    if not _delta_table_exists(spark, location):
        clear_uncommitted_delta_log(spark, location)
        spark.sql(
            f"CREATE TABLE IF NOT EXISTS delta.`{location}` ({spec.schema.toDDL()})"
            f" {_definition(spec, profile)}"
        )
    register_table(spark, spec.name, location)
    return location


def create_table_with_rows(
    spark: SparkSession, profile: Profile, spec: TableSpec, rows: DataFrame
) -> str:
    """Create the Delta table at its location with ``rows`` in it, and register it by name.

    The table, its partitioning, description, properties and rows are one commit (a
    CREATE TABLE AS SELECT), which takes the session's ``txnAppId``/``txnVersion`` when
    they are set: a replayed batch finds its rows committed. For tables created by their
    first batch (gold's): creating the table empty, then appending, is two commits (a
    six-table gold batch took 2.4-4.1 s a table that way, 1.6-2.4 s in one).

    OR REPLACE: the caller has found no Delta table there, and a driver killed inside
    this statement leaves its data files in the location without a commit, where a plain
    CREATE TABLE finds a table "already exists". The files stay unreferenced (VACUUM
    removes them).
    """
    location = profile.lake.table_location(spec.name)
    clear_uncommitted_delta_log(spark, location)
    view = "_reelhouse_rows_of_" + spec.name.replace(".", "_")
    rows.createOrReplaceTempView(view)
    try:
        spark.sql(
            f"CREATE OR REPLACE TABLE delta.`{location}` {_definition(spec, profile)}"
            f" AS SELECT * FROM {view}"
        )
    finally:
        spark.catalog.dropTempView(view)
    register_table(spark, spec.name, location)
    return location


def _definition(spec: TableSpec, profile: Profile) -> str:
    """What a CREATE TABLE states after the table's name and columns: the format,
    partitioning, description and properties (the workspace's identity, then the spec's)."""
    properties = {**_identity(spec, profile), **spec.properties}
    listed = ", ".join(
        f"{_sql_text(key)} = {_sql_text(value)}" for key, value in properties.items()
    )
    partitioned = f" PARTITIONED BY ({', '.join(spec.partition_by)})" if spec.partition_by else ""
    return (
        f"USING DELTA{partitioned} COMMENT {_sql_text(spec.description)} TBLPROPERTIES ({listed})"
    )


def _identity(spec: TableSpec, profile: Profile) -> dict[str, str]:
    return {
        "reelhouse.layer": spec.layer,
        "reelhouse.owner": OWNER,
        "reelhouse.workspace": profile.workspace,
    }


def _sql_text(text: str) -> str:
    """``text`` as a Spark SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def register_table(spark: SparkSession, name: str, location: str) -> None:
    """Point ``name`` at ``location`` in this session (the data is never touched)."""
    layer = name.split(".")[0]
    if not spark.catalog.databaseExists(layer):
        # Spark 4.2 runs a CREATE DATABASE IF NOT EXISTS of an existing database as a
        # create, and warns "Namespace ... was created concurrently" (every table, every run).
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
    current = registered_location(spark, name)
    if current is not None:
        if current.rstrip("/") == location.rstrip("/").replace("file:///", "file:/"):
            return
        drop_registrations(spark, [name])
    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{location}'")


class CatalogConflict(SettingsError):
    """A table of one of the project's names that the project did not register."""


def drop_registrations(spark: SparkSession, names: list[str]) -> None:
    """Drop each of ``names`` that is an external table, as the project registers its
    tables (the data stays where it is). A managed table of one of them, whose data a DROP
    would delete (a persistent catalog, as a cluster's metastore, may hold one), is refused
    before any name is dropped."""
    found = {name: _registration(spark, name) for name in names}
    for name, registration in found.items():
        if registration is not None and registration[1] != "EXTERNAL":
            location, kind = registration
            raise CatalogConflict(
                f"table {name} is a {kind.lower() or 'non-external'} table at {location}, not"
                " one reelhouse registered (those are external): dropping its name would"
                " delete its data; rename it, or drop it yourself"
            )
    for name, registration in found.items():
        if registration is not None:
            spark.sql(f"DROP TABLE IF EXISTS {name}")


def registered_location(spark: SparkSession, name: str) -> str | None:
    """Where the table ``name`` points in this session, from the catalog alone; None when
    no table has that name.

    Not ``DESCRIBE DETAIL``, ``DESCRIBE TABLE`` or ``catalog.tableExists``: they open the
    Delta table, and so fail once its location is gone (a workspace dropped while the
    session lives), and ``DESCRIBE DETAIL`` computes its size and file count with a Spark
    job (0.6-1.3 s for a table the session has not read: each workspace a session moves to).
    """
    found = _registration(spark, name)
    return None if found is None else found[0]


def _registration(spark: SparkSession, name: str) -> tuple[str, str] | None:
    """The location and type (``EXTERNAL``, ``MANAGED``) of table ``name`` in the catalog;
    None when there is none (nor its database: a session's catalog starts without them)."""
    layer, table = name.split(".")
    if not spark.catalog.databaseExists(layer):
        return None
    for row in spark.sql(f"SHOW TABLE EXTENDED IN {layer} LIKE '{table}'").collect():
        if row.tableName != table:
            continue
        fields = dict(line.split(": ", 1) for line in row.information.splitlines() if ": " in line)
        return fields.get("Location", ""), fields.get("Type", "").upper()
    return None


def gold_spec(name: str) -> TableSpec:
    return next(spec for spec in GOLD_TABLES if spec.name == name)


def register_existing_tables(spark: SparkSession, profile: Profile) -> list[TableSpec]:
    """Register by name every table of the workspace that exists in the lake."""
    registered = []
    for spec in TABLES:
        location = profile.lake.table_location(spec.name)
        if _delta_table_exists(spark, location):
            register_table(spark, spec.name, location)
            registered.append(spec)
    return registered


def _delta_table_exists(spark: SparkSession, location: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, location)
