"""``python -m spark.run``: run the medallion layers for a profile.

    python -m spark.run --profile local --layers bronze,silver --trigger available-now
    python -m spark.run --layers bronze,silver --trigger continuous --interval 5s

``available-now`` runs each layer over everything present, in order, and stops;
SIGINT/SIGTERM interrupt it (exit code 130), and a later run goes on from the last
committed batch. ``continuous`` runs the layers concurrently until SIGINT/SIGTERM, then
stops them cleanly with their checkpoints intact. A second signal exits at once (130),
without waiting for the running micro-batch; the next run replays it.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from spark.gates import Gate, GateFailure, load_gate
from spark.io.delta import CheckpointLost
from spark.io.preflight import (
    PreflightError,
    check_source_reachable,
    check_source_topic,
    lake_session,
)
from spark.jobs.gold import start_gold
from spark.jobs.layers import Trigger, start_bronze, start_silver
from spark.settings import Profile, SettingsError, load_profile
from spark.tables import describe_tables

log = logging.getLogger("spark.run")

INTERRUPTED = 130  # the exit code of a run a signal stopped before it caught up

LAYERS: dict[str, Callable[..., StreamingQuery]] = {
    "bronze": start_bronze,
    "silver": start_silver,
    "gold": start_gold,
}


class RunError(RuntimeError):
    """A layer failed; the message names the layer and the cause in one line."""


# The table each layer reads, written by the layer before it.
UPSTREAM = {"silver": ("bronze", "bronze.events"), "gold": ("silver", "silver.events")}


def check_upstream(spark: SparkSession, profile: Profile, layers: list[str]) -> None:
    """RunError, with nothing created, when the first of ``layers`` (in run order) has no
    table to read: a mistyped workspace, or one whose earlier layer never ran. (The
    streaming flow starts its layers together, each waiting for the one before.)"""
    from delta.tables import DeltaTable

    if layers[0] not in UPSTREAM:
        return
    before, table = UPSTREAM[layers[0]]
    location = profile.lake.table_location(table)
    if not DeltaTable.isDeltaTable(spark, location):
        raise RunError(
            f"workspace {profile.workspace!r} has no {table} at {location}: nothing for"
            f" {layers[0]} to read (run {before} first, or check the workspace name)"
        )


def run_layers(
    spark: SparkSession,
    profile: Profile,
    layers: list[str],
    trigger: Trigger,
    stop: threading.Event | None = None,
    run_id: str | None = None,
    gate: Gate | None = None,
) -> dict[str, dict]:
    """Run ``layers`` with ``trigger``, every micro-batch gated; return each last progress.

    ``stop`` ends a continuous run (cleanly: the normal way to stop one) and interrupts an
    available-now run (``Interrupted``); the checkpoints keep what was committed either way.
    """
    if "bronze" in layers:
        check_source_reachable(profile.source)
    gate = gate or load_gate(profile, run_id or uuid.uuid4().hex)
    progress: dict[str, dict] = {}
    if trigger.mode == "available-now":
        for layer in layers:
            if stop is not None and stop.is_set():
                raise Interrupted(f"interrupted before layer {layer} started")
            log.info("layer %s: starting (%s)", layer, trigger.mode)
            query = LAYERS[layer](spark, profile, trigger, gate)
            if not _await(query, layer, stop):
                raise Interrupted(
                    f"interrupted: layer {layer} stopped before it caught up"
                    " (a run goes on from its last committed batch)"
                )
            progress[layer] = query.lastProgress or {}
            log.info("layer %s: done", layer)
        return progress
    stop = stop or threading.Event()
    queries: dict[str, StreamingQuery] = {}
    try:
        for layer in layers:  # a layer refused at its start stops those started before it
            queries[layer] = LAYERS[layer](spark, profile, trigger, gate)
        log.info(
            "layers %s: running (%s, every %s) until stopped",
            ", ".join(layers),
            trigger.mode,
            trigger.interval,
        )
        while not stop.is_set():
            for layer, query in queries.items():
                if not query.isActive:
                    _await(query, layer)
                    raise RunError(f"layer {layer} stopped unexpectedly")
            stop.wait(1.0)
    finally:
        for layer, query in queries.items():
            if query.isActive:
                query.stop()
            progress[layer] = query.lastProgress or {}
    return progress


class LayerGateFailure(RunError, GateFailure):
    """A layer stopped because its quality gate refused a micro-batch (never retried)."""


class Interrupted(RunError):
    """A signal stopped an available-now run before its layers caught up."""


def _await(query: StreamingQuery, layer: str, stop: threading.Event | None = None) -> bool:
    """Wait for ``query`` to end: True when it did, False when ``stop`` was set first (the
    query is then stopped). Raise, naming the layer, when it failed."""
    try:
        while not query.awaitTermination(1):
            if stop is not None and stop.is_set():
                query.stop()
                return False
    except Exception as error:  # a StreamingQueryException carries the JVM cause
        summary = summarize_error(error)
        failure = LayerGateFailure if gate_failed(error) else RunError
        raise failure(f"layer {layer} failed: {summary}") from None
    return True


def gate_failed(error: BaseException) -> bool:
    chain: BaseException | None = error
    while chain is not None:
        if isinstance(chain, GateFailure) or "GateFailure:" in str(chain):
            return True
        chain = chain.__context__
    return False


def summarize_error(error: BaseException) -> str:
    """The first meaningful line of a (JVM) error, without the stack trace.

    A quality gate's failure travels through the JVM as a Python traceback inside the
    streaming error; its own message is the line that names it.
    """
    text = str(error)
    cause = error.__context__
    while cause is not None:
        text += "\n" + str(cause)
        cause = cause.__context__
    lines = text.splitlines()
    for line in lines:
        if "GateFailure:" in line:
            return line.split("GateFailure:", 1)[1].strip()
    raised = _python_exception(lines)
    if raised:  # a batch function's own error, carried through the JVM
        return raised[:400]
    for line in lines:
        line = _STREAM_FAILED.sub("", line.strip())
        # Py4J's own first line names the Java method called; the reason is the next one,
        # ": <Java exception class>: <message>".
        if line.startswith(_PY4J_CALL):
            continue
        line = line.removeprefix(": ")
        if line and not line.startswith(("at ", "===", "Traceback", "JVM stacktrace")):
            return re.sub(r"\s+", " ", line)[:400]
    return type(error).__name__


# Which query failed is in the log; the reason is what a person reads.
_PY4J_CALL = "An error occurred while calling "
_STREAM_FAILED = re.compile(r"^\[STREAM_FAILED\] Query \[[^]]*\] terminated with exception: ")


def _python_exception(lines: list[str]) -> str | None:
    """The exception line (``RuntimeError: ...``) of the last Python traceback in a JVM
    error's text: the first line after the traceback that its frames do not indent."""
    raised = None
    in_traceback = False
    for line in lines:
        if line.rstrip().endswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line.strip() and not line[0].isspace():
            raised, in_traceback = line.strip(), False
    return raised


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spark.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", help="default: REELHOUSE_PROFILE or local")
    parser.add_argument("--workspace", help="default: REELHOUSE_WORKSPACE or main")
    parser.add_argument("--layers", default="bronze,silver")
    parser.add_argument(
        "--trigger", default="available-now", choices=["available-now", "continuous"]
    )
    parser.add_argument("--interval", default="5s", help="micro-batch interval (continuous)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Other libraries' INFO lines are not the run's story (Great Expectations alone logs
    # about 200 lines of its own API registration when a gate is first loaded; the Azure
    # SDK every request's URL and headers).
    for library in ("py4j", "great_expectations", "azure"):
        logging.getLogger(library).setLevel(logging.WARNING)
    # A login that fails is warned of by each credential tried, before the one-line error
    # that says why (``azure_profile.secrets.credential_failure``).
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    try:
        layers = parse_layers(args.layers)
        profile = load_profile(args.profile, args.workspace)
        try:
            trigger = Trigger(args.trigger, parse_interval(args.interval))
        except ValueError as error:
            raise ValueError(f"--interval {error}") from None
        if "bronze" in layers:
            profile.source.check_starting_offsets()
            check_source_reachable(profile.source)  # seconds, before a JVM is started
            check_source_topic(profile)
        spark = lake_session(profile, app_name=f"reelhouse-{'-'.join(layers)}")
        check_upstream(spark, profile, layers)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: _stopping(stop))
        started = time.monotonic()
        progress = run_layers(spark, profile, layers, trigger, stop)
    except Interrupted as error:
        print(f"error: {error}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:  # Ctrl-C before the layers started
        print("error: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (SettingsError, PreflightError, RunError, CheckpointLost, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    for line in summary_lines(spark, profile, progress):
        print(line)
    print(f"done in {seconds:.1f}s")
    return 0


def _stopping(stop: threading.Event) -> None:
    if stop.is_set():
        # A second signal: the user will not wait for the running batch to end. Nothing
        # committed is lost (the JVM exits with the driver; the next run replays the batch).
        print(
            "error: interrupted again: exiting without waiting for the running micro-batch"
            " (the next run replays it)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(INTERRUPTED)
    stop.set()
    # A batch the stop interrupts fails in its Python callback, as it should: Py4J would
    # log that as an error with its traceback.
    logging.getLogger("py4j.clientserver").setLevel(logging.CRITICAL)


def summary_lines(spark: SparkSession, profile: Profile, progress: dict[str, dict]) -> list[str]:
    """Per layer: its last micro-batch and the rows its tables hold now.

    Rows are counted in the tables (``spark.tables``), not taken from the query's progress:
    Spark's ``numInputRows`` counts every read of a micro-batch, and gated bronze reads its
    Kafka records twice (the gate's four numbers, then the write), so 200 records read as 400.
    """
    tables = describe_tables(spark, profile)
    lines = []
    for layer, last in progress.items():
        counts = [
            f"{table['name']} {table['rows']:,} rows"
            for table in tables
            if table["name"].split(".")[0] == layer
        ]
        held = "; ".join(counts) or "no table yet"
        lines.append(f"{layer}: last batch {last.get('batchId', '-')}; {held}")
    return lines


def parse_layers(text: str) -> list[str]:
    """``"silver, bronze"`` -> ``["bronze", "silver"]``: the layers named, in run order;
    ValueError naming what is wrong (also for the medallion flow's ``layers``)."""
    layers = [layer.strip() for layer in text.split(",") if layer.strip()]
    unknown = [layer for layer in layers if layer not in LAYERS]
    if not layers:
        raise ValueError(f"no layer named; known: {', '.join(LAYERS)}")
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; known: {', '.join(LAYERS)}")
    return sorted(set(layers), key=list(LAYERS).index)


_UNITS = {
    "ms": "millisecond",
    "millisecond": "millisecond",
    "s": "second",
    "second": "second",
    "m": "minute",
    "minute": "minute",
}


def parse_interval(text: str) -> str:
    """``"5s"`` or ``"5 seconds"`` -> ``"5 seconds"``, the text Spark's processing-time
    trigger and the log read; ValueError naming what is wrong (also for the streaming
    flow's ``interval``)."""
    match = re.fullmatch(r"(\d+)\s*(ms|s|m|(millisecond|second|minute)s?)", str(text).strip())
    if not match:
        raise ValueError(f"must look like 5s, 500ms, 1m or 5 seconds, got {text!r}")
    unit = _UNITS[match[3] or match[2]]
    if int(match[1]) * _MILLISECONDS[unit] > _LONGEST_INTERVAL_MS:
        raise ValueError(f"must be at most a day (1440m), got {text!r}")
    return f"{int(match[1])} {unit}{'' if int(match[1]) == 1 else 's'}"


_MILLISECONDS = {"millisecond": 1, "second": 1_000, "minute": 60_000}
_LONGEST_INTERVAL_MS = 24 * 3_600_000  # Spark overflows far beyond; nobody waits longer


if __name__ == "__main__":
    sys.exit(main())
