"""``make bench``: throughput of every layer over one backlog, on an isolated workspace.

Writes ``bench/results/latest.json`` and prints a table. After a warm-up on a topic of its
own, a tenth of the backlog (so no measured query pays the JVM's compilation and Great
Expectations' first-call costs), bronze with its gate, bronze without it and a minimal
hand-written Kafka -> Delta copy (the floor a user would write) run over the whole backlog
(available-now) in rounds, each on a workspace of its own, their order rotated from round to
round, and the median of each is reported: one run of each differed by up to 1.7x from the
next. Then silver and gold run alone over the backlog (on the first round's bronze), then a
minimal hand-written Kafka -> parse -> Delta stream (silver's floor: one ``from_json`` with
the contract's schema, no checks), then all layers together on another workspace reading the
same topic (end to end), then one new event at a time through all layers of that workspace,
its tables holding the backlog (freshness: what a micro-batch costs at the least, whatever
its size), then silver and gold again without their gates (what gating costs in all).
``gate_overhead_pct`` is the share of the gated layers' time spent validating (from
``quality.validation_events``); ``gated_vs_ungated_pct`` the share of their time the ungated
layers did not need. Peak RSS sums every process of the run: this driver (and its JVM), the
broker and Azurite. The run's nine workspaces (about 1.6 GB of blobs and 0.15 GB of topics
per million events) are dropped at the end unless ``--keep``: left behind, they fill the
disk and slow Azurite down for every later run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
from kafka.errors import KafkaError

from local_stack.services import StackError
from local_stack.simulate.producer import ProducerError, send_to_kafka
from local_stack.simulate.simulation import SimulationRequest, simulate
from local_stack.stack import LocalStack
from local_stack.topics import ensure_topic
from local_stack.workspaces import drop_workspaces, format_bytes, list_workspaces
from spark.gates import PromoteEverything
from spark.io.preflight import PreflightError
from spark.jobs.layers import Trigger
from spark.run import RunError, run_layers
from spark.session import ENGINE_CONF, JVM_OPTIONS, TIME_ZONE, build_spark_session
from spark.settings import Profile, SettingsError, load_profile

RESULTS = Path(__file__).resolve().parent / "results"
# At least this many, and a tenth of the backlog: after 5,000 the first measured layer
# still ran its hot loops partly interpreted (1M events: bronze 21.6 s, then 17.5 s on a
# third run; a first Delta write of the backlog 16.8 s, then 8.5 s).
MIN_WARM_UP_EVENTS = 5_000
LAYERS = ("bronze", "silver", "gold")
# One new event at a time, this many times: the median round is reported.
FRESHNESS_ROUNDS = 3
# Bronze, bronze ungated and the baseline copy, each this many times by default.
BRONZE_ROUNDS = 3
# What a bronze round measures, in the order of its first round (later rounds rotate it).
BRONZE_RUNS = ("bronze", "bronze_ungated", "baseline_copy")
# How a run stops on what it was given or met (a layer refused, a service gone, a bad
# setting): a one-line error. Anything else is a defect, and keeps its traceback.
RUN_ERRORS = (RunError, PreflightError, ProducerError, KafkaError, SettingsError, ValueError)


class PeakMemory:
    """Samples the summed RSS of the given processes and all their children."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            seen = set()
            for pid in self.pids:
                try:
                    root = psutil.Process(pid)
                    for process in [root, *root.children(recursive=True)]:
                        if process.pid not in seen:
                            seen.add(process.pid)
                            total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop.wait(0.5)


def _timed(action) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def bench_profile(workspace: str) -> Profile:
    """The local profile of a bench workspace, reading its whole backlog from the earliest
    offset, whatever ``REELHOUSE_SOURCE_STARTING_OFFSETS`` says for the user's own runs."""
    profile = load_profile("local", workspace)
    return replace(profile, source=replace(profile.source, starting_offsets="earliest"))


