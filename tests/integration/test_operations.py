"""The streaming, replay and maintenance flows on the real stack, one workspace in order:
bronze is filled by the medallion flow, the streaming flow promotes it to silver and gold
(surviving an injected query failure), replay rebuilds silver and gold from bronze, and
maintenance compacts, vacuums and checkpoints without changing a row."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F

from local_stack.settings import load_stack_settings
from spark.settings import load_profile
from spark.transforms.gold import KEYS

pytestmark = pytest.mark.integration

GOLD_TABLE_NAMES = tuple(KEYS)


@pytest.fixture(scope="module")
def workspace(stack, spark, profile):
    """A workspace whose bronze holds a small simulated run with faults; its manifest."""
    from flows.medallion import medallion

    name = f"{profile.workspace}-ops"
    state = medallion(
        workspace=name, events=3000, fault_rate=0.02, seed=11, layers="bronze", return_state=True
    )
    assert state.is_completed(), state.message
    target = load_profile("local", name)
    manifest_path = (
        load_stack_settings().state_dir / "simulations" / f"{target.source.topic}.manifest.json"
    )
    yield target, json.loads(manifest_path.read_text())


def _count(spark, target, table: str) -> int:
    return spark.read.format("delta").load(target.lake.table_location(table)).count()


class _FailsOnce:
    """A gate that raises on silver's first batch, then delegates: a query crash."""

    def __init__(self, gate) -> None:
        self.gate = gate
        self.failed = False

    def __call__(self, table, batch, batch_id):
        if table == "silver.events" and not self.failed:
            self.failed = True
            raise RuntimeError("injected failure of silver's first batch")
        return self.gate(table, batch, batch_id)

    def with_drops(self, table, batch, column):
        return self.gate.with_drops(table, batch, column)

    def recorded_together(self, name, batch_id):
        return self.gate.recorded_together(name, batch_id)


