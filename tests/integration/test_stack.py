"""The native local stack against its real services: Kafka, Azurite, Spark + Delta."""

from __future__ import annotations

import os
import signal
import time
import uuid

import psutil
import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.filedatalake import DataLakeServiceClient
from kafka import KafkaConsumer, KafkaProducer

from local_stack.services import _port_in_use
from local_stack.settings import EMULATOR_ACCOUNT, EMULATOR_KEY
from local_stack.stack import LocalStack
from local_stack.topics import ensure_topic

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, count: int) -> dict[bytes, bytes]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    records = {f"user-{index}".encode(): f'{{"n": {index}}}'.encode() for index in range(count)}
    futures = [producer.send(topic, key=key, value=value) for key, value in records.items()]
    producer.flush()
    for future in futures:
        future.get(timeout=30)  # raises unless the broker acknowledged it
    producer.close()
    return records


def _consume_all(bootstrap: str, topic: str, expected: int) -> dict[bytes, bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"reader-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        consumer_timeout_ms=30000,  # only a short read waits it out
    )
    received: dict[bytes, bytes] = {}
    count = 0
    for message in consumer:
        received[message.key] = message.value
        count += 1
        if count >= expected:
            break
    consumer.close()
    assert count == expected, f"read {count} records, expected {expected}"
    return received


def _kafka_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if "kafka.Kafka" in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def test_keyed_records_round_trip_through_a_consumer_group(stack: LocalStack, unique_name):
    bootstrap = stack.settings.kafka.bootstrap_servers
    topic = f"roundtrip-{unique_name}"
    assert ensure_topic(bootstrap, topic, partitions=4)
    sent = _produce(bootstrap, topic, 10_000)
    assert _consume_all(bootstrap, topic, 10_000) == sent


def test_topics_are_never_auto_created(stack: LocalStack, unique_name):
    from kafka.errors import KafkaTimeoutError

    producer = KafkaProducer(
        bootstrap_servers=stack.settings.kafka.bootstrap_servers, max_block_ms=3000
    )
    with pytest.raises(KafkaTimeoutError):
        producer.send(f"typo-{unique_name}", b"x").get(timeout=5)
    producer.close()


def test_azurite_blob_and_datalake_file_system(stack: LocalStack, unique_name):
    connection = stack.settings.azurite.connection_string
    blobs = BlobServiceClient.from_connection_string(connection)
    container = blobs.create_container(f"it-{unique_name}")
    container.upload_blob("hello/world.txt", b"reelhouse")
    assert container.download_blob("hello/world.txt").readall() == b"reelhouse"

    datalake = DataLakeServiceClient(
        account_url=stack.settings.azurite.blob_endpoint,
        credential={"account_name": EMULATOR_ACCOUNT, "account_key": EMULATOR_KEY},
    )
    file_system = datalake.create_file_system(f"fs-{unique_name}")
    assert file_system.get_file_system_properties().name == f"fs-{unique_name}"
    file_system.delete_file_system()
    container.delete_container()


def test_spark_reads_kafka_and_writes_delta(stack: LocalStack, spark, profile, unique_name):
    bootstrap = stack.settings.kafka.bootstrap_servers
    topic = f"spark-{unique_name}"
    ensure_topic(bootstrap, topic, partitions=2)
    sent = _produce(bootstrap, topic, 500)

    options = {**profile.source.spark_options(), "subscribe": topic}
    frame = spark.read.format("kafka").options(**options).load()
    location = profile.lake.table_location(f"bronze.jar_chain_{unique_name}")
    frame.selectExpr("key", "value", "partition", "offset").write.format("delta").save(location)

    rows = spark.read.format("delta").load(location).collect()
    assert {bytes(row.key): bytes(row.value) for row in rows} == sent
    assert len(rows) == 500


def test_up_twice_gives_one_broker(stack: LocalStack):
    first = stack.kafka.running_pid()
    messages = stack.up()
    assert any("already running" in message for message in messages)
    assert stack.kafka.running_pid() == first
    assert [process.pid for process in _kafka_processes()] == [first]


