"""Flow runs that must not overlap on one workspace: a replay deletes the tables and
checkpoints the other flows write, so it never runs beside them, nor they beside it.

Prefect's record of flow runs is the referee: a run that is pending (a worker is starting
it), running or cancelling counts. Two runs that start within the same second can both
pass; layers started outside Prefect (``python -m spark.run``) are not on the record.
"""

from __future__ import annotations

REPLAY = "replay"
# The flows that write a workspace's silver and gold (maintenance rewrites their files).
WRITERS = ("medallion", "streaming", "maintenance", REPLAY)


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


def refuse_while(flows: tuple[str, ...], profile: str, workspace: str, doing: str) -> None:
    """Raise, naming them, when runs of ``flows`` are active on the workspace."""
    active = active_runs(flows, profile, workspace)
    if active:
        raise RuntimeError(
            f"{doing} on workspace {workspace!r} refused while {'; '.join(active)} is active on"
            " it: wait for it or cancel it (a run whose process died stays Running; `prefect"
            " flow-run delete <id>` removes its record)"
        )
