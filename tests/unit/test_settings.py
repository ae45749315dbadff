"""The profile contract: selection, placeholders, overrides, workspaces, errors."""

from __future__ import annotations

import pytest

from spark.settings import (
    CONTRACT,
    SettingsError,
    known_profiles,
    load_profile,
    override_variable,
    resolve_placeholders,
    selected_workspace,
)

pytestmark = pytest.mark.unit


def test_both_profiles_are_registered():
    assert {"local", "azure"} <= set(known_profiles())


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(
        SettingsError, match=r"unknown profile 'nope'; known profiles: .*azure.*local"
    ):
        load_profile("nope")


def test_profile_comes_from_the_environment_when_not_given(monkeypatch, azure_environment):
    monkeypatch.setenv("REELHOUSE_PROFILE", "azure")
    assert load_profile().name == "azure"


def test_the_local_profile_sends_azurite_no_client_metrics():
    # hadoop-azure 3.5 sends them at the JVM's exit, when Azurite may already be stopped.
    storage = load_profile("local", "ws1").lake.storage_conf
    assert storage["fs.azure.metrics.collection.enabled"] == "false"


def test_workspace_prefixes_topic_lake_and_checkpoints():
    profile = load_profile("local", "ws1")
    assert profile.source.topic == "ws1.viewing-events"
    assert profile.lake.root.endswith("/lake/ws1")
    assert profile.lake.checkpoint_location("bronze_events").endswith(
        "checkpoints/ws1/bronze_events"
    )
    assert profile.lake.table_location("bronze.events").endswith("/lake/ws1/bronze/events")


def test_workspace_from_environment(monkeypatch):
    monkeypatch.setenv("REELHOUSE_WORKSPACE", "bench")
    assert load_profile("local").source.topic == "bench.viewing-events"


@pytest.mark.parametrize("bad", ["Upper", "a b", "../x", "x" * 60, "main\n"])
def test_invalid_workspace_is_refused(bad):
    with pytest.raises(SettingsError, match="workspace"):
        selected_workspace(bad)


def test_every_value_can_be_overridden_by_its_variable(monkeypatch):
    monkeypatch.setenv(override_variable("source", "bootstrap_servers"), "broker.example:9999")
    monkeypatch.setenv(override_variable("source", "max_offsets_per_trigger"), "1234")
    monkeypatch.setenv(override_variable("source", "kafka_options"), '{"security.protocol": "SSL"}')
    profile = load_profile("local", "main")
    assert profile.source.bootstrap_servers == "broker.example:9999"
    assert profile.source.max_offsets_per_trigger == 1234
    assert profile.source.spark_options()["kafka.security.protocol"] == "SSL"


def test_the_next_layers_batch_size_is_delta_s_default_unless_set(monkeypatch):
    monkeypatch.delenv("REELHOUSE_MAX_FILES_PER_TRIGGER", raising=False)
    monkeypatch.delenv(override_variable("lake", "max_files_per_trigger"), raising=False)
    assert load_profile("local", "main").lake.stream_options() == {}
    monkeypatch.setenv("REELHOUSE_MAX_FILES_PER_TRIGGER", "8")
    assert load_profile("local", "main").lake.stream_options() == {"maxFilesPerTrigger": "8"}
    monkeypatch.setenv(override_variable("lake", "max_files_per_trigger"), "some")
    with pytest.raises(SettingsError, match=r"lake.max_files_per_trigger must be a whole number"):
        load_profile("local")


def test_a_table_override_changes_its_keys_and_keeps_the_others(monkeypatch):
    held = load_profile("local", "main").spark_conf
    kept, removed = sorted(held)[:2]
    monkeypatch.setenv(
        override_variable("spark", "conf"),
        f'{{"spark.sql.shuffle.partitions": "7", "{removed}": null}}',
    )

    conf = load_profile("local", "main").spark_conf

    assert conf["spark.sql.shuffle.partitions"] == "7"
    assert conf[kept] == held[kept]
    assert removed not in conf


def test_a_table_override_that_is_no_json_object_is_named(monkeypatch):
    monkeypatch.setenv(override_variable("source", "kafka_options"), '["SSL"]')
    with pytest.raises(
        SettingsError, match=r"REELHOUSE_SOURCE_KAFKA_OPTIONS must be a JSON object"
    ):
        load_profile("local")


@pytest.mark.parametrize("bad", ["lots", "-5", "99999999999999999999", "1e30"])
def test_bad_override_names_the_setting(monkeypatch, bad):
    monkeypatch.setenv(override_variable("source", "max_offsets_per_trigger"), bad)
    with pytest.raises(
        SettingsError,
        match=r"source.max_offsets_per_trigger must be a whole number from 1 to"
        r" 9,223,372,036,854,775,807 \(0 for no limit\)",
    ):
        load_profile("local")