@contextmanager
def _terminated_when(condition, poll_s: float):
    """SIGTERM this process once ``condition()`` holds, while the block runs (the
    streaming flow, run in the main thread, stops its queries on it)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            if condition():
                os.kill(os.getpid(), signal.SIGTERM)
                return

    # A signal that arrives after the flow has put its handler back must not end pytest.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGTERM, previous)


def test_streaming_restarts_a_failed_query_and_stops_cleanly(workspace, spark, monkeypatch) -> None:
    import spark.gates as gates
    from flows.streaming import streaming

    target, manifest = workspace
    real_load_gate = gates.load_gate
    injected: list[_FailsOnce] = []

    def load_gate(profile, run_id):
        injected.append(_FailsOnce(real_load_gate(profile, run_id)))
        return injected[-1]

    monkeypatch.setattr(gates, "load_gate", load_gate)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

    def caught_up() -> bool:
        try:
            return (
                _count(spark, target, "silver.events") == manifest["events"]
                and _count(spark, target, "gold.title_popularity") > 0
            )
        except AnalysisException:  # a table its query has not created yet
            return False

    # Stopped as a user stops it, with SIGTERM, once silver and gold have caught up: a
    # fixed run time would be too short for a cold JVM and too long for a warm one.
    with _terminated_when(caught_up, poll_s=3):
        state = streaming(
            workspace=target.workspace,
            layers="silver,gold",
            interval="2 seconds",
            progress_every_s=5,
            max_runtime_s=600,  # a run that never catches up fails below, not hangs
            return_state=True,
        )
    assert state.is_completed(), state.message
    assert injected and injected[0].failed  # the failure happened, and was survived
    last_batches = state.result()
    assert last_batches["silver"] is not None

    # Every record promoted or quarantined once, despite the crash and the restart.
    assert _count(spark, target, "silver.events") == manifest["events"]
    assert _count(spark, target, "silver.quarantine") == manifest["records"] - manifest["events"]
    assert _count(spark, target, "gold.title_popularity") > 0

    # Checkpoints intact: an available-now run afterwards finds nothing new.
    from spark.jobs.layers import Trigger
    from spark.run import run_layers

    monkeypatch.setattr(gates, "load_gate", real_load_gate)
    run_layers(spark, target, ["silver"], Trigger("available-now"), run_id="after-streaming")
    assert _count(spark, target, "silver.events") == manifest["events"]


def test_the_workspace_lock_alone_keeps_a_replay_and_the_writers_apart(workspace, spark) -> None:
    """No run on Prefect's record here: only the lock (a global concurrency limit) says
    the workspace is taken, as when two runs start at once."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from flows.guard import holding_workspace, limit_name, prefect_command, release_command
    from flows.medallion import medallion
    from flows.operations import maintenance, replay

    target, manifest = workspace
    lock = limit_name("local", target.workspace)
    with holding_workspace("local", target.workspace, doing="a writer of this test"):
        busy = replay(workspace=target.workspace, confirm=target.workspace, return_state=True)
        # Writers share the workspace.
        with holding_workspace("local", target.workspace, doing="a second writer"):
            pass
    assert busy.is_failed()
    assert (
        f"replay on workspace {target.workspace!r} refused: its lock {lock!r} is held, but no"
        " run on record is active on it" in busy.message
    )
    assert release_command("local", target.workspace) in busy.message
    assert _count(spark, target, "silver.events") == manifest["events"]  # nothing deleted

    with holding_workspace("local", target.workspace, doing="a test's replay", exclusive=True):
        waiting = medallion(workspace=target.workspace, simulate=False, return_state=True)
    assert waiting.is_failed()
    assert f"a medallion run on workspace {target.workspace!r} refused: its lock" in (
        waiting.message
    )

    # Two replays that start together: the server grants the workspace to one of them.
    start, holding, outcomes = threading.Barrier(2), threading.Barrier(2, timeout=60), []

    def replay_at_once() -> None:
        start.wait()
        try:
            with holding_workspace("local", target.workspace, doing="replay", exclusive=True):
                outcomes.append("held")
                holding.wait()
        except RuntimeError as refused:
            outcomes.append(str(refused))
            holding.wait()

    threads = [threading.Thread(target=replay_at_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes)[0] == "held"
    assert sorted(outcomes)[1].startswith(f"replay on workspace {target.workspace!r} refused")

    # A lock someone disabled would let anything through: nothing runs until it is enabled.
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(lock, GlobalConcurrencyLimitUpdate(active=False))
        try:
            disabled = maintenance(workspace=target.workspace, return_state=True)
            # make local-run, the user's command, says why in one line; the traceback stays
            # in the run's log.
            local_run = subprocess.run(
                [sys.executable, "-m", "flows.local_run", "--events", "10"]
                + ["--workspace", target.workspace],
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            client.update_global_concurrency_limit(lock, GlobalConcurrencyLimitUpdate(active=True))
    enable = prefect_command(f"global-concurrency-limit enable {lock}")
    assert disabled.is_failed()
    assert f"its lock {lock!r} is disabled; enable it with `{enable}`" in disabled.message
    assert local_run.returncode == 1, local_run.stderr
    printed = local_run.stdout + local_run.stderr
    assert "Traceback" not in printed, printed
    failed = [line for line in printed.splitlines() if line.startswith("reelhouse:")]
    assert failed == [
        "reelhouse: the run failed: Flow run encountered an exception: RuntimeError: a medallion"
        f" run on workspace {target.workspace!r} refused: its lock {lock!r} is disabled; enable"
        f" it with `{enable}`"
    ], printed
    # Commands a user can paste into another shell: the run's database is this PREFECT_HOME
    # (make's, for its ephemeral API: none of the tests' runs uses a server's).
    home = shlex.quote(os.environ.get("PREFECT_HOME", "<unset>"))
    assert enable.startswith(f"PREFECT_HOME={home} .venv/bin/prefect ")
    logs = prefect_command("flow-run logs ")
    assert f"the run's whole log, tracebacks included: {logs}" in printed


def test_of_a_writer_and_a_replay_started_at_once_one_runs(workspace) -> None:
    """Two flow runs on Prefect's record start together: the one the lock refuses is still
    Running on record while it fails, and the one that got the lock must not be refused
    for it (both were). A flow of each kind, as named on the record; no Spark."""
    from prefect import flow

    from flows.guard import holding_workspace

    target, _ = workspace
    start, outcomes = threading.Barrier(2, timeout=60), {}

    def take(kind: str, exclusive: bool) -> None:
        start.wait()
        with holding_workspace("local", target.workspace, doing=kind, exclusive=exclusive):
            outcomes[kind] = "held"

    @flow(name="maintenance")
    def writer(workspace: str, profile: str = "local") -> None:
        take("maintenance", exclusive=False)

    @flow(name="replay")
    def replaying(workspace: str, profile: str = "local") -> None:
        take("replay", exclusive=True)

    states = {}

    def run_flow(kind: str, run) -> None:
        try:
            states[kind] = run(workspace=target.workspace, return_state=True)
        except BaseException as error:  # the assertion below shows it
            states[kind] = error

    threads = [
        threading.Thread(target=run_flow, args=(kind, run))
        for kind, run in (("maintenance", writer), ("replay", replaying))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    shown = {kind: getattr(state, "message", repr(state)) for kind, state in states.items()}
    assert len(outcomes) == 1 and len(states) == 2, shown
    (held,) = outcomes
    (refused,) = set(states) - {held}
    assert states[held].is_completed(), states[held].message
    assert states[refused].is_failed()
    assert f"{refused} on workspace {target.workspace!r} refused while {held}/" in (
        states[refused].message
    )


def test_replay_needs_confirmation_and_no_running_writer_then_rebuilds(workspace, spark) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Running

    from flows.medallion import medallion
    from flows.operations import replay
    from flows.streaming import streaming

    target, manifest = workspace
    popularity = spark.read.format("delta").load(
        target.lake.table_location("gold.title_popularity")
    )
    plays_before = popularity.agg({"plays": "sum"}).first()[0]

    refused = replay(workspace=target.workspace, return_state=True)
    assert refused.is_failed()
    assert f"run again with confirm={target.workspace!r}" in refused.message
    assert _count(spark, target, "silver.events") == manifest["events"]  # nothing deleted

    # A streaming run of the workspace still running: the replay would delete its tables
    # and checkpoints under it.
    with get_client(sync_client=True) as client:
        running = client.create_flow_run(
            streaming, parameters={"workspace": target.workspace}, state=Running()
        )
        try:
            busy = replay(workspace=target.workspace, confirm=target.workspace, return_state=True)
        finally:
            client.set_flow_run_state(running.id, Cancelled(), force=True)
    assert busy.is_failed()
    # ... and the other way round: a medallion run waits for a running replay.
    with get_client(sync_client=True) as client:
        replaying = client.create_flow_run(
            replay, parameters={"workspace": target.workspace}, state=Running()
        )
        try:
            waiting = medallion(workspace=target.workspace, simulate=False, return_state=True)
        finally:
            client.set_flow_run_state(replaying.id, Cancelled(), force=True)
    assert waiting.is_failed()
    assert f"a medallion run on workspace {target.workspace!r} refused while replay/" in (
        waiting.message
    )
    assert (
        f"replay on workspace {target.workspace!r} refused while streaming/{running.name}"
        f" (Running, id {running.id}) is active on it" in busy.message
    )
    assert _count(spark, target, "silver.events") == manifest["events"]

    state = replay(workspace=target.workspace, confirm=target.workspace, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert target.lake.table_location("silver.events") in result["removed"]
    assert result["run_id"].startswith(f"replay-{target.workspace}-")
    assert result["rows"]["silver.events"] == manifest["events"]
    assert result["rows"]["silver.quarantine"] == manifest["records"] - manifest["events"]
    rebuilt = spark.read.format("delta").load(target.lake.table_location("gold.title_popularity"))
    # Available-now closes every window the streaming run may have left open, never fewer.
    assert rebuilt.agg({"plays": "sum"}).first()[0] >= plays_before > 0
    # The rebuilt layers' batches start from 0 again: their gates are on record all the same.
    validated = (
        spark.read.format("delta")
        .load(target.lake.table_location("quality.validation_events"))
        .where(F.col("run_id") == result["run_id"])
        .groupBy("table")
        .count()
        .collect()
    )
    assert {row.table for row in validated} == {"silver.events", *GOLD_TABLE_NAMES}


def test_maintenance_compacts_and_keeps_every_row(workspace, spark) -> None:
    from delta.tables import DeltaTable

    from flows.operations import maintenance
    from spark.maintenance import LOG_RETENTION_PROPERTY, RETENTION_PROPERTY

    target, manifest = workspace
    refused = maintenance(workspace=target.workspace, retention_hours=24, return_state=True)
    assert refused.is_failed()
    assert "below the floor of 168 hours" in refused.message

    silver = DeltaTable.forPath(spark, target.lake.table_location("silver.events"))
    files_before = silver.detail().first()["numFiles"]
    jvm_logger = spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getLogger
    with _driver_log(spark) as logged:
        state = maintenance(workspace=target.workspace, retention_hours=1000, return_state=True)
        jvm_logger("reelhouse.tests").error("the capture works")
    assert state.is_completed(), state.message
    # Delta 4 ignores VACUUM's own retention argument: the tables' property carries it, and
    # the log's retention (30 days by default) may not be shorter.
    vacuumed = silver.history().where("operation = 'VACUUM START'").first()
    assert vacuumed.operationParameters["defaultRetentionMillis"] == str(1000 * 3_600_000)
    properties = silver.detail().first()["properties"]
    assert properties[RETENTION_PROPERTY] == properties[LOG_RETENTION_PROPERTY]
    assert properties[RETENTION_PROPERTY] == "interval 1000 hours"
    # VACUUM lists each table's root over Azurite's Blob endpoint, where a folder has no
    # time: hadoop-azure's error for each one is not the user's to read (spark/session.py).
    assert "the capture works" in logged()
    assert "Failed to parse the date" not in logged(), logged()
    result = state.result()
    assert {"bronze.events", "silver.events"} <= set(result["optimized"])
    assert "silver.events" in result["vacuumed"]
    assert "silver.events" in result["checkpointed"]
    assert _count(spark, target, "silver.events") == manifest["events"]
    assert _count(spark, target, "bronze.events") == manifest["records"]
    compaction = result["optimized"]["silver.events"]
    files_after = silver.detail().first()["numFiles"]
    assert files_after == files_before - compaction["files_removed"] + compaction["files_added"]
    assert files_after <= files_before


@contextmanager
def _driver_log(spark):
    """What the driver's JVM logs inside the block (its loggers' own levels apply)."""
    jvm = spark.sparkContext._jvm
    log4j = jvm.org.apache.logging.log4j
    context = log4j.LogManager.getContext(False)
    root = context.getConfiguration().getRootLogger()
    writer = jvm.java.io.StringWriter()
    name = f"test-capture-{os.getpid()}-{threading.get_ident()}"
    appender = (
        log4j.core.appender.WriterAppender.newBuilder().setName(name).setTarget(writer).build()
    )
    appender.start()
    root.addAppender(appender, None, None)
    context.updateLoggers()
    try:
        yield writer.toString
    finally:
        root.removeAppender(name)
        context.updateLoggers()
        appender.stop()


def test_replay_of_a_workspace_without_bronze_deletes_and_creates_nothing(workspace, spark):
    """A mistyped workspace: nothing to rebuild from, so nothing is touched."""
    from delta.tables import DeltaTable
    from kafka import KafkaAdminClient

    from flows.operations import replay

    target, _ = workspace
    name = f"{target.workspace}-typo"
    state = replay(workspace=name, confirm=name, return_state=True)
    assert state.is_failed()
    empty = load_profile("local", name)
    assert (
        f"workspace {name!r} has no bronze.events at {empty.lake.table_location('bronze.events')}:"
        " nothing to replay silver and gold from; nothing was deleted" in state.message
    )
    for table in ("bronze.events", "silver.events", "silver.quarantine"):
        assert not DeltaTable.isDeltaTable(spark, empty.lake.table_location(table)), table
    admin = KafkaAdminClient(bootstrap_servers=empty.source.bootstrap_servers)
    try:
        assert empty.source.topic not in admin.list_topics()
    finally:
        admin.close()
