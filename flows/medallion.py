"""The ``medallion`` flow: stack -> simulate -> bronze -> silver -> gold -> report.

Orchestration only: every step calls into ``local_stack``, ``spark`` or ``quality``.
Each step logs its outcome, duration and row counts, the way the original design's
Data Factory pipeline logged success and failure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from functools import cache
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.guard import holding_workspace
from local_stack.jvm import JvmArtifactsMissing
from local_stack.services import StackSetupError
from local_stack.settings import load_stack_settings
from local_stack.simulate.simulation import SimulationRequest
from local_stack.stack import LocalStack
from spark.catalog import CatalogConflict
from spark.gates import GateFailure
from spark.io.delta import CheckpointLost
from spark.settings import Profile, load_profile


class TransientError(RuntimeError):
    """A step failed for a reason worth retrying (broker not ready, storage timeout)."""


def _retry_unless_gate_failed(task, task_run, state) -> bool:
    """Retry transient failures; a failed quality gate is never retried."""
    try:
        state.result()
    except (GateFailure, CheckpointLost, CatalogConflict):  # a person must act: spark.run raises
        return False  # LayerGateFailure, a GateFailure, for a gate
    except Exception:
        return True
    return False


@cache
def _spark(profile_name: str, workspace: str):
    from spark.io.preflight import start_session  # a JVM that will not start: one line

    return start_session(load_profile(profile_name, workspace), app_name="reelhouse-flow")


def _retry_if_transient(task, task_run, state) -> bool:
    """Retry what may pass by itself (a broker still starting); not what needs a person."""
    try:
        state.result()
    except TransientError:
        return True
    except Exception:
        return False
    return False


@task(
    retries=5,
    retry_delay_seconds=[2, 4, 8, 16, 30],
    retry_condition_fn=_retry_if_transient,
    cache_policy=NO_CACHE,
)
def check_stack(profile: Profile, reads_events: bool = True) -> str:
    """Make sure the event source (unless not ``reads_events``: replay and maintenance) and
    the lake's endpoint answer; on the local profile, start the stack if down, and create
    the workspace's topic for a run that reads it.

    A service still starting or briefly unreachable is retried for about a minute; a
    stack that cannot start until someone acts (``make setup`` not run, a port another
    program holds, a bootstrap or storage host no DNS server knows) fails at once, with the
    one line that says what to do.
    """
    from spark.io.preflight import (
        PreflightError,
        UnknownHostError,
        check_lake_endpoint,
        check_source_reachable,
    )

    logger = get_run_logger()
    started = time.monotonic()
    if profile.name == "local":
        stack = LocalStack()  # a bad stack.toml is no reason to retry
        try:
            for line in stack.up(topics=(profile.source.topic,) if reads_events else ()):
                logger.info(line)
        except (StackSetupError, JvmArtifactsMissing) as error:
            raise RuntimeError(f"local stack cannot start: {error}") from None
        except Exception as error:
            raise TransientError(f"local stack not ready: {error}") from error
    try:
        if reads_events:
            check_source_reachable(profile.source)
        check_lake_endpoint(profile)
    except UnknownHostError as error:
        raise RuntimeError(str(error)) from None
    except PreflightError as error:
        raise TransientError(str(error)) from None
    logger.info(
        "stack ready in %.1fs (%s)", time.monotonic() - started, profile.source.bootstrap_servers
    )
    return profile.source.bootstrap_servers


@task(cache_policy=NO_CACHE)
def upstream_exists(profile: Profile, layers: list[str]) -> None:
    """The table the first layer reads is there (``spark.run.check_upstream``)."""
    from spark.run import check_upstream

    check_upstream(_spark(profile.name, profile.workspace), profile, layers)


@task(cache_policy=NO_CACHE)
def simulate_events(profile: Profile, events: int, fault_rate: float, seed: int) -> dict:
    """Produce simulated events into the workspace topic (local runs)."""
    logger = get_run_logger()
    runs = load_stack_settings().simulations_dir(profile.name)
    manifest = runs / f"{profile.source.topic}.manifest.json"
    command = [
        sys.executable,
        "-m",
        "local_stack.simulate",
        "--events",
        str(events),
        "--fault-rate",
        str(fault_rate),
        "--seed",
        str(seed),
        "--profile",
        profile.name,
        "--workspace",
        profile.workspace,
        "--manifest",
        str(manifest),
        "--quiet",
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        last_line = (completed.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"simulator failed: {last_line}")
    logger.info(completed.stdout.strip())
    import json

    content = json.loads(Path(manifest).read_text())
    return {
        "events": content["events"],
        "records": content["records"],
        "faults": content["faults"],
        "manifest": str(manifest),
    }


@task(
    retries=2,
    retry_delay_seconds=[5, 15],
    retry_condition_fn=_retry_unless_gate_failed,
    cache_policy=NO_CACHE,
)
def run_layer(profile: Profile, layer: str, trigger: str, run_id: str) -> dict:
    """Run one layer (gated) and return its rows per table."""
    from spark.jobs.layers import Trigger
    from spark.run import run_layers
    from spark.tables import describe_tables

    logger = get_run_logger()
    spark = _spark(profile.name, profile.workspace)
    started = time.monotonic()
    run_layers(spark, profile, [layer], Trigger(trigger), run_id=run_id)
    rows = {
        table["name"]: table["rows"]
        for table in describe_tables(spark, profile)
        if table["name"].startswith(f"{layer}.")
    }
    logger.info("%s done in %.1fs: %s", layer, time.monotonic() - started, rows)
    return rows


@task(cache_policy=NO_CACHE)
def gate_results(profile: Profile, run_id: str) -> list[dict]:
    """Per gated table: batches validated and checks not met by action, for this run."""
    from quality.validation_log import gate_summary

    gates = gate_summary(_spark(profile.name, profile.workspace), profile, run_id)
    for gate in gates:
        get_run_logger().info(
            "gate %s: %d batches, %d checks; not met: warn %d, drop %d, fail %d",
            *(gate[key] for key in ("table", "batches", "checks", "warn", "drop", "fail")),
        )
    return gates


@task(cache_policy=NO_CACHE)
def report(
    profile: Profile, run_id: str, rows: dict, simulation: dict | None, gates: list[dict]
) -> str:
    """Build the quality report and publish the run's summary as Prefect artifacts."""
    logger = get_run_logger()
    report_path = _build_quality_report(profile, run_id)
    table = [{"table": name, "rows": count} for name, count in sorted(rows.items())]
    create_table_artifact(
        key="rows-per-layer",
        table=table,
        description=f"Rows per table, workspace {profile.workspace}",
    )
    faults = simulation["faults"] if simulation else {}
    lines = [
        f"# reelhouse run `{run_id}`",
        f"Profile **{profile.name}**, workspace **{profile.workspace}**.",
        "",
        "| table | rows |",
        "|---|---|",
        *[f"| {row['table']} | {row['rows']:,} |" for row in table],
        "",
        "| gated table | batches | checks | not met: warn | drop | fail |",
        "|---|---|---|---|---|---|",
        *[
            f"| {g['table']} | {g['batches']} | {g['checks']} | {g['warn']} | {g['drop']} "
            f"| {g['fail']} |"
            for g in gates
        ],
        "",
        f"Quality report: `{report_path}`" if report_path else "Quality report: not built",
    ]
    if faults:
        lines += ["", "Injected faults: " + ", ".join(f"{k} {v}" for k, v in faults.items() if v)]
    create_markdown_artifact(key="medallion-summary", markdown="\n".join(lines))
    logger.info("report: %s", report_path or "not built")
    return report_path or ""


