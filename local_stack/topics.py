"""Explicit topic management (the broker never auto-creates topics)."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    client_options: dict[str, str] | None = None,
) -> bool:
    """Create ``topic`` if it does not exist; return True when it was created."""
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="reelhouse-topics",
        request_timeout_ms=15000,
        **(client_options or {}),
    )
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


def delete_topic(bootstrap_servers: str, topic: str) -> None:
    """Delete ``topic`` if it exists."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="reelhouse-topics")
    try:
        if topic in admin.list_topics():
            admin.delete_topics([topic])
    finally:
        admin.close()
