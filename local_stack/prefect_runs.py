"""The flow runs a local Prefect server holds active, for ``prefect-down``.

Stopping the process worker stops the runs it started (it terminates their process groups),
but Prefect's record keeps them "Running": the workspace lock (``flows/guard.py``) then
refuses a replay until someone deletes them by hand. So ``prefect-down`` refuses while runs
whose process lives are active; ``prefect-down --force`` stops them too. Either way, every
active run whose process is gone once the worker stopped is recorded as Crashed.

Plain HTTP against the server's REST API: no Prefect client, no event loop, a timeout on
every call.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from local_stack.services import StackError

# What the worker may be executing: a run it picked up (Pending), runs (Running) or is
# stopping (Cancelling). Scheduled and Late runs have no process yet.
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELLING")
API_TIMEOUT_S = 5.0
# The answers Prefect's own client tries again (``prefect.client.base``): a server whose
# SQLite database is busy answers 503, e.g. while its services write just after a start.
# Four more tries, 0.5 s doubling: 7.5 s of waits, besides each try's API_TIMEOUT_S.
RETRIED_CODES = (408, 429, 502, 503)
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)
# A connection the server dropped is tried again as those are. An answer that timed out is
# tried once more (Prefect's client tries it as often), so that a server that hangs is
# named in 2 x API_TIMEOUT_S + 0.5 s, not 32.5 s. A refused connection (no server) is not.
TIMEOUT_RETRIES = 1
PAGE = 200  # the server's default and largest page (PREFECT_API_DEFAULT_LIMIT)
# The flows whose runs hold a workspace (``flows.guard.WRITERS``; a test holds them equal).
WORKSPACE_FLOWS = ("medallion", "streaming", "maintenance", "replay")
CRASH_MESSAGE = "recorded by prefect-down: the run's process had ended (with its worker, or before)"


@dataclass(frozen=True)
class ActiveRun:
    id: str
    flow: str
    name: str
    state: str  # the state's name: Pending, Running, Cancelling
    pid: int | None  # the process the worker started, when on record
    # The run's workspace when it is one of the flows that hold one (flows/guard.py WRITERS).
    workspace: str | None = None

    def describe(self) -> str:
        return f"{self.flow}/{self.name} ({self.state}, id {self.id})"


def cancel_command(api_url: str, runs: list[ActiveRun]) -> str:
    """The command that cancels ``runs`` as a user can type it in another shell: this
    environment's Prefect, pointed at the server that holds them (a shell's own Prefect
    settings name another API, or the ephemeral one, which knows none of them)."""
    executable = Path(sys.executable).with_name("prefect")
    with suppress(ValueError):  # shown from the project's folder when it is below it
        executable = executable.relative_to(Path.cwd())
    run_id = runs[0].id if len(runs) == 1 else "<id>"
    return (
        f"PREFECT_API_URL={shlex.quote(api_url)} {shlex.quote(str(executable))}"
        f" flow-run cancel {run_id}"
    )


def read_active_runs(api_url: str) -> list[ActiveRun]:
    """The server's flow runs in an active state, oldest first."""
    rows: list[dict] = []
    while True:  # a page at a time: the server returns at most PAGE rows per call
        page = _call(
            api_url,
            "flow_runs/filter",
            {
                "flow_runs": {"state": {"type": {"any_": list(ACTIVE_STATES)}}},
                "sort": "START_TIME_ASC",
                "limit": PAGE,
                "offset": len(rows),
            },
        )
        rows += page
        if len(page) < PAGE:
            break
    flow_ids = sorted({row["flow_id"] for row in rows})
    flows = (
        {
            row["id"]: row["name"]
            for row in _call(api_url, "flows/filter", {"flows": {"id": {"any_": flow_ids}}})
        }
        if flow_ids
        else {}
    )
    return [
        ActiveRun(
            id=row["id"],
            flow=flows.get(row["flow_id"], "?"),
            name=row["name"],
            state=(row.get("state") or {}).get("name") or row["state_type"].title(),
            pid=_pid(row.get("infrastructure_pid")),
            workspace=_local_workspace(flows.get(row["flow_id"]), row.get("parameters") or {}),
        )
        for row in rows
    ]


