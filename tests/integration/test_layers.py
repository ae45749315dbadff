"""Bronze and silver against the real broker and lake: accounting, exactly-once, drift, errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime

import psutil
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from flows.streaming import batch_size
from local_stack.simulate.faults import FAULT_KINDS, encode
from local_stack.simulate.simulation import SimulationRequest, simulate
from local_stack.topics import ensure_topic
from spark.catalog import (
    BRONZE_EVENTS,
    GOLD_PROPERTIES,
    SILVER_EVENTS,
    SILVER_QUARANTINE,
    create_table_with_rows,
    ensure_table,
    gold_spec,
    register_table,
    registered_location,
)
from spark.gates import load_gate
from spark.io.delta import CheckpointLost, append_idempotent
from spark.io.leftovers import clear_uncommitted_delta_log
from spark.jobs.gold import GOLD_CHECKPOINT
from spark.jobs.layers import Trigger, query_name, start_bronze, start_silver
from spark.run import Interrupted, run_layers
from spark.settings import load_profile
from spark.transforms import gold
from tests.conftest import expected_quarantine_reasons, produce_records
from tests.integration.conftest import EVENTS, driver_time_zone, workspace_of
from tests.integration.gold_truth import assert_gold_equals_truth

pytestmark = pytest.mark.integration

# The reference run (``reference``) is the session's; its kill -9 twin (``crash_run``)
# starts with this module and runs while the other tests run; ``test_recovery`` comes
# after them (conftest). Not earlier: the suite is CPU-bound on 2 cores, and started with
# the first integration test the run slowed the azure flow run and the Prefect deployment
# run beside it (suite 1,512 -> 1,860 s, a CPU sampler running); running those two in the
# background too saved nothing (1,549 s).


@pytest.fixture(scope="session", autouse=True)
def _kill_9_run_started(request) -> None:
    if any("crash_run" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("crash_run")


def _table(spark, profile, name):
    return spark.read.format("delta").load(profile.lake.table_location(name))


def test_every_record_is_accounted_for_exactly_once(spark, reference, simulation):
    manifest = simulation.manifest
    bronze = _table(spark, reference, "bronze.events")
    silver = _table(spark, reference, "silver.events")
    quarantine = _table(spark, reference, "silver.quarantine")

    assert bronze.count() == manifest["records"] == EVENTS + sum(manifest["faults"].values())
    assert bronze.select("partition", "offset").distinct().count() == manifest["records"]
    sent = Counter(record.value for record in simulation.records)
    assert Counter(bytes(row.value) for row in bronze.select("value").collect()) == sent

    coordinates = bronze.select("partition", "offset")
    promoted = silver.select("partition", "offset")
    rejected = quarantine.select("partition", "offset")
    assert promoted.intersect(rejected).count() == 0
    assert promoted.unionByName(rejected).exceptAll(coordinates).count() == 0
    assert coordinates.exceptAll(promoted.unionByName(rejected)).count() == 0

    # Every fault is quarantined with exactly the reason of the rule it breaks (the silver
    # suite's check for column rules, silver's reason code for the rest); no clean event is.
    reasons = Counter(tuple(row.reasons) for row in quarantine.select("reasons").collect())
    assert reasons == expected_quarantine_reasons(simulation)
    assert sum(reasons.values()) == sum(manifest["faults"].values())
    assert set(manifest["faults"]) == set(FAULT_KINDS)
    clean_ids = {payload["event_id"] for payload in simulation.clean_payloads}
    silver_ids = [row.event_id for row in silver.select("event_id").collect()]
    assert len(silver_ids) == EVENTS and set(silver_ids) == clean_ids


def test_silver_derives_utc_and_local_time(spark, reference, simulation):
    silver = _table(spark, reference, "silver.events")
    sample = {p["event_id"]: p for p in simulation.clean_payloads[:200]}
    rows = silver.filter(F.col("event_id").isin(list(sample))).collect()
    assert len(rows) == 200
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from spark.contract import region_timezones

    for row in rows:
        moment = datetime.fromisoformat(sample[row.event_id]["event_ts"])
        local = moment.astimezone(ZoneInfo(region_timezones()[row.region]))
        assert row.event_ts.replace(tzinfo=UTC) == moment.astimezone(UTC).replace(
            microsecond=moment.microsecond
        )
        assert (row.local_date, row.local_hour) == (local.date(), local.hour)
        assert row.event_date == moment.astimezone(UTC).date()


def test_tables_are_registered_by_name_with_descriptions(spark, reference):
    from spark.tables import describe_tables

    tables = {table["name"]: table for table in describe_tables(spark, reference)}
    assert tables["bronze.events"]["rows"] == spark.table("bronze.events").count()
    properties = {
        row.key: row.value for row in spark.sql("SHOW TBLPROPERTIES silver.events").collect()
    }
    assert properties["reelhouse.layer"] == "silver"
    assert "delta.appendOnly" in {
        row.key for row in spark.sql("SHOW TBLPROPERTIES bronze.events").collect()
    }
    for spec in (BRONZE_EVENTS, SILVER_EVENTS, SILVER_QUARANTINE):
        # Statistics for data skipping on the columns queries filter by, not all of them.
        assert "delta.dataSkippingStatsColumns" in spec.properties, spec.name
        assert spec.properties.items() <= _detail(spark, reference, spec.name)["properties"].items()
    for name in gold.KEYS:
        detail = _detail(spark, reference, name)
        assert detail["description"] == gold_spec(name).description, name
        assert GOLD_PROPERTIES.items() <= detail["properties"].items(), name
        assert detail["properties"]["reelhouse.layer"] == "gold", name


def test_a_gold_table_is_created_with_its_first_rows_in_one_commit_over_a_killed_try(
    stack, spark, profile
):
    """Gold's first batch creates each table with its rows and the batch's transaction in
    one commit. A driver killed inside that commit leaves data files and an empty
    _delta_log: the next try creates the table all the same, and a replay of the batch
    adds nothing."""
    killed = load_profile("local", f"{profile.workspace}-gold-created")
    spec = gold_spec("gold.user_engagement")
    location = killed.lake.table_location(spec.name)
    rows = spark.createDataFrame(
        [("u1", date(2026, 11, 1), 3.5), ("u2", date(2026, 11, 2), 1.0)],
        "user_id string, day date, score double",
    )
    rows.limit(1).write.parquet(f"{location}/day=2026-11-01")  # the killed try's files
    delta_log = spark._jvm.org.apache.hadoop.fs.Path(f"{location}/_delta_log")
    delta_log.getFileSystem(spark._jsc.hadoopConfiguration()).mkdirs(delta_log)

    spark.conf.set("spark.databricks.delta.write.txnAppId", "gold-created")
    spark.conf.set("spark.databricks.delta.write.txnVersion", "0")
    try:
        assert create_table_with_rows(spark, killed, spec, rows) == location
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")
    append_idempotent(rows, location, "gold-created", 0)  # the batch, replayed

    table = DeltaTable.forPath(spark, location)
    assert [row.operation for row in table.history().collect()] == [
        "CREATE OR REPLACE TABLE AS SELECT"
    ]
    assert sorted(tuple(row) for row in table.toDF().collect()) == sorted(
        tuple(row) for row in rows.collect()
    )
    detail = _detail(spark, killed, spec.name)
    assert detail["description"] == spec.description
    assert detail["partitionColumns"] == ["day"]
    assert GOLD_PROPERTIES.items() <= detail["properties"].items()
    assert detail["properties"]["reelhouse.workspace"] == killed.workspace
    assert registered_location(spark, spec.name) == location


def test_a_managed_table_of_the_same_name_is_never_dropped(spark, tmp_path):
    """A persistent catalog (a cluster's metastore) may hold a managed table by one of the
    project's names: dropping the name would delete its data. It is refused instead."""
    spark.sql("CREATE DATABASE IF NOT EXISTS bronze")  # as when the test runs first
    spark.sql("CREATE TABLE bronze.managed_here (id INT) USING parquet")
    try:
        spark.sql("INSERT INTO bronze.managed_here VALUES (7)")
        from spark.catalog import CatalogConflict

        with pytest.raises(CatalogConflict) as refused:
            register_table(spark, "bronze.managed_here", (tmp_path / "ours").as_uri())
        message = str(refused.value)
        assert message.startswith("table bronze.managed_here is a managed table at file:/")
        assert message.endswith(
            "/managed_here, not one reelhouse registered (those are external): dropping its"
            " name would delete its data; rename it, or drop it yourself"
        )
        assert spark.table("bronze.managed_here").collect()[0].id == 7
    finally:
        spark.sql("DROP TABLE IF EXISTS bronze.managed_here")


def test_a_name_moves_to_another_table_even_when_the_one_it_held_is_gone(spark, tmp_path):
    """A session moving a name to another workspace's table never opens the table the name
    held: that workspace may have been dropped since."""
    held, moved_to = tmp_path / "held", tmp_path / "moved-to"
    spark.range(2).write.format("delta").save(str(held))
    spark.range(3).write.format("delta").save(str(moved_to))
    register_table(spark, "bronze.moving", held.as_uri())
    assert registered_location(spark, "bronze.moving") == f"file:{held}"
    shutil.rmtree(held)
    try:
        register_table(spark, "bronze.moving", moved_to.as_uri())
        assert registered_location(spark, "bronze.moving") == f"file:{moved_to}"
        assert spark.table("bronze.moving").count() == 3
        assert registered_location(spark, "bronze.nothing_by_this_name") is None
    finally:
        spark.sql("DROP TABLE IF EXISTS bronze.moving")


def _detail(spark, profile, name) -> dict:
    location = profile.lake.table_location(name)
    return spark.sql(f"DESCRIBE DETAIL delta.`{location}`").first().asDict()


def test_a_driver_killed_while_writing_its_first_offsets_restarts(spark, reference, profile):
    # What a kill -9 between writing offsets/0 and renaming it leaves (seen in the test
    # above): a hidden temporary file and no batch. Spark alone refuses to restart.
    killed = load_profile("local", f"{profile.workspace}-first-offsets")
    killed = replace(killed, source=replace(killed.source, topic=reference.source.topic))
    jvm = spark._jvm
    offsets = jvm.org.apache.hadoop.fs.Path(
        f"{killed.lake.checkpoint_location('bronze_events')}/offsets"
    )
    filesystem = offsets.getFileSystem(spark._jsc.hadoopConfiguration())
    filesystem.create(jvm.org.apache.hadoop.fs.Path(offsets, ".0.killed.tmp")).close()

    run_layers(spark, killed, ["bronze"], Trigger())

    assert [status.getPath().getName() for status in filesystem.listStatus(offsets)] == ["0"]
    expected = _table(spark, reference, "bronze.events").select("partition", "offset")
    actual = _table(spark, killed, "bronze.events").select("partition", "offset")
    assert actual.count() == expected.count()
    assert actual.exceptAll(expected).count() == 0


@pytest.mark.parametrize("leftover", [None, ".00000000000000000000.json.0a1b.tmp"])
def test_a_driver_killed_while_creating_a_table_restarts(stack, spark, profile, leftover):
    # What a kill -9 during CREATE TABLE leaves (both seen in kill tests): an empty
    # _delta_log, or one holding only the first commit's temporary file. Delta alone
    # then neither reads nor creates the table.
    killed = load_profile("local", f"{profile.workspace}-created-{bool(leftover):d}")
    location = killed.lake.table_location(SILVER_EVENTS.name)
    delta_log = spark._jvm.org.apache.hadoop.fs.Path(f"{location}/_delta_log")
    filesystem = delta_log.getFileSystem(spark._jsc.hadoopConfiguration())
    filesystem.mkdirs(delta_log)
    if leftover:  # Delta makes _staged_commits beside the first commit
        filesystem.mkdirs(spark._jvm.org.apache.hadoop.fs.Path(delta_log, "_staged_commits"))
        stream = filesystem.create(spark._jvm.org.apache.hadoop.fs.Path(delta_log, leftover))
        stream.write(bytearray(b'{"commitInfo":{}}\n'))
        stream.close()
    assert not DeltaTable.isDeltaTable(spark, location)

    assert ensure_table(spark, killed, SILVER_EVENTS) == location
    assert DeltaTable.isDeltaTable(spark, location)
    assert spark.read.format("delta").load(location).columns == SILVER_EVENTS.schema.names


def test_a_committed_delta_log_is_never_cleared(stack, spark, profile):
    location = load_profile("local", f"{profile.workspace}-kept").lake.table_location("gold.kept")
    spark.range(3).write.format("delta").save(location)

    assert clear_uncommitted_delta_log(spark, location) == []
    assert DeltaTable.isDeltaTable(spark, location)
    assert spark.read.format("delta").load(location).count() == 3


def test_newer_schema_version_flows_through_a_running_query(stack, spark, profile):
    drift = load_profile("local", f"{profile.workspace}-drift")
    ensure_topic(drift.source.bootstrap_servers, drift.source.topic, partitions=2)
    base = simulate(SimulationRequest(events=600, seed=4, with_truth=True)).clean_payloads
    first = [p for p in base if p["schema_version"] == "1.0"][:300]
    trigger = Trigger("continuous", "1 second")
    queries = [start_bronze(spark, drift, trigger), start_silver(spark, drift, trigger)]
    try:
        _send(drift, first)
        _wait_for_rows(spark, drift, len(first), queries)
        newer = []
        sent = {payload["event_id"] for payload in first}
        for payload in [payload for payload in base if payload["event_id"] not in sent][:100]:
            payload = {
                **payload,
                "schema_version": "1.2",
                "audio_language": "ja",
                "hdr_format": "dolby_vision",
            }
            newer.append(payload)
        _send(drift, newer)
        _wait_for_rows(spark, drift, len(first) + len(newer), queries)
        assert all(query.isActive for query in queries)
    finally:
        for query in queries:
            query.stop()
    silver = _table(spark, drift, "silver.events")
    drifted = silver.filter(F.col("schema_version") == "1.2")
    assert drifted.count() == 100
    assert drifted.filter(F.col("extras")["hdr_format"] == "dolby_vision").count() == 100
    assert drifted.filter(F.col("audio_language") == "ja").count() == 100
    assert _table(spark, drift, "silver.quarantine").count() == 0
    # Batches with nothing to quarantine commit nothing there: its only version is its
    # creation.
    quarantine = DeltaTable.forPath(spark, drift.lake.table_location("silver.quarantine"))
    assert [row.operation for row in quarantine.history().collect()] == ["CREATE TABLE"]


def _versions(spark, profile, tables) -> dict[str, int]:
    """Each table's latest Delta version."""
    return {
        table: DeltaTable.forPath(spark, profile.lake.table_location(table))
        .history(1)
        .first()
        .version
        for table in tables
    }


def _send(profile, payloads, delay_s: float = 1.0) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=profile.source.bootstrap_servers, acks="all")
    for payload in payloads:
        # Arrival a second after the event by default: on time for silver's lateness bound.
        arrival = datetime.fromisoformat(payload["event_ts"]).timestamp() + delay_s
        producer.send(
            profile.source.topic,
            key=payload["user_id"].encode(),
            value=encode(payload),
            timestamp_ms=int(arrival * 1000),
        )
    producer.flush()
    producer.close()


