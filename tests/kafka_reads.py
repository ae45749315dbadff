"""Reading a topic whole in a test: up to its end offsets, within a deadline."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition


def read_to_end(consumer: KafkaConsumer, topic: str, timeout_s: float = 60) -> list:
    """Every record of ``topic`` up to the end offsets it has now (a slow fetch is no short
    read); fails naming how many it read when the deadline passes first."""
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    end = consumer.end_offsets(partitions)
    received = []
    deadline = time.monotonic() + timeout_s
    while any(consumer.position(p, timeout_ms=10_000) < end[p] for p in partitions):
        assert time.monotonic() < deadline, f"read only {len(received)} records of {topic}"
        for batch in consumer.poll(timeout_ms=1000).values():
            received.extend(batch)
    return received