def delete_workspace_lock(api_url: str, workspace: str) -> bool:
    """Delete the local workspace's lock (``flows/guard.py``'s global concurrency limit);
    False when it had none."""
    path = f"v2/concurrency_limits/{lock_name(workspace)}"
    return _call(api_url, path, method="DELETE", missing_ok=True) is not None


def lock_name(workspace: str) -> str:
    """The local profile's lock of ``workspace``, as ``flows.guard.limit_name`` names it
    (a test holds the two together: ``local_stack`` does not import ``flows``)."""
    return f"reelhouse.local.{workspace}"


def record_crashed(api_url: str, run: ActiveRun) -> None:
    """Set ``run`` to Crashed on the server's record (forced: a Running run may not crash
    by the usual rules without its own process reporting it)."""
    _call(
        api_url,
        f"flow_runs/{run.id}/set_state",
        {"state": {"type": "CRASHED", "name": "Crashed", "message": CRASH_MESSAGE}, "force": True},
    )


def process_is_gone(pid: int | None) -> bool:
    """True when ``pid`` names no live flow-run process: none at all, a zombie, or one that
    is no Prefect process (the pid was reused: after a reboot, a worker long dead).
    Unknown (None) is not gone."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        # `python -m prefect.engine`, `-m prefect.runner._workspace_supervisor ...`
        return not any(part.startswith("prefect.") for part in process.cmdline())
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # there, but not ours to inspect
        return False


def _local_workspace(flow: str | None, parameters: dict) -> str | None:
    # The flows' own defaults: profile "local", workspace "main".
    if flow not in WORKSPACE_FLOWS or parameters.get("profile", "local") != "local":
        return None
    return str(parameters.get("workspace", "main"))


def _pid(value: object) -> int | None:
    # The process worker records the run's pid as text; other workers record other handles.
    text = str(value or "").strip()
    return int(text) if text.isdigit() else None


def _call(
    api_url: str, path: str, body: dict | None = None, method: str = "POST", missing_ok=False
) -> list | dict | bool | None:
    """The server's JSON answer (True for an empty one); None for a 404 when ``missing_ok``.
    A busy server's answer (``RETRIED_CODES``) or a dropped connection is asked for again
    after ``RETRY_DELAYS_S``, as Prefect's own client does; a timed-out one
    ``TIMEOUT_RETRIES`` times. Every call here may be made twice: reads, a forced state and
    a delete whose 404 is ``missing_ok``."""
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method=method,
    )
    delays = iter(RETRY_DELAYS_S)
    timeouts = 0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
                answer = response.read()
                return json.loads(answer) if answer else True
        except urllib.error.HTTPError as error:
            if error.code == 404 and missing_ok:
                return None
            delay = next(delays, None) if error.code in RETRIED_CODES else None
            if delay is not None:
                error.close()
                time.sleep(delay)
                continue
            detail = error.read().decode(errors="replace").strip().splitlines()
            raise StackError(
                f"Prefect server at {api_url}: {method} /{path} answered {error.code}"
                f"{': ' + detail[0][:200] if detail else ''}"
            ) from None
        except (OSError, ValueError) as error:  # refused, timed out, dropped, not JSON
            if isinstance(error, urllib.error.URLError):  # while connecting
                error = error.reason if isinstance(error.reason, OSError) else error
            timed_out = isinstance(error, TimeoutError)
            if timed_out:
                timeouts += 1
            retried = timeouts <= TIMEOUT_RETRIES if timed_out else _dropped(error)
            delay = next(delays, None) if retried else None
            if delay is not None:
                time.sleep(delay)
                continue
            raise StackError(f"Prefect server at {api_url} does not answer ({error})") from None


def _dropped(error: BaseException) -> bool:
    # ``RemoteDisconnected`` (closed before an answer) is a ``ConnectionResetError``.
    return isinstance(error, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError))