def _wait_for_rows(spark, profile, expected: int, queries, timeout_s: float = 180) -> None:
    location = profile.lake.table_location("silver.events")
    deadline = time.monotonic() + timeout_s
    count = -1
    while time.monotonic() < deadline:
        try:
            count = spark.read.format("delta").load(location).count()
        except Exception:  # the table may not exist before the first batch
            count = -1
        if count >= expected:
            return
        time.sleep(1)
    states = [
        (query.name, query.isActive, query.exception(), query.lastProgress) for query in queries
    ]
    raise AssertionError(
        f"silver has {count} rows after {timeout_s}s, expected {expected}; queries: {states}"
    )


def _storage_conf_with_endpoint(endpoint: str) -> str:
    conf = dict(load_profile("local").lake.storage_conf)
    conf["fs.azure.abfs.endpoint"] = endpoint
    return json.dumps(conf)


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--profile", "nope"], {}, "unknown profile 'nope'; known profiles: azure, local"),
        (
            [],
            {"REELHOUSE_SOURCE_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
            "Kafka source unreachable: source.bootstrap_servers=127.0.0.1:1",
        ),
        ([], {"REELHOUSE_SOURCE_TOPIC": " "}, "setting source.topic is empty"),
        (["--layers", "bronze,platinum"], {}, "unknown layer(s) ['platinum']"),
    ],
)
def test_bad_configuration_fails_fast_with_one_line(arguments, environment, message, profile):
    _assert_one_line_error("spark.run", arguments, environment, message, profile)


