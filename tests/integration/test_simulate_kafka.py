"""The simulator against the real broker: every record lands, per-key order kept."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest
from kafka import KafkaConsumer

from local_stack.simulate.simulation import SimulationRequest, simulate
from tests.kafka_reads import read_to_end

pytestmark = pytest.mark.integration


def test_simulator_delivers_every_record_in_key_order(stack, profile, tmp_path, unique_name):
    topic = f"{profile.workspace}.sim-{unique_name}"
    manifest = tmp_path / "run.manifest.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "local_stack.simulate",
            "--events",
            "20000",
            "--seed",
            "3",
            "--fault-rate",
            "0.02",
            "--topic",
            topic,
            "--workspace",
            profile.workspace,
            "--manifest",
            str(manifest),
            "--quiet",
            "--no-truth",
        ],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    assert "records_per_s=" in completed.stdout

    expected = simulate(SimulationRequest(events=20000, seed=3, fault_rate=0.02, with_truth=False))
    assert json.loads(manifest.read_text())["records"] == len(expected.records)

    consumer = KafkaConsumer(
        bootstrap_servers=stack.settings.kafka.bootstrap_servers, enable_auto_commit=False
    )
    received = defaultdict(list)
    for message in read_to_end(consumer, topic):
        received[message.key].append((message.value, message.timestamp))
    consumer.close()

    wanted = defaultdict(list)
    for record in expected.records:
        wanted[record.key].append((record.value, record.timestamp_ms))
    assert sum(map(len, received.values())) == len(expected.records)
    assert received == wanted


def test_a_topic_name_kafka_refuses_is_one_line(stack, profile, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "local_stack.simulate", "--events", "10", "--quiet"]
        + ["--topic", f"{profile.workspace}.bad topic!", "--workspace", profile.workspace]
        + ["--manifest", str(tmp_path / "m.json"), "--no-truth"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    error = completed.stderr.strip()
    assert error.startswith(f"error: cannot create topic '{profile.workspace}.bad topic!': "), error
    assert "\n" not in error and not (tmp_path / "m.json").exists()


def test_a_run_timed_too_far_ahead_is_refused_before_its_topic_is_created(
    stack, profile, tmp_path, unique_name
):
    """The error names the latest start time that fits, and the refused run leaves no
    topic behind (it used to create one and send nothing)."""
    from datetime import UTC, datetime, timedelta

    from local_stack.topics import list_topics

    topic = f"{profile.workspace}.ahead-{unique_name}"
    start = datetime.now(UTC).replace(microsecond=0)
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "local_stack.simulate", "--events", "2000"),
            *("--start-time", start.isoformat(), "--topic", topic),
            *("--workspace", profile.workspace, "--manifest", str(tmp_path / "m.json")),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    error = completed.stderr.strip()
    assert "more than an hour from now: Kafka refuses records timed that far ahead" in error
    advice = error.rsplit("give a --start-time no later than ", 1)[1]
    fits = datetime.fromisoformat(advice.split(" (", 1)[0])
    # The run spans two days (--days 2) and its late deliveries: about that much earlier.
    assert timedelta(days=1) < start - fits < timedelta(days=3)
    assert topic not in list_topics(stack.settings.kafka.bootstrap_servers)
