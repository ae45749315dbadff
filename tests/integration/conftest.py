"""The medallion run the layer tests read, and the kill -9 run compared with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local_stack.simulate.simulation import SimulationRequest, simulate
from spark.settings import load_profile
from tests.conftest import produce_records
from tests.integration.crash import STARTED, CrashRun

EVENTS = 50_000
LAST_RECORDS = 2_000  # the kill -9 run's gold batch 1


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


@pytest.fixture
def services_may_stop() -> None:
    """For a test that stops a service of the shared stack: the kill -9 run (if started)
    has ended first, so the outage is not what it sees. Such tests run last (above)."""
    for run in STARTED:
        run.wait()
