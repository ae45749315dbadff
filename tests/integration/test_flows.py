"""Prefect: a real server, a real worker, `prefect deployment run` as a user types it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import replace

import pytest

from local_stack.services import prefect_environment
from local_stack.settings import PROJECT_ROOT, load_stack_settings
from local_stack.stack import LocalStack
from spark.settings import load_profile


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory, stack):
    """A Prefect server on a free port with its own database, a worker, the deployments."""
    state = tmp_path_factory.mktemp("prefect-stack")
    settings = load_stack_settings()
    settings = replace(
        settings,
        state_dir=state,
        prefect=replace(settings.prefect, port=_free_port(), home=state / "prefect"),
    )
    isolated = LocalStack(settings)
    try:
        isolated.prefect_up()
        yield isolated
    finally:
        isolated.prefect_down()


def _prefect(stack: LocalStack, *arguments: str, timeout: float = 600) -> str:
    completed = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "prefect"), *arguments],
        capture_output=True,
        text=True,
        env=prefect_environment(stack.settings),
        timeout=timeout,
        cwd=PROJECT_ROOT,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    return completed.stdout


@pytest.mark.e2e
def test_deployment_run_completes_and_fills_the_tables(prefect_stack, spark, profile):
    workspace = f"{profile.workspace}-prefect"
    output = _prefect(
        prefect_stack,
        "deployment",
        "run",
        "medallion/local",
        "--watch",
        "-p",
        "events=4000",
        "-p",
        f"workspace={workspace}",
        "-p",
        "fault_rate=0.02",
    )
    assert "Completed" in output

    target = load_profile("local", workspace)
    manifest = json.loads(
        (
            load_stack_settings().state_dir / "simulations" / f"{target.source.topic}.manifest.json"
        ).read_text()
    )
    bronze = spark.read.format("delta").load(target.lake.table_location("bronze.events"))
    silver = spark.read.format("delta").load(target.lake.table_location("silver.events"))
    quarantine = spark.read.format("delta").load(target.lake.table_location("silver.quarantine"))
    assert bronze.count() == manifest["records"]
    assert silver.count() == manifest["events"]
    assert quarantine.count() == manifest["records"] - manifest["events"]
    popularity = spark.read.format("delta").load(
        target.lake.table_location("gold.title_popularity")
    )
    assert popularity.count() > 0

    # The run published its summary and its rows-per-table artifacts.
    summary = _prefect(prefect_stack, "artifact", "inspect", "medallion-summary")
    assert f"workspace **{workspace}**" in summary
    assert "silver.events" in _prefect(prefect_stack, "artifact", "inspect", "rows-per-layer")


@pytest.mark.integration
def test_check_task_retries_until_a_late_broker_answers(stack, monkeypatch):
    """The broker is down when the flow starts and comes up seconds later."""
    from prefect import flow

    from flows.medallion import check_stack

    port = stack.settings.kafka.port
    # The azure profile never starts services itself: it can only wait and retry.
    monkeypatch.setenv("REELHOUSE_SOURCE_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    target = load_profile("azure", "late")
    stack.kafka.stop()
    restarted = threading.Timer(5.0, stack.kafka.start)
    restarted.start()

    @flow
    def wait_for_broker():
        return check_stack(target, return_state=True)

    started = time.monotonic()
    try:
        state = wait_for_broker()
    finally:
        restarted.join()
    assert state.is_completed(), state.message
    assert time.monotonic() - started >= 4
    assert stack.kafka.running_pid() is not None
    assert os.environ.get("REELHOUSE_SOURCE_BOOTSTRAP_SERVERS") == f"127.0.0.1:{port}"
