"""``make prefect-down``: refused while flow runs are active, forced with ``FORCE=1``.

The server's side (a real deployment run stopped and recorded Crashed) is in
``tests/integration/test_flows.py``; here, what needs no server."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import pytest

from local_stack import prefect_runs
from local_stack.prefect_runs import ActiveRun, process_is_gone, read_active_runs
from local_stack.services import StackError
from local_stack.settings import load_stack_settings
from local_stack.stack import LocalStack, _refuse_active_runs
from tests.ports import free_port, silent_port

pytestmark = pytest.mark.unit

RUN = ActiveRun(id="2aa5", flow="streaming", name="aloof-impala", state="Running", pid=1246)


def test_force_is_for_prefect_down_only(capsys):
    from local_stack.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["down", "--force"])
    assert exited.value.code == 2
    assert "--force is for prefect-down only, not down" in capsys.readouterr().err


def test_the_refusal_names_every_run_and_the_way_out():
    other = replace(RUN, id="9b42", name="persimmon-bug", state="Cancelling")

    api = "http://127.0.0.1:4200/api"
    prefect = Path(sys.executable).with_name("prefect")
    with suppress(ValueError):
        prefect = prefect.relative_to(Path.cwd())

    assert _refuse_active_runs([RUN], api) == (
        "1 flow run is active: streaming/aloof-impala (Running, id 2aa5). Stopping Prefect"
        f" would stop it: wait, cancel it (PREFECT_API_URL={api} {prefect} flow-run cancel"
        " 2aa5), or stop anyway with make prefect-down FORCE=1, which records it Crashed"
    )
    assert _refuse_active_runs([RUN, other], api).startswith(
        "2 flow runs are active: streaming/aloof-impala (Running, id 2aa5);"
        " streaming/persimmon-bug (Cancelling, id 9b42). Stopping Prefect would stop them:"
        f" wait, cancel them (PREFECT_API_URL={api} {prefect} flow-run cancel <id>),"
    )


def test_a_stopped_prefect_asks_no_server(tmp_path, monkeypatch):
    def unexpected(*_):
        raise AssertionError("no server runs: nothing to ask")

    monkeypatch.setattr(prefect_runs, "_call", unexpected)
    settings = load_stack_settings()
    stack = LocalStack(
        replace(
            settings,
            state_dir=tmp_path,
            prefect=replace(settings.prefect, port=free_port(), home=tmp_path / "prefect"),
        )
    )

    assert stack.prefect_down() == ["prefect-worker: not running", "prefect-server: not running"]
    assert stack.runs_on_workspaces(["main"]) == {}
    assert not stack.delete_workspace_lock("main")


def test_a_server_that_never_answers_is_one_line_in_seconds(monkeypatch):
    monkeypatch.setattr(prefect_runs, "API_TIMEOUT_S", 0.5)
    with silent_port() as (port, _), pytest.raises(StackError) as error:
        read_active_runs(f"http://127.0.0.1:{port}/api")
    assert str(error.value).startswith(f"Prefect server at http://127.0.0.1:{port}/api does not")


def test_only_a_process_known_to_have_ended_is_gone():
    ended = subprocess.Popen(["true"])
    ended.wait()  # reaped: its pid names nothing now
    engine = [sys.executable, "-c", "import time; time.sleep(60)", "-m", "prefect.engine"]
    running = subprocess.Popen(engine)
    try:
        assert process_is_gone(ended.pid)
        assert not process_is_gone(running.pid)
        # A pid reused by a process that is no flow run's (after a reboot): that run is gone.
        assert process_is_gone(os.getpid())
        assert not process_is_gone(None)  # no process on record: it may run anywhere
    finally:
        running.kill()
        running.wait()


def test_a_zombie_is_gone():
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while not process_is_gone(child.pid):  # exited, not yet reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.wait()


@pytest.mark.parametrize(
    ("recorded", "pid"), [("1246", 1246), (" 77 ", 77), (None, None), ("host:1246", None)]
)
def test_the_recorded_pid_is_read_only_when_it_is_one(recorded, pid):
    assert prefect_runs._pid(recorded) == pid


def test_the_stack_names_the_workspace_locks_as_the_flows_do():
    """``local_stack`` does not import ``flows``: the lock's name and the flows holding one
    are written twice, and held equal here."""
    from flows import guard

    assert prefect_runs.lock_name("test-1") == guard.limit_name("local", "test-1")
    assert prefect_runs.WORKSPACE_FLOWS == guard.WRITERS


@pytest.mark.parametrize(
    ("flow", "parameters", "workspace"),
    [
        ("streaming", {"workspace": "test-1"}, "test-1"),
        ("medallion", {}, "main"),  # the flows' own defaults
        ("replay", {"profile": "local", "workspace": "x"}, "x"),
        ("medallion", {"profile": "azure", "workspace": "test-1"}, None),
        ("reelhouse-elsewhere", {"workspace": "test-1"}, None),
        (None, {}, None),
    ],
)
def test_a_run_holds_a_local_workspace_only_when_its_flow_holds_one(flow, parameters, workspace):
    assert prefect_runs._local_workspace(flow, parameters) == workspace


HANG_S = 1.0


@contextmanager
def _answering(codes: list[int | str]) -> Iterator[tuple[str, list[str]]]:
    """A server that answers each request with the next of ``codes`` (the last one from
    then on): its API url, and the methods it was asked with. ``"drop"`` closes the
    connection without an answer; ``"hang"`` answers 204 after ``HANG_S``."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            asked.append(self.command)
            code = codes[min(len(asked), len(codes)) - 1]
            if code == "drop":
                return
            if code == "hang":
                time.sleep(HANG_S)
                code = 204
            body = b"" if code == 204 else json.dumps({"exception_message": str(code)}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_DELETE = _answer

        def handle(self) -> None:
            with suppress(BrokenPipeError, ConnectionResetError):  # a client that gave up
                super().handle()

        def log_message(self, *_) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_busy_server_is_asked_again_as_prefects_client_does(monkeypatch):
    """Prefect answers 503 while its SQLite database is busy (just after a start, say)."""
    monkeypatch.setattr(prefect_runs, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    with _answering([503, 503, 204]) as (api_url, asked):
        assert prefect_runs._call(api_url, "flow_runs/some-id", method="DELETE") is True
    assert asked == ["DELETE"] * 3

    with _answering([503]) as (api_url, asked), pytest.raises(StackError) as error:
        prefect_runs._call(api_url, "flow_runs/filter", method="GET")
    assert len(asked) == 4  # one try and one per delay
    assert str(error.value) == (
        f"Prefect server at {api_url}: GET /flow_runs/filter answered 503:"
        ' {"exception_message": "503"}'
    )

    with _answering([500, 204]) as (api_url, asked), pytest.raises(StackError) as error:
        prefect_runs._call(api_url, "flow_runs/filter", method="GET")
    assert asked == ["GET"]  # an error is not asked again
    assert "answered 500" in str(error.value)


def test_a_dropped_connection_or_a_408_is_asked_again(monkeypatch):
    monkeypatch.setattr(prefect_runs, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    with _answering(["drop", 408, "drop", 204]) as (api_url, asked):
        assert prefect_runs._call(api_url, "flow_runs/some-id", method="DELETE") is True
    assert asked == ["DELETE"] * 4

    with _answering(["drop"]) as (api_url, asked), pytest.raises(StackError) as error:
        prefect_runs._call(api_url, "flow_runs/filter", method="GET")
    assert len(asked) == 4  # one try and one per delay
    assert str(error.value) == (
        f"Prefect server at {api_url} does not answer"
        " (Remote end closed connection without response)"
    )


def test_an_answer_that_timed_out_is_asked_for_once_more(monkeypatch):
    monkeypatch.setattr(prefect_runs, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    monkeypatch.setattr(prefect_runs, "API_TIMEOUT_S", HANG_S / 4)
    with _answering(["hang", 204]) as (api_url, asked):
        assert prefect_runs._call(api_url, "flow_runs/some-id", method="DELETE") is True
    assert asked == ["DELETE"] * 2

    with _answering(["hang"]) as (api_url, asked), pytest.raises(StackError) as error:
        prefect_runs._call(api_url, "flow_runs/filter", method="GET")
    assert asked == ["GET"] * 2  # a server that hangs is named after two tries
    assert str(error.value) == f"Prefect server at {api_url} does not answer (timed out)"


def test_a_server_that_is_not_there_is_not_asked_again(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(prefect_runs.time, "sleep", waits.append)
    api_url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(StackError) as error:
        prefect_runs._call(api_url, "flow_runs/filter", method="GET")
    assert waits == []  # named at once: no server to wait for
    assert str(error.value) == (
        f"Prefect server at {api_url} does not answer ([Errno 111] Connection refused)"
    )
