"""The medallion run the layer tests read, the kill -9 run compared with it, and the gated
run the quality and report tests read."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from local_stack.simulate.simulation import SimulationRequest, simulate
from spark.settings import Profile, load_profile
from tests.conftest import produce_records
from tests.integration.crash import STARTED, CrashRun

EVENTS = 50_000
LAST_RECORDS = 2_000  # the kill -9 run's gold batch 1
GATED_EVENTS = 5_000
GATED_RUN = "run-gated"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The test that joins the kill -9 run runs after the others, so that the run goes on
    beside them; then those that stop a service of the shared stack (``services_may_stop``),
    once it has ended. Otherwise the order is kept."""

    def rank(item: pytest.Item) -> int:
        if "services_may_stop" in item.fixturenames:
            return 2
        return int("crash_run" in item.fixturenames)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def simulation():
    return simulate(SimulationRequest(events=EVENTS, seed=21, fault_rate=0.02))


@pytest.fixture(scope="session")
def reference(stack, spark, profile, simulation):
    """An uninterrupted bronze + silver + gold run over the simulated topic."""
    from spark.jobs.layers import Trigger
    from spark.run import run_layers

    produce_records(profile, simulation.records)
    run_layers(spark, profile, ["bronze", "silver", "gold"], Trigger())
    return profile


@pytest.fixture(scope="session")
def crash_run(stack, profile, simulation) -> Iterator[CrashRun]:
    """The kill -9 run over the same records, started on first use and left running.

    All but the last records first: gold's first batch reads them all. The last ones come
    before the kill inside a MERGE, as gold's batch 1, which MERGEs into the tables batch 0
    created (a replayed batch may skip a MERGE Delta committed; batch 1 is new).
    """
    crash = load_profile("local", f"{profile.workspace}-crash")
    records = simulation.records
    produce_records(crash, records[:-LAST_RECORDS])
    run = CrashRun(crash.workspace, lambda: produce_records(crash, records[-LAST_RECORDS:]))
    yield run.start()
    run.cancel()


def recent_simulation(events: int, **options):
    """Simulated arrivals within the broker's 7-day retention, so none is deleted before read."""
    start = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0).isoformat()
    return simulate(SimulationRequest(events=events, start_time=start, days=1, **options))


def workspace_of(profile: Profile, suffix: str, max_offsets: int | None = None) -> Profile:
    """The local profile on a workspace of its own, ``<session workspace>-<suffix>``."""
    workspace = load_profile("local", f"{profile.workspace}-{suffix}")
    source = dataclasses.replace(workspace.source, max_offsets_per_trigger=max_offsets)
    return dataclasses.replace(workspace, source=source)


@pytest.fixture(scope="session")
def gated_simulation():
    return recent_simulation(GATED_EVENTS, seed=5, fault_rate=0.02)


@pytest.fixture(scope="session")
def gated(stack, spark, profile, gated_simulation) -> Profile:
    """bronze, silver and gold over a simulated topic, every batch gated (run ``GATED_RUN``);
    every layer in batches (bronze 2,000 records, silver and gold four files of the table
    before). The quality tests check its records and its gold against the ground truth, the
    report tests render them."""
    from quality.gates import build_gate
    from spark.jobs.layers import Trigger
    from spark.run import run_layers

    gated = workspace_of(profile, "quality", max_offsets=2_000)
    gated = dataclasses.replace(
        gated, lake=dataclasses.replace(gated.lake, max_files_per_trigger=4)
    )
    produce_records(gated, gated_simulation.records, partitions=2)
    gate = build_gate(gated, GATED_RUN)
    run_layers(spark, gated, ["bronze", "silver", "gold"], Trigger(), gate=gate)
    return gated


@pytest.fixture
def services_may_stop() -> None:
    """For a test that stops a service of the shared stack: the kill -9 run (if started)
    has ended first, so the outage is not what it sees. Such tests run last (above)."""
    for run in STARTED:
        run.wait()


@contextmanager
def driver_time_zone(zone: str) -> Iterator[None]:
    """The driver process on a laptop's clock in ``zone`` (Python's conversions of naive
    datetimes follow it; the JVM keeps the zone it started with)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()
