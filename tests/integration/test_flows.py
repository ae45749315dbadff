"""Prefect: a real server, a real worker, `prefect deployment run` as a user types it."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from dataclasses import replace

import psutil
import pytest

from local_stack.services import prefect_environment
from local_stack.settings import PROJECT_ROOT, load_stack_settings
from local_stack.stack import LocalStack
from spark.settings import load_profile
from tests.ports import free_port


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory, stack):
    """A Prefect server on a free port with its own database, a worker, the deployments."""
    state = tmp_path_factory.mktemp("prefect-stack")
    settings = load_stack_settings()
    settings = replace(
        settings,
        state_dir=state,
        prefect=replace(settings.prefect, port=free_port(), home=state / "prefect"),
    )
    isolated = LocalStack(settings)
    with pytest.MonkeyPatch.context() as environment:
        # No scheduled runs: the deployed maintenance schedule (03:30 UTC) would start a
        # run on workspace main beside the tests' own.
        environment.setenv("PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED", "false")
        try:
            isolated.prefect_up()
            yield isolated
        finally:
            isolated.prefect_down(force=True)


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
def test_deployment_run_completes_and_fills_the_tables(prefect_stack, spark, profile, capsys):
    from local_stack.__main__ import _print_status

    # The stack's status lists the Prefect server and worker while they run.
    _print_status(prefect_stack)
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in ("prefect-server", "prefect-worker"):
        assert listed[name].endswith("healthy"), listed

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
    # ... with the gate results: silver validated, no fail check was violated.
    flat = re.sub(r"\s+", " ", summary.replace("\\n", " "))  # the CLI wraps and escapes
    assert re.search(r"\| silver\.events \| [1-9]\d* \| [1-9]\d* \| \d+ \| \d+ \| 0 \|", flat)


@pytest.mark.integration
def test_check_task_retries_until_a_late_broker_answers(stack, monkeypatch, services_may_stop):
    """The broker is down when the flow starts and comes up seconds later."""
    from prefect import flow

    from flows.medallion import check_stack

    # Any profile but local never starts services itself: it can only wait and retry.
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    target = replace(load_profile("local", "late"), name="remote")
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


@pytest.mark.integration
def test_check_task_does_not_retry_a_stack_that_cannot_start(monkeypatch):
    """A port another program holds will not free itself: one attempt, one line."""
    from prefect import flow

    import flows.medallion as medallion_module
    from local_stack.services import StackSetupError

    attempts = []

    class PortTaken:
        def up(self, topics=()):
            attempts.append(topics)
            raise StackSetupError("port 9092 needed by kafka is held by nc (pid 4242)")

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    monkeypatch.setattr(medallion_module, "LocalStack", PortTaken)

    @flow
    def start_stack():
        return medallion_module.check_stack(load_profile("local", "taken"))

    state = start_stack(return_state=True)
    assert state.is_failed()
    assert len(attempts) == 1
    with pytest.raises(RuntimeError, match=r"^local stack cannot start: port 9092 .* held by nc"):
        state.result()


@pytest.mark.integration
def test_check_task_does_not_retry_a_host_no_dns_server_knows(monkeypatch):
    """A misspelt namespace will not start resolving: one attempt, one line."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows.medallion import check_stack

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    target = load_profile("local", "typo")
    target = replace(
        target,
        name="remote",
        source=replace(target.source, bootstrap_servers="reelhouse-nowhere.invalid:9093"),
    )

    states = []

    @flow
    def check_misspelt_host():
        states.append(check_stack(target, return_state=True))

    check_misspelt_host()
    (state,) = states
    assert state.is_failed()
    with pytest.raises(RuntimeError, match=r"^Kafka source unreachable: .*no such host"):
        state.result()
    with get_client(sync_client=True) as client:
        assert client.read_task_run(state.state_details.task_run_id).run_count == 1