@pytest.mark.parametrize("command", ["spark.run", "spark.tables", "quality.report"])
def test_a_lake_that_does_not_answer_is_named_in_one_line(command, stack, profile):
    """Nothing listens at the storage endpoint (Azurite down; the broker is up): every
    command that opens the lake says so in one line, not a Java stack trace from its first
    table read."""
    environment = {"REELHOUSE_LAKE_STORAGE_CONF": _storage_conf_with_endpoint("127.0.0.1:1")}
    message = "lake unreachable: lake.root=abfs://"
    arguments = ["--layers", "silver"] if command == "spark.run" else []  # no topic needed
    _assert_one_line_error(command, arguments, environment, message, profile)


def test_a_missing_topic_or_a_protocol_the_broker_does_not_speak_is_one_line(stack, profile):
    """Before a JVM starts: Spark would fail on a missing topic only once its query starts,
    after four Java stack traces, and retry a TLS handshake with a plain-text broker until
    stopped."""
    missing = workspace_of(profile, "no-topic")
    _assert_one_line_error(
        "spark.run",
        ["--layers", "bronze", "--workspace", missing.workspace],
        {},
        f"error: topic {missing.source.topic} does not exist at 127.0.0.1:",
        profile,
    )
    _assert_one_line_error(
        "spark.run",
        ["--layers", "bronze"],
        {"REELHOUSE_SOURCE_KAFKA_OPTIONS": '{"security.protocol": "SSL"}'},
        "gave no answer within 10 s over security protocol SSL: is that the protocol",
        profile,
    )


