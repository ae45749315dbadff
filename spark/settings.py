"""The profile contract: the typed settings object that is all the Spark code knows.

A profile is provided by a package registered under the ``reelhouse.profiles``
entry-point group (``local_stack``, ``azure_profile``, ...). The provider returns a
plain mapping with the sections below; this module fills ``${VAR:-default}``
placeholders, applies ``REELHOUSE_<SECTION>_<KEY>`` overrides, applies the
workspace prefix and validates the result into :class:`Profile`.

This is the only module of the project that reads ``os.environ``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

ENTRY_POINT_GROUP = "reelhouse.profiles"
DEFAULT_PROFILE = "local"
DEFAULT_WORKSPACE = "main"
PROFILE_ENV = "REELHOUSE_PROFILE"
WORKSPACE_ENV = "REELHOUSE_WORKSPACE"

_PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")
_WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
# The masters PySpark's spark-submit takes (SparkContext's patterns; the launcher refuses
# any other scheme): local, local[N] and local[*] (no spaces inside; at least one thread),
# local[N, F] with F task failures allowed, local-cluster[workers, cores, MiB], yarn, and a
# cluster's URL: spark://host:7077 (or a list of masters) or k8s://https://host:443.
_SPARK_MASTER = re.compile(
    r"^(local(\[(\*|0*[1-9]\d*)(\s*,\s*\d+)?\])?"
    r"|local-cluster\[\s*0*[1-9]\d*\s*,\s*0*[1-9]\d*\s*,\s*0*[1-9]\d*\s*\]|yarn"
    r"|(spark|k8s)://\S+)$",
    re.ASCII,  # Spark reads [0-9] only
)
# A local driver's memory becomes the JVM's -Xmx as written: a whole number, then k, m, g
# or t (8g; not 8gb, which Java refuses, nor 8192, which Java reads as bytes).
_DRIVER_MEMORY = re.compile(r"^\d+[kmgt]$", re.IGNORECASE | re.ASCII)
# Spark reads its other sizes itself: a whole number and b, k(b), m(b), g(b), t(b), p(b).
_SPARK_SIZE = re.compile(r"^\d+([kmgtp]b?|b)?$", re.IGNORECASE | re.ASCII)
_SPARK_SIZE_KEYS = re.compile(r"\.(memory|memoryOverhead|maxResultSize)$")

# Section -> the keys a profile must provide in it. Both profiles have exactly these.
CONTRACT: dict[str, tuple[str, ...]] = {
    "source": (
        "bootstrap_servers",
        "topic",
        "consumer_group",
        "starting_offsets",
        "max_offsets_per_trigger",
        "fail_on_data_loss",
        "kafka_options",
    ),
    "lake": ("root", "checkpoint_root", "catalog", "max_files_per_trigger", "storage_conf"),
    "spark": ("master", "conf"),
    "secrets": ("provider", "names"),
}


class SettingsError(ValueError):
    """A profile is unknown, incomplete or malformed; the message names what."""


class ProfileProvider(Protocol):
    """What a profile package registers under the ``reelhouse.profiles`` entry point."""

    def raw_profile(self) -> Mapping[str, Any]:
        """Return the profile's sections, placeholders unresolved."""
        ...


# Java producer options a profile may give for its broker's limits: the simulator's
# producer takes them; Spark's source only consumes, and is not handed them.
# (``local_stack.simulate.producer`` translates them; a unit test holds the two equal.)
PRODUCER_OPTIONS = frozenset({"compression.type", "max.request.size", "batch.size", "max.block.ms"})