def test_external_services_are_used_where_they_answer_and_left_running(
    stack: LocalStack, tmp_path, unique_name
):
    """With services = "external" (docker compose runs Kafka and Azurite), `up` starts
    nothing: it finds them answering, creates the lake container and the topics, and `down`
    leaves them. No Docker engine here: this session's native services play compose's."""
    from dataclasses import replace

    from local_stack.topics import list_topics

    settings = replace(
        stack.settings,
        state_dir=tmp_path,
        services="external",
        azurite=replace(stack.settings.azurite, lake_container=f"lake-{unique_name}"[:63]),
    )
    external = LocalStack(settings)
    broker = stack.kafka.running_pid()
    try:
        assert external.up(topics=(unique_name,)) == [
            f"kafka: external, answering on port {settings.kafka.port}",
            f"azurite: external, answering on port {settings.azurite.blob_port}",
            f"container {settings.azurite.lake_container}: created",
            f"topic {unique_name}: created",
        ]
        assert unique_name in list_topics(settings.kafka.bootstrap_servers)
        assert [status.detail for status in external.status()] == ["external, healthy"] * 2
        assert external.down() == [
            "keyvault: not running",
            "azurite: external, not stopped",
            "kafka: external, not stopped",
        ]
        assert stack.kafka.running_pid() == broker and stack.is_healthy()
        assert not (tmp_path / "run").exists()
    finally:
        BlobServiceClient.from_connection_string(
            settings.azurite.connection_string
        ).delete_container(settings.azurite.lake_container)


def test_a_container_name_azurite_refuses_is_one_line(stack: LocalStack):
    from local_stack.services import StackError

    with pytest.raises(StackError) as refused:
        stack.ensure_lake_container("Lake_1")
    message = str(refused.value)
    assert message.startswith("Azurite refused container 'Lake_1' of account"), message
    assert message.endswith("check the container and account names (local_stack/stack.toml)")
    assert "\n" not in message


def test_up_with_moved_ports_names_the_running_service_at_once(stack: LocalStack, monkeypatch):
    """A port setting changed after ``up``: one line naming the ports the running service
    listens on, not a health check waited out on the new port and a wrong verdict."""
    from local_stack.services import StackSetupError
    from local_stack.settings import load_stack_settings
    from tests.ports import free_port

    port = free_port()
    monkeypatch.setenv("REELHOUSE_KAFKA_PORT", str(port))
    moved = LocalStack(load_stack_settings())
    running = stack.kafka.ports()
    with pytest.raises(StackSetupError) as refused:
        moved.kafka.start()
    assert str(refused.value) == (
        f"kafka (pid {stack.kafka.running_pid()}) listens on port(s)"
        f" {', '.join(map(str, sorted(running)))}, but the settings now name"
        f" {', '.join(map(str, (port, *running[1:])))}; to move it, restart it"
        " (python -m local_stack down, then up)"
    )
    assert stack.kafka.is_healthy()


def test_broker_recovers_after_kill_9_with_acknowledged_records(
    stack: LocalStack, unique_name, services_may_stop
):
    bootstrap = stack.settings.kafka.bootstrap_servers
    topic = f"durable-{unique_name}"
    ensure_topic(bootstrap, topic, partitions=2)
    sent = _produce(bootstrap, topic, 2_000)

    os.kill(stack.kafka.running_pid(), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while stack.kafka.running_pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.kafka.running_pid() is None

    messages = stack.up()
    assert any(message.startswith("kafka: started") for message in messages)
    assert _consume_all(bootstrap, topic, 2_000) == sent


def test_down_stops_everything_and_frees_ports_then_up_restores(
    stack: LocalStack, services_may_stop
):
    stack.down()
    assert _kafka_processes() == []
    for service in stack.services:
        assert service.running_pid() is None
        for port in service.ports():
            assert not _port_in_use(port), f"port {port} still in use"
    stack.up()
    assert stack.is_healthy()
