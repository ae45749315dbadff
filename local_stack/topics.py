"""Explicit topic management (the broker never auto-creates topics)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from local_stack.simulate.producer import kafka_python_config

# Kafka's error codes for a topic in a metadata answer.
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_AUTHORIZATION_FAILED = 29


def admin_client(**config) -> KafkaAdminClient:
    """A ``KafkaAdminClient`` that stops its IO thread when it cannot reach the cluster:
    kafka-python 3.0 starts the thread, then bootstraps, and when that times out leaves the
    thread and its sockets running with no client to close (one more per failed check)."""
    admin = KafkaAdminClient.__new__(KafkaAdminClient)
    try:
        admin.__init__(**config)
    except BaseException:
        for close in (
            lambda: admin._net.stop(timeout_ms=1000),  # its IO thread, first
            lambda: admin._client.close(),
            lambda: admin._metrics.close(),
        ):
            with suppress(Exception):  # not built yet, or closed: the first error stands
                close()
        raise
    return admin


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    client_options: Mapping[str, str] | None = None,
) -> bool:
    """Create ``topic`` if it does not exist; return True when it was created.

    ``client_options`` are Java-client options (a profile's security settings, e.g. for
    the SASL_SSL listener); ``bootstrap_servers`` wins over one among them.
    """
    admin = _admin_client(bootstrap_servers, client_options)
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics(
                [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
            )
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


def list_topics(
    bootstrap_servers: str, client_options: Mapping[str, str] | None = None
) -> list[str]:
    """Every topic on the cluster, the broker's own included."""
    admin = _admin_client(bootstrap_servers, client_options)
    try:
        return sorted(admin.list_topics())
    finally:
        admin.close()


def delete_topic(
    bootstrap_servers: str, topic: str, client_options: Mapping[str, str] | None = None
) -> None:
    """Delete ``topic`` if it exists."""
    admin = _admin_client(bootstrap_servers, client_options)
    try:
        if topic in admin.list_topics():
            admin.delete_topics([topic])
    finally:
        admin.close()


def _admin_client(
    bootstrap_servers: str, client_options: Mapping[str, str] | None
) -> KafkaAdminClient:
    config = {
        "client_id": "reelhouse-topics",
        "request_timeout_ms": 15000,
        **kafka_python_config(client_options or {}, client="admin"),
        "bootstrap_servers": bootstrap_servers.split(","),
    }
    return admin_client(**config)


def describe_topic(
    client_options: Mapping[str, str], topic: str, timeout_s: float
) -> tuple[int, int]:
    """``topic``'s error code (0, or UNKNOWN_TOPIC_OR_PARTITION when it does not exist)
    and partition count, as these Java-client options log in and see it. A KafkaError
    when no answer comes within ``timeout_s``, to reach the cluster and for the answer; a
    ProducerError for options kafka-python does not take, or a token refused."""
    config = {
        **kafka_python_config(client_options, client="admin"),  # its timeouts: ours win
        "client_id": "reelhouse-preflight",
        "bootstrap_timeout_ms": int(timeout_s * 1000),
        "request_timeout_ms": int(timeout_s * 1000),
    }
    if "sasl_oauth_token_provider" in config:
        config["sasl_oauth_token_provider"].token()  # its own one-line refusal
    admin = admin_client(**config)
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    answer = next((item for item in described if item.get("name") == topic), {})
    return answer.get("error_code", UNKNOWN_TOPIC_OR_PARTITION), len(answer.get("partitions") or [])
