"""The flows refuse parameters they cannot honour before they start anything: no
workspace lock is taken (a bad workspace name would create a lock of that name), no
stack started, no Spark session."""

from __future__ import annotations

import pytest

from flows.medallion import medallion
from flows.operations import maintenance, replay
from flows.streaming import streaming
from spark.settings import SettingsError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"layers": "bronze,silvr"},
            r"layers='bronze,silvr': unknown layer\(s\) \['silvr'\]; known: bronze, silver, gold",
        ),
        ({"layers": " , "}, r"layers=' , ': no layer named; known: bronze, silver, gold"),
        ({"trigger": "continuous"}, r"trigger='continuous': .* use the streaming flow"),
    ],
)
def test_a_parameter_the_flow_cannot_honour_is_named(parameters, message):
    with pytest.raises(ValueError, match=message):
        medallion.fn(profile="no-such-profile", **parameters)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"events": -1}, r"events must be >= 0, got -1"),
        ({"fault_rate": 2.0}, r"fault_rate must be between 0 and 1, got 2.0"),
        ({"workspace": "Bad Name"}, r"workspace 'Bad Name' is invalid"),
        ({"profile": "nope"}, r"unknown profile 'nope'"),
    ],
)
def test_medallion_checks_its_simulation_and_workspace_first(parameters, message, monkeypatch):
    _refuse_to_lock(monkeypatch)
    with pytest.raises(ValueError, match=message):
        medallion.fn(**parameters)


@pytest.mark.parametrize(
    ("flow", "parameters", "error", "message"),
    [
        (streaming, {"layers": "bronze,nope"}, ValueError, r"unknown layer\(s\) \['nope'\]"),
        (streaming, {"layers": ""}, ValueError, r"layers='': no layer named"),
        (streaming, {"interval": "five seconds"}, ValueError, r"interval='five seconds': must"),
        (streaming, {"workspace": "Bad Name"}, SettingsError, r"workspace 'Bad Name'"),
        (streaming, {"max_runtime_s": -1}, ValueError, r"max_runtime_s=-1: must be >= 0 \(0 ="),
        (streaming, {"max_restarts": -3}, ValueError, r"^max_restarts=-3: must be >= 0$"),
        (streaming, {"progress_every_s": 0}, ValueError, r"^progress_every_s=0: must be >= 1$"),
        (replay, {"workspace": "Bad Name"}, SettingsError, r"workspace 'Bad Name' is invalid"),
        (replay, {"profile": "nope", "workspace": "x"}, SettingsError, r"unknown profile 'nope'"),
        (maintenance, {"retention_hours": 24}, ValueError, r"below the floor of 168 hours"),
        (maintenance, {"retention_hours": 10**400}, ValueError, r"is more than a century \("),
        (maintenance, {"retention_hours": 168.5}, ValueError, r"not a whole number of hours"),
        (maintenance, {"retention_hours": 10**5000}, ValueError, r"=a number over 10\^15 is"),
        (maintenance, {"profile": "nope"}, SettingsError, r"unknown profile 'nope'"),
        (replay, {"workspace": "Bad Name", "confirm": "Bad Name"}, SettingsError, r"invalid"),
    ],
)
def test_the_other_flows_check_their_parameters_first(
    flow, parameters, error, message, monkeypatch
):
    _refuse_to_lock(monkeypatch)
    with pytest.raises(error, match=message):
        flow.fn(**parameters)


