"""``python -m bench.profile --layer silver``: where one layer's time goes, job by job.

Simulates a backlog on workspaces of its own, runs the layers before ``--layer`` over it,
then ``--layer`` itself (gated, as a run is), with Spark's UI on, and prints every Spark
job that layer ran: when it started, its seconds, its tasks and where it was called from,
read from the UI's REST API (``/api/v1/applications/<id>/jobs``). What the jobs do not
cover is the driver's own time (planning, Great Expectations in Python, Delta's commits).
A warm-up over a tenth of the backlog runs first, in the same process, so that the
measured layer pays neither the JVM's compilation nor Great Expectations' first call.

Writes ``bench/results/profile-<layer>.json``; the run's workspaces are dropped at the end
unless ``--keep``. ``make bench`` measures throughput; this says what limits it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import urllib.request
from datetime import datetime

from bench.run import (
    RESULTS,
    RUN_ERRORS,
    add_backlog_arguments,
    bench_profile,
    check_backlog,
    drop_run_workspaces,
    produce_backlog,
    start_stack,
    stop_started,
    warm_up_size,
)
from local_stack.services import StackError
from spark.jobs.layers import Trigger
from spark.run import LAYERS, run_layers
from spark.session import build_spark_session
from spark.settings import Profile

# How a streaming query describes a micro-batch's jobs (StreamExecution: its name, then
# id, run id and batch on lines of their own); Delta may put "Delta: " before it.
_BATCH = re.compile(r"\sid = \S+\s+runId = \S+\s+batch = \S+")


@dataclasses.dataclass(frozen=True)
class Job:
    """One Spark job, timed from the start of the profiled layer."""

    job_id: int
    started_s: float
    seconds: float
    tasks: int
    called_at: str
    step: str = ""  # the step of the batch that ran it (``spark.jobs.steps``), if any


def jobs_since(jobs: list[dict], since: float) -> list[Job]:
    """The jobs of a REST API job list submitted at ``since`` (epoch seconds) or later and
    finished, in the order they started."""
    finished = []
    for job in jobs:
        if "completionTime" not in job or "submissionTime" not in job:
            continue
        submitted = _epoch_seconds(job["submissionTime"])
        if submitted < since:
            continue
        finished.append(
            Job(
                job_id=job["jobId"],
                started_s=submitted - since,
                seconds=_epoch_seconds(job["completionTime"]) - submitted,
                tasks=job.get("numTasks", 0),
                called_at=job.get("name", ""),
                step=_step(job.get("description", "")),
            )
        )
    return sorted(finished, key=lambda job: (job.started_s, job.job_id))


def seconds_per_step(jobs: list[Job]) -> dict[str, float]:
    """The jobs' seconds summed per step, the largest first (``""``: jobs of no step)."""
    totals: dict[str, float] = {}
    for job in jobs:
        totals[job.step] = totals.get(job.step, 0.0) + job.seconds
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def busy_seconds(jobs: list[Job]) -> float:
    """Seconds during which at least one job ran (jobs that overlap count once)."""
    busy, covered_until = 0.0, float("-inf")
    for job in sorted(jobs, key=lambda job: job.started_s):
        end = job.started_s + job.seconds
        if end > covered_until:
            busy += end - max(job.started_s, covered_until)
            covered_until = end
    return busy


def _step(description: str) -> str:
    """``<query> id = .. batch = 0 | silver: gate | count`` -> ``silver: gate | count`` (and
    what Delta adds after it); a streaming query's own description alone -> ``""``; a step
    outside a query as it is."""
    batch, separator, step = description.partition(" | ")
    if separator:
        return step if _BATCH.search(batch) else description
    return "" if _BATCH.search(description) else description


