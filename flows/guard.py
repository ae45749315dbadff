"""Flow runs that must not overlap on one workspace: a replay deletes the tables and
checkpoints the other flows write, so it never runs beside them, nor they beside it.

A Prefect global concurrency limit per profile and workspace (``reelhouse.<profile>.
<workspace>``) is the lock, with reader/writer semantics: a writer (medallion, streaming,
maintenance) holds one of its slots, a replay all of them. The server grants slots
atomically, so of two runs that start together only one gets the workspace (it waits up
to ``SETTLE_S`` for the other, refused, to leave Prefect's record of active runs). Slots are
leased: a run that dies without releasing them frees them once its lease expires (60 s,
seen within 15 s by a Prefect server; the ephemeral API has no one to look, see
``release_command``). Prefect's record of flow runs is checked as well, for the message
and for a run that is still on record as active (its process died, or a version without
the lock): pending, running or cancelling counts. Layers started outside Prefect
(``python -m spark.run``) hold no slot: stop them first.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse

REPLAY = "replay"
# The flows that write a workspace's silver and gold (maintenance rewrites their files).
WRITERS = ("medallion", "streaming", "maintenance", REPLAY)
# A writer holds one slot and a replay all of them; a writer beyond this many running at
# once on one workspace is refused as it would be during a replay.
SLOTS = 100
LEASE_S = 60  # Prefect's shortest lease; renewed while the run lives
# A run that got the lock waits this long for runs on record as active to end before it is
# refused: one that started in the same instant and was refused the lock is still Running
# on record while it fails (both would be refused). A run that holds the lock refuses
# it in the meantime; one on record whose process died is still there after it.
SETTLE_S = 10.0


def limit_name(profile: str, workspace: str) -> str:
    return f"reelhouse.{profile}.{workspace}"


def release_command(profile: str, workspace: str) -> str:
    """What frees the slots of runs that died with them (no server reaps expired leases
    under the ephemeral API)."""
    return prefect_command(
        f"global-concurrency-limit update {limit_name(profile, workspace)} --active-slots 0"
    )


def prefect_command(arguments: str) -> str:
    """``prefect <arguments>`` as a user can type it in another shell: this environment's
    Prefect command, and on the ephemeral API (no PREFECT_API_URL) the PREFECT_HOME whose
    database holds this run, which ``make`` sets for its own recipes only (the shell's
    default, ~/.prefect, knows neither the run nor the lock)."""
    from prefect.settings import Settings

    executable = Path(sys.executable).with_name("prefect")
    with suppress(ValueError):  # shown from the project's folder when it is below it
        executable = executable.relative_to(Path.cwd())
    command = f"{shlex.quote(str(executable))} {arguments}"
    home = os.environ.get("PREFECT_HOME")
    if home and not Settings().api.url:
        command = f"PREFECT_HOME={shlex.quote(home)} {command}"
    return command


@contextmanager
def holding_workspace(
    profile: str, workspace: str, doing: str, exclusive: bool = False
) -> Iterator[None]:
    """Hold the workspace for the block: one slot, or all of them when ``exclusive``
    (a replay). Raise, naming who holds it, when it is taken."""
    import httpx
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency
    from prefect.runtime import flow_run

    name = limit_name(profile, workspace)
    limit = _ensure_limit(name)
    if not limit.active:  # Prefect would grant nothing and refuse nothing
        raise RuntimeError(
            f"{doing} on workspace {workspace!r} refused: its lock {name!r} is disabled;"
            f" enable it with `{prefect_command(f'global-concurrency-limit enable {name}')}`"
        )
    holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run.id) if flow_run.id else None
    hold = ExitStack()
    try:
        hold.enter_context(
            concurrency(
                name,
                occupy=limit.limit if exclusive else 1,
                max_retries=0,  # refuse at once: never queue a replay behind writers
                lease_duration=LEASE_S,
                strict=True,
                holder=holder,
            )
        )
    except ConcurrencySlotAcquisitionError as refused:
        cause = refused.__cause__
        if not (isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423):
            raise RuntimeError(f"{doing} on workspace {workspace!r}: {refused}") from None
        active = active_runs(WRITERS if exclusive else (REPLAY,), profile, workspace)
        if active:
            raise _refusal(doing, workspace, active) from None
        raise RuntimeError(
            f"{doing} on workspace {workspace!r} refused: its lock {name!r} is held, but no"
            " run on record is active on it (a run whose process died holds it until its"
            f" lease of {LEASE_S} s expires and a Prefect server sees it; with the"
            f" ephemeral API free it with `{release_command(profile, workspace)}`)"
        ) from None
    with hold:
        refuse_while(WRITERS if exclusive else (REPLAY,), profile, workspace, doing, SETTLE_S)
        yield


def _ensure_limit(name: str) -> GlobalConcurrencyLimitResponse:
    """The limit, created when missing (a racing creator's is as good)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            pass
        with suppress(ObjectAlreadyExists):
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=SLOTS)
            )
        return client.read_global_concurrency_limit_by_name(name)


def active_runs(flows: tuple[str, ...], profile: str, workspace: str) -> list[str]:
    """The other active runs of ``flows`` on this profile and workspace, as
    ``flow/run-name (State, id <id>)``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.runtime import flow_run

    current = str(flow_run.id) if flow_run.id else None
    active = FlowRunFilterStateType(
        any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    )
    found = []
    with get_client(sync_client=True) as client:
        for flow in flows:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=active)),
            )
            found += [
                f"{flow}/{run.name} ({run.state_name}, id {run.id})"
                for run in runs
                if str(run.id) != current
                and run.parameters.get("profile", "local") == profile
                and run.parameters.get("workspace", "main") == workspace
            ]
    return found


def refuse_while(
    flows: tuple[str, ...], profile: str, workspace: str, doing: str, settle_s: float = 0.0
) -> None:
    """Raise, naming them, when runs of ``flows`` are active on the workspace, and still
    are after ``settle_s`` (asked again every half second)."""
    deadline = time.monotonic() + settle_s
    while active := active_runs(flows, profile, workspace):
        if time.monotonic() >= deadline:
            raise _refusal(doing, workspace, active)
        time.sleep(0.5)


def _refusal(doing: str, workspace: str, active: list[str]) -> RuntimeError:
    return RuntimeError(
        f"{doing} on workspace {workspace!r} refused while {'; '.join(active)} is active on"
        " it: wait for it or cancel it (a run whose process died stays Running;"
        f" `{prefect_command('flow-run delete <id>')}` removes its record)"
    )
