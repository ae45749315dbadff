"""Silver's payload parser on the shapes a producer can send, beyond the simulator's faults."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from local_stack.simulate.faults import encode
from local_stack.simulate.simulation import SimulationRequest, simulate
from spark.transforms.events import parse_events

pytestmark = pytest.mark.integration

BRONZE_SCHEMA = (
    "key binary, value binary, topic string, partition int, offset bigint, "
    "kafka_timestamp timestamp, ingest_ts timestamp, ingest_date date"
)


@pytest.fixture(scope="module")
def play() -> dict:
    """A clean play event, as the simulator sends it."""
    simulation = simulate(SimulationRequest(events=50, seed=3, fault_rate=0.0))
    return next(payload for payload in simulation.clean_payloads if payload["event_type"] == "play")


def _parsed(spark, values: list[bytes]) -> list:
    happened = datetime.fromisoformat(json.loads(values[0])["event_ts"])
    arrived = happened.astimezone(UTC).replace(tzinfo=None)
    rows = [
        (None, value, "events", 0, offset, arrived, arrived, arrived.date())
        for offset, value in enumerate(values)
    ]
    frame = spark.createDataFrame(rows, BRONZE_SCHEMA)
    return parse_events(frame).orderBy("offset").collect()


def _with(payload: dict, **changes) -> bytes:
    return encode({**payload, **changes})


def test_each_json_shape_gets_its_reason_and_typed_values(spark, play):
    clean = encode(play)
    without_rating = {name: value for name, value in play.items() if name != "rating"}
    cases = {
        "clean": (clean, []),
        "whitespace around the object": (b"\n\t " + clean + b" \n", []),
        "integer where a number is expected": (_with(play, position_s=12), []),
        "optional field null": (_with(play, rating=None), []),
        "optional field absent": (encode(without_rating), []),
        "unknown field": (_with(play, next_episode="t-2"), []),
        "number in a string field": (_with(play, user_id=42), ["wrong_type"]),
        "object in a string field": (_with(play, title_name={"en": "x"}), ["wrong_type"]),
        "decimal in an integer field": (_with(play, bitrate_kbps=12.5), ["wrong_type"]),
        "numeric string in a number field": (_with(play, position_s="12.5"), ["wrong_type"]),
        "boolean in a number field": (_with(play, duration_s=True), ["wrong_type"]),
        "array of the object": (b"[" + clean + b"]", ["truncated_record"]),
        "bare string": (b'"play"', ["truncated_record"]),
        "missing comma": (clean.replace(b',"user_id"', b' "user_id"'), ["malformed_json"]),
        "cut short": (clean[:80], ["truncated_record"]),
        "text after the object": (clean + b" and more", ["truncated_record"]),
        "two objects": (clean + clean, ["malformed_json"]),
        "one closing brace too many": (clean + b"}", ["malformed_json"]),
        "a brace inside a string": (_with(play, title_name="Sets {and} braces}"), []),
        "characters of several bytes": (_with(play, title_name="Amélie à Paris ✓"), []),
        "empty": (b"", ["empty_payload"]),
        # Not JSON (RFC 8259), although Spark's parser would take them for numbers.
        "NaN for a number": (_played(play, b"NaN"), ["malformed_json"]),
        "Infinity for a number": (
            _played(play, b"-Infinity"),
            ["malformed_json"],
        ),
        "a number beyond a double": (
            _played(play, b"1e400"),
            ["wrong_type"],
        ),
        # Spark's parser takes single quotes by default: without a "}" inside a value, such
        # a payload passed as an event.
        "single quotes": (clean.replace(b'"', b"'"), ["malformed_json"]),
        # Spark's parsers keep a repeated key's last value: the event's id replaced.
        "a repeated key": (
            clean.removesuffix(b"}") + b',"event_id":"' + b"1" * 36 + b'"}',
            ["malformed_json"],
        ),
        "a repeated key, a brace in a value": (
            _with(play, title_name="X}").removesuffix(b"}") + b',"event_type":"play"}',
            ["malformed_json"],
        ),
        "a time of another JSON type": (_with(play, event_ts=1730000000), ["wrong_type"]),
        **_timestamp_cases(play),
    }
    rows = _parsed(spark, [value for value, _ in cases.values()])

    reasons = {name: row["reasons"] for name, row in zip(cases, rows, strict=True)}
    assert reasons == {name: expected for name, (_, expected) in cases.items()}
    by_case = dict(zip(cases, rows, strict=True))
    assert by_case["clean"]["event_id"] == play["event_id"]
    assert by_case["clean"]["bitrate_kbps"] == play["bitrate_kbps"]
    assert by_case["integer where a number is expected"]["position_s"] == 12.0
    assert by_case["unknown field"]["extras"] == {"next_episode": "t-2"}
    assert by_case["clean"]["extras"] is None
    assert by_case["a brace inside a string"]["title_name"] == "Sets {and} braces}"
    assert by_case["characters of several bytes"]["title_name"] == "Amélie à Paris ✓"
    # A value of the wrong JSON type is no value; the rest of the record still parses.
    assert by_case["number in a string field"]["user_id"] is None
    assert by_case["number in a string field"]["event_id"] == play["event_id"]
    assert by_case["decimal in an integer field"]["bitrate_kbps"] is None
    assert by_case["a number beyond a double"]["played_s"] is None
    # One instant, however many digits of a second it is written with (Spark keeps six).
    instant = by_case["clean"]["event_ts"]
    assert by_case["a time with microseconds"]["event_ts"] == instant
    assert by_case["a time with nanoseconds"]["event_ts"] == instant
    assert by_case["a time in UTC, written Z"]["event_ts"] == instant
    assert by_case["a time without a fraction"]["event_ts"] == instant.replace(microsecond=0)


def _played(play: dict, number: bytes) -> bytes:
    """The play with ``played_s`` written as ``number``, verbatim."""
    return _with(play, played_s=7.5).replace(b'"played_s":7.5', b'"played_s":' + number)


def _timestamp_cases(play: dict) -> dict[str, tuple[bytes, list[str]]]:
    """The play's own event time, written as RFC 3339 allows (and once as it does not)."""
    happened = datetime.fromisoformat(play["event_ts"])
    micro = happened.isoformat(timespec="microseconds")
    utc = happened.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "a time with microseconds": (_with(play, event_ts=micro), []),
        "a time with nanoseconds": (_with(play, event_ts=micro[:-6] + "789" + micro[-6:]), []),
        "a time in UTC, written Z": (_with(play, event_ts=utc), []),
        "a time without a fraction": (
            _with(play, event_ts=happened.replace(microsecond=0).isoformat()),
            [],
        ),
        "a space for the T": (
            _with(play, event_ts=play["event_ts"].replace("T", " ")),
            ["unparsable_timestamp"],
        ),
    }


def test_the_driver_jvm_compiles_the_parsers_huge_generated_method(spark):
    # The JIT flag is spark.session's, the collector the local profile's: both reach
    # the JVM the session runs in (they only take effect when it is launched).
    arguments = list(
        spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
    )
    assert "-XX:-DontCompileHugeMethods" in arguments
    assert "-XX:+UseParallelGC" in arguments
