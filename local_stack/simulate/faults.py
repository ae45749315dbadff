"""Labelled faults: extra raw records derived from clean events, each breaking one rule.

A fault never replaces a clean event: it is an additional record, so the clean events
(and the ground truth computed from them) stay whole. Each kind breaks exactly one
rule of silver's validation, so its quarantine reason is known in advance: the kind
itself for the rules silver's parsing checks, the silver suite's check (e.g.
``silver_rating_in_range``) for column rules; ``tests/conftest.py`` maps one to the other.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from local_stack.simulate.sessions import SimulatedEvent, new_uuid
from spark.contract import required_fields

# Silver's rules these faults break (see spark/transforms/validation.py):
OVERSIZE_BYTES = 64 * 1024  # payloads above this are rejected as oversize_payload
LATE_FAULT_MIN_S = 3 * 3600  # later than the silver lateness bound (1 h) by a wide margin
LATE_FAULT_MAX_S = 12 * 3600

FAULT_KINDS = (
    "malformed_json",
    "truncated_record",
    "non_utf8",
    "missing_required_field",
    "wrong_type",
    "unknown_event_type",
    "unparsable_timestamp",
    "timestamp_out_of_range",
    "duplicate",
    "late_arrival",
    "oversize_payload",
    "invalid_value",
)

_NUMERIC_FIELDS = (
    "position_s",
    "duration_s",
    "played_s",
    "rating",
    "rec_row",
    "rec_rank",
    "bitrate_kbps",
)
_BAD_TIMESTAMPS = (
    "yesterday evening",
    "2026-13-45T25:61:00Z",
    "23/11/2026 20:15",
    "2026-11-01 T20",
    "",
)
_UNKNOWN_TYPES = ("teleport", "PLAY", "play_v2", "binge", "skip_intro")


def encode(payload: dict) -> bytes:
    """The wire form of a payload: compact JSON, UTF-8, fields in contract order."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def applicable_kinds(event: SimulatedEvent, kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The fault kinds that can be derived from this event."""
    payload = event.payload
    has_value = payload["position_s"] is not None or payload["rating"] is not None
    return tuple(kind for kind in kinds if kind != "invalid_value" or has_value)


def make_fault(
    rng: random.Random, kind: str, event: SimulatedEvent
) -> tuple[bytes, str | None, float]:
    """One faulty record derived from ``event``: (bytes, its event_id, arrival time)."""
    if kind == "duplicate":
        # Redelivery: the very same bytes, a little later (inside the dedup watermark).
        return (
            encode(event.payload),
            event.payload["event_id"],
            event.arrival_s + rng.uniform(1, 600),
        )
    payload = dict(event.payload)
    payload["event_id"] = new_uuid(rng)
    arrival = event.arrival_s + rng.uniform(0.001, 2.0)
    value = _BUILDERS[kind](rng, payload)
    event_id = payload.get("event_id")
    return value, event_id, arrival


def _malformed_json(rng: random.Random, payload: dict) -> bytes:
    # Still ends with '}' (that is how it differs from a truncated record), but a
    # separator is gone, so it does not parse.
    text = encode(payload).decode("utf-8")
    cut = text.index(',"user_id"')
    return (text[:cut] + ' "user_id"' + text[cut + len(',"user_id"') :]).encode("utf-8")


def _truncated(rng: random.Random, payload: dict) -> bytes:
    value = encode(payload)
    return value[: rng.randint(60, len(value) - 2)].rstrip(b"}")


def _non_utf8(rng: random.Random, payload: dict) -> bytes:
    # A client that wrote Latin-1 plus a stray continuation byte.
    payload["app_version"] = "9.1.0-\u00e9"
    return encode(payload).replace("\u00e9".encode(), b"\xe9\xff")


def _missing_field(rng: random.Random, payload: dict) -> bytes:
    field = rng.choice([name for name in required_fields() if name != "event_id"])
    del payload[field]
    return encode(payload)


def _wrong_type(rng: random.Random, payload: dict) -> bytes:
    present = [name for name in _NUMERIC_FIELDS if payload.get(name) is not None]
    field = rng.choice(present) if present else "bitrate_kbps"
    payload[field] = f"{payload.get(field) or 'high'} units"
    return encode(payload)


def _unknown_type(rng: random.Random, payload: dict) -> bytes:
    payload["event_type"] = rng.choice(_UNKNOWN_TYPES)
    return encode(payload)


def _bad_timestamp(rng: random.Random, payload: dict) -> bytes:
    payload["event_ts"] = rng.choice(_BAD_TIMESTAMPS)
    return encode(payload)


def _out_of_range_timestamp(rng: random.Random, payload: dict) -> bytes:
    moment = datetime.fromisoformat(payload["event_ts"])
    # Years off, within the years a date-time can name (a run near 9999 goes back only).
    years = rng.choice([step for step in (-27, -12, 15, 73) if 1 <= moment.year + step <= 9999])
    moved = moment.replace(year=moment.year + years, day=min(moment.day, 28))
    payload["event_ts"] = moved.isoformat(timespec="milliseconds")
    return encode(payload)


def _late(rng: random.Random, payload: dict) -> bytes:
    moment = datetime.fromisoformat(payload["event_ts"])
    earlier = moment - timedelta(seconds=rng.uniform(LATE_FAULT_MIN_S, LATE_FAULT_MAX_S))
    payload["event_ts"] = earlier.isoformat(timespec="milliseconds")
    return encode(payload)


def _oversize(rng: random.Random, payload: dict) -> bytes:
    payload["search_query"] = "x" * rng.randint(OVERSIZE_BYTES + 1024, 3 * OVERSIZE_BYTES)
    return encode(payload)


def _invalid_value(rng: random.Random, payload: dict) -> bytes:
    if payload["rating"] is not None:
        payload["rating"] = rng.choice((0, 6, 9))
    elif rng.random() < 0.5:
        payload["position_s"] = -round(rng.uniform(1, 500), 1)
    else:
        payload["position_s"] = round(payload["duration_s"] + rng.uniform(60, 3600), 1)
    return encode(payload)


_BUILDERS: dict[str, Callable[[random.Random, dict], bytes]] = {
    "malformed_json": _malformed_json,
    "truncated_record": _truncated,
    "non_utf8": _non_utf8,
    "missing_required_field": _missing_field,
    "wrong_type": _wrong_type,
    "unknown_event_type": _unknown_type,
    "unparsable_timestamp": _bad_timestamp,
    "timestamp_out_of_range": _out_of_range_timestamp,
    "late_arrival": _late,
    "oversize_payload": _oversize,
    "invalid_value": _invalid_value,
}
assert set(_BUILDERS) | {"duplicate"} == set(FAULT_KINDS)
