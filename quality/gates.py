"""The promotion gate: validate each micro-batch with its table's suite, then act on it.

Registered under the ``reelhouse.gates`` entry point as ``quality = quality.gates:build_gate``;
the jobs call it inside ``foreachBatch``. One Great Expectations context per gate (the
first validation in a process is slow, later ones reuse it) and one validation call per
micro-batch for the whole suite.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import great_expectations as gx
from great_expectations.data_context.types.base import ProgressBarsConfig
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from quality.rows import failing_rows, supports_rows, unexpected_values
from quality.suites import Check, Suite, default_suites
from quality.validation_log import ValidationEvent, ensure_validation_log, record_validation
from spark.gates import GateFailure, GateOutcome
from spark.jobs.steps import step
from spark.settings import Profile
from spark.transforms.events import reason_codes

log = logging.getLogger(__name__)

EXAMPLES_KEPT = 3
EXAMPLE_CHARS = 200


@dataclass(frozen=True)
class CheckResult:
    """What Great Expectations said about one check on one batch."""

    check: Check
    success: bool
    element_count: int | None
    unexpected_count: int | None
    examples: list[str]
    error: str | None = None

    @property
    def violated(self) -> bool:
        return self.error is not None or not self.success or bool(self.unexpected_count)


@dataclass
class _Together:
    """The records kept by ``QualityGate.recorded_together`` until its block ends."""

    spark: SparkSession | None = None
    query_id: str | None = None
    tables: list[tuple[str, list[ValidationEvent]]] = field(default_factory=list)
    recorded: Future = field(default_factory=Future)


class QualityGate:
    """A ``spark.gates.Gate`` that validates with Great Expectations suites."""

    def __init__(self, profile: Profile, run_id: str, suites: Mapping[str, Suite]) -> None:
        self.profile = profile
        self.run_id = run_id
        self.suites = dict(suites)
        # The layers of a continuous run share this gate from their own threads.
        self._lock = threading.Lock()
        # Validation events are appended while the layer writes the batch (the job
        # settles the outcome before its foreachBatch returns); one thread keeps them in
        # order, one batch after another.
        self._recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gate-record")
        self._together = threading.local()  # this thread's open recorded_together block
        self._context = None
        self._batch_definitions: dict[str, object] = {}
        self._expectation_suites: dict[str, gx.ExpectationSuite] = {}
        self._log_ready = False
        self.seconds_validating = 0.0
        self.seconds_gating = 0.0

    def __call__(self, table: str, batch: DataFrame, batch_id: int) -> GateOutcome:
        suite = self.suites.get(table)
        if suite is None:
            return GateOutcome(promote=batch)
        started = time.monotonic()
        validated = suite.derive(batch, self.profile) if suite.derive else batch
        # Validation reads the batch once per expectation: read the source (Kafka, silver)
        # once. A batch computed from cached data only (silver's) is not cached again.
        persisted_here = not _reads_cached_data_only(validated)
        if persisted_here:
            validated = validated.persist()
        try:
            # Counting computes the batch (and fills the caches the write then reads): the
            # work of the layer itself, done before the validation's clock starts.
            with step(batch.sparkSession, "count"):
                rows = validated.count()
            with self._lock, step(batch.sparkSession, "validate"):
                validation_started = time.monotonic()
                results = self._validate(suite, validated, rows)
                duration_s = time.monotonic() - validation_started
                self.seconds_validating += duration_s
            events = self._events(table, batch_id, results, duration_s)
            query_id = _streaming_query_id(batch.sparkSession)
            writer = _writer(table, query_id)
            together = getattr(self._together, "block", None)
            if together is not None:
                together.spark = batch.sparkSession
                together.query_id = query_id
                together.tables.append((table, events))
            try:
                outcome = self._decide(suite, batch, validated, batch_id, results)
            except GateFailure:
                if together is None:  # a block records a stopped batch as it ends
                    # An attempt that stopped: on record before the query stops, and not
                    # in place of the passing attempt a restart makes after a fix.
                    self._recorder.submit(
                        self._record, batch.sparkSession, writer, batch_id, events, once=False
                    ).result()
                raise
            if together is None:
                outcome.recorded = self._recorder.submit(
                    self._record, batch.sparkSession, writer, batch_id, events, once=_once(query_id)
                )
            else:
                outcome.recorded = together.recorded
        finally:
            if persisted_here:
                validated.unpersist()
        elapsed = time.monotonic() - started
        self.seconds_gating += elapsed
        log.info(
            "gate %s batch %s: %d checks, %d violated, %.1fs",
            table,
            batch_id,
            len(results),
            sum(result.violated for result in results),
            elapsed,
        )
        return outcome

    def with_drops(self, table: str, batch: DataFrame, column: str) -> DataFrame:
        """``batch`` with a boolean ``column``: the row fails a ``drop`` check of the table's
        suite, by the same predicates the gate drops rows with (``quality.rows``)."""
        suite = self.suites.get(table)
        dropping = [check for check in suite.checks if check.action == "drop"] if suite else []
        if not dropping:
            return batch.withColumn(column, F.lit(False))
        fails = F.lit(False)
        for check in dropping:
            fails = fails | failing_rows(check.expectation)
        # Drop checks may read the suite's derived columns (silver's arrival lag); a suite
        # that allows drops derives columns beside every row, never other rows.
        validated = suite.derive(batch, self.profile) if suite.derive else batch
        return validated.select(*batch.columns, fails.alias(column))

    @contextmanager
    def recorded_together(self, name: str, batch_id: int) -> Iterator[None]:
        """Append the validation events of this thread's gate calls inside the block in one
        commit when it ends, once per (``name``, streaming query, ``batch_id``) however often
        it is replayed.

        The gold job gates its tables per micro-batch inside one block: one idempotent
        append instead of one a table, and each costs a Delta state reconstruction (about 1.3 s;
        a warm 1M gold run took 35.3 s without its records, 40.3 s with six). When a gate
        fails inside, the tables validated so far are recorded as a stopped attempt, as
        outside a block (a replay that passes records them again, together); when anything
        else fails, nothing is recorded, and the replay records the batch.
        """
        together = _Together()
        self._together.block = together
        try:
            yield
        except GateFailure:
            events = [event for _, table_events in together.tables for event in table_events]
            written = self._recorder.submit(
                self._record,
                together.spark,
                _writer(name, together.query_id),
                batch_id,
                events,
                once=False,
            )
            together.recorded.set_result(None)
            written.result()  # a stopped batch is on record before the query stops
            raise
        except BaseException as error:
            together.recorded.set_exception(error)
            raise
        finally:
            self._together.block = None
        events = [event for _, table_events in together.tables for event in table_events]
        if not events:
            together.recorded.set_result(None)
            return
        written = self._recorder.submit(
            self._record,
            together.spark,
            _writer(name, together.query_id),
            batch_id,
            events,
            once=_once(together.query_id),
        )
        written.add_done_callback(lambda done: _copy_outcome(done, together.recorded))

    def _validate(self, suite: Suite, frame: DataFrame, rows: int) -> list[CheckResult]:
        """Validate the whole suite in one Great Expectations validation, for success
        only; then find how many rows, and which, each check not met has.

        Counts and examples cost Great Expectations one or two extra Spark jobs per
        expectation (70 jobs instead of 11, measured when silver had 29 checks), and most
        batches meet every check: a met check has no unexpected rows (no check relaxes with
        ``mostly``) and the batch's row count as element count. For the checks not met whose
        expectation has a row predicate (``quality.rows``: the expectation's own Spark
        condition), one Spark job counts the rows and takes examples; the others (and any
        that raised) are validated again, together, for their counts and examples.
        """
        batch_definition, expectation_suite = self._prepared(suite)
        gx_batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        verdict = gx_batch.validate(expectation_suite, result_format="BOOLEAN_ONLY")
        results: dict[str, CheckResult] = {}
        by_rows, again = [], []
        for result in verdict.results:
            check = suite.by_name[result.expectation_config.meta["check"]]
            if result.success:
                results[check.name] = CheckResult(check, True, rows, 0, [])
            elif supports_rows(check.expectation) and not _raised(result):
                by_rows.append(check)
            else:
                again.append(check)
        for check, (unexpected, examples) in zip(
            by_rows, _unexpected_rows(frame, by_rows), strict=True
        ):
            results[check.name] = CheckResult(check, False, rows, unexpected, examples)
        if again:
            # Not met without a row predicate, or could not run: validated once more,
            # together, for how many rows and which.
            detailed = gx_batch.validate(
                suite.expectation_suite(again, name=f"{suite.name}_not_met"),
                result_format={"result_format": "BASIC", "partial_unexpected_count": EXAMPLES_KEPT},
            )
            for result in detailed.results:
                check = suite.by_name[result.expectation_config.meta["check"]]
                results[check.name] = _check_result(check, result)
        return [results[check.name] for check in suite.checks]

    def _prepared(self, suite: Suite):
        if self._context is None:
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            self._context = context
            self._source = context.data_sources.add_spark(name="reelhouse", persist=False)
        if suite.table not in self._batch_definitions:
            asset = self._source.add_dataframe_asset(name=suite.name)
            self._batch_definitions[suite.table] = asset.add_batch_definition_whole_dataframe(
                name=f"{suite.name}_micro_batch"
            )
            self._expectation_suites[suite.table] = self._context.suites.add(
                suite.expectation_suite()
            )
        return self._batch_definitions[suite.table], self._expectation_suites[suite.table]

    def _events(self, table, batch_id, results, duration_s) -> list[ValidationEvent]:
        # Aware: Spark reads a naive datetime in the driver's zone, not as UTC.
        validated_ts = datetime.now(UTC)
        return [
            ValidationEvent(
                run_id=self.run_id,
                table=table,
                batch_id=batch_id,
                expectation=result.check.name,
                action=result.check.action,
                success=result.error is None and result.success,
                element_count=result.element_count,
                unexpected_count=result.unexpected_count,
                unexpected_examples=result.examples,
                validated_ts=validated_ts,
                duration_ms=round(duration_s * 1000),
            )
            for result in results
        ]

    def _record(
        self, spark, writer: str, batch_id: int, events: list[ValidationEvent], once: bool = True
    ) -> None:
        # On the recorder's thread, beside the layer's write: a step of no query's batch.
        with step(spark, "quality: record validation events"):
            if not self._log_ready:
                ensure_validation_log(spark, self.profile)
                self._log_ready = True
            record_validation(spark, self.profile, writer, batch_id, events, once=once)

    def _decide(self, suite, batch, validated, batch_id, results) -> GateOutcome:
        violated = [result for result in results if result.violated]
        # A drop check that could not run cannot say which rows to drop: it stops the batch.
        stopping = [
            result
            for result in violated
            if (result.check.action == "fail" and not result.success)
            or (result.check.action == "drop" and result.error is not None)
        ]
        if stopping:
            raise GateFailure(_failure_message(suite.table, batch_id, stopping))
        dropping = [
            result
            for result in violated
            if result.check.action == "drop" and result.unexpected_count
        ]
        for result in violated:
            if result.check.action == "warn":
                log.warning(
                    "gate %s batch %s: %s not met (%s of %s rows), promoted anyway",
                    suite.table,
                    batch_id,
                    result.check.name,
                    result.unexpected_count,
                    result.element_count,
                )
        if not dropping:
            return GateOutcome(promote=batch)
        return self._drop(suite, batch, validated, batch_id, dropping)

    def _drop(self, suite, batch, validated, batch_id, dropping) -> GateOutcome:
        reasons = reason_codes(
            [(result.check.name, failing_rows(result.check.expectation)) for result in dropping]
        )
        marked = validated.withColumn("_gate_reasons", reasons)
        # The rows each check drops are the rows its predicate counted in validation.
        counts = {result.check.name: result.unexpected_count for result in dropping}
        input_columns = [column for column in batch.columns if column != "reasons"]
        rejected = marked.filter(F.size("_gate_reasons") > 0).select(
            *input_columns, F.col("_gate_reasons").alias("reasons")
        )
        promote = marked.filter(F.size("_gate_reasons") == 0).select(*batch.columns)
        log.warning(
            "gate %s batch %s: quarantined rows per check %s", suite.table, batch_id, counts
        )
        return GateOutcome(promote=promote, rejected=rejected)


def build_gate(
    profile: Profile, run_id: str, suites: Mapping[str, Suite] | None = None
) -> QualityGate:
    """The quality gate for this profile and run; ``suites`` replaces the default suites."""
    return QualityGate(profile, run_id, default_suites() if suites is None else suites)


def _streaming_query_id(spark: SparkSession) -> str | None:
    """The id of the streaming query running this micro-batch (``foreachBatch`` runs on
    its thread); None outside one."""
    return spark.sparkContext.getLocalProperty("sql.streaming.queryId")


def _writer(name: str, query_id: str | None) -> str:
    """Who records a batch's validation events, for Delta's ``txnAppId``: the gated table
    (or the job recording its tables together) and its streaming query. A query keeps its
    id across restarts from its checkpoint, so a replayed batch is recorded once; a query
    started on a new checkpoint (the replay flow deletes silver's and gold's) counts its
    batches from 0 again under a new id, instead of every batch up to the old query's last
    being skipped as recorded already."""
    return f"{name}.{query_id}" if query_id else name


def _once(query_id: str | None) -> bool:
    """Whether a passing batch's events are recorded once per (writer, batch id): only
    within a streaming query. Outside one (a batch gated by hand, or PySpark's threads not
    pinned, so no query id reaches this thread) the writer is the table alone, and its
    batch ids start from 0 again in every run: recorded once, every batch up to an
    earlier run's last would be skipped as recorded already, so each is one more attempt."""
    return query_id is not None


