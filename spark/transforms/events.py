"""Bronze and silver transformations: pure ``DataFrame -> DataFrame`` functions.

Nothing here reads, writes or knows a path; every function works on batch and
streaming frames alike.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark import contract

# Silver's rules (documented in the README, "Silver validation").
MAX_PAYLOAD_BYTES = 64 * 1024
LATENESS_BOUND_S = 3600  # a record delivered more than this after it happened is late
MAX_PAST_S = 30 * 86400  # event_ts may be at most 30 days before its arrival...
MAX_FUTURE_S = 5 * 60  # ...and at most 5 minutes after it (client clock skew)

# Reason codes, in the order they are checked. The first four describe the payload as
# a whole: when one applies, the field checks are not run.
PAYLOAD_REASONS = (
    "empty_payload",
    "oversize_payload",
    "non_utf8",
    "malformed_json",
    "truncated_record",
)
# What a column expectation cannot say (the JSON types, requirements that depend on the
# event type, a timestamp that does not parse, lateness) is checked here. Every rule that
# is one column's or one pair's value (required fields present, enums, id formats,
# ranges, event time near arrival) is a ``drop`` check of the silver suite
# (``quality/suites.py``), and its name is the quarantine reason.
FIELD_REASONS = (
    "missing_required_field",
    "wrong_type",
    "unparsable_timestamp",
    "late_arrival",
)
DUPLICATE = "duplicate"
# The column ``mark_duplicates``' caller adds to copies a later step will reject.
REJECTED = "_rejected"
# Up to this many rows in a batch, ``mark_duplicates`` broadcasts Kafka coordinates. Each
# broadcast holds at most every row's (384 MiB in the driver for 2M rows, measured, when
# every row is a copy: a redelivered backlog); larger batches are joined by shuffle.
BROADCAST_ROWS_LIMIT = 2_000_000

_CORRUPT = "_corrupt_record"
# NaN and Infinity are no JSON numbers, nor 'text' a JSON string (RFC 8259), although
# Spark's parser takes both by default: a payload with one is malformed_json, not a NaN that
# passes every range check, nor an event that parses only as long as no value holds a "}".
_STRICT_JSON = {"allowNonNumericNumbers": "false", "allowSingleQuotes": "false"}

_JSON_KINDS = {
    "string": ("STRING",),
    "integer": ("BIGINT", "INT", "SMALLINT", "TINYINT"),
    "number": ("BIGINT", "INT", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "DECIMAL"),
}
_SPARK_TYPES = {"string": "string", "integer": "bigint", "number": "double"}
_PLAYBACK_REQUIRED = ("title_id", "title_name", "genre", "position_s", "duration_s", "bitrate_kbps")
_TITLE_REQUIRED = ("title_id", "title_name", "genre")


def to_bronze(kafka_records: DataFrame) -> DataFrame:
    """Kafka records exactly as received, with their coordinates and the ingest time."""
    ingest_ts = F.current_timestamp()
    return kafka_records.select(
        F.col("key"),
        F.col("value"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        ingest_ts.alias("ingest_ts"),
        F.to_date(ingest_ts).alias("ingest_date"),
    )


def parse_events(bronze: DataFrame) -> DataFrame:
    """Parse each payload against the contract and attach its rejection reasons.

    Adds every contract field (typed), ``event_ts`` as a UTC timestamp, derived time
    columns, ``extras`` (fields a newer contract version added) and ``reasons``
    (empty when the record is valid; reason codes as in ``PAYLOAD_REASONS`` and
    ``FIELD_REASONS``).

    Each payload is read by two JSON parsers, once each: one keeps every field as a
    variant (its JSON type, and whether the payload parses at all), one converts
    every field to its contract type. Asking a single variant per field for its value
    and type cost twice as long (1M events: 46 s against 22 s; 16 s once every check
    compiled, see ``reason_codes``).
    """
    fields = contract.properties()
    text = F.col("value").cast("string")
    as_variants = F.from_json(
        text,
        _variant_schema(fields),
        {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT, **_STRICT_JSON},
    )
    frame = bronze.select(
        "*",
        text.alias("_text"),
        as_variants.alias("_variants"),
        F.from_json(text, _typed_schema(fields), _STRICT_JSON).alias("_typed"),
        # Its top-level keys, once: for repeated keys below, and for extras.
        F.json_object_keys(text).alias("_keys"),
    )
    # from_json (like try_parse_json) reads the first value of a text and ignores what
    # follows it. A payload is one object when it parses and is "{...}" with its only
    # "}" last (the common case, checked without parsing again), or, for texts with
    # more braces or whitespace around, when "[" text "]" parses as an array of exactly
    # one object. "}" is one byte in UTF-8 and never part of another character: the
    # bytes before the last are searched for it, not decoded (300k events, parse alone:
    # 8.8 s finding the first "}" and counting characters, 7.6 s searching bytes).
    # A key the object repeats (Spark's parsers keep its last value: an event_id replaced)
    # sends it the strict way, whose parser refuses repeated keys: malformed_json.
    value = F.col("value")
    all_but_last = value.substr(F.lit(1), F.length(value) - 1).cast("string")
    one_flat_object = (
        F.col("_text").startswith("{")
        & F.col("_text").endswith("}")
        & ~F.contains(all_but_last, F.lit("}"))
        & (F.size("_keys") == F.size(F.array_distinct("_keys")))
    )
    # A CASE, not an OR: Spark evaluates a subexpression an OR repeats (the bracketed
    # parse) for every row, a CASE branch's only for the rows that take it (1M events:
    # parse_events 21.7 s against 18.5 s).
    frame = frame.withColumn(
        "_is_object",
        F.col(f"_variants.{_CORRUPT}").isNull()
        & F.when(one_flat_object, F.lit(True)).otherwise(_one_object(F.col("_text"))),
    )
    is_object = F.col("_is_object")
    payload_reason = (
        F.when(F.coalesce(F.length("value"), F.lit(0)) == 0, F.lit("empty_payload"))
        .when(F.length("value") > MAX_PAYLOAD_BYTES, F.lit("oversize_payload"))
        .when(~F.is_valid_utf8(F.col("_text")), F.lit("non_utf8"))
        .when(~is_object & F.rtrim(F.col("_text")).endswith("}"), F.lit("malformed_json"))
        .when(~is_object, F.lit("truncated_record"))
    )
    frame = frame.select(
        "*",
        payload_reason.alias("_payload_reason"),
        *[
            F.schema_of_variant(F.col(f"_variants.`{name}`")).alias(f"_kind_{name}")
            for name in fields
        ],
    )
    # A value of another JSON type than the contract's is no value (and wrong_type).
    frame = frame.select(
        "*",
        *[
            F.when(_kind_allowed(name, spec), F.col(f"_typed.`{name}`")).alias(name)
            for name, spec in fields.items()
        ],
    )
    # RFC 3339 date-times (the contract's format) with no fraction or 1 to 9 digits of one;
    # Spark keeps microseconds, so digits 7 to 9 are cut off.
    event_ts = F.try_to_timestamp(F.col("event_ts"), F.lit("yyyy-MM-dd'T'HH:mm:ss[.SSSSSSSSS]XXX"))
    frame = frame.withColumn("_event_ts_raw", F.col("event_ts")).withColumn("event_ts", event_ts)

    field_reasons = reason_codes(_field_checks(fields))
    reasons = F.when(
        F.col("_payload_reason").isNotNull(), F.array(F.col("_payload_reason"))
    ).otherwise(field_reasons)

    zones = contract.region_timezones()
    zone = F.create_map(*[F.lit(item) for pair in zones.items() for item in pair])[F.col("region")]
    local_ts = F.from_utc_timestamp(F.col("event_ts"), zone)
    known = F.array(*[F.lit(name) for name in fields])
    extras = F.when(
        F.size(F.array_except(F.col("_keys"), known)) > 0,
        F.map_filter(
            F.from_json(F.col("_text"), "map<string,string>", _STRICT_JSON),
            lambda key, _: ~F.array_contains(known, key),
        ),
    )
    return frame.select(
        *[F.col(name) for name in bronze.columns],
        *[F.col(name) for name in fields],
        F.col("_event_ts_raw").alias("event_ts_text"),
        F.to_date("event_ts").alias("event_date"),
        F.date_trunc("hour", "event_ts").alias("event_hour"),
        F.to_date(local_ts).alias("local_date"),
        F.hour(local_ts).alias("local_hour"),
        F.when(F.col("_is_object"), extras).alias("extras"),
        reasons.alias("reasons"),
    )


def reason_codes(checks: list[tuple[str, Column]]) -> Column:
    """The array of the reasons whose check is true for the row, in order.

    A concat of one-element arrays, not ``array_compact``: that is a lambda function
    Spark cannot compile, and every check under it would be interpreted row by row.
    """
    no_reason = F.array().cast("array<string>")
    return F.concat(
        *[F.when(check, F.array(F.lit(reason))).otherwise(no_reason) for reason, check in checks]
    )


def mark_duplicates(
    events: DataFrame,
    seen_event_ids: DataFrame,
    with_rejected: Callable[[DataFrame], DataFrame] | None = None,
    broadcast: bool = True,
) -> DataFrame:
    """Add ``duplicate_of_earlier``: the event id was already seen, in ``seen_event_ids``
    (``event_id``, ``partition``, ``offset``: silver's copies), or another copy in this
    frame is the one kept.

    A record whose own copy is the one seen (the same id at the same partition and
    offset) is no duplicate: a micro-batch replayed after silver committed it, when the
    driver died before its checkpoint did, finds its own events there. Marked duplicates
    again, they would go to the quarantine, which a batch with nothing to quarantine had
    not committed, and be in both tables.

    Of an event's copies in this frame, the one kept is the first by (partition, offset)
    that a later step will not reject: ``with_rejected(copies)`` returns ``copies`` with a
    boolean column ``REJECTED`` (silver passes its gate's drop checks). So a copy the gate
    would quarantine never shadows a good one, in one batch as across batches (silver, the
    reference for later batches, holds only what the gate promoted). With no good copy,
    the first is kept, and the gate quarantines it with its reasons.

    A copy that loses is quarantined as ``duplicate``, whatever else is wrong with it: a
    bad copy before a good one in the same batch is a ``duplicate``, in an earlier batch it
    was the only copy, with the gate's reasons.

    For a static (micro-batch) frame; silver calls it inside ``foreachBatch``. Only the ids
    and Kafka coordinates are shuffled to count the copies; ``with_rejected`` reads only
    the rows of events with copies (about 1 % of a batch, picked by a broadcast of their
    coordinates), and the duplicates' coordinates are broadcast to mark the rows where they
    are, so the wide rows are never shuffled (1M events, marking alone: 7.0 s against
    4.1 s; choosing among copies this way cost nothing measurable, silver 52.1 s against
    52.9 s without it). When most rows are copies, both broadcasts hold most coordinates:
    a caller passes ``broadcast=False`` for a batch above ``BROADCAST_ROWS_LIMIT`` rows, and
    Spark then chooses its joins by their sizes.
    """
    hint = F.broadcast if broadcast else (lambda frame: frame)
    coordinates = ["topic", "partition", "offset"]
    # An event without an id is no copy of another one (the silver suite drops it for
    # having none): only ids are compared.
    ids = events.filter(F.col("event_id").isNotNull()).select("event_id", *coordinates)
    copied = (
        ids.withColumn("_copies", F.count("*").over(Window.partitionBy("event_id")))
        .filter(F.col("_copies") > 1)
        .select(*coordinates)
    )
    copies = events.join(hint(copied), on=coordinates, how="left_semi")
    if with_rejected is None:
        copies = copies.withColumn(REJECTED, F.lit(False))
    else:
        copies = with_rejected(copies)
    # A copy whose flag is missing counts as rejected.
    first = Window.partitionBy("event_id").orderBy(
        F.col(REJECTED).asc_nulls_last(), "topic", "partition", "offset"
    )
    repeated = (
        copies.withColumn("_rank", F.row_number().over(first))
        .filter(F.col("_rank") > 1)
        .select(*coordinates)
    )
    earlier = seen_event_ids.select(
        "event_id",
        F.col("partition").alias("_seen_partition"),
        F.col("offset").alias("_seen_offset"),
    )
    seen = ids.join(earlier, on="event_id").filter(
        (F.col("partition") != F.col("_seen_partition"))
        | (F.col("offset") != F.col("_seen_offset"))
    )
    duplicates = (
        repeated.unionByName(seen.select(*coordinates))
        .distinct()
        .withColumn("duplicate_of_earlier", F.lit(True))
    )
    return events.join(hint(duplicates), on=coordinates, how="left").withColumn(
        "duplicate_of_earlier", F.coalesce(F.col("duplicate_of_earlier"), F.lit(False))
    )


def silver_columns() -> list[str]:
    """The columns of ``silver.events``, in order."""
    return [
        *contract.properties(),
        "event_date",
        "event_hour",
        "local_date",
        "local_hour",
        "extras",
        "partition",
        "offset",
        "kafka_timestamp",
        "ingest_ts",
    ]


def to_quarantine(rejected: DataFrame, layer: str, batch_id: int) -> DataFrame:
    """Rejected records: raw payload, bronze coordinates and reason codes."""
    return rejected.select(
        F.lit(layer).alias("layer"),
        F.lit(batch_id).cast("bigint").alias("batch_id"),
        F.col("event_id"),
        F.col("reasons"),
        F.col("key"),
        F.col("value"),
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("kafka_timestamp"),
        F.col("ingest_ts"),
        F.current_timestamp().alias("quarantined_ts"),
        F.to_date(F.current_timestamp()).alias("quarantine_date"),
    )


def _variant_schema(fields: dict) -> str:
    columns = [f"`{name}`: variant" for name in fields]
    return f"struct<{', '.join([*columns, f'`{_CORRUPT}`: string'])}>"


def _one_object(text: Column) -> Column:
    """The whole text is exactly one JSON object: wrapped in brackets, it parses as an
    array of one element, an object (trailing text breaks the array or adds elements)."""
    wrapped = F.try_parse_json(F.concat(F.lit("["), text, F.lit("]")))
    first = F.schema_of_variant(F.try_variant_get(wrapped, "$[0]", "variant"))
    second = F.try_variant_get(wrapped, "$[1]", "variant")
    return F.coalesce(first.startswith("OBJECT") & second.isNull(), F.lit(False))


def _typed_schema(fields: dict) -> str:
    columns = [f"`{name}`: {_SPARK_TYPES[_main_type(spec)]}" for name, spec in fields.items()]
    return f"struct<{', '.join(columns)}>"


def _kind_allowed(name: str, spec: dict) -> Column:
    """The field's JSON type (``schema_of_variant``: STRING, BIGINT, DECIMAL(5,1)...)
    is one the contract allows, and a number fits the contract's type: a number beyond a
    double's range (1e400) would be Infinity."""
    kind = F.col(f"_kind_{name}")
    allowed = _JSON_KINDS[_main_type(spec)]
    exact = kind.isin(*[allowed_kind for allowed_kind in allowed if allowed_kind != "DECIMAL"])
    if "DECIMAL" not in allowed:
        return exact
    value = F.col(f"_typed.`{name}`")
    finite = value.isNull() | ~value.isin(float("inf"), float("-inf"))
    return (exact | kind.startswith("DECIMAL(")) & finite


def _main_type(spec: dict) -> str:
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    return next(kind for kind in types if kind != "null")


def _present(name: str) -> Column:
    """The field is in the payload and not JSON null."""
    kind = F.col(f"_kind_{name}")
    return kind.isNotNull() & (kind != "VOID")


def _field_checks(fields: dict) -> list[tuple[str, Column]]:
    event_type = F.col("event_type")
    playback = event_type.isin(*contract.PLAYBACK_EVENT_TYPES)
    titled = event_type.isin("rating", "recommendation_impression", "recommendation_click")

    # Fields every event needs are the silver suite's silver_<field>_present checks.
    missing = F.lit(False)
    for name in _PLAYBACK_REQUIRED:
        missing = missing | (playback & ~_present(name))
    for name in _TITLE_REQUIRED:
        missing = missing | (titled & ~_present(name))
    missing = missing | ((event_type == "rating") & ~_present("rating"))
    missing = missing | ((event_type == "search") & ~_present("search_query"))
    recommendation = event_type.isin("recommendation_impression", "recommendation_click")
    missing = missing | (recommendation & (~_present("rec_row") | ~_present("rec_rank")))

    wrong_type = F.lit(False)
    for name, spec in fields.items():
        wrong_type = wrong_type | (_present(name) & ~_kind_allowed(name, spec))

    # A time of another JSON type is wrong_type alone.
    unparsable_ts = (
        _present("event_ts")
        & _kind_allowed("event_ts", fields["event_ts"])
        & F.col("event_ts").isNull()
    )

    # Later than 30 days is silver_event_ts_near_arrival's, not late. In microseconds, as
    # that check measures: 3,600.9 s is more than an hour.
    lag_us = F.unix_micros("kafka_timestamp") - F.unix_micros("event_ts")
    late = (
        F.col("event_ts").isNotNull()
        & (lag_us > LATENESS_BOUND_S * 1_000_000)
        & (lag_us <= MAX_PAST_S * 1_000_000)
    )

    checks = {
        "missing_required_field": missing,
        "wrong_type": wrong_type,
        "unparsable_timestamp": unparsable_ts,
        "late_arrival": late,
    }
    assert tuple(checks) == FIELD_REASONS
    return [(reason, F.coalesce(check, F.lit(False))) for reason, check in checks.items()]
