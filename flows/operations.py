"""The ``replay`` and ``maintenance`` flows: orchestration around ``spark.maintenance``."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.guard import holding_workspace
from flows.medallion import _spark, check_stack, run_layer
from spark.settings import load_profile


@task(cache_policy=NO_CACHE)
def reset_downstream_tables(profile_name: str, workspace: str) -> list[str]:
    from spark.maintenance import reset_downstream

    removed = reset_downstream(
        _spark(profile_name, workspace), load_profile(profile_name, workspace)
    )
    get_run_logger().info("removed %d tables/checkpoints: %s", len(removed), removed)
    return removed


@flow(name="replay")
def replay(profile: str = "local", workspace: str = "main", confirm: str = "") -> dict:
    """Rebuild silver and gold from bronze. Pass confirm=<workspace> to proceed.

    Refused while another flow run writes the workspace's silver or gold (a streaming run
    would keep writing into the tables and checkpoints the replay deletes; ``flows.guard``).
    Runs started outside Prefect (``python -m spark.run``) are not on Prefect's record: stop
    them first.
    """
    settings = load_profile(profile, workspace)  # a bad name before the confirmation
    if confirm != workspace:
        raise ValueError(
            f"replay deletes silver and gold of workspace {workspace!r}; "
            f"run again with confirm={workspace!r} to proceed"
        )
    from prefect.runtime import flow_run

    with holding_workspace(profile, workspace, doing="replay", exclusive=True):
        check_stack(settings, reads_events=False)  # the lake alone
        # One run id per replay: the quality report counts a batch per run, and every replay's
        # batches start from 0.
        run_id = f"replay-{workspace}-{flow_run.id or int(time.time())}"
        removed = reset_downstream_tables(profile, workspace)
        rows: dict[str, int] = {}
        for layer in ("silver", "gold"):
            rows.update(run_layer(settings, layer, "available-now", run_id))
        return {"removed": removed, "rows": rows, "run_id": run_id}


@task(cache_policy=NO_CACHE)
def optimize(profile_name: str, workspace: str) -> dict:
    from spark.maintenance import optimize_tables

    result = optimize_tables(_spark(profile_name, workspace), load_profile(profile_name, workspace))
    get_run_logger().info("optimized: %s", result)
    return result


@task(cache_policy=NO_CACHE)
def vacuum(profile_name: str, workspace: str, retention_hours: int | None) -> list[str]:
    from spark.maintenance import vacuum_tables

    done = vacuum_tables(
        _spark(profile_name, workspace), load_profile(profile_name, workspace), retention_hours
    )
    kept = "each table's own, at least 168h" if retention_hours is None else f"{retention_hours}h"
    get_run_logger().info("vacuumed (retain %s): %s", kept, done)
    return done


@task(cache_policy=NO_CACHE)
def checkpoint(profile_name: str, workspace: str) -> list[str]:
    from spark.maintenance import checkpoint_tables

    return checkpoint_tables(_spark(profile_name, workspace), load_profile(profile_name, workspace))


@flow(name="maintenance")
def maintenance(
    profile: str = "local", workspace: str = "main", retention_hours: int | None = None
) -> dict:
    """OPTIMIZE (compaction), VACUUM with a retention floor of 168 h, Delta log checkpoints.

    ``retention_hours``: the hours every table keeps removed files from now on; unset,
    each keeps its own (a week unless raised), the floor at least. Refused while a replay
    deletes the workspace's tables."""
    from spark.maintenance import check_retention

    if retention_hours is not None:
        check_retention(retention_hours)  # before the lock is taken and the tables compacted
    settings = load_profile(profile, workspace)
    with holding_workspace(profile, workspace, doing="maintenance"):
        check_stack(settings, reads_events=False)  # the lake alone
        result = {
            "optimized": optimize(profile, workspace),
            "vacuumed": vacuum(profile, workspace, retention_hours),
            "checkpointed": checkpoint(profile, workspace),
        }
    if not result["checkpointed"]:
        get_run_logger().warning(
            "workspace %r has no tables at %s: nothing to maintain", workspace, settings.lake.root
        )
    return result