@pytest.mark.integration
def test_a_gate_failure_fails_the_flow_run_naming_the_expectation(
    stack, spark, profile, monkeypatch
):
    """A violated ``fail`` expectation fails the run at once: named, and never retried."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    import spark.run as runner
    from flows.medallion import medallion
    from quality.gates import build_gate
    from tests.integration.test_quality import STRICT_CHECK, _strict_suites

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    monkeypatch.setattr(
        runner, "load_gate", lambda target, run_id: build_gate(target, run_id, _strict_suites())
    )
    state = medallion(
        workspace=f"{profile.workspace}-gate",
        events=600,
        fault_rate=0.0,
        layers="bronze,silver",
        return_state=True,
    )

    assert state.is_failed()
    assert f"quality gate failed for silver.events batch 0: {STRICT_CHECK}" in state.message
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    layer_runs = [run for run in task_runs if run.name.startswith("run_layer")]
    failed = [run for run in layer_runs if run.state.is_failed()]
    assert len(failed) == 1, [(run.name, run.state.name) for run in task_runs]
    assert failed[0].run_count == 1  # a gate failure is never retried


@pytest.mark.parametrize("flow_name", ["medallion", "streaming"])
def test_a_run_of_later_layers_on_a_workspace_without_their_input_is_refused(
    stack, spark, profile, monkeypatch, flow_name
):
    """A mistyped workspace, or one whose bronze never ran: refused in one line, with no
    table, checkpoint or topic created (a run used to report 0 rows and leave them; a
    streaming run waited on empty tables it had created)."""
    from flows.medallion import medallion
    from flows.streaming import streaming
    from local_stack.topics import list_topics
    from local_stack.workspaces import list_workspaces

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    empty = load_profile("local", f"{profile.workspace}-no-bronze-{flow_name}")
    if flow_name == "medallion":
        state = medallion(
            workspace=empty.workspace, simulate=False, layers="silver,gold", return_state=True
        )
    else:
        state = streaming(
            workspace=empty.workspace, layers="silver,gold", max_runtime_s=60, return_state=True
        )

    assert state.is_failed()
    assert (
        f"workspace {empty.workspace!r} has no bronze.events at"
        f" {empty.lake.table_location('bronze.events')}: nothing for silver to read"
    ) in state.message
    assert empty.source.topic not in list_topics(stack.settings.kafka.bootstrap_servers)
    assert empty.workspace not in {usage.name for usage in list_workspaces(stack.settings)}


@pytest.mark.e2e
def test_drop_workspace_keeps_a_workspace_a_run_is_active_on_and_drops_its_lock(
    prefect_stack, profile, capsys
):
    """A run writing a workspace would fail half-way through its batch, its tables gone
    under it: the drop waits for it. Dropped, the workspace's lock goes too."""
    from local_stack.__main__ import drop_unheld_workspaces
    from local_stack.prefect_runs import _call, lock_name
    from local_stack.topics import ensure_topic, list_topics

    api_url = prefect_stack.settings.prefect.api_url
    target = load_profile("local", f"{profile.workspace}-held")
    bootstrap = prefect_stack.settings.kafka.bootstrap_servers
    ensure_topic(bootstrap, target.source.topic, partitions=1)
    _call(api_url, "v2/concurrency_limits/", {"name": lock_name(target.workspace), "limit": 100})
    flow = _call(api_url, "flows/", {"name": "streaming"})
    run = _call(
        api_url,
        "flow_runs/",
        {
            "flow_id": flow["id"],
            "name": "writing",
            "parameters": {"workspace": target.workspace},
            "state": {"type": "RUNNING"},
        },
    )

    assert drop_unheld_workspaces(prefect_stack, [target.workspace]) == 1
    error = capsys.readouterr().err
    assert error == (
        f"not dropped {target.workspace}: streaming/writing (Running, id {run['id']}) is active"
        f" on it (wait for it, or cancel it: PREFECT_API_URL={api_url} .venv/bin/prefect"
        f" flow-run cancel {run['id']})\n"
    )
    assert target.source.topic in list_topics(bootstrap)

    _call(api_url, f"flow_runs/{run['id']}/set_state", {"state": {"type": "COMPLETED"}})
    assert drop_unheld_workspaces(prefect_stack, [target.workspace]) == 0
    output = capsys.readouterr().out
    assert f"dropped {target.workspace}'s Prefect lock {lock_name(target.workspace)}" in output
    assert target.source.topic not in list_topics(bootstrap)
    lock = f"v2/concurrency_limits/{lock_name(target.workspace)}"
    assert _call(api_url, lock, method="GET", missing_ok=True) is None  # 404


