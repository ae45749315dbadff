"""Explicit topic management (the broker never auto-creates topics)."""

from __future__ import annotations

from collections.abc import Mapping

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from local_stack.simulate.producer import kafka_python_config


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
    return KafkaAdminClient(**config)
