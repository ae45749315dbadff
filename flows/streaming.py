"""The ``streaming`` flow: the layers run continuously under supervision.

Every ``progress_every_s`` it logs each layer's last micro-batch, its size and lag;
a failed query is restarted with exponential backoff (at most ``max_restarts`` times
in a row); cancellation (SIGTERM from the worker) or ``max_runtime_s`` stops every
query cleanly, checkpoints intact, and a final report is logged.

Known Prefect gaps for long runs: a process worker sends no heartbeats, so a run whose
worker dies stays "Running" until it is cancelled by hand (`prefect flow-run cancel`);
the queries themselves keep no state outside their checkpoints, so a new run resumes
exactly where the dead one stopped.
"""

from __future__ import annotations

import json
import signal
import threading
import time

from prefect import flow, get_run_logger

from flows.guard import holding_workspace
from flows.medallion import _spark, check_stack, upstream_exists
from spark.settings import load_profile


def batch_size(progress: dict) -> str:
    """The last micro-batch's size and processing rate.

    A Kafka source's batch is measured in offsets, end minus start per partition (the
    records, unless a producer wrote transaction markers between them): Spark's
    ``numInputRows`` counts every read of a batch, and gated bronze reads its records
    twice (the gate's four numbers, then the write). Where the offsets do not say (a
    query's first batch has no start), the rows Spark read are shown as such.
    """
    seconds = (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000
    sources = progress.get("sources") or []
    kafka = [s for s in sources if str(s.get("description", "")).startswith("Kafka")]
    spans = [_offset_span(s.get("startOffset"), s.get("endOffset")) for s in kafka]
    if kafka and None not in spans:
        size, unit = sum(spans), "offsets"
    elif kafka:
        size, unit = progress.get("numInputRows", 0), "rows read (each read counted)"
    else:
        size, unit = progress.get("numInputRows", 0), "rows"
    rate = f", {size / seconds:.0f}/s" if seconds else ""
    return f"{size} {unit} in {seconds:.1f}s{rate}"


def _offset_span(start: object, end: object) -> int | None:
    """Offsets from ``start`` to ``end``, the JSON text of ``{topic: {partition: offset}}``
    PySpark gives; None when a partition of ``end`` has no start (a first batch, whose
    start is ``null``, or a partition added meanwhile)."""
    start, end = (json.loads(value) if isinstance(value, str) else value for value in (start, end))
    if not isinstance(start, dict) or not isinstance(end, dict):
        return None
    span = 0
    for topic, partitions in end.items():
        for partition, offset in partitions.items():
            begun = (start.get(topic) or {}).get(partition)
            if begun is None:
                return None
            span += offset - begun
    return span


def _lag(progress: dict) -> str:
    for source in progress.get("sources", []):
        metrics = source.get("metrics") or {}
        if "maxOffsetsBehindLatest" in metrics:
            return f"{metrics['maxOffsetsBehindLatest']} offsets behind"
        if "numFilesOutstanding" in metrics:
            return f"{metrics['numFilesOutstanding']} files outstanding"
    return "n/a"


_MEANING = {"max_runtime_s": " (0 = until cancelled)"}


@flow(name="streaming")
def streaming(
    profile: str = "local",
    workspace: str = "main",
    layers: str = "bronze,silver,gold",
    interval: str = "5 seconds",
    progress_every_s: int = 30,
    max_runtime_s: int = 0,
    max_restarts: int = 5,
) -> dict:
    """Run the layers continuously, supervised, until cancelled (or max_runtime_s)."""
    from prefect.runtime import flow_run

    from spark.gates import load_gate
    from spark.io.delta import CheckpointLost
    from spark.jobs.layers import Trigger
    from spark.run import (
        LAYERS,
        LayerGateFailure,
        gate_failed,
        parse_interval,
        parse_layers,
        summarize_error,
    )

    # Every parameter is checked before the workspace's lock, the stack or Spark is touched.
    try:
        wanted = parse_layers(layers)
    except ValueError as error:
        raise ValueError(f"layers={layers!r}: {error}") from None
    try:
        trigger = Trigger("continuous", parse_interval(interval))
    except ValueError as error:
        raise ValueError(f"interval={interval!r}: {error}") from None
    for name, value, least in (
        ("progress_every_s", progress_every_s, 1),
        ("max_runtime_s", max_runtime_s, 0),
        ("max_restarts", max_restarts, 0),
    ):
        if not value >= least:
            raise ValueError(f"{name}={value!r}: must be >= {least}{_MEANING.get(name, '')}")
    settings = load_profile(profile, workspace)
    if "bronze" in wanted:
        settings.source.check_starting_offsets()
    with holding_workspace(profile, workspace, doing="a streaming run"):
        logger = get_run_logger()
        check_stack(settings, reads_events="bronze" in wanted)
        if "bronze" not in wanted:  # nothing created for a workspace without the input
            upstream_exists(settings, wanted)
        spark = _spark(profile, workspace)
        gate = load_gate(settings, str(flow_run.id or "streaming"))

        stop = threading.Event()
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        queries = {}
        restarts = {layer: 0 for layer in wanted}
        # A restart that could not start its query (the lake still down) is tried again
        # with the next backoff, as a query that stopped is: it counts toward max_restarts.
        unstarted: dict[str, BaseException] = {}
        started = time.monotonic()
        last_report = started
        try:
            for layer in wanted:  # a layer refused at its start stops those started before it
                queries[layer] = LAYERS[layer](spark, settings, trigger, gate)
            while not stop.is_set():
                if max_runtime_s and time.monotonic() - started >= max_runtime_s:
                    break
                for layer, query in list(queries.items()):
                    if query.isActive:
                        continue
                    error = unstarted.pop(layer, None) or query.exception()
                    if error is not None and gate_failed(error):  # the same batch would fail
                        raise LayerGateFailure(  # again: a person must look, as in medallion
                            f"layer {layer} stopped by its quality gate, not restarted:"
                            f" {summarize_error(error)}"
                        )
                    restarts[layer] += 1
                    if restarts[layer] > max_restarts:
                        raise RuntimeError(
                            f"layer {layer} failed {restarts[layer]} times in a row: "
                            f"{summarize_error(error) if error else 'stopped'}"
                        )
                    backoff = min(2 ** restarts[layer], 60)
                    logger.warning(
                        "layer %s stopped (%s); restart %d in %ds",
                        layer,
                        summarize_error(error) if error else "no error",
                        restarts[layer],
                        backoff,
                    )
                    if stop.wait(backoff):
                        break  # cancelled meanwhile: start nothing more
                    try:
                        queries[layer] = LAYERS[layer](spark, settings, trigger, gate)
                    except CheckpointLost:  # a person must decide, as at the first start
                        raise
                    except Exception as start_error:  # counted as a restart, raised past the last
                        unstarted[layer] = start_error
                        logger.warning(
                            "layer %s could not restart (%s)", layer, summarize_error(start_error)
                        )
                if time.monotonic() - last_report >= progress_every_s:
                    last_report = time.monotonic()
                    for layer, query in queries.items():
                        progress = query.lastProgress or {}
                        # Rows read by a query that runs (not by one that failed before).
                        if query.isActive and progress.get("numInputRows", 0) > 0:
                            restarts[layer] = 0
                        logger.info(
                            "%s: batch %s, %s, lag %s",
                            layer,
                            progress.get("batchId", "-"),
                            batch_size(progress),
                            _lag(progress),
                        )
                stop.wait(1.0)
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
            for query in queries.values():
                if query.isActive:
                    query.stop()
            logger.info(
                "stopped all queries after %.0fs; checkpoints intact", time.monotonic() - started
            )
        return {
            layer: (query.lastProgress or {}).get("batchId") for layer, query in queries.items()
        }