@pytest.mark.parametrize(
    ("command", "environment", "message"),
    [
        # A heap larger than any machine's: the JVM exits, its reason on stderr.
        ("spark.run", {"REELHOUSE_DRIVER_MEMORY": "99999999t"}, "Spark's JVM exited before"),
        ("spark.tables", {"REELHOUSE_DRIVER_MEMORY": "99999999t"}, "Spark's JVM exited before"),
        # A setting the JVM starts with and Spark's context then refuses.
        (
            "spark.run",
            {"REELHOUSE_SPARK_CONF": '{"spark.scheduler.mode": "BOGUS"}'},
            "Spark refused to start the session: org.apache.spark.SparkIllegalArgumentException:"
            " [INVALID_CONF_VALUE.OUT_OF_RANGE_OF_OPTIONS] The value 'BOGUS' in the config",
        ),
    ],
)
def test_a_jvm_that_will_not_start_is_named_in_one_line(
    command, environment, message, stack, profile
):
    """A setting Spark refuses, found only when it starts: one line naming the profile's
    Spark settings, not PySpark's traceback."""
    arguments = ["--layers", "silver"] if command == "spark.run" else []
    _assert_one_line_error(command, arguments, environment, message, profile)


def test_a_layer_without_its_input_table_is_refused_in_one_line(stack, profile):
    """Gold alone on a workspace whose silver never ran (or a mistyped name)."""
    empty = workspace_of(profile, "no-silver")
    _assert_one_line_error(
        "spark.run",
        ["--layers", "gold"],
        {},
        f"error: workspace {empty.workspace!r} has no silver.events at"
        f" {empty.lake.table_location('silver.events')}: nothing for gold to read (run silver",
        empty,
    )


def test_a_workspace_without_tables_is_listed_as_such(stack, profile):
    """A new workspace, or a mistyped name: the listing says it holds no tables (and
    ``--json`` stays an empty list for scripts)."""
    empty = workspace_of(profile, "no-tables-listed")
    command = [sys.executable, "-m", "spark.tables", "--workspace", empty.workspace]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-1500:]
    assert completed.stdout.strip() == (
        f"no tables in workspace {empty.workspace!r} at {empty.lake.root} (its layers create"
        " them: make local-run, or python -m spark.run)"
    )


def test_a_table_missing_a_log_file_is_one_line_from_the_listing(stack, spark, profile):
    """A commit deleted from a table's log (by hand, a storage policy): the listing names
    the workspace and Delta's reason in one line, not a Java stack trace."""
    from local_stack.services import azurite_blob_service

    broken = workspace_of(profile, "log-gone")
    location = broken.lake.table_location("bronze.events")
    spark.range(20).write.format("delta").save(location)
    spark.range(5).write.format("delta").mode("append").save(location)
    container = azurite_blob_service(stack.settings).get_container_client(
        stack.settings.azurite.lake_container
    )
    prefix = location.split(".core.windows.net/", 1)[1]  # abfs://lake@<host>/<path>
    blobs = container.list_blobs(name_starts_with=f"{prefix}/")
    first = [blob.name for blob in blobs if blob.name.endswith("/00000000000000000000.json")]
    assert first, prefix
    container.delete_blob(first[0])

    command = [sys.executable, "-m", "spark.tables", "--workspace", broken.workspace]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 1, completed.stdout[-1500:] + completed.stderr[-1500:]
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: cannot read the tables of workspace {broken.workspace!r} at {broken.lake.root}: "
    ), completed.stderr[-1500:]
    assert "[DELTA_TRUNCATED_TRANSACTION_LOG]" in last, last
    assert "Traceback" not in completed.stderr