@pytest.mark.parametrize("flow", [medallion, streaming])
def test_offsets_of_another_workspace_s_topic_are_refused_first(flow, monkeypatch):
    _refuse_to_lock(monkeypatch)
    monkeypatch.setenv("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"main.viewing-events": {"0": 4}}')
    with pytest.raises(SettingsError, match=r"this workspace reads 'other.viewing-events'"):
        flow.fn(workspace="other", layers="bronze")


@pytest.mark.parametrize("flow", [medallion, streaming, replay, maintenance])
@pytest.mark.parametrize("name", ["profile", "workspace"])
def test_an_empty_name_is_refused_before_the_lock(flow, name, monkeypatch):
    """An empty workspace would otherwise mean the environment's (or main), and replay's
    confirm='' would match it."""
    _refuse_to_lock(monkeypatch)
    monkeypatch.setenv("REELHOUSE_WORKSPACE", "elsewhere")
    parameters = {name: " ", "confirm": " "} if flow is replay else {name: " "}
    with pytest.raises(SettingsError, match=rf"^{name} ' ' is empty: name one, or leave it out"):
        flow.fn(**parameters)


def _refuse_to_lock(monkeypatch) -> None:
    """A flow that reaches for the workspace lock has started: the test then fails."""

    def holding_workspace(*args, **kwargs):
        raise AssertionError("the flow took the workspace lock before checking its parameters")

    for module in ("flows.medallion", "flows.streaming", "flows.operations"):
        monkeypatch.setattr(f"{module}.holding_workspace", holding_workspace)


def test_make_local_run_names_offsets_of_another_topic_before_prefect_starts(monkeypatch, capsys):
    from flows import local_run

    monkeypatch.setenv("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"main.viewing-events": {"0": 4}}')
    assert local_run.main(["--workspace", "other"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: source.starting_offsets gives offsets of topic"), error
    assert "\n" not in error


def test_make_local_run_names_a_prefect_server_that_is_gone(monkeypatch, capsys):
    """PREFECT_API_URL outlived its server (make prefect-down): one line, not Prefect's
    100-line traceback, and no flow started."""
    from flows import local_run
    from tests.ports import free_port

    def no_flow(**parameters):
        raise AssertionError("the flow was started")

    monkeypatch.setattr("flows.medallion.medallion", no_flow)
    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    assert local_run.main(["--workspace", "other"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: no Prefect server answers at {url} (PREFECT_API_URL): ")
    assert error.endswith("or unset PREFECT_API_URL to run on a temporary one")


class _StoppedQuery:
    """A query its layer's gate stopped: how Spark hands the failure back."""

    isActive = False
    lastProgress = None

    def __init__(self, starts: list[str]) -> None:
        starts.append("started")

    def exception(self):
        return RuntimeError(
            "[FOREACH_BATCH_USER_FUNCTION_ERROR] ... Traceback (most recent call last):\n"
            '  File "quality/gates.py", line 1, in settle\n'
            "quality.gates.GateFailure: silver.events: 3 checks set to fail not met"
        )

    def stop(self) -> None:
        pass


def test_streaming_does_not_restart_a_layer_its_gate_stopped(monkeypatch):
    from spark import run
    from spark.run import LayerGateFailure

    starts: list[str] = []
    _streaming_offline(monkeypatch)
    monkeypatch.setitem(run.LAYERS, "silver", lambda *args: _StoppedQuery(starts))
    with pytest.raises(LayerGateFailure, match=r"^layer silver stopped by its quality gate, not"):
        streaming.fn(layers="silver", max_restarts=5)
    assert starts == ["started"]


def _nothing():
    from contextlib import nullcontext

    return nullcontext()


def _streaming_offline(monkeypatch) -> None:
    """The streaming flow without a lock, a stack, Spark or a gate: its supervision alone
    (each test gives ``spark.run.LAYERS`` the queries)."""
    import logging

    from flows import streaming as module

    monkeypatch.setattr(module, "holding_workspace", lambda *a, **k: _nothing())
    monkeypatch.setattr(module, "check_stack", lambda settings, reads_events=True: None)
    monkeypatch.setattr(module, "upstream_exists", lambda settings, layers: None)
    monkeypatch.setattr(module, "_spark", lambda profile, workspace: None)
    monkeypatch.setattr(module, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr("spark.gates.load_gate", lambda settings, run_id: None)


class _Query:
    """A query that runs (``active``) or has failed on a storage error."""

    lastProgress = None

    def __init__(self, active: bool) -> None:
        self.isActive = active

    def exception(self):
        return None if self.isActive else RuntimeError("abfs: 503 Service Unavailable")

    def stop(self) -> None:
        self.isActive = False


def _streaming_with_starts(monkeypatch, starts: list) -> list[float]:
    """The streaming flow on silver, whose successive starts return or raise ``starts``'
    items (the last again after them); the backoffs it waited, at once."""
    import threading

    from flows import streaming as module
    from spark import run

    _streaming_offline(monkeypatch)
    calls = iter(range(10_000))

    def start(*_):
        outcome = starts[min(next(calls), len(starts) - 1)]
        if isinstance(outcome, BaseException):
            raise outcome
        return _Query(active=outcome == "runs")

    waits: list[float] = []

    class Instant(threading.Event):  # waits are recorded, not slept
        def wait(self, timeout=None):
            if timeout != 1.0:  # the supervisor's own tick
                waits.append(timeout)
            return self.is_set()

    monkeypatch.setitem(run.LAYERS, "silver", start)
    monkeypatch.setattr(module.threading, "Event", Instant)
    return waits


def test_a_restart_that_cannot_start_yet_is_tried_again_with_the_next_backoff(monkeypatch):
    """The lake is down for a while: the restarts' starts fail, then one starts."""
    down = RuntimeError("abfs: 503 Service Unavailable")
    waits = _streaming_with_starts(monkeypatch, ["fails", down, down, "runs"])
    streaming.fn(layers="silver", max_restarts=5, max_runtime_s=1)
    assert waits == [2, 4, 8]


def test_restarts_that_cannot_start_count_toward_max_restarts(monkeypatch):
    down = RuntimeError("abfs: 503 Service Unavailable")
    waits = _streaming_with_starts(monkeypatch, ["fails", down])
    with pytest.raises(RuntimeError, match=r"^layer silver failed 3 times in a row: .*503"):
        streaming.fn(layers="silver", max_restarts=2, max_runtime_s=60)
    assert waits == [2, 4]


def test_a_restart_that_finds_its_checkpoint_lost_is_not_tried_again(monkeypatch):
    from spark.io.delta import CheckpointLost

    lost = CheckpointLost("silver's checkpoint is gone")
    waits = _streaming_with_starts(monkeypatch, ["fails", lost])
    with pytest.raises(CheckpointLost):
        streaming.fn(layers="silver", max_restarts=5, max_runtime_s=60)
    assert waits == [2]


def test_a_prefect_command_printed_for_the_user_names_the_run_s_database(monkeypatch):
    """make sets PREFECT_HOME for its recipes only: a command pasted into another shell
    would look in ~/.prefect on the ephemeral API, and find neither the run nor the lock."""
    import sys
    from pathlib import Path

    from flows.guard import prefect_command

    monkeypatch.chdir(Path(sys.executable).parents[2])  # the project of this .venv
    monkeypatch.setenv("PREFECT_HOME", "/work/reel house/.stack/prefect")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert prefect_command("flow-run logs 1c2d") == (
        "PREFECT_HOME='/work/reel house/.stack/prefect' .venv/bin/prefect flow-run logs 1c2d"
    )
    # With a server, the API URL the user's shell has set finds them.
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert prefect_command("flow-run logs 1c2d") == ".venv/bin/prefect flow-run logs 1c2d"


@pytest.mark.parametrize(("layers", "simulated"), [("silver,gold", False), ("bronze", True)])
def test_a_medallion_run_simulates_only_when_it_runs_bronze(monkeypatch, layers, simulated):
    """Events simulated by a run without bronze would wait, unasked for, for the next bronze
    run, beside a summary listing faults none of its rows has."""
    import logging

    from flows import medallion as module

    calls: list[str] = []
    monkeypatch.setattr(module, "holding_workspace", lambda *a, **k: _nothing())
    monkeypatch.setattr(module, "get_run_logger", lambda: logging.getLogger("test"))
    monkeypatch.setattr(module, "check_stack", lambda settings, reads_events=True: None)
    monkeypatch.setattr(module, "upstream_exists", lambda settings, layers: None)
    monkeypatch.setattr(module, "simulate_events", lambda *a: calls.append("simulate") or {})
    monkeypatch.setattr(module, "run_layer", lambda settings, layer, *a: {layer: 0})
    monkeypatch.setattr(module, "gate_results", lambda settings, run_id: [])
    monkeypatch.setattr(module, "report", lambda *a: "")
    result = medallion.fn(layers=layers)  # simulate=True, the default
    assert calls == (["simulate"] if simulated else [])
    assert list(result["rows"]) == layers.split(",")
