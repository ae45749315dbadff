"""What the streaming flow logs of each layer's last micro-batch."""

from __future__ import annotations

import json

import pytest

from flows.streaming import batch_size

pytestmark = pytest.mark.unit


def _kafka(start, end, read):
    # As PySpark gives a Kafka source's offsets: JSON text ("null" for a first batch).
    start, end = json.dumps(start), json.dumps(end)
    return {
        "batchId": 3,
        "numInputRows": read,
        "durationMs": {"triggerExecution": 2000},
        "sources": [
            {
                "description": "KafkaV2[Subscribe[main.viewing-events]]",
                "startOffset": start,
                "endOffset": end,
                "numInputRows": read,
            }
        ],
    }


def test_a_kafka_batch_is_measured_in_offsets_not_in_reads():
    start = {"main.viewing-events": {"0": 100, "1": 40}}
    end = {"main.viewing-events": {"0": 250, "1": 90}}
    # Gated bronze reads its 200 records twice: Spark counts 400 rows.
    assert batch_size(_kafka(start, end, read=400)) == "200 offsets in 2.0s, 100/s"


@pytest.mark.parametrize(
    "start",
    [None, {"main.viewing-events": {"0": 100}}],
    ids=["first batch", "partition added"],
)
def test_offsets_without_a_start_show_the_reads_as_reads(start):
    end = {"main.viewing-events": {"0": 250, "1": 90}}
    assert batch_size(_kafka(start, end, read=400)) == (
        "400 rows read (each read counted) in 2.0s, 200/s"
    )


def test_a_delta_source_batch_is_its_rows():
    progress = {
        "numInputRows": 180,
        "durationMs": {"triggerExecution": 0},
        "sources": [{"description": "DeltaSource[abfs://lake@x/silver/events]"}],
    }
    assert batch_size(progress) == "180 rows in 0.0s"