def test_a_sigterm_to_the_process_group_stops_a_continuous_run_cleanly(stack, profile, tmp_path):
    """systemd's default stop, ``timeout`` and ``kill -- -PGID`` send SIGTERM to the driver
    and its JVM at once, here as soon as the run says its queries run (the first batch is
    then planned or under way). The run stops its queries as on a SIGTERM to the driver
    alone: its summary, exit code 0, no traceback; and its JVM leaves with it."""
    workspace = workspace_of(profile, "group-sigterm")
    produce_records(workspace, simulate(SimulationRequest(events=40, seed=8)).records, 1)
    command = [sys.executable, "-m", "spark.run", "--workspace", workspace.workspace]
    command += ["--layers", "bronze", "--trigger", "continuous", "--interval", "1s"]
    # Files, not pipes (nobody reads the run's output until it ends), appended to: the run
    # writes at the end of the file whatever a look at it moved its offset to.
    with (tmp_path / "out").open("a+") as out, (tmp_path / "err").open("a+") as err:
        run = subprocess.Popen(command, stdout=out, stderr=err, text=True, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while "layers bronze: running (continuous" not in _tail(err, 10**7):
                assert run.poll() is None and time.monotonic() < deadline, _tail(err)
                time.sleep(0.5)
            os.killpg(run.pid, signal.SIGTERM)
            run.wait(timeout=120)
            deadline = time.monotonic() + 30
            while _living_in_group(run.pid) and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
        stdout, stderr = _tail(out, 10**7), _tail(err, 10**7)
    assert run.returncode == 0, stderr[-2000:]
    assert "bronze: last batch " in stdout and "done in " in stdout, stdout
    assert "Traceback" not in stderr and "stopped SparkContext" not in stderr, stderr[-3000:]
    assert _living_in_group(run.pid) == []


def test_a_stop_interrupts_an_available_now_run_and_the_next_run_loses_nothing(
    stack, spark, profile, monkeypatch
):
    """SIGINT/SIGTERM set ``stop``: an available-now run stops the layer running (here in
    the middle of bronze's first batch) and starts no other; the next run goes on from the
    checkpoint, and every record is in bronze once."""
    workspace = workspace_of(profile, "interrupted")
    records = simulate(SimulationRequest(events=40, seed=9)).records
    produce_records(workspace, records, partitions=1)
    stop, stopping = threading.Event(), threading.Event()
    gate = load_gate(workspace, "interrupted")
    query_stop = StreamingQuery.stop

    def stopped(query):
        stopping.set()
        query_stop(query)

    monkeypatch.setattr(StreamingQuery, "stop", stopped)

    def stopped_while_gating(table, batch, batch_id):
        stop.set()
        assert stopping.wait(60)  # the run looks every second: it stops the query meanwhile
        return gate(table, batch, batch_id)

    with pytest.raises(Interrupted, match="layer bronze stopped before it caught up"):
        run_layers(
            spark, workspace, ["bronze", "silver"], Trigger(), stop, gate=stopped_while_gating
        )
    silver = workspace.lake.table_location("silver.events")
    assert not DeltaTable.isDeltaTable(spark, silver)  # silver never started: no table

    run_layers(spark, workspace, ["bronze"], Trigger())
    bronze = _table(spark, workspace, "bronze.events")
    assert bronze.count() == bronze.select("partition", "offset").distinct().count() == 40


def _tail(file, chars: int = 2000) -> str:
    file.seek(0)
    return file.read()[-chars:]


def _living_in_group(group: int) -> list[str]:
    """The processes of process group ``group`` that have not exited (zombies have)."""
    living = []
    for process in psutil.process_iter(["name", "status"]):
        try:
            if os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                living.append(f"{process.pid} {process.info['name']}")
        except (ProcessLookupError, psutil.Error):
            continue
    return living


def _assert_one_line_error(command, arguments, environment, message, profile) -> None:
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", command, "--workspace", profile.workspace, *arguments],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=150,
    )
    # Not a client's default wait (minutes); loose, for a JVM started on a loaded machine.
    assert time.monotonic() - started < 120
    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], completed.stderr[-1500:]
    assert "Traceback" not in completed.stderr
    json.dumps(errors)


def test_gold_tables_equal_the_ground_truth(spark, reference, simulation):
    assert_gold_equals_truth(spark, reference, simulation.truth)


def test_a_title_s_name_and_a_session_s_device_follow_their_events_not_row_order(spark):
    """A title's name and genre are its latest event's that has them (a search names the
    title by id only); a session's user, region and device its first event's (by time,
    then event id): the same whichever order the rows come in."""
    columns = (
        "event_id string, event_type string, event_ts timestamp, event_hour timestamp,"
        " region string, device_type string, user_id string, session_id string,"
        " title_id string, title_name string, genre string, played_s double"
    )
    hour = datetime(2026, 11, 2, 10)

    def event(event_id, kind, minute, region, device, title, name, genre):
        at = hour.replace(minute=minute)
        return (event_id, kind, at, hour, region, device, "u-1", "s-1", title, name, genre, None)

    rows = [
        event("e-3", "search", 45, "japan", "tv", "t-1", None, None),
        event("e-2", "play", 30, "japan", "tv", "t-1", "New", "comedy"),
        event("e-1", "play", 0, "japan", "web", "t-1", "Old", "drama"),
        event("e-0", "app_open", 0, "brazil", "mobile", None, None, None),
    ]
    for ordered in (rows, rows[::-1]):
        events = spark.createDataFrame(ordered, columns).repartition(1)
        (title,) = gold.title_popularity(events).collect()
        assert (title.title_name, title.genre, title.plays) == ("New", "comedy", 2)
        (session,) = gold.sessions(events).collect()
        assert (session.region, session.device_type, session.duration_s) == (
            "brazil",
            "mobile",
            2700.0,
        )


