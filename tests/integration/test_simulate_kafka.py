"""The simulator against the real broker: every record lands, per-key order kept."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, TopicPartition

from local_stack.simulate.simulation import SimulationRequest, simulate

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
        bootstrap_servers=stack.settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    received = defaultdict(list)
    for message in consumer:
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
        + ["--topic", "bad topic!", "--workspace", profile.workspace]
        + ["--manifest", str(tmp_path / "m.json"), "--no-truth"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    error = completed.stderr.strip()
    assert error.startswith("error: cannot create topic 'bad topic!': "), error
    assert "\n" not in error and not (tmp_path / "m.json").exists()
