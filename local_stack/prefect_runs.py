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
import urllib.error
import urllib.request
from dataclasses import dataclass

import psutil

from local_stack.services import StackError

# What the worker may be executing: a run it picked up (Pending), runs (Running) or is
# stopping (Cancelling). Scheduled and Late runs have no process yet.
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELLING")
API_TIMEOUT_S = 5.0
CRASH_MESSAGE = "recorded by prefect-down: the run's process had ended (with its worker, or before)"


@dataclass(frozen=True)
class ActiveRun:
    id: str
    flow: str
    name: str
    state: str  # the state's name: Pending, Running, Cancelling
    pid: int | None  # the process the worker started, when on record

    def describe(self) -> str:
        return f"{self.flow}/{self.name} ({self.state}, id {self.id})"


def read_active_runs(api_url: str) -> list[ActiveRun]:
    """The server's flow runs in an active state, oldest first."""
    rows = _call(
        api_url,
        "flow_runs/filter",
        {"flow_runs": {"state": {"type": {"any_": list(ACTIVE_STATES)}}}, "sort": "START_TIME_ASC"},
    )
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
        )
        for row in rows
    ]


def record_crashed(api_url: str, run: ActiveRun) -> None:
    """Set ``run`` to Crashed on the server's record (forced: a Running run may not crash
    by the usual rules without its own process reporting it)."""
    _call(
        api_url,
        f"flow_runs/{run.id}/set_state",
        {"state": {"type": "CRASHED", "name": "Crashed", "message": CRASH_MESSAGE}, "force": True},
    )


def process_is_gone(pid: int | None) -> bool:
    """True when ``pid`` names no live process; unknown (None) is not gone."""
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # there, but not ours to inspect
        return False


def _pid(value: object) -> int | None:
    # The process worker records the run's pid as text; other workers record other handles.
    text = str(value or "").strip()
    return int(text) if text.isdigit() else None


def _call(api_url: str, path: str, body: dict) -> list | dict:
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace").strip().splitlines()
        raise StackError(
            f"Prefect server at {api_url}: POST /{path} answered {error.code}"
            f"{': ' + detail[0][:200] if detail else ''}"
        ) from None
    except (OSError, ValueError) as error:  # refused, timed out, not JSON
        raise StackError(f"Prefect server at {api_url} does not answer ({error})") from None