def test_a_late_first_event_moves_its_session_to_the_day_before(stack, spark, profile):
    """A session seen first at 00:01 is counted on that day; its app_open, from 23:58 the
    day before and on another device, arrives in a later micro-batch. The session then
    starts the day before, on that device (a session's device is its first event's), and
    the day it left has no session of that region and device: its statistics row goes."""
    moved = load_profile("local", f"{profile.workspace}-moved-start")
    ensure_topic(moved.source.bootstrap_servers, moved.source.topic, partitions=1)
    first, second = simulate(SimulationRequest(events=50, seed=4)).clean_payloads[:2]
    same = ("session_id", "user_id", "profile_id", "region", "country", "device_type")
    session = {key: first[key] for key in same}
    later = {**first, "event_ts": "2026-11-02T00:01:00.000+00:00"}
    device = "web" if session["device_type"] != "web" else "tv"
    earlier = {
        **second,
        **session,
        "device_type": device,
        "event_ts": "2026-11-01T23:58:00.000+00:00",
    }

    def stats() -> list[tuple]:
        rows = _table(spark, moved, "gold.session_stats").orderBy("day")
        return [
            (str(r.day), r.region, r.device_type, r.sessions, r.avg_duration_s, r.p90_duration_s)
            for r in rows.collect()
        ]

    def versions() -> dict[str, int]:
        tables = ("gold.title_popularity", "gold.regional_trends", "gold.sessions")
        return _versions(spark, moved, tables)

    _send(moved, [later])
    run_layers(spark, moved, ["bronze", "silver", "gold"], Trigger())
    assert stats() == [("2026-11-02", session["region"], session["device_type"], 1, 0.0, 0.0)]
    before = versions()

    _send(moved, [earlier])
    progress = run_layers(spark, moved, ["bronze", "silver", "gold"], Trigger())
    assert stats() == [("2026-11-01", session["region"], device, 1, 180.0, 180.0)]
    # Neither event has a title or a genre: the second batch has no title_popularity or
    # regional_trends rows, and commits nothing to them; its session is merged.
    assert versions() == {**before, "gold.sessions": before["gold.sessions"] + 1}
    # The streaming flow's log measures bronze's batch in offsets, as Spark's progress gives
    # them (the gate's read and the write are two reads of one record).
    assert batch_size(progress["bronze"]).startswith("1 offsets in "), progress["bronze"]
    sessions = _table(spark, moved, "gold.sessions").collect()
    assert [(s.session_id, str(s.start_date), s.device_type, s.duration_s) for s in sessions] == [
        (session["session_id"], "2026-11-01", device, 180.0)
    ]


def test_late_records_update_their_windows_or_are_counted_as_excluded_on_their_day(
    stack, spark, profile
):
    """An event of 1 Nov arrives on time. A record of 31 Oct arrives alone in a later
    micro-batch, 5 hours after it happened (past silver's 1-hour bound): it is in the
    quarantine as late_arrival, and gold.daily_totals counts it as excluded on 31 Oct, in
    a gold batch that changes no other table. Another event of the first one's hour arrives
    30 minutes late (inside the bound): it updates that hour's row and its day's total."""
    late = load_profile("local", f"{profile.workspace}-late-records")
    ensure_topic(late.source.bootstrap_servers, late.source.topic, partitions=1)
    first, second, third = simulate(SimulationRequest(events=50, seed=13)).clean_payloads[:3]
    place = {key: first[key] for key in ("region", "country")}
    on_time = {**first, "event_ts": "2026-11-01T10:00:00.000+00:00"}
    too_late = {**second, **place, "event_ts": "2026-10-31T23:00:00.000+00:00"}
    inside = {**third, **place, "event_ts": "2026-11-01T10:10:00.000+00:00"}

    def totals() -> list[tuple]:
        rows = _table(spark, late, "gold.daily_totals").orderBy("day").collect()
        return [(str(row.day), row.events, row.late_excluded) for row in rows]

    def versions() -> dict[str, int]:
        return _versions(spark, late, gold.KEYS)

    def hour_events() -> list[int]:
        return [row.events for row in _table(spark, late, "gold.traffic_by_hour").collect()]

    _send(late, [on_time])
    run_layers(spark, late, ["bronze", "silver", "gold"], Trigger())
    assert totals() == [("2026-11-01", 1, 0)]
    before = versions()

    _send(late, [too_late], delay_s=5 * 3600)
    run_layers(spark, late, ["bronze", "silver", "gold"], Trigger())
    quarantine = _table(spark, late, "silver.quarantine").collect()
    assert [(row.event_id, row.reasons) for row in quarantine] == [
        (too_late["event_id"], ["late_arrival"])
    ]
    assert totals() == [("2026-10-31", 0, 1), ("2026-11-01", 1, 0)]
    assert versions() == {**before, "gold.daily_totals": before["gold.daily_totals"] + 1}
    assert hour_events() == [1]

    _send(late, [inside], delay_s=30 * 60)
    run_layers(spark, late, ["bronze", "silver", "gold"], Trigger())
    assert totals() == [("2026-10-31", 0, 1), ("2026-11-01", 2, 0)]
    assert hour_events() == [2]