def add_backlog_arguments(parser: argparse.ArgumentParser) -> None:
    """``--events``, ``--fault-rate`` and ``--warm-up-events``, as the bench's commands read
    them (``warm_up_size``)."""
    parser.add_argument("--events", type=_positive, default=1_000_000)
    parser.add_argument("--fault-rate", type=_fraction, default=0.01)
    parser.add_argument(
        "--warm-up-events", type=_positive, help="default: a tenth of --events, at least 5,000"
    )


def check_backlog(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A backlog too large to build in memory is refused before any service or JVM starts
    (the simulator builds a run in memory before sending it)."""
    try:
        SimulationRequest(events=args.events, fault_rate=args.fault_rate, with_truth=False)
    except ValueError as error:
        parser.error(f"argument --events: {str(error).removeprefix('events ')}")


def warm_up_size(args: argparse.Namespace) -> int:
    return args.warm_up_events or max(MIN_WARM_UP_EVENTS, args.events // 10)


def produce_backlog(
    stack: LocalStack, profile: Profile, events: int, fault_rate: float | None = None
) -> tuple[int, float]:
    """Simulate ``events`` (with ``fault_rate``, or the simulator's default) into the
    profile's topic, created with the stack's partitions: the records sent, and the seconds
    sending them took."""
    options = {} if fault_rate is None else {"fault_rate": fault_rate}
    simulation = simulate(SimulationRequest(events=events, with_truth=False, **options))
    ensure_topic(
        profile.source.bootstrap_servers,
        profile.source.topic,
        stack.settings.kafka.default_partitions,
    )
    seconds = send_to_kafka(
        simulation.records,
        profile.source.topic,
        profile.source.client_options(),
        rate=0,
        progress=False,
    )
    return len(simulation.records), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    add_backlog_arguments(parser)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's workspaces (lake, checkpoints, topics) to inspect them",
    )
    parser.add_argument(
        "--bronze-rounds",
        type=_positive,
        default=BRONZE_ROUNDS,
        help="runs of bronze, bronze ungated and the baseline copy, each (median reported)",
    )
    args = parser.parse_args(argv)
    check_backlog(parser, args)
    warm_up_events = warm_up_size(args)

    stamp = time.strftime("%Y%m%d%H%M%S")
    try:
        stack, started = start_stack()
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    sessions: list = []
    try:
        _measure(args, stack, bench_profile(f"bench-{stamp}"), stamp, warm_up_events, sessions)
    except RUN_ERRORS as error:
        # A failed run leaves no results, and (below) none of its workspaces.
        print(f"error: the bench stopped: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            # Spark's Kafka consumer pool outlives the session and warns, once a minute
            # per consumer, about the topics dropped below for as long as its JVM lives.
            if sessions:
                try:
                    _stop_jvm(sessions[0])
                except Exception as error:  # the workspaces still go; the run's error stays
                    print(f"error: could not stop Spark's JVM: {error}", file=sys.stderr)
            drop_run_workspaces(stack, f"bench-{stamp}")
        stop_started(started)
    return 0


def stop_started(services: list) -> None:
    """Stop the services the bench started, in the reverse order of their start (as `down`)."""
    for service in reversed(services):
        try:
            print(service.stop())
        except StackError as error:
            print(f"error: {service.name}: {error}", file=sys.stderr)


def drop_run_workspaces(stack: LocalStack, prefix: str) -> None:
    """Drop workspace ``prefix`` and those named ``prefix-*``, saying what it freed; an
    error (the stack went down too) says what is left, and the run's own error stays."""
    try:
        dropped = drop_workspaces(stack.settings, [prefix, f"{prefix}-*"])
    except Exception as error:
        print(
            f"error: could not drop the run's workspaces {prefix}*: {error}"
            f" (python -m local_stack drop-workspace '{prefix}*' once the stack is up)",
            file=sys.stderr,
        )
        return
    freed = format_bytes(sum(usage.bytes for usage in dropped))
    print(f"dropped the run's {len(dropped)} workspaces ({freed}); --keep keeps them")


def _measure(
    args: argparse.Namespace,
    stack: LocalStack,
    profile: Profile,
    stamp: str,
    warm_up_events: int,
    sessions: list,
) -> None:
    """Every measure of the run on ``profile``'s workspace and those beside it, into
    ``bench/results/latest.json`` and a printed table; its Spark session into ``sessions``."""
    together = _on_topic_of(profile, f"bench-{stamp}-e2e")
    ungated = _on_topic_of(profile, f"bench-{stamp}-ungated")
    ungated_gold = bench_profile(f"bench-{stamp}-ungated-gold")
    service_pids = {service.name: service.running_pid() for service in stack.services}
    pids = [os.getpid(), *(pid for pid in service_pids.values() if pid)]
    outside = [name for name, pid in service_pids.items() if pid is None]
    if outside:  # REELHOUSE_STACK_SERVICES=external: processes this machine may not even run
        print(
            f"warning: peak_rss_mb leaves out {', '.join(outside)}: not started by this"
            " project, so not measured",
            file=sys.stderr,
        )

    results: dict = {
        # Which code and when: a run that stops leaves an earlier run's file in place.
        "commit": _commit(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "events": args.events,
        "fault_rate": args.fault_rate,
        "warm_up_events": warm_up_events,
        # What the stack already held: Azurite slows down as its blobs pile up (README).
        "stack_before": _stack_contents(stack),
    }
    with PeakMemory(pids) as memory:
        records, send_s = produce_backlog(stack, profile, args.events, args.fault_rate)
        results["records"] = records
        results["produce_eps"] = records / send_s

        spark = build_spark_session(profile, app_name="reelhouse-bench")
        sessions.append(spark)
        _warm_up(spark, stack, stamp, warm_up_events, args.fault_rate)
        rounds = _bronze_rounds(spark, profile, ungated, stamp, args.bronze_rounds)
        layer_s = {"bronze": statistics.median(rounds["bronze"])}
        for layer in LAYERS[1:]:
            layer_s[layer] = _timed(
                lambda layer=layer: run_layers(
                    spark, profile, [layer], Trigger(), run_id=f"bench-{stamp}"
                )
            )
        for layer in LAYERS:
            results[f"{layer}_eps"] = records / layer_s[layer]
        # Silver's floor, as the baseline copy is bronze's: one parse, no checks.
        baseline_parse_s = _timed(lambda: _baseline_parse(spark, profile))
        results["baseline_parse_eps"] = records / baseline_parse_s
        results["silver_vs_baseline_parse"] = round(baseline_parse_s / layer_s["silver"], 2)
        end_to_end_s = _timed(
            lambda: run_layers(
                spark,
                together,
                ["bronze", "silver", "gold"],
                Trigger(),
                run_id=f"bench-{stamp}-e2e",
            )
        )
        results["end_to_end_eps"] = records / end_to_end_s
        freshness = _freshness(spark, together, f"bench-{stamp}-e2e")
        results["freshness_s"] = freshness["total"]
        results["freshness_layer_s"] = {layer: freshness[layer] for layer in LAYERS}
        # The same layers without their gates: what gating costs, all of it (caching the
        # batch, validating, recording, splitting out dropped rows).
        ungated_s = {
            "bronze": statistics.median(rounds["bronze_ungated"]),
            "silver": _timed(
                lambda: run_layers(spark, ungated, ["silver"], Trigger(), gate=PromoteEverything())
            ),
        }
        # Ungated silver keeps the rows silver's gate drops (events without a time, ...),
        # which gold cannot aggregate: ungated gold reads (a shallow clone of) gated silver.
        _clone_silver(spark, profile, ungated_gold)
        ungated_s["gold"] = _timed(
            lambda: run_layers(spark, ungated_gold, ["gold"], Trigger(), gate=PromoteEverything())
        )
        baseline_s = statistics.median(rounds["baseline_copy"])
        results["baseline_copy_eps"] = records / baseline_s
        # The target: gated bronze at least 0.8x the baseline copy.
        results["bronze_vs_baseline"] = round(baseline_s / layer_s["bronze"], 2)
    results["peak_rss_mb"] = round(memory.peak_mb, 1)
    # This process and its children (Spark's JVM, Python workers) and each service's.
    results["peak_rss_covers"] = ["bench", *(name for name, pid in service_pids.items() if pid)]
    results["seconds"] = {
        **layer_s,
        "end_to_end": end_to_end_s,
        **{f"{layer}_ungated": seconds for layer, seconds in ungated_s.items()},
        "baseline_copy": baseline_s,
        "baseline_parse": baseline_parse_s,
        "produce": send_s,
    }
    results["bronze_rounds_s"] = {run: [round(s, 1) for s in rounds[run]] for run in BRONZE_RUNS}
    gated_s = sum(layer_s.values())
    results["gate_overhead_pct"] = _gate_overhead_pct(spark, profile, gated_s)
    results["gated_vs_ungated_pct"] = round(
        100.0 * (gated_s - sum(ungated_s.values())) / gated_s, 1
    )
    results["files_per_table"] = _files_per_table(spark, profile)
    results["spark"] = {
        "master": profile.spark_master,
        **ENGINE_CONF,
        **{key: value for key, value in profile.spark_conf.items() if key != "spark.jars"},
        **TIME_ZONE,
        # Before the profile's (spark.driver.extraJavaOptions above) in every Spark JVM.
        "jvm_options": JVM_OPTIONS,
    }
    results["machine"] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    # What splits the backlog into micro-batches and where the lake is: the user's
    # settings (REELHOUSE_*), the same for every query of the run.
    results["stream"] = {
        "kafka_partitions": stack.settings.kafka.default_partitions,
        "max_offsets_per_trigger": profile.source.max_offsets_per_trigger,
        "max_files_per_trigger": profile.lake.max_files_per_trigger,
        "lake_root": profile.lake.root.removesuffix(f"/{profile.workspace}"),
        "stack_services": stack.settings.services,
    }
    results["lake"] = profile.lake.root if args.keep else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    _print_table(results)


def _commit() -> str | None:
    """The checkout's commit, ``+changes`` when its files differ from it; None outside git."""
    root = Path(__file__).resolve().parent.parent

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+changes" if changes else head


def _stop_jvm(spark) -> None:
    """Stop the session and the JVM behind it (nothing of Spark is used after this)."""
    from pyspark import SparkContext

    spark.stop()
    gateway = SparkContext._gateway
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)  # the JVM PySpark launched, if it did
    gateway.shutdown()
    SparkContext._gateway = SparkContext._jvm = None
    if process is not None:
        process.stdin.close()  # the JVM exits when its parent's pipe closes
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _bronze_rounds(spark, profile, ungated, stamp: str, count: int) -> dict[str, list[float]]:
    """Seconds of each of ``BRONZE_RUNS`` over the backlog, ``count`` times, each on a
    workspace of its own (the first round on ``profile`` and ``ungated``, whose bronze the
    later layers read). Round r starts at the r-th run, so that with three rounds each
    run comes first, second and third once: none gains from the order."""
    seconds: dict[str, list[float]] = {run: [] for run in BRONZE_RUNS}
    for index in range(count):
        gated_ws, ungated_ws = profile, ungated
        if index:
            gated_ws = _on_topic_of(profile, f"bench-{stamp}-bronze-r{index}")
            ungated_ws = _on_topic_of(profile, f"bench-{stamp}-ungated-r{index}")
        runs = {
            "bronze": lambda ws=gated_ws: run_layers(
                spark, ws, ["bronze"], Trigger(), run_id=f"bench-{stamp}"
            ),
            "bronze_ungated": lambda ws=ungated_ws: run_layers(
                spark, ws, ["bronze"], Trigger(), gate=PromoteEverything()
            ),
            "baseline_copy": lambda ws=gated_ws: _baseline_copy(spark, ws, stamp),
        }
        shift = index % len(BRONZE_RUNS)
        for run in BRONZE_RUNS[shift:] + BRONZE_RUNS[:shift]:
            seconds[run].append(_timed(runs[run]))
    return seconds


def _on_topic_of(profile, workspace: str):
    """The local profile of ``workspace``, reading ``profile``'s topic."""
    other = bench_profile(workspace)
    return replace(other, source=replace(other.source, topic=profile.source.topic))


def start_stack() -> tuple[LocalStack, list]:
    """The local stack, started when down, and the services this call started (for
    ``stop_started``); ``StackError`` naming what keeps it down, those stopped again. By
    process, as ``make test`` does: what was up stays up, what the bench starts it stops."""
    stack = LocalStack()
    started = [service for service in stack.services if service.running_pid() is None]
    try:
        stack.up()
    except StackError:
        stop_started(started)
        raise
    return stack, started


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def _warm_up(spark, stack: LocalStack, stamp: str, events: int, fault_rate: float) -> None:
    """Every measured query runs warm: the JVM's JIT, Spark's code generation and Great
    Expectations' first validation (about 8 s) are paid here, on a topic of its own, not
    by whichever query happens to run first. With the backlog's faults, so that the code
    only faults reach (silver's quarantine write, gold's late records) is warm too."""
    warm = bench_profile(f"bench-{stamp}-warm")
    produce_backlog(stack, warm, events, fault_rate)
    run_layers(spark, warm, ["bronze", "silver", "gold"], Trigger(), run_id=f"bench-{stamp}-warm")
    _baseline_copy(spark, warm, stamp)
    _baseline_parse(spark, warm)


def _freshness(spark, profile, run_id: str) -> dict[str, float]:
    """Seconds from one new event sent to its rows in every gold table, through warm layers
    whose tables already hold the backlog, per layer and in all (``total``, the send
    included): the median of ``FRESHNESS_ROUNDS`` rounds, one event each. Fixed costs,
    not throughput: a continuous run's micro-batch costs at least this much, whatever
    its size. The events are clean and of the backlog's days (another seed)."""
    records = simulate(SimulationRequest(events=50, seed=99, with_truth=False)).records
    options = profile.source.client_options()
    rounds = []
    for record in records[:FRESHNESS_ROUNDS]:
        send_s = send_to_kafka(
            [record], profile.source.topic, options, rate=0, progress=False, producers=1
        )
        seconds = {"send": send_s}
        for layer in LAYERS:
            seconds[layer] = _timed(
                lambda layer=layer: run_layers(spark, profile, [layer], Trigger(), run_id=run_id)
            )
        seconds["total"] = sum(seconds.values())
        rounds.append(seconds)
    return {
        key: round(statistics.median(seconds[key] for seconds in rounds), 1)
        for key in ("total", *LAYERS)
    }


def _stack_contents(stack: LocalStack) -> dict[str, int]:
    workspaces = list_workspaces(stack.settings)
    return {
        "workspaces": len(workspaces),
        "blobs": sum(usage.objects for usage in workspaces),
        "topics": sum(len(usage.topics) for usage in workspaces),
    }


def _baseline_copy(spark, profile, stamp: str) -> None:
    """The minimal hand-written Kafka -> Delta stream a user would start from."""
    location = f"{profile.lake.root}/baseline/copy"
    query = (
        spark.readStream.format("kafka")
        .options(**profile.source.spark_options())
        .load()
        .writeStream.format("delta")
        .option("checkpointLocation", profile.lake.checkpoint_location("baseline_copy"))
        .trigger(availableNow=True)
        .start(location)
    )
    query.awaitTermination()


def _baseline_parse(spark, profile) -> None:
    """The minimal hand-written parsing stream, silver's floor: Kafka -> each payload parsed
    once with the contract's schema (``from_json``) -> Delta. No checks, no deduplication,
    no quarantine, no gate; statistics on five columns, as silver keeps them on six (Delta's
    default, the first 32 columns, made the same stream 2.4x slower: 42.7 s against 17.8 s
    for 1M events)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from spark import contract

    location = f"{profile.lake.root}/baseline/parsed"
    payload = F.from_json(F.col("value").cast("string"), contract.spark_schema())
    events = (
        spark.readStream.format("kafka")
        .options(**profile.source.spark_options())
        .load()
        .select(
            payload.alias("event"),
            "partition",
            "offset",
            F.col("timestamp").alias("kafka_timestamp"),
        )
        .select("event.*", "partition", "offset", "kafka_timestamp")
    )
    stats = "event_ts,event_id,user_id,title_id,kafka_timestamp"
    (
        DeltaTable.createIfNotExists(spark)
        .location(location)
        .addColumns(events.schema)
        .property("delta.dataSkippingStatsColumns", stats)
        .execute()
    )
    query = (
        events.writeStream.format("delta")
        .option("checkpointLocation", profile.lake.checkpoint_location("baseline_parse"))
        .trigger(availableNow=True)
        .start(location)
    )
    query.awaitTermination()


def _clone_silver(spark, source_profile, target_profile) -> None:
    """Silver and its quarantine: gold reads the quarantine's late records too."""
    for table in ("silver.events", "silver.quarantine"):
        source = source_profile.lake.table_location(table)
        target = target_profile.lake.table_location(table)
        spark.sql(f"CREATE TABLE delta.`{target}` SHALLOW CLONE delta.`{source}`")


def _gate_overhead_pct(spark, profile, layer_seconds: float) -> float | None:
    """Share of the layers' time spent in validation, from the quality event log."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    location = profile.lake.table_location("quality.validation_events")
    if not DeltaTable.isDeltaTable(spark, location):
        return None
    events = spark.read.format("delta").load(location)
    if "duration_ms" not in events.columns:
        return None
    per_batch = events.groupBy("table", "batch_id").agg(F.max("duration_ms").alias("ms"))
    validation_ms = per_batch.agg(F.sum("ms")).first()[0] or 0
    return round(100.0 * validation_ms / 1000.0 / layer_seconds, 1)


def _files_per_table(spark, profile) -> dict[str, int]:
    from delta.tables import DeltaTable

    from spark.catalog import TABLES

    files = {}
    for spec in TABLES:
        location = profile.lake.table_location(spec.name)
        if DeltaTable.isDeltaTable(spark, location):
            files[spec.name] = DeltaTable.forPath(spark, location).detail().first()["numFiles"]
    return files


def _print_table(results: dict) -> None:
    print(f"\nreelhouse bench: {results['events']:,} events, {results['records']:,} records")
    for key in (
        "produce_eps",
        "bronze_eps",
        "silver_eps",
        "gold_eps",
        "end_to_end_eps",
        "baseline_copy_eps",
        "baseline_parse_eps",
    ):
        print(f"  {key:<20} {results[key]:>12,.0f} events/s")
    layers = ", ".join(f"{layer} {s}" for layer, s in results["freshness_layer_s"].items())
    print(f"  {'freshness_s':<20} {results['freshness_s']:>12} ({layers})")
    print(
        f"  {'bronze_vs_baseline':<20} {results['bronze_vs_baseline']:>12}"
        f" (medians of {results['bronze_rounds_s']})"
    )
    print(
        f"  {'silver_vs_baseline_parse':<20} {results['silver_vs_baseline_parse']:>12}"
        " (silver's seconds against a single parse's)"
    )
    print(f"  {'peak_rss_mb':<20} {results['peak_rss_mb']:>12,.0f}")
    print(f"  {'gate_overhead_pct':<20} {str(results['gate_overhead_pct']):>12}")
    print(f"  {'gated_vs_ungated_pct':<20} {results['gated_vs_ungated_pct']:>12}")
    print(f"  files per table: {results['files_per_table']}")
    print(f"  stack before the run: {results['stack_before']}")
    print(f"results: {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    raise SystemExit(main())