@dataclass(frozen=True)
class EventSource:
    """Where the events come from: a Kafka (or Kafka-compatible) topic."""

    bootstrap_servers: str
    topic: str
    consumer_group: str
    starting_offsets: str
    max_offsets_per_trigger: int | None
    fail_on_data_loss: bool
    # Not in the repr: it carries the credentials (a JAAS password, a client secret).
    kafka_options: Mapping[str, str] = field(default_factory=dict, repr=False)

    def check_starting_offsets(self) -> None:
        """Offsets given per partition must name this source's topic: Spark asks for every
        partition of exactly the topics it subscribes to, and refuses any other set only
        once the query starts. Checked where the source is read, not where the profile is
        loaded: a command on another workspace that reads no events is not refused."""
        if self.starting_offsets in ("earliest", "latest"):
            return
        topics = sorted(json.loads(self.starting_offsets))
        if topics != [self.topic]:
            named = ", ".join(repr(topic) for topic in topics)
            raise SettingsError(
                f"source.starting_offsets gives offsets of topic{'s' * (len(topics) > 1)}"
                f" {named}, but this workspace reads {self.topic!r}; name that topic (with"
                " its workspace), or start from earliest or latest"
            )

    def spark_options(self) -> dict[str, str]:
        """Options for ``spark.readStream.format("kafka")``."""
        self.check_starting_offsets()
        options = {
            "kafka.bootstrap.servers": self.bootstrap_servers,
            "subscribe": self.topic,
            "startingOffsets": self.starting_offsets,
            "failOnDataLoss": str(self.fail_on_data_loss).lower(),
            # Spark makes a consumer group per query (offsets live in its checkpoints);
            # this names them after the workspace's, where a broker lists its groups.
            "groupIdPrefix": self.consumer_group,
        }
        if self.max_offsets_per_trigger:
            options["maxOffsetsPerTrigger"] = str(self.max_offsets_per_trigger)
        options.update(
            {
                f"kafka.{key}": value
                for key, value in self.kafka_options.items()
                if key not in PRODUCER_OPTIONS
            }
        )
        return options

    def client_options(self) -> dict[str, str]:
        """The same security options, in the Java client's dotted form."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka_options}


# hadoop-azure's setting of the storage service an account is reached through: ``BLOB`` on
# an emulator (Azurite), which serves the Blob API and no DFS API.
BLOB_SERVICE_TYPE = "fs.azure.fns.account.service.type"


@dataclass(frozen=True)
class Lake:
    """Where tables and checkpoints live, already prefixed by the workspace."""

    root: str
    checkpoint_root: str
    catalog: str
    # Not in the repr: it carries the credentials (an account key, a client secret).
    storage_conf: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_files_per_trigger: int | None = None  # None: Delta's default, 1000

    def stream_options(self) -> dict[str, str]:
        """Options for ``spark.readStream.format("delta")``: the next layer's micro-batch
        reads at most this many of the table's new files."""
        if self.max_files_per_trigger:
            return {"maxFilesPerTrigger": str(self.max_files_per_trigger)}
        return {}

    def table_location(self, table: str) -> str:
        """``bronze.events`` -> ``<root>/bronze/events``."""
        layer, name = _split_table(table)
        return f"{self.root}/{layer}/{name}"

    def checkpoint_location(self, query: str) -> str:
        """Checkpoint folder of one streaming query."""
        return f"{self.checkpoint_root}/{query}"


@dataclass(frozen=True)
class Profile:
    """Everything the Spark code needs to know about an environment."""

    name: str
    workspace: str
    source: EventSource
    lake: Lake
    spark_master: str
    spark_conf: Mapping[str, str] = field(repr=False)  # the storage credentials among it
    secrets_provider: str
    secret_names: Mapping[str, str]


def known_profiles() -> list[str]:
    """Names of every registered profile."""
    return sorted(entry.name for entry in entry_points(group=ENTRY_POINT_GROUP))


def selected_profile_name(explicit: str | None = None) -> str:
    """``--profile`` wins, then ``REELHOUSE_PROFILE``, then ``local``."""
    _check_named("profile", explicit, PROFILE_ENV, DEFAULT_PROFILE)
    return explicit or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE


