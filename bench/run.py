"""``make bench``: throughput of every layer over one backlog, on an isolated workspace.

Writes ``bench/results/latest.json`` and prints a table. After a warm-up on a topic of
its own, a tenth of the backlog (so no measured query pays the JVM's compilation and
Great Expectations' first-call costs), each layer runs alone over the
whole backlog (available-now), then all layers together on a second workspace reading
the same topic (end to end), then one new event at a time through all layers of that
workspace, its tables holding the backlog (freshness: what a micro-batch costs at the
least, whatever its size), then each layer alone again without its gate on a third
workspace (what gating costs in all), then a minimal hand-written Kafka -> Delta copy
(the floor a user would write). ``gate_overhead_pct`` is the share of the gated layers'
time spent validating (from ``quality.validation_events``); ``gated_vs_ungated_pct`` the
share of their time the ungated layers did not need. Peak RSS sums every process of the
run: this driver (and its JVM), the broker and Azurite. The run's five workspaces (about
0.8 GB of blobs and 0.15 GB of topics per million events) are dropped at the end unless
``--keep``: left behind, they fill the disk and slow Azurite down for every later run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil

from local_stack.simulate.producer import send_to_kafka
from local_stack.simulate.simulation import SimulationRequest, simulate
from local_stack.stack import LocalStack
from local_stack.topics import ensure_topic
from local_stack.workspaces import drop_workspaces, format_bytes, list_workspaces
from spark.gates import PromoteEverything
from spark.jobs.layers import Trigger
from spark.run import run_layers
from spark.session import ENGINE_CONF, JVM_OPTIONS, build_spark_session
from spark.settings import load_profile

RESULTS = Path(__file__).resolve().parent / "results"
# At least this many, and a tenth of the backlog: after 5,000 the first measured layer
# still ran its hot loops partly interpreted (1M events: bronze 21.6 s, then 17.5 s on a
# third run; a first Delta write of the backlog 16.8 s, then 8.5 s).
MIN_WARM_UP_EVENTS = 5_000
LAYERS = ("bronze", "silver", "gold")
# One new event at a time, this many times: the median round is reported.
FRESHNESS_ROUNDS = 3


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--fault-rate", type=float, default=0.01)
    parser.add_argument(
        "--warm-up-events", type=int, help="default: a tenth of --events, at least 5,000"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's workspaces (lake, checkpoints, topics) to inspect them",
    )
    args = parser.parse_args(argv)
    warm_up_events = args.warm_up_events or max(MIN_WARM_UP_EVENTS, args.events // 10)

    stack = LocalStack()
    stack.up()
    stamp = time.strftime("%Y%m%d%H%M%S")
    profile = load_profile("local", f"bench-{stamp}")
    together = load_profile("local", f"bench-{stamp}-e2e")
    together = replace(together, source=replace(together.source, topic=profile.source.topic))
    ungated = load_profile("local", f"bench-{stamp}-ungated")
    ungated = replace(ungated, source=replace(ungated.source, topic=profile.source.topic))
    ungated_gold = load_profile("local", f"bench-{stamp}-ungated-gold")
    pids = [os.getpid(), *(s.running_pid() for s in stack.services if s.running_pid())]

    results: dict = {
        "events": args.events,
        "fault_rate": args.fault_rate,
        "warm_up_events": warm_up_events,
        # What the stack already held: Azurite slows down as its blobs pile up (README).
        "stack_before": _stack_contents(stack),
    }
    with PeakMemory(pids) as memory:
        simulation = simulate(
            SimulationRequest(events=args.events, fault_rate=args.fault_rate, with_truth=False)
        )
        records = len(simulation.records)
        ensure_topic(
            profile.source.bootstrap_servers,
            profile.source.topic,
            stack.settings.kafka.default_partitions,
        )
        send_s = send_to_kafka(
            simulation.records,
            profile.source.topic,
            profile.source.client_options(),
            rate=0,
            progress=False,
        )
        del simulation
        results["records"] = records
        results["produce_eps"] = records / send_s

        spark = build_spark_session(profile, app_name="reelhouse-bench")
        _warm_up(spark, stack, stamp, warm_up_events)
        layer_s = {}
        for layer in LAYERS:
            layer_s[layer] = _timed(
                lambda layer=layer: run_layers(
                    spark, profile, [layer], Trigger(), run_id=f"bench-{stamp}"
                )
            )
            results[f"{layer}_eps"] = records / layer_s[layer]
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
            layer: _timed(
                lambda layer=layer: run_layers(
                    spark, ungated, [layer], Trigger(), gate=PromoteEverything()
                )
            )
            for layer in ("bronze", "silver")
        }
        # Ungated silver keeps the rows silver's gate drops (events without a time, ...),
        # which gold cannot aggregate: ungated gold reads (a shallow clone of) gated silver.
        _clone_silver(spark, profile, ungated_gold)
        ungated_s["gold"] = _timed(
            lambda: run_layers(spark, ungated_gold, ["gold"], Trigger(), gate=PromoteEverything())
        )
        baseline_s = _timed(lambda: _baseline_copy(spark, profile, stamp))
        results["baseline_copy_eps"] = records / baseline_s
    results["peak_rss_mb"] = round(memory.peak_mb, 1)
    results["seconds"] = {
        **layer_s,
        "end_to_end": end_to_end_s,
        **{f"{layer}_ungated": seconds for layer, seconds in ungated_s.items()},
        "baseline_copy": baseline_s,
        "produce": send_s,
    }
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
        # Before the profile's (spark.driver.extraJavaOptions above) in every Spark JVM.
        "jvm_options": JVM_OPTIONS,
    }
    results["machine"] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    results["lake"] = profile.lake.root if args.keep else None
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))
    _print_table(results)
    if not args.keep:
        dropped = drop_workspaces(stack.settings, [f"bench-{stamp}", f"bench-{stamp}-*"])
        freed = format_bytes(sum(usage.bytes for usage in dropped))
        print(f"dropped the run's {len(dropped)} workspaces ({freed}); --keep keeps them")
    return 0


def _warm_up(spark, stack: LocalStack, stamp: str, events: int) -> None:
    """Every measured query runs warm: the JVM's JIT, Spark's code generation and Great
    Expectations' first validation (about 8 s) are paid here, on a topic of its own, not
    by whichever query happens to run first."""
    warm = load_profile("local", f"bench-{stamp}-warm")
    simulation = simulate(SimulationRequest(events=events, with_truth=False))
    ensure_topic(
        warm.source.bootstrap_servers, warm.source.topic, stack.settings.kafka.default_partitions
    )
    send_to_kafka(
        simulation.records, warm.source.topic, warm.source.client_options(), rate=0, progress=False
    )
    run_layers(spark, warm, ["bronze", "silver", "gold"], Trigger(), run_id=f"bench-{stamp}-warm")
    _baseline_copy(spark, warm, stamp)


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


def _clone_silver(spark, source_profile, target_profile) -> None:
    source = source_profile.lake.table_location("silver.events")
    target = target_profile.lake.table_location("silver.events")
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
    ):
        print(f"  {key:<20} {results[key]:>12,.0f} events/s")
    layers = ", ".join(f"{layer} {s}" for layer, s in results["freshness_layer_s"].items())
    print(f"  {'freshness_s':<20} {results['freshness_s']:>12} ({layers})")
    print(f"  {'peak_rss_mb':<20} {results['peak_rss_mb']:>12,.0f}")
    print(f"  {'gate_overhead_pct':<20} {str(results['gate_overhead_pct']):>12}")
    print(f"  {'gated_vs_ungated_pct':<20} {results['gated_vs_ungated_pct']:>12}")
    print(f"  files per table: {results['files_per_table']}")
    print(f"  stack before the run: {results['stack_before']}")
    print(f"results: {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    raise SystemExit(main())