@pytest.fixture
def driver_in_new_york():
    """The driver process on a laptop's clock, five hours west of UTC."""
    with driver_time_zone("America/New_York"):
        yield


def test_a_copy_in_a_later_batch_is_a_duplicate_on_a_driver_west_of_utc(
    stack, spark, profile, driver_in_new_york
):
    """An event at 00:30 UTC (19:30 the day before in New York) comes again in a later
    micro-batch: silver finds its first copy and quarantines the second as a duplicate.
    Two events without an id in the first batch are not copies of each other."""
    copies = load_profile("local", f"{profile.workspace}-copies")
    ensure_topic(copies.source.bootstrap_servers, copies.source.topic, partitions=1)
    first, second, third = simulate(SimulationRequest(events=50, seed=5)).clean_payloads[:3]
    event = {**first, "event_ts": "2026-11-02T00:30:00.000+00:00"}
    without_id = [
        {key: value for key, value in payload.items() if key != "event_id"}
        for payload in (second, third)
    ]

    _send(copies, [event, *without_id])
    run_layers(spark, copies, ["bronze", "silver"], Trigger())
    _send(copies, [event])
    run_layers(spark, copies, ["bronze", "silver"], Trigger())

    silver = _table(spark, copies, "silver.events").select("event_id").collect()
    assert [row.event_id for row in silver] == [event["event_id"]]
    quarantine = _table(spark, copies, "silver.quarantine").orderBy("offset")
    assert [(row.offset, row.reasons) for row in quarantine.collect()] == [
        (1, ["silver_event_id_present"]),
        (2, ["silver_event_id_present"]),
        (3, ["duplicate"]),
    ]


def test_a_batch_replayed_after_silver_committed_it_quarantines_nothing_more(stack, spark, profile):
    """The driver dies after silver's commit of a batch and before its checkpoint's: the
    restart runs the batch again. Its events, already in silver, are its own copies, not
    duplicates: they were quarantined as such (this batch had nothing to quarantine, so no
    quarantine commit of it was there to skip them) and were in both tables."""
    replayed = load_profile("local", f"{profile.workspace}-replayed")
    ensure_topic(replayed.source.bootstrap_servers, replayed.source.topic, partitions=1)
    events = simulate(SimulationRequest(events=50, seed=8)).clean_payloads[:3]
    _send(replayed, events)
    run_layers(spark, replayed, ["bronze", "silver"], Trigger())
    commits = spark._jvm.org.apache.hadoop.fs.Path(
        f"{replayed.lake.checkpoint_location('silver_events')}/commits"
    )
    filesystem = commits.getFileSystem(spark._jsc.hadoopConfiguration())
    last = max(
        int(s.getPath().getName())
        for s in filesystem.listStatus(commits)
        if s.getPath().getName().isdigit()
    )
    assert filesystem.delete(spark._jvm.org.apache.hadoop.fs.Path(commits, str(last)), False)

    run_layers(spark, replayed, ["silver"], Trigger())

    silver = _table(spark, replayed, "silver.events").select("event_id").collect()
    assert sorted(row.event_id for row in silver) == sorted(e["event_id"] for e in events)
    assert _table(spark, replayed, "silver.quarantine").count() == 0
    assert filesystem.exists(spark._jvm.org.apache.hadoop.fs.Path(commits, str(last)))


def test_a_copy_the_gate_drops_does_not_shadow_a_good_copy(stack, spark, profile):
    """In one batch, a first copy of an event that breaks a drop check of the silver suite
    comes before a good copy: the good copy is promoted (as it would be were the bad one in
    an earlier batch), the bad one is the duplicate. A copy in a later batch is one too."""
    copies = load_profile("local", f"{profile.workspace}-bad-first")
    ensure_topic(copies.source.bootstrap_servers, copies.source.topic, partitions=1)
    event = simulate(SimulationRequest(events=50, seed=6)).clean_payloads[0]
    bad_copy = {**event, "region": "atlantis"}  # silver_region_in_contract drops it

    _send(copies, [bad_copy, event])
    run_layers(spark, copies, ["bronze", "silver"], Trigger())
    _send(copies, [bad_copy])
    run_layers(spark, copies, ["bronze", "silver"], Trigger())

    silver = _table(spark, copies, "silver.events").select("offset", "event_id", "region")
    assert [tuple(row) for row in silver.collect()] == [(1, event["event_id"], event["region"])]
    quarantine = _table(spark, copies, "silver.quarantine").orderBy("offset")
    assert [(row.offset, row.reasons) for row in quarantine.collect()] == [
        (0, ["duplicate"]),
        (2, ["duplicate"]),
    ]