def _epoch_seconds(text: str) -> float:
    """``2026-12-04T01:50:01.123GMT``, as the REST API writes times."""
    parsed = datetime.strptime(text.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return parsed.timestamp()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--layer", choices=list(LAYERS), required=True)
    add_backlog_arguments(parser)
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=0.5,
        help="print jobs of at least this many seconds (all are in the JSON)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's workspaces")
    args = parser.parse_args(argv)
    check_backlog(parser, args)
    warm_up_events = warm_up_size(args)
    layers = list(LAYERS)[: list(LAYERS).index(args.layer) + 1]

    stamp = time.strftime("%Y%m%d%H%M%S")
    try:
        stack, services_started = start_stack()
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    spark = None
    try:
        warm = _with_ui(bench_profile(f"profile-{stamp}-warm"))
        measured = _with_ui(bench_profile(f"profile-{stamp}"))
        produce_backlog(stack, warm, warm_up_events, args.fault_rate)
        records, _ = produce_backlog(stack, measured, args.events, args.fault_rate)
        spark = build_spark_session(measured, app_name=f"reelhouse-profile-{args.layer}")
        run_layers(spark, warm, layers, Trigger(), run_id=f"profile-{stamp}-warm")
        if layers[:-1]:
            run_layers(spark, measured, layers[:-1], Trigger(), run_id=f"profile-{stamp}")
        since = time.time()
        started = time.monotonic()
        run_layers(spark, measured, [args.layer], Trigger(), run_id=f"profile-{stamp}")
        seconds = time.monotonic() - started
        # The UI's own address: Spark moves to the next port when 4040 is taken.
        context = spark.sparkContext
        url = f"{context.uiWebUrl}/api/v1/applications/{context.applicationId}/jobs"
        with urllib.request.urlopen(url, timeout=30) as response:
            jobs = jobs_since(json.load(response), since)
    except RUN_ERRORS as error:
        print(f"error: the profile stopped: {error}", file=sys.stderr)
        return 1
    finally:
        if spark is not None:
            spark.stop()
        if not args.keep:
            drop_run_workspaces(stack, f"profile-{stamp}")
        stop_started(services_started)
    results = {
        "layer": args.layer,
        "events": args.events,
        "records": records,
        "warm_up_events": warm_up_events,
        "seconds": round(seconds, 2),
        "jobs_busy_seconds": round(busy_seconds(jobs), 2),
        "seconds_per_step": {
            step or "(no step)": round(total, 2) for step, total in seconds_per_step(jobs).items()
        },
        "jobs": [dataclasses.asdict(job) for job in jobs],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"profile-{args.layer}.json"
    path.write_text(json.dumps(results, indent=2))
    _print_jobs(results, jobs, args.min_seconds)
    print(f"results: {path}")
    return 0


def _with_ui(profile: Profile) -> Profile:
    conf = {
        **profile.spark_conf,
        "spark.ui.enabled": "true",
        # The warm-up and the layers before the profiled one run hundreds of jobs first.
        "spark.ui.retainedJobs": "100000",
    }
    return dataclasses.replace(profile, spark_conf=conf)


def _print_jobs(results: dict, jobs: list[Job], min_seconds: float) -> None:
    shown = [job for job in jobs if job.seconds >= min_seconds]
    print(
        f"\n{results['layer']} over {results['records']:,} records: {results['seconds']:.1f} s,"
        f" {len(jobs)} Spark jobs busy {results['jobs_busy_seconds']:.1f} s of it"
        f" (jobs of {min_seconds} s or more below)"
    )
    print(f"  {'start s':>8} {'seconds':>8} {'job':>6} {'tasks':>6}  step (or where called)")
    for job in shown:
        print(
            f"  {job.started_s:8.1f} {job.seconds:8.2f} {job.job_id:6d} {job.tasks:6d}"
            f"  {(job.step or job.called_at)[:90]}"
        )
    print(f"\n  {'seconds':>8}  per step (jobs' seconds summed)")
    for name, total in results["seconds_per_step"].items():
        print(f"  {total:8.2f}  {name}")


if __name__ == "__main__":
    raise SystemExit(main())