@pytest.mark.e2e
def test_prefect_down_refuses_while_a_run_is_active_and_force_records_it_crashed(
    prefect_stack, profile
):
    """The worker's stop kills the runs it started: prefect-down names them and stops
    nothing; forced, it stops them, and no run is left Running whose process is gone: a
    run that did not record its own end is recorded Crashed. A run with no process on
    record (one a Python process runs itself) is named, then left. A run whose process
    died earlier (its worker killed) blocks nothing and is recorded Crashed."""
    from local_stack.prefect_runs import CRASH_MESSAGE, _call, process_is_gone
    from local_stack.services import StackError

    api_url = prefect_stack.settings.prefect.api_url
    created = _prefect(
        prefect_stack,
        "deployment",
        "run",
        "streaming/local",
        "-p",
        f"workspace={profile.workspace}-down",
        "-p",
        "max_runtime_s=600",
    )
    # This run, not another test's streaming run (the server lists runs by random id).
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", created)[1]
    flow = _call(api_url, "flows/", {"name": "reelhouse-elsewhere"})
    elsewhere = _call(
        api_url,
        "flow_runs/",
        {"flow_id": flow["id"], "name": "in-process", "state": {"type": "RUNNING"}},
    )
    stale = _call(
        api_url,
        "flow_runs/",
        {"flow_id": flow["id"], "name": "worker-killed", "state": {"type": "RUNNING"}},
    )
    ended = subprocess.Popen(["true"])
    ended.wait()
    _call(api_url, f"flow_runs/{stale['id']}", {"infrastructure_pid": str(ended.pid)}, "PATCH")
    deadline = time.monotonic() + 180
    while True:  # until the worker has started the run's process and recorded its pid
        streaming = _call(api_url, f"flow_runs/{run_id}", method="GET")
        if streaming["state_type"] == "RUNNING" and streaming["infrastructure_pid"]:
            break
        assert time.monotonic() < deadline, streaming
        time.sleep(1)
    pid = int(streaming["infrastructure_pid"])

    with pytest.raises(StackError) as refusal:
        prefect_stack.prefect_down()
    message = str(refusal.value)
    assert message.startswith("2 flow runs are active: ")  # not the stale one
    assert f"(Running, id {run_id})" in message and "reelhouse-elsewhere/in-process" in message
    assert "make prefect-down FORCE=1" in message
    assert prefect_stack.prefect_worker.running_pid() is not None
    assert psutil.pid_exists(pid)

    lines = prefect_stack.prefect_down(force=True)
    assert (
        f"reelhouse-elsewhere/worker-killed (Running, id {stale['id']}): recorded Crashed"
        f" (process {ended.pid} ended)"
    ) in lines
    assert (
        f"reelhouse-elsewhere/in-process (Running, id {elsewhere['id']}): left Running"
        " (no process on record)"
    ) in lines
    assert process_is_gone(pid)

    prefect_stack.prefect_server.start()  # the record outlives the server
    try:
        states = {
            row["id"]: (row["state_type"], row["state"]["message"])
            for row in _call(  # these runs, not the first page of the server's
                api_url,
                "flow_runs/filter",
                {"flow_runs": {"id": {"any_": [stale["id"], elsewhere["id"], run_id]}}},
            )
        }
        assert states[stale["id"]] == ("CRASHED", CRASH_MESSAGE)
        assert states[elsewhere["id"]][0] == "RUNNING"
        # The streaming run recorded its own end, or prefect-down recorded it Crashed.
        recorded = f"(Running, id {run_id}): recorded Crashed (process {pid} ended)"
        if any(line.endswith(recorded) for line in lines):
            assert states[run_id] == ("CRASHED", CRASH_MESSAGE)
        else:
            assert states[run_id][0] in ("COMPLETED", "CANCELLED", "CRASHED", "FAILED")
            assert states[run_id][1] != CRASH_MESSAGE
    finally:
        for run in (elsewhere, stale):  # a server just started may be busy: _call retries
            _call(api_url, f"flow_runs/{run['id']}", method="DELETE")
        prefect_stack.prefect_worker.start()