def test_a_file_limit_spark_reads_as_an_int_is_bounded(monkeypatch):
    monkeypatch.setenv(override_variable("lake", "max_files_per_trigger"), str(2**31))
    with pytest.raises(SettingsError, match=r"from 1 to 2,147,483,647"):
        load_profile("local")


@pytest.mark.parametrize("name", ["workspace", "profile"])
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_name_given_on_purpose_is_refused(monkeypatch, name, empty):
    monkeypatch.setenv("REELHOUSE_WORKSPACE", "elsewhere")
    with pytest.raises(SettingsError, match=rf"^{name} {empty!r} is empty: name one"):
        load_profile(**{"name" if name == "profile" else name: empty})


def test_an_empty_environment_variable_is_unset_as_in_a_shell(monkeypatch):
    monkeypatch.setenv("REELHOUSE_WORKSPACE", "")
    assert load_profile().workspace == "main"


def test_a_section_that_is_no_table_is_named(monkeypatch):
    from local_stack.profile import LocalProfileProvider

    raw = LocalProfileProvider().raw_profile()
    monkeypatch.setattr(LocalProfileProvider, "raw_profile", lambda self: {**raw, "lake": 1})
    monkeypatch.setenv(override_variable("lake", "root"), "file:/tmp/x")
    with pytest.raises(
        SettingsError, match=r"'local': \[lake\] must be a table of settings, got 1"
    ):
        load_profile("local")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[spark]\nconf = 'x'\n", r"\[spark\] conf must be a table of Spark settings, got 'x'"),
        ("[spark\n", r"cannot read the local profile .*profile.toml: "),
    ],
)
def test_a_local_profile_file_gone_wrong_is_one_line(monkeypatch, tmp_path, text, message):
    from local_stack import profile

    broken = tmp_path / "profile.toml"
    broken.write_text(profile.PROFILE_FILE.read_text().split("[spark]")[0] + text)
    monkeypatch.setattr(profile, "PROFILE_FILE", broken)
    with pytest.raises(SettingsError, match=message):
        load_profile("local")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REELHOUSE_SPARK_MASTER", "nope", r"spark.master 'nope' is not a Spark master"),
        ("REELHOUSE_SPARK_MASTER", "local[x]", r"spark.master 'local\[x\]' is not a Spark"),
        ("REELHOUSE_DRIVER_MEMORY", "lots", r"spark.driver.memory = 'lots' is not a size"),
        ("REELHOUSE_DRIVER_MEMORY", "1.5g", r"spark.driver.memory = '1.5g' is not a size"),
        ("REELHOUSE_DRIVER_MEMORY", "8GB", r"spark.driver.memory = '8GB' is not a size"),
        ("REELHOUSE_SPARK_MASTER", "mesos://host:5050", r"'mesos://host:5050' is not a Spark"),
        ("REELHOUSE_SPARK_MASTER", "local[ 2 ]", r"spark.master 'local\[ 2 \]' is not a Spark"),
        ("REELHOUSE_SPARK_MASTER", "local[0]", r"spark.master 'local\[0\]' is not a Spark"),
        ("REELHOUSE_SPARK_MASTER", "local-cluster[0,1,1024]", r"'local-cluster\[0,1,1024\]' is"),
        ("REELHOUSE_SPARK_MASTER", "nomad://host:4646", r"'nomad://host:4646' is not a Spark"),
        ("REELHOUSE_SPARK_MASTER", "local[\u0662]", r"is not a Spark master"),  # Arabic 2
        ("REELHOUSE_DRIVER_MEMORY", "\u0664g", r"is not a size the JVM"),
        ("REELHOUSE_DRIVER_MEMORY", "8192", r"spark.driver.memory = '8192' is not a size the JVM"),
        ("REELHOUSE_SPARK_CONF", '{"spark.executor.memory": "2 g"}', r"executor.memory = '2 g'"),
        ("REELHOUSE_SOURCE_STARTING_OFFSETS", "{}", r"starting_offsets must be earliest"),
        ("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"t": 5}', r"the topic with its workspace"),
        ("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"t": {"x": 5}}', r"starting_offsets must be"),
        ("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"t": {"0": -3}}', r"starting_offsets must be"),
        ("REELHOUSE_SOURCE_STARTING_OFFSETS", "bogus", r"starting_offsets must be earliest"),
        ("REELHOUSE_DRIVER_MEMORY", " 4g x ", r"spark.driver.memory = '4g x' is not a size"),
        ("REELHOUSE_LAKE_MAX_FILES_PER_TRIGGER", "-2", r"max_files_per_trigger must be a whole"),
    ],
)
def test_spark_settings_a_jvm_would_refuse_are_named_before_it_starts(
    monkeypatch, variable, value, message
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_profile("local")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REELHOUSE_SPARK_MASTER", "local[*]"),
        ("REELHOUSE_SPARK_MASTER", "local[4, 2]"),
        ("REELHOUSE_SPARK_MASTER", "local-cluster[ 2 , 1 , 1024 ]"),
        ("REELHOUSE_SPARK_MASTER", "spark://head-node:7077"),
        ("REELHOUSE_SPARK_MASTER", "k8s://https://cluster.example:443"),
        ("REELHOUSE_SPARK_MASTER", "yarn"),
        ("REELHOUSE_SPARK_MASTER", "spark://head-1:7077,head-2:7077"),
        ("REELHOUSE_DRIVER_MEMORY", "512m"),
        ("REELHOUSE_DRIVER_MEMORY", "8G"),
        ("REELHOUSE_SOURCE_STARTING_OFFSETS", "latest"),
        ("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"main.viewing-events": {"0": 42}}'),
        ("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"main.viewing-events": {"0": -2, "1": -1}}'),
    ],
)
def test_spark_settings_spark_takes_are_kept(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    profile = load_profile("local")
    held = {
        "REELHOUSE_SPARK_MASTER": profile.spark_master,
        "REELHOUSE_DRIVER_MEMORY": profile.spark_conf["spark.driver.memory"],
        "REELHOUSE_SOURCE_STARTING_OFFSETS": profile.source.starting_offsets,
    }
    assert held[variable] == value


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "+01:00"])
def test_a_session_time_zone_other_than_utc_is_refused(monkeypatch, zone):
    """The lake's dates and hours are UTC: another zone would shift every key."""
    monkeypatch.setenv("REELHOUSE_SPARK_CONF", f'{{"spark.sql.session.timeZone": "{zone}"}}')
    with pytest.raises(SettingsError, match=r"timeZone = .*: the lake's dates and hours are UTC"):
        load_profile("local")


def test_sizes_spark_reads_itself_take_its_units(monkeypatch):
    """Only the driver's memory goes to the JVM as written; Spark reads 1gb elsewhere."""
    monkeypatch.setenv(
        "REELHOUSE_SPARK_CONF",
        '{"spark.executor.memoryOverhead": "1gb", "spark.driver.maxResultSize": "512MB"}',
    )
    conf = load_profile("local").spark_conf
    assert conf["spark.executor.memoryOverhead"] == "1gb"
    assert conf["spark.driver.maxResultSize"] == "512MB"


@pytest.mark.parametrize(
    ("workspace", "offsets", "message"),
    [
        (
            "main",
            '{"viewing-events": {"0": 42}}',
            r"offsets of topic 'viewing-events', but this workspace reads 'main.viewing-events'",
        ),
        (
            "main",
            '{"main.viewing-events": {"0": 42}, "other": {"0": 1}}',
            r"offsets of topics 'main.viewing-events', 'other', but this workspace reads",
        ),
        (
            "other",
            '{"main.viewing-events": {"0": 42}}',
            r"topic 'main.viewing-events', but this workspace reads 'other.viewing-events'",
        ),
    ],
)
def test_offsets_of_another_topic_are_refused_where_the_source_is_read(
    monkeypatch, workspace, offsets, message
):
    """Spark asks for exactly the subscribed topic's partitions; a workspace that reads no
    events still loads (its commands, ``make setup``'s among them, need no offsets)."""
    monkeypatch.setenv("REELHOUSE_SOURCE_STARTING_OFFSETS", offsets)
    source = load_profile("local", workspace).source
    with pytest.raises(SettingsError, match=message):
        source.spark_options()


def test_offsets_of_the_workspace_s_topic_are_read(monkeypatch):
    offsets = '{"main.viewing-events": {"0": 42, "1": -2}}'
    monkeypatch.setenv("REELHOUSE_SOURCE_STARTING_OFFSETS", offsets)
    assert load_profile("local", "main").source.spark_options()["startingOffsets"] == offsets


def test_spark_settings_are_passed_as_they_are_checked(monkeypatch):
    """Trimmed (the JVM reads the driver's "3g " as no size), and an empty one is no
    setting at all."""
    monkeypatch.setenv(
        "REELHOUSE_SPARK_CONF",
        '{" spark.executor.memory ": " 2g ", "spark.ui.enabled": " ", "spark.jars.packages": ""}',
    )
    monkeypatch.setenv("REELHOUSE_DRIVER_MEMORY", " 3g")
    conf = load_profile("local").spark_conf
    assert conf["spark.executor.memory"] == "2g"
    assert conf["spark.driver.memory"] == "3g"
    assert not {"spark.ui.enabled", "spark.jars.packages", " spark.executor.memory "} & set(conf)


@pytest.mark.parametrize(("value", "limit"), [(" 0 ", None), ("-0", None), ("", None), (" 7 ", 7)])
def test_a_limit_of_zero_or_nothing_is_no_limit(monkeypatch, value, limit):
    monkeypatch.setenv(override_variable("source", "max_offsets_per_trigger"), value)
    assert load_profile("local").source.max_offsets_per_trigger == limit


def test_starting_offsets_are_read_as_spark_reads_them(monkeypatch):
    monkeypatch.setenv("REELHOUSE_SOURCE_STARTING_OFFSETS", " Latest ")
    assert load_profile("local").source.starting_offsets == "latest"


@pytest.mark.parametrize(
    ("section", "key"), [("source", "bootstrap_servers"), ("lake", "checkpoint_root")]
)
def test_empty_required_setting_is_named(monkeypatch, section, key):
    monkeypatch.setenv(override_variable(section, key), " ")
    with pytest.raises(SettingsError, match=rf"{section}.{key} is empty"):
        load_profile("local")


def test_placeholders_use_environment_then_default(monkeypatch):
    monkeypatch.setenv("REELHOUSE_X", "from-env")
    assert resolve_placeholders({"a": "${REELHOUSE_X:-d}", "b": ["${REELHOUSE_Y:-dflt}"]}) == {
        "a": "from-env",
        "b": ["dflt"],
    }


def test_an_empty_variable_takes_the_default_as_in_a_shell(monkeypatch):
    monkeypatch.setenv("REELHOUSE_X", "")
    assert resolve_placeholders(["${REELHOUSE_X:-dflt}", "${REELHOUSE_X}"]) == ["dflt", ""]


def test_placeholder_without_default_names_the_variable(monkeypatch):
    monkeypatch.delenv("REELHOUSE_MISSING", raising=False)
    with pytest.raises(SettingsError, match="REELHOUSE_MISSING"):
        resolve_placeholders("${REELHOUSE_MISSING}")


def test_profiles_have_the_same_keys(azure_environment):
    from azure_profile.profile import PROVIDER as azure
    from local_stack.profile import PROVIDER as local

    def keys(raw):
        return {section: set(raw[section]) for section in CONTRACT}

    assert keys(local.raw_profile()) == keys(azure.raw_profile())
    for section, expected in CONTRACT.items():
        assert set(local.raw_profile()[section]) == set(expected)


def test_a_local_event_log_folder_is_created_when_the_log_is_on(tmp_path):
    from spark.session import _ensure_local_event_log_dir

    on = tmp_path / "events-on"
    off = tmp_path / "events-off"
    _ensure_local_event_log_dir(
        {"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file:{on}"}
    )
    _ensure_local_event_log_dir({"spark.eventLog.enabled": "false", "spark.eventLog.dir": str(off)})
    _ensure_local_event_log_dir(
        {"spark.eventLog.enabled": "true", "spark.eventLog.dir": "abfss://x@y/z"}
    )

    assert on.is_dir() and not off.exists()


def test_a_profile_s_repr_shows_no_credential(monkeypatch):
    """A profile travels as a Prefect task's argument, and into log lines and tracebacks:
    its options with credentials stay out of its repr."""
    import json

    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
        ' username="$ConnectionString" password="Endpoint=sb://ns/;SharedAccessKey=s3cr3t-k3y";'
    )
    monkeypatch.setenv(
        "REELHOUSE_SOURCE_KAFKA_OPTIONS",
        json.dumps({"sasl.mechanism": "PLAIN", "sasl.jaas.config": jaas}),
    )
    profile = load_profile("local", "repr")
    assert "s3cr3t-k3y" in profile.source.kafka_options["sasl.jaas.config"]
    shown = repr(profile)
    assert "s3cr3t-k3y" not in shown and "sasl.jaas.config" not in shown
    keys = [
        value
        for conf in (profile.lake.storage_conf, profile.spark_conf)
        for name, value in conf.items()
        if "key" in name.lower()
    ]
    assert keys and not any(key in shown for key in keys)  # Azurite's account key
    assert "workspace='repr'" in shown and "topic='repr.viewing-events'" in shown