def selected_workspace(explicit: str | None = None) -> str:
    """``--workspace`` wins, then ``REELHOUSE_WORKSPACE``, then ``main``."""
    _check_named("workspace", explicit, WORKSPACE_ENV, DEFAULT_WORKSPACE)
    workspace = explicit or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE
    if not _WORKSPACE_NAME.fullmatch(workspace):  # not match: $ lets a final newline through
        raise SettingsError(
            f"workspace {workspace!r} is invalid: use lower-case letters, digits, '-' or '_'"
            " (at most 41 characters)"
        )
    return workspace


def is_workspace_name(name: str) -> bool:
    """A name a workspace may have (lower-case letters, digits, ``-`` and ``_``)."""
    return _WORKSPACE_NAME.fullmatch(name) is not None


def _check_named(what: str, explicit: str | None, variable: str, default: str) -> None:
    """An empty name given on purpose (``--workspace "$UNSET"``) is a mistake, not a wish
    for the default: it would run on another workspace than the one meant."""
    if explicit is not None and not explicit.strip():
        raise SettingsError(
            f"{what} {explicit!r} is empty: name one, or leave it out for {variable} or {default!r}"
        )


def load_profile(name: str | None = None, workspace: str | None = None) -> Profile:
    """Load, resolve, override and validate a registered profile."""
    profile_name = selected_profile_name(name)
    workspace_name = selected_workspace(workspace)
    provider = _find_provider(profile_name)
    raw = resolve_placeholders(provider.raw_profile())
    raw = _apply_env_overrides(raw)
    return _validate(profile_name, workspace_name, raw)


