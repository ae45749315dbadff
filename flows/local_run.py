"""``make local-run``: the medallion flow in-process on the local profile, then a summary."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.local_run", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--fault-rate", type=float, default=0.01)
    # A new seed per run by default (the flow's): a second run adds new events instead of
    # redelivering the first run's (which silver would rightly quarantine as duplicates).
    parser.add_argument("--seed", type=int, default=None, help="default: a new one per run")
    parser.add_argument("--workspace", default="main")
    args = parser.parse_args(argv)
    # Named in one line before Prefect starts, rather than in its tracebacks of a failed run.
    from local_stack.simulate.simulation import SimulationRequest
    from spark.settings import SettingsError, load_profile

    try:
        load_profile("local", args.workspace).source.check_starting_offsets()  # it runs bronze
        SimulationRequest(args.events, fault_rate=args.fault_rate, with_truth=False)
    except (SettingsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    unanswered = _prefect_server_not_answering()
    if unanswered:
        print(f"error: {unanswered}", file=sys.stderr)
        return 1

    from flows.medallion import medallion

    started = time.monotonic()
    with _tracebacks_off_the_console():
        state = medallion(
            profile="local",
            workspace=args.workspace,
            events=args.events,
            fault_rate=args.fault_rate,
            seed=args.seed,
            return_state=True,
        )
    if not state.is_completed():
        reason = ((state.message or "").strip() or state.name).splitlines()[0]
        print(f"\nreelhouse: the run failed: {reason}", file=sys.stderr)
        if state.state_details.flow_run_id:
            from flows.guard import prefect_command

            logs = prefect_command(f"flow-run logs {state.state_details.flow_run_id}")
            print(f"the run's whole log, tracebacks included: {logs}", file=sys.stderr)
        return 1
    result = state.result()
    _print_summary(result, time.monotonic() - started)
    return 0


def _prefect_server_not_answering(timeout_s: float = 3.0) -> str | None:
    """Why the Prefect server PREFECT_API_URL names cannot take the run (it was stopped, or
    the variable outlived it); None when it answers, or none is named (a temporary server
    is started for the run). Prefect's own failure is a 100-line traceback."""
    import urllib.error
    import urllib.request

    from prefect.settings import Settings

    url = Settings().api.url  # as the environment says now (the context's is from import)
    if not url:
        return None
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return None  # it answers: the run's own errors will say the rest
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return (
            f"no Prefect server answers at {url} (PREFECT_API_URL): {reason}; start it with"
            " `make prefect-up`, or unset PREFECT_API_URL to run on a temporary one"
        )
    return None


class _NoTraceback(logging.Filter):
    """A console that shows a failed run's reason in one line: the run's log on the API
    (``prefect flow-run logs``), written before the console, keeps the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            record.exc_info = record.exc_text = None
        return True


@contextmanager
def _tracebacks_off_the_console() -> Iterator[None]:
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [
        handler
        for name in ("prefect", "")
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, PrefectConsoleHandler)
    ]
    quiet = _NoTraceback()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _print_summary(result: dict, seconds: float) -> None:
    rows = result["rows"]
    simulation = result["simulation"] or {}
    print("\n" + "=" * 72)
    print(f"reelhouse local run {result['run_id']} finished in {seconds:.0f}s")
    print("=" * 72)
    if simulation:
        faults = sum(simulation["faults"].values())
        print(f"simulated  {simulation['events']:>10,} events  + {faults:,} faulty records")
    for table, count in sorted(rows.items()):
        print(f"{table:<26} {count:>10,} rows")
    quarantined = rows.get("silver.quarantine", 0)
    print(f"quarantined {quarantined:,} records (see silver.quarantine for the reasons)")
    for gate in result.get("gates", []):
        print(
            f"gate {gate['table']:<21} {gate['batches']:>3} batches {gate['checks']:>4} checks"
            f"   not met: warn {gate['warn']}, drop {gate['drop']}, fail {gate['fail']}"
        )
    if result["report"]:
        print(f"quality report: {result['report']}")
    print("tables: .venv/bin/python -m spark.tables   (add --json for machine-readable)")
    print("=" * 72)


if __name__ == "__main__":
    sys.exit(main())