def test_gold_on_a_new_checkpoint_merges_what_silver_gained(stack, spark, profile):
    """Gold's checkpoint deleted, its tables kept: the next gold query counts its batches
    from 0 again, under a new query id, and merges them. Under the job's name alone Delta
    took every batch up to the old query's last for committed, and skipped it: the rows
    silver gained meanwhile never reached gold."""
    renewed = load_profile("local", f"{profile.workspace}-new-gold-checkpoint")
    payloads = simulate(SimulationRequest(events=40, seed=12)).clean_payloads
    _append_to_silver(spark, renewed, payloads[:20])
    run_layers(spark, renewed, ["gold"], Trigger())
    checkpoint = spark._jvm.org.apache.hadoop.fs.Path(
        renewed.lake.checkpoint_location(GOLD_CHECKPOINT)
    )
    assert checkpoint.getFileSystem(spark._jsc.hadoopConfiguration()).delete(checkpoint, True)

    _append_to_silver(spark, renewed, payloads[20:])
    run_layers(spark, renewed, ["gold"], Trigger())

    traffic = _table(spark, renewed, "gold.traffic_by_hour").agg(F.sum("events")).first()[0]
    assert traffic == _table(spark, renewed, "silver.events").count() == len(payloads)


def test_bronze_and_silver_on_a_lost_checkpoint_are_refused_and_lose_nothing(stack, spark, profile):
    """Their appends are idempotent per query name and batch id: started again from batch
    0 on a new checkpoint, each would skip as written every batch up to its last, and lose
    the records new among them. They are refused instead, and the old checkpoints go on."""
    first = load_profile("local", f"{profile.workspace}-lost-checkpoint")
    records = simulate(SimulationRequest(events=60, seed=21)).records
    produce_records(first, records[:30], partitions=1)
    run_layers(spark, first, ["bronze", "silver"], Trigger())
    moved = f"{first.lake.checkpoint_root}-moved"
    elsewhere = replace(first, lake=replace(first.lake, checkpoint_root=moved))
    produce_records(first, records[30:], partitions=1)

    for layer, table in (("bronze", "bronze.events"), ("silver", "silver.events")):
        with pytest.raises(CheckpointLost) as refused:
            run_layers(spark, elsewhere, [layer], Trigger())
        checkpoint = elsewhere.lake.checkpoint_location(table.replace(".", "_"))
        assert str(refused.value) == (
            f"{first.lake.table_location(table)} holds batches 0-0 of"
            f" {query_name(first, table)}, but its checkpoint {checkpoint} has none"
            " (deleted, or lake.checkpoint_root changed): started again, it would skip as"
            " written every batch up to that one, and lose the records of its own among them;"
            " restore the checkpoint (silver's tables can also be rebuilt from bronze by the"
            " replay flow)"
        )
    run_layers(spark, first, ["bronze", "silver"], Trigger())
    assert _table(spark, first, "bronze.events").count() == len(records)
    assert _table(spark, first, "silver.events").count() == 60

    # An older copy of bronze's checkpoint (its last batch's files put aside): it would plan
    # batch 1 again over the new records, and Delta would skip it as written.
    more = simulate(SimulationRequest(events=5, seed=22)).records
    produce_records(first, more, partitions=1)
    checkpoint = first.lake.checkpoint_location("bronze_events")
    hadoop = spark._jvm.org.apache.hadoop.fs
    filesystem = hadoop.Path(checkpoint).getFileSystem(spark._jsc.hadoopConfiguration())

    def move(source: str, target: str) -> None:
        assert filesystem.rename(hadoop.Path(source), hadoop.Path(target)), source

    def refusal(profile) -> str:
        with pytest.raises(CheckpointLost) as refused:
            run_layers(spark, profile, ["bronze"], Trigger())
        return str(refused.value)

    table = f"{first.lake.table_location('bronze.events')} holds"
    bronze_query = query_name(first, "bronze.events")
    for log in ("offsets", "commits"):
        move(f"{checkpoint}/{log}/1", f"{checkpoint}/{log}-1")
    assert refusal(first).startswith(
        f"{table} batches 0-1 of {bronze_query}, but its checkpoint {checkpoint} planned"
        " batches up to 0 only (an older copy of it?)"
    )
    for log in ("offsets", "commits"):
        move(f"{checkpoint}/{log}-1", f"{checkpoint}/{log}/1")
    # The lake moved without its checkpoints: the query would go on after batch 1, and the
    # new lake's table would never hold the records of batches 0-1.
    moved = replace(first, lake=replace(first.lake, root=f"{first.lake.root}-moved"))
    assert refusal(moved).startswith(
        f"{moved.lake.table_location('bronze.events')} holds no batch of {bronze_query},"
        f" but its checkpoint {checkpoint} committed batches up to 1"
    )
    run_layers(spark, first, ["bronze"], Trigger())  # the pair that belongs together goes on
    assert _table(spark, first, "bronze.events").count() == len(records) + len(more)


def _append_to_silver(spark, profile, payloads: list[dict]) -> None:
    """Clean events straight into silver, parsed as the silver job parses them (each
    arriving when it happened), without the bronze and silver queries."""
    from spark.transforms.events import parse_events, silver_columns

    schema = (
        "key binary, value binary, topic string, partition int, offset bigint, "
        "kafka_timestamp timestamp, ingest_ts timestamp, ingest_date date"
    )
    rows = []
    for offset, payload in enumerate(payloads):
        arrived = datetime.fromisoformat(payload["event_ts"]).astimezone(UTC).replace(tzinfo=None)
        rows.append((None, encode(payload), "events", 0, offset, arrived, arrived, arrived.date()))
    parsed = parse_events(spark.createDataFrame(rows, schema))
    assert parsed.filter(F.size("reasons") > 0).isEmpty()
    location = ensure_table(spark, profile, SILVER_EVENTS)
    parsed.select(*silver_columns()).write.format("delta").mode("append").save(location)