def environment_with(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, for a child process."""
    return {**os.environ, **extra}


def override_variable(section: str, key: str) -> str:
    """The environment variable that overrides one profile value."""
    return f"REELHOUSE_{section}_{key}".upper()


def resolve_placeholders(value: Any) -> Any:
    """Fill ``${VAR}`` and ``${VAR:-default}`` from the environment, recursively."""
    if isinstance(value, Mapping):
        return {key: resolve_placeholders(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_placeholders(item) for item in value]
    if isinstance(value, str):
        return _PLACEHOLDER.sub(_placeholder_value, value)
    return value


def _placeholder_value(match: re.Match[str]) -> str:
    variable, default = match.group(1), match.group(2)
    # As in a shell: ${VAR:-default} takes the default when VAR is unset or empty.
    if os.environ.get(variable) or (variable in os.environ and default is None):
        return os.environ[variable]
    if default is None:
        raise SettingsError(f"setting needs environment variable {variable}, which is not set")
    return default


def _find_provider(name: str) -> ProfileProvider:
    matches = [entry for entry in entry_points(group=ENTRY_POINT_GROUP) if entry.name == name]
    if not matches:
        known = ", ".join(known_profiles()) or "none registered (is the project installed?)"
        raise SettingsError(f"unknown profile {name!r}; known profiles: {known}")
    return matches[0].load()


def _apply_env_overrides(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Profile values from ``REELHOUSE_<SECTION>_<KEY>``. A table's override is a JSON
    object merged into the profile's table (a key set to null removes it), so one Kafka
    option or Spark setting can change without restating, or losing, the others."""
    # A section that is not a table is named by _validate.
    result = {
        section: dict(values) if isinstance(values, Mapping) else values
        for section, values in raw.items()
    }
    for section, keys in CONTRACT.items():
        for key in keys:
            variable = override_variable(section, key)
            if variable not in os.environ:
                continue
            value: Any = os.environ[variable]
            if not isinstance(result.get(section, {}), Mapping):
                continue
            held = result.get(section, {}).get(key)
            if isinstance(held, Mapping):
                value = _merged(variable, held, value)
            result.setdefault(section, {})[key] = value
    return result


def _merged(variable: str, held: Mapping[str, Any], text: str) -> dict[str, Any]:
    try:
        changes = json.loads(text)
    except json.JSONDecodeError:
        changes = None
    if not isinstance(changes, Mapping):
        # Not the value itself: a table's override often carries a key or a password.
        raise SettingsError(
            f'{variable} must be a JSON object such as \'{{"key": "value"}}\''
            f" (its {len(text)} characters are not one)"
        )
    merged = {**held, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def _validate(name: str, workspace: str, raw: Mapping[str, Any]) -> Profile:
    for section, keys in CONTRACT.items():
        values = raw.get(section)
        if values is None:
            raise SettingsError(f"profile {name!r} has no [{section}] section")
        if not isinstance(values, Mapping):
            raise SettingsError(
                f"profile {name!r}: [{section}] must be a table of settings, got {values!r}"[:200]
            )
        for key in keys:
            if key not in values:
                raise SettingsError(
                    f"profile {name!r} is missing setting {section}.{key}"
                    f" (set it in the profile or with {override_variable(section, key)})"
                )
    source, lake, spark, secrets = raw["source"], raw["lake"], raw["spark"], raw["secrets"]
    for section, key in (
        ("source", "bootstrap_servers"),
        ("source", "topic"),
        ("lake", "root"),
        ("lake", "checkpoint_root"),  # else the checkpoints land at /<workspace>
    ):
        if not str(raw[section][key]).strip():
            raise SettingsError(f"profile {name!r}: setting {section}.{key} is empty")
    lake_root = _hadoop_path(str(lake["root"]))
    checkpoint_root = _hadoop_path(str(lake["checkpoint_root"]))
    spark_conf = _spark_conf(name, spark["conf"])
    _check_spark(name, str(spark["master"]).strip(), spark_conf)
    return Profile(
        name=name,
        workspace=workspace,
        source=EventSource(
            bootstrap_servers=str(source["bootstrap_servers"]),
            topic=f"{workspace}.{source['topic']}",
            consumer_group=f"{workspace}.{source['consumer_group']}",
            starting_offsets=_starting_offsets(name, source["starting_offsets"]),
            max_offsets_per_trigger=_optional_int(
                name,
                "source.max_offsets_per_trigger",
                source["max_offsets_per_trigger"],
                most=2**63 - 1,  # a Java long
            ),
            fail_on_data_loss=_as_bool(
                name, "source.fail_on_data_loss", source["fail_on_data_loss"]
            ),
            kafka_options=_string_map(name, "source.kafka_options", source["kafka_options"]),
        ),
        lake=Lake(
            root=f"{lake_root}/{workspace}",
            checkpoint_root=f"{checkpoint_root}/{workspace}",
            catalog=str(lake["catalog"]),
            max_files_per_trigger=_optional_int(
                name, "lake.max_files_per_trigger", lake["max_files_per_trigger"], most=2**31 - 1
            ),
            storage_conf=_string_map(name, "lake.storage_conf", lake["storage_conf"]),
        ),
        spark_master=str(spark["master"]).strip(),
        spark_conf=spark_conf,
        secrets_provider=str(secrets["provider"]),
        secret_names=_string_map(name, "secrets.names", secrets["names"]),
    )


def _hadoop_path(location: str) -> str:
    """``file:///tmp/lake/`` -> ``file:/tmp/lake``: the form Hadoop (and Delta's catalog,
    which compares locations as strings) writes itself."""
    location = location.rstrip("/")
    if location.startswith("file:///"):
        location = "file:/" + location[len("file:///") :]
    return location


def _split_table(table: str) -> tuple[str, str]:
    layer, _, name = table.partition(".")
    if not layer or not name:
        raise SettingsError(f"table name {table!r} must look like '<layer>.<name>'")
    return layer, name


def _optional_int(profile: str, key: str, value: Any, most: int) -> int | None:
    """A positive whole number up to ``most`` (what Spark reads it into), or None for 0 or
    empty (no limit)."""
    if isinstance(value, bool):  # TOML's true is not a number
        number = -1
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if value.is_integer() else -1
    else:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        number = int(text) if re.fullmatch(r"[+-]?\d+", text) else -1
    if number == 0:
        return None
    if not 1 <= number <= most:
        raise SettingsError(
            f"profile {profile!r}: {key} must be a whole number from 1 to {most:,} (0 for no"
            f" limit), got {value!r}"
        )
    return number


def _starting_offsets(profile: str, value: Any) -> str:
    """``earliest``, ``latest`` or a JSON object of offsets per topic and partition, as
    Spark's Kafka source takes them (-2 for earliest, -1 for latest); its topic is checked
    where the source is read (``EventSource.check_starting_offsets``)."""
    text = str(value).strip()
    if text.lower() in ("earliest", "latest"):  # as Spark compares them
        return text.lower()
    try:
        offsets = json.loads(text)
    except json.JSONDecodeError:
        offsets = None
    if not _offsets_per_partition(offsets):
        raise SettingsError(
            f"profile {profile!r}: source.starting_offsets must be earliest, latest or a JSON"
            " object of offsets per topic and partition, such as"
            f' \'{{"main.viewing-events": {{"0": 42}}}}\' (the topic with its workspace before'
            f" it), got {text[:80]!r}"
        )
    return text


def _offsets_per_partition(offsets: Any) -> bool:
    return (
        isinstance(offsets, Mapping)
        and bool(offsets)
        and all(
            isinstance(partitions, Mapping)
            and bool(partitions)
            and all(
                re.fullmatch(r"[0-9]+", str(partition)) is not None
                and isinstance(offset, int)
                and not isinstance(offset, bool)
                and offset >= -2
                for partition, offset in partitions.items()
            )
            for partitions in offsets.values()
        )
    )


def _check_spark(profile: str, master: str, conf: Mapping[str, str]) -> None:
    """A master Spark knows and sizes it can read, before a JVM is started on them (a JVM
    that cannot start says so only in its own output)."""
    if not _SPARK_MASTER.match(master):
        raise SettingsError(
            f"profile {profile!r}: spark.master {master!r} is not a Spark master; use local[N],"
            " local[*], yarn or a cluster's URL (spark://host:7077, k8s://https://host:443)"
            " (set it with REELHOUSE_SPARK_MASTER)"
        )
    for key, text in conf.items():
        if key == "spark.sql.session.timeZone" and text.upper() != "UTC":
            raise SettingsError(
                f"profile {profile!r}: Spark setting {key} = {text!r}: the lake's dates and"
                " hours are UTC (silver's event_hour, gold's days); leave it out (the project"
                " sets UTC) or set UTC"
            )
        if key == "spark.driver.memory" and not _DRIVER_MEMORY.match(text):
            raise SettingsError(
                f"profile {profile!r}: Spark setting {key} = {text!r} is not a size the JVM"
                " takes; use a whole number and k, m, g or t, such as 4g or 512m"
            )
        if _SPARK_SIZE_KEYS.search(key) and not _SPARK_SIZE.match(text):
            raise SettingsError(
                f"profile {profile!r}: Spark setting {key} = {text!r} is not a size;"
                " use a whole number and a unit, such as 4g or 512m"
            )


def _as_bool(profile: str, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise SettingsError(f"profile {profile!r}: {key} must be true or false, got {value!r}")


def _spark_conf(profile: str, value: Any) -> dict[str, str]:
    """Spark's settings, trimmed as they are checked (the driver's memory becomes the JVM's
    ``-Xmx`` as written: ``"4g "`` is no size to Java). An empty value is no setting: the
    project's default (``spark.session``) applies, else Spark's."""
    conf = _string_map(profile, "spark.conf", value)
    return {key.strip(): item.strip() for key, item in conf.items() if item.strip()}


def _string_map(profile: str, key: str, value: Any) -> dict[str, str]:
    if isinstance(value, str):  # an environment override carries a JSON object
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SettingsError(f"profile {profile!r}: {key} must be a JSON object") from None
    if not isinstance(value, Mapping):
        raise SettingsError(f"profile {profile!r}: {key} must be a table of strings")
    return {str(item_key): str(item) for item_key, item in value.items()}
