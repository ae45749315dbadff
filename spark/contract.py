"""The viewing-event contract (``schemas/viewing_event.schema.json``) as Python values.

Everything else derives from the JSON Schema file: the simulator's enums, the Spark
schema used to parse payloads, and the quality suites' value sets and id formats.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "viewing_event.schema.json"


@cache
def contract() -> dict[str, Any]:
    """The parsed JSON Schema."""
    return json.loads(SCHEMA_FILE.read_text())


def properties() -> dict[str, dict[str, Any]]:
    return contract()["properties"]


def required_fields() -> tuple[str, ...]:
    return tuple(contract()["required"])


def enum_values(field: str) -> tuple[str, ...]:
    """The allowed values of an enum field, without null."""
    return tuple(value for value in properties()[field]["enum"] if value is not None)


def pattern(field: str) -> str:
    return properties()[field]["pattern"]


def spark_pattern(field: str) -> str:
    """``pattern(field)`` as Spark's regular expressions (Java's) must be given it: a final
    ``$`` becomes ``\\z``. In a JSON Schema pattern ``$`` is the end of the string; in Java's
    it also matches before a final line terminator, so ``"u-000123\\n"`` would pass
    ``^u-[0-9]{6}$`` and reach gold as a user of its own."""
    text = pattern(field)
    escapes = len(text[:-1]) - len(text[:-1].rstrip("\\"))  # backslashes before the $
    if text.endswith("$") and escapes % 2 == 0:
        return text[:-1] + "\\z"
    return text


def region_timezones() -> dict[str, str]:
    return dict(properties()["region"]["x-timezones"])


def fields_since(version: str) -> tuple[str, ...]:
    """Fields added by a later minor version of the contract."""
    return tuple(name for name, spec in properties().items() if spec.get("x-since") == version)


def base_fields() -> tuple[str, ...]:
    """Fields of contract version 1.0, in schema order."""
    return tuple(name for name, spec in properties().items() if "x-since" not in spec)


EVENT_TYPES = enum_values("event_type")
PLAYBACK_EVENT_TYPES = ("play", "pause", "resume", "seek", "stop", "complete")
TITLE_EVENT_TYPES = (
    *PLAYBACK_EVENT_TYPES,
    "rating",
    "recommendation_impression",
    "recommendation_click",
)
DEVICE_TYPES = enum_values("device_type")
REGIONS = enum_values("region")
GENRES = enum_values("genre")
NETWORKS = enum_values("network")


def spark_schema():
    """The Spark ``StructType`` of a payload: every property of the contract, in order."""
    from pyspark.sql import types as T

    def spark_type(spec: dict[str, Any]):
        json_types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        json_type = next(kind for kind in json_types if kind != "null")
        if spec.get("format") == "date-time":
            return T.StringType()  # parsed explicitly, so an unparsable value can be named
        return {
            "string": T.StringType(),
            "integer": T.LongType(),
            "number": T.DoubleType(),
            "boolean": T.BooleanType(),
        }[json_type]

    return T.StructType(
        [T.StructField(name, spark_type(spec), True) for name, spec in properties().items()]
    )