def _copy_outcome(done: Future, to: Future) -> None:
    error = done.exception()
    if error is None:
        to.set_result(None)
    else:
        to.set_exception(error)


def _reads_cached_data_only(frame: DataFrame) -> bool:
    """Every source of ``frame``'s plan is cached (an in-memory relation), as is the frame
    itself when persisted."""
    leaves = frame._jdf.queryExecution().withCachedData().collectLeaves()
    kinds = {leaves.apply(i).getClass().getSimpleName() for i in range(leaves.length())}
    return kinds == {"InMemoryRelation"}


def _unexpected_rows(frame: DataFrame, checks: list[Check]) -> list[tuple[int, list[str]]]:
    """Per check: how many rows its expectation's predicate fails, and up to
    ``EXAMPLES_KEPT`` of their values (a pair's as ``(a, b)``, like Great Expectations),
    all in one Spark job."""
    if not checks:
        return []
    aggregates = []
    for check in checks:
        failing = failing_rows(check.expectation)
        # min_by keeps only the rows whose ordering is not null: the failing ones.
        examples = F.min_by(
            unexpected_values(check.expectation), F.when(failing, F.lit(0)), EXAMPLES_KEPT
        )
        aggregates.append(F.struct(F.count_if(failing), examples))
    found = frame.agg(*aggregates).first()
    return [
        (count, [_example(v[0] if len(v) == 1 else tuple(v)) for v in values or []])
        for count, values in found
    ]


