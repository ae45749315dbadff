"""Shared fixtures: one local stack and one Spark session per test session."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest

from local_stack.stack import LocalStack
from spark.settings import Profile, load_profile

TEST_WORKSPACE = f"test-{uuid.uuid4().hex[:8]}"


def pytest_unconfigure(config: pytest.Config) -> None:
    # Prefect stops its temporary API server at exit and says so through a console
    # handler whose stream pytest has closed by then: a traceback, not a failure.
    logging.getLogger("prefect").disabled = True


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """The real local stack; started if down, and stopped again only if we started it.

    The session's workspaces are dropped at the end when every test passed, and kept for
    a look when one failed (``python -m local_stack drop-workspace 'test-*'`` then)."""
    from local_stack.workspaces import drop_workspaces

    local_stack = LocalStack()
    # By process, not by health: a service of the user's that is slow to answer (Azurite
    # holding much) is still theirs, and stays up after the tests.
    services = (local_stack.keyvault, *reversed(local_stack.services))
    was_running = {service.name for service in services if service.running_pid() is not None}
    local_stack.up()
    yield local_stack
    try:
        if request.session.testsfailed == 0 and local_stack.is_healthy():
            drop_workspaces(local_stack.settings, [TEST_WORKSPACE, f"{TEST_WORKSPACE}-*"])
    finally:
        failures = []
        for service in services:
            if service.name not in was_running:
                try:
                    service.stop()
                except Exception as error:  # the others are stopped all the same
                    failures.append(f"{service.name}: {type(error).__name__} {error}")
        assert not failures, failures


@pytest.fixture(scope="session")
def profile() -> Profile:
    """The local profile on a workspace of this test session alone."""
    return load_profile("local", TEST_WORKSPACE)


@pytest.fixture(scope="session")
def spark(profile: Profile):
    """The one SparkSession of the test session, built by the project's builder."""
    from spark.session import build_spark_session

    session = build_spark_session(profile, app_name="reelhouse-tests")
    yield session
    session.stop()


@pytest.fixture
def unique_name() -> str:
    return uuid.uuid4().hex[:10]


def produce_records(profile: Profile, records, partitions: int = 4) -> None:
    """Create the profile's topic and send simulated records to it with one producer,
    so the same records land at the same offsets in every topic."""
    from local_stack.simulate.producer import send_to_kafka
    from local_stack.topics import ensure_topic

    ensure_topic(profile.source.bootstrap_servers, profile.source.topic, partitions=partitions)
    send_to_kafka(
        records,
        profile.source.topic,
        profile.source.client_options(),
        rate=0,
        progress=False,
        producers=1,
    )


def expected_quarantine_reasons(simulation) -> dict[tuple[str, ...], int]:
    """The reasons each injected fault must be quarantined with, from the manifest.

    Faults that break a column rule carry the silver suite's check name (the gate drops
    them); the others carry silver's reason code, which is the fault's kind.
    """
    import json
    from collections import Counter

    from spark import contract

    reasons: Counter = Counter()
    for label in simulation.manifest["labels"]:
        kind, value = label["kind"], simulation.records[label["index"]].value
        if kind == "missing_required_field":
            payload = json.loads(value)
            (field,) = [name for name in contract.required_fields() if name not in payload]
            reason = f"silver_{field}_present"
        elif kind == "unknown_event_type":
            reason = "silver_event_type_in_contract"
        elif kind == "timestamp_out_of_range":
            reason = "silver_event_ts_near_arrival"
        elif kind == "invalid_value":
            payload = json.loads(value)
            if payload["rating"] is not None:
                reason = "silver_rating_in_range"
            elif payload["position_s"] < 0:
                reason = "silver_position_s_not_negative"
            else:
                reason = "silver_position_within_duration"
        else:
            reason = kind
        reasons[(reason,)] += 1
    return dict(reasons)


def grant(admin, acls, timeout_s: float = 10.0) -> None:
    """Create Kafka ``acls`` and return once the broker's authorizer applies them (KRaft
    applies them from its metadata log, a moment after the request returns)."""
    created = admin.create_acls(acls)
    assert not created["failed"], created
    deadline = time.monotonic() + timeout_s
    while not all(admin.describe_acls(acl)[0] for acl in acls):
        assert time.monotonic() < deadline, f"ACLs not applied within {timeout_s} s: {acls}"
        time.sleep(0.05)