def _build_quality_report(profile: Profile, run_id: str) -> str | None:
    try:
        from quality.report import build_report
    except ImportError:
        return None
    return str(build_report(_spark(profile.name, profile.workspace), profile, run_id))


@flow(name="medallion", log_prints=True)
def medallion(
    profile: str = "local",
    workspace: str = "main",
    events: int = 100_000,
    fault_rate: float = 0.01,
    seed: int | None = None,
    simulate: bool = True,
    trigger: str = "available-now",
    layers: str = "bronze,silver,gold",
) -> dict:
    """Simulate (optional), then bronze -> silver -> gold, each gated, then the report.

    ``seed`` defaults to a new one per run: a second run of the deployment adds new events
    instead of redelivering the first run's, which silver would quarantine as duplicates.
    """
    from prefect.runtime import flow_run

    from spark.run import parse_layers

    try:
        wanted = parse_layers(layers)
    except ValueError as error:
        raise ValueError(f"layers={layers!r}: {error}") from None
    if trigger != "available-now":
        raise ValueError(
            f"trigger={trigger!r}: the medallion flow runs available-now and ends; for a"
            " continuous run use the streaming flow (prefect deployment run 'streaming/local')"
        )
    seed = seed if seed is not None else time.time_ns() % 2**31
    # Every parameter is checked before the workspace's lock, the stack or Spark is touched.
    settings = load_profile(profile, workspace)
    if "bronze" in wanted:
        settings.source.check_starting_offsets()
    # Events simulated for a run without bronze would wait in the topic, unasked for, for
    # the next bronze run, and this run's summary would list faults none of its rows has.
    skip_simulation = simulate and "bronze" not in wanted
    simulate = simulate and "bronze" in wanted
    if simulate:
        SimulationRequest(events, seed=seed, fault_rate=fault_rate, with_truth=False)
    with holding_workspace(profile, workspace, doing="a medallion run"):
        run_id = str(flow_run.id or f"local-{int(time.time())}")
        if skip_simulation:
            get_run_logger().info(
                "no events simulated: layers=%r has no bronze to read them", layers
            )
        check_stack(settings, reads_events="bronze" in wanted)
        if "bronze" not in wanted:
            upstream_exists(settings, wanted)
        simulation = simulate_events(settings, events, fault_rate, seed) if simulate else None
        rows: dict[str, int] = {}
        for layer in wanted:  # in run order
            rows.update(run_layer(settings, layer, trigger, run_id))
        gates = gate_results(settings, run_id)
        report_path = report(settings, run_id, rows, simulation, gates)
        return {
            "run_id": run_id,
            "rows": rows,
            "simulation": simulation,
            "gates": gates,
            "report": report_path,
        }