def _raised(result) -> bool:
    """The expectation could not run (Great Expectations says so in the result's
    ``exception_info``, or per metric)."""
    return _raised_message(result) is not None


def _raised_message(result) -> str | None:
    """What stopped the expectation from running, from the result's own ``exception_info``
    or any of its metrics' (a column the frame lacks is reported per metric)."""
    info = result.exception_info or {}
    reports = [info, *(value for value in info.values() if isinstance(value, dict))]
    for report in reports:
        if report.get("raised_exception"):
            return str(report.get("exception_message") or "expectation raised")
    return None


def _check_result(check: Check, result) -> CheckResult:
    details = result.result or {}
    message = _raised_message(result)
    if message is not None:
        return CheckResult(check, False, None, None, [message[:EXAMPLE_CHARS]], error=message)
    examples = [
        _example(value) for value in (details.get("partial_unexpected_list") or [])[:EXAMPLES_KEPT]
    ]
    return CheckResult(
        check=check,
        success=bool(result.success),
        element_count=details.get("element_count"),
        unexpected_count=details.get("unexpected_count"),
        examples=examples,
    )


def _example(value) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value[:EXAMPLE_CHARS]).decode("utf-8", errors="replace")
    return str(value)[:EXAMPLE_CHARS]


def _failure_message(table: str, batch_id: int, stopping: list[CheckResult]) -> str:
    violations = "; ".join(
        f"{result.check.name} ({result.error})"
        if result.error
        else f"{result.check.name} ({result.unexpected_count} of {result.element_count} rows)"
        for result in stopping
    )
    return (
        f"quality gate failed for {table} batch {batch_id}: {violations}; "
        "nothing of the batch was promoted"
    )
