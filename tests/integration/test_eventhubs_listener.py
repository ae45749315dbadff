"""The azure profile's Kafka options against the broker's Event-Hubs-like listener."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer
from pyspark.sql import functions as F

from azure_profile.deployment import EventHubsSettings
from azure_profile.eventhubs import kafka_options
from azure_profile.kafka_check import KafkaAuthError, check_kafka_sasl
from local_stack import eventhubs
from local_stack.simulate.producer import ProducerError, kafka_python_config, send_to_kafka
from local_stack.simulate.simulation import Record
from local_stack.tls import tls_material
from local_stack.topics import delete_topic, ensure_topic
from spark.settings import EventSource
from tests.conftest import grant
from tests.kafka_reads import read_to_end
from tests.oauth import token_endpoint as serve_tokens

pytestmark = [pytest.mark.integration, pytest.mark.azure_parity]

RECORDS = 1000


def _listener_options(stack, connection_string: str) -> dict[str, str]:
    """Java client options exactly as the azure profile builds them, for the local listener."""
    hubs = _hubs(stack, "connection_string")
    options = kafka_options(hubs, connection_string=connection_string)
    return {"bootstrap.servers": hubs.bootstrap_servers, **options}


def _hubs(stack, auth: str) -> EventHubsSettings:
    settings = stack.settings
    return EventHubsSettings(
        namespace=eventhubs.local_namespace(settings),
        bootstrap_servers=eventhubs.bootstrap_servers(settings),
        auth=auth,
        login_module="open_source",
        truststore_pem=str(tls_material(settings).certificate),
    )


@pytest.fixture(scope="module")
def connection_string(stack) -> str:
    return eventhubs.ensure_connection_string(stack.settings)


def test_records_sent_through_the_sasl_ssl_listener_all_arrive(
    stack, profile, connection_string, unique_name
):
    options = _listener_options(stack, connection_string)
    assert options["security.protocol"] == "SASL_SSL"
    assert options["ssl.truststore.type"] == "PEM"
    _send_and_read_back(options, f"{profile.workspace}.eventhubs-{unique_name}")


def _send_and_read_back(options: dict[str, str], topic: str) -> None:
    """The simulator's producer sends RECORDS records; a consumer reads every one back."""
    records = _records()
    assert ensure_topic(options["bootstrap.servers"], topic, partitions=2, client_options=options)
    try:
        send_to_kafka(records, topic, options, rate=0, progress=False, producers=1)

        received = _read_everything(topic, options)
    finally:
        delete_topic(options["bootstrap.servers"], topic, client_options=options)

    assert len(received) == RECORDS
    assert sorted(received) == sorted((r.key, r.value, r.timestamp_ms) for r in records)


def _records() -> list[Record]:
    return [
        Record(
            f"user-{index % 97}".encode(), f'{{"n": {index}}}'.encode(), 1_700_000_000_000 + index
        )
        for index in range(RECORDS)
    ]


def _read_everything(topic: str, options: dict[str, str]) -> list[tuple]:
    """Every record of ``topic`` up to its end offsets, read through the same listener."""
    consumer = KafkaConsumer(
        enable_auto_commit=False, **kafka_python_config(options, client="consumer")
    )
    try:
        return [(m.key, m.value, m.timestamp) for m in read_to_end(consumer, topic)]
    finally:
        consumer.close()


def test_a_wrong_key_is_rejected_at_once_naming_the_namespace(stack, connection_string):
    prefix, _, key = connection_string.rpartition("SharedAccessKey=")
    wrong_key = ("B" if key[0] != "B" else "C") + key[1:]
    options = _listener_options(stack, f"{prefix}SharedAccessKey={wrong_key}")
    namespace = eventhubs.local_namespace(stack.settings)

    # Within the 10 s budget: running out of it raises KafkaUnreachable, not an auth error.
    with pytest.raises(KafkaAuthError) as raised:
        check_kafka_sasl(options, namespace, timeout_s=10)

    message = str(raised.value)
    assert message.startswith(f"Event Hubs namespace {namespace} rejected the credentials")
    assert "\n" not in message and wrong_key not in message


def test_the_right_key_passes_the_check(stack, connection_string):
    options = _listener_options(stack, connection_string)

    check_kafka_sasl(options, eventhubs.local_namespace(stack.settings), timeout_s=10)


def test_the_connection_string_appears_in_no_log(stack, connection_string):
    # After the tests above, the broker has seen right and wrong logins.
    key = connection_string.rpartition("SharedAccessKey=")[2]
    leaking = [
        str(path)
        for path in stack.settings.log_dir.rglob("*")
        if path.is_file() and key.encode() in path.read_bytes()
    ]
    assert leaking == []
    assert any(stack.settings.log_dir.rglob("kafka.log")), "no broker log to check"


# --- OAUTHBEARER (auth = entra_id) -----------------------------------------------------


def _grant(settings, tenant_id: str = eventhubs.LOCAL_TENANT_ID):
    """Entra ID's part: client ``app`` with secret ``app-secret`` gets a token of
    ``tenant_id`` for the resource of the scope it asks for, signed with the local issuer's
    key."""

    def tokens(form: dict[str, str]) -> tuple[int, dict]:
        if (form.get("client_id"), form.get("client_secret")) != ("app", "app-secret"):
            return 401, {"error": "invalid_client"}
        audience = form.get("scope", "").removesuffix("/.default")
        token = eventhubs.issue_token(settings, "app", audience, 3600, tenant_id=tenant_id)
        return 200, {"token_type": "Bearer", "expires_in": 3600, "access_token": token}

    return tokens


@pytest.fixture(scope="module")
def token_endpoint(stack):
    with serve_tokens(_grant(stack.settings)) as url:
        yield url


def _entra_options(stack, token_endpoint: str, secret: str = "app-secret", scope=None):
    """The azure profile's entra_id options, with the token endpoint on this machine."""
    hubs = _hubs(stack, "entra_id")
    options = kafka_options(
        hubs, client_secret=secret, tenant_id=eventhubs.LOCAL_TENANT_ID, client_id="app"
    )
    options["sasl.oauthbearer.token.endpoint.url"] = token_endpoint
    if scope is not None:
        options["sasl.jaas.config"] = options["sasl.jaas.config"].replace(
            f"https://{hubs.host}/.default", scope
        )
    return {"bootstrap.servers": hubs.bootstrap_servers, **options}


def test_records_sent_with_an_oauth_token_all_arrive(stack, profile, token_endpoint, unique_name):
    options = _entra_options(stack, token_endpoint)
    assert options["sasl.mechanism"] == "OAUTHBEARER"
    check_kafka_sasl(options, eventhubs.local_namespace(stack.settings), timeout_s=10)
    _send_and_read_back(options, f"{profile.workspace}.entra-{unique_name}")


def test_spark_reads_through_its_own_oauth_login(
    stack, spark, profile, token_endpoint, unique_name
):
    # Spark's Kafka source logs in with the Java client's OAUTHBEARER handler, which
    # fetches the token itself: the options exactly as the azure profile hands them over.
    options = _entra_options(stack, token_endpoint)
    topic = f"{profile.workspace}.spark-entra-{unique_name}"
    source = EventSource(
        bootstrap_servers=options.pop("bootstrap.servers"),
        topic=topic,
        consumer_group=f"{profile.workspace}.spark-entra",
        starting_offsets="earliest",
        max_offsets_per_trigger=None,
        fail_on_data_loss=True,
        kafka_options=options,
    )
    records = _records()
    assert ensure_topic(source.bootstrap_servers, topic, partitions=2, client_options=options)
    try:
        send_to_kafka(records, topic, source.client_options(), rate=0, progress=False, producers=1)
        read = spark.read.format("kafka").options(**source.spark_options()).load()
        received = [
            (bytes(row.key), bytes(row.value), row.ms)
            for row in read.select("key", "value", F.unix_millis("timestamp").alias("ms")).collect()
        ]
    finally:
        delete_topic(source.bootstrap_servers, topic, client_options=options)

    assert sorted(received) == sorted((r.key, r.value, r.timestamp_ms) for r in records)


def test_a_token_for_another_scope_is_rejected_naming_the_service_principal(stack, token_endpoint):
    options = _entra_options(stack, token_endpoint, scope="https://other.example/.default")
    namespace = eventhubs.local_namespace(stack.settings)
    with pytest.raises(KafkaAuthError) as raised:
        check_kafka_sasl(options, namespace, timeout_s=10)
    message = str(raised.value)
    assert message.startswith(f"Event Hubs namespace {namespace} rejected the credentials")
    assert message.endswith(
        "check the service principal's token (does it hold an Azure Event Hubs Data role?)"
    )


def test_a_token_of_another_tenant_is_rejected(stack):
    """Signed by the same key, for the right namespace, but issued for another directory:
    Event Hubs answers "Invalid tenant name"; the listener checks the issuer likewise."""
    other_tenant = "0ddba11-0000-4000-8000-000000000000"
    namespace = eventhubs.local_namespace(stack.settings)
    with serve_tokens(_grant(stack.settings, tenant_id=other_tenant)) as url:
        options = _entra_options(stack, url)
        with pytest.raises(KafkaAuthError) as raised:
            check_kafka_sasl(options, namespace, timeout_s=10)
    assert str(raised.value).startswith(
        f"Event Hubs namespace {namespace} rejected the credentials"
    ), raised.value


def test_refused_client_credentials_stop_the_simulator_in_one_line(stack, token_endpoint):
    options = _entra_options(stack, token_endpoint, secret="wrong-secret")
    records = [Record(b"k", b"{}", 1_700_000_000_000)]
    with pytest.raises(ProducerError) as raised:
        send_to_kafka(records, "never-created", options, rate=0, progress=False, producers=1)
    assert str(raised.value) == (
        f"token endpoint {token_endpoint} (client app) refused the client credentials:"
        " HTTP 401 invalid_client"
    )


def test_a_token_refresh_that_fails_is_named_when_the_producer_gives_up(
    stack, profile, unique_name
):
    """The first token is due for refresh at once (60 s: the refresh margin), and the token
    endpoint fails every request after it: the producer process's login fetches on
    kafka-python's network thread, which reports only its timeout; the error names why."""
    issued = []

    def once_then_down(form: dict[str, str]) -> tuple[int, dict]:
        if issued:
            return 503, {"error": "temporarily_unavailable"}
        audience = form.get("scope", "").removesuffix("/.default")
        issued.append(eventhubs.issue_token(stack.settings, "app", audience, lifetime_s=60))
        return 200, {"token_type": "Bearer", "expires_in": 60, "access_token": issued[0]}

    topic = f"{profile.workspace}.refresh-{unique_name}"
    ensure_topic(stack.settings.kafka.bootstrap_servers, topic, partitions=1)
    records = [Record(b"k", b"{}", 1_700_000_000_000)]
    try:
        with serve_tokens(once_then_down) as url:
            options = {**_entra_options(stack, url), "max.block.ms": "3000"}
            with pytest.raises(ProducerError) as raised:
                send_to_kafka(records, topic, options, rate=0, progress=False, producers=1)
    finally:
        delete_topic(stack.settings.kafka.bootstrap_servers, topic)

    assert len(issued) == 1
    assert str(raised.value).endswith(
        f"; its OAUTHBEARER token could not be refreshed: token endpoint {url} (client app)"
        " failed: HTTP 503 temporarily_unavailable"
    ), raised.value


def test_an_event_hub_is_readable_only_by_the_principals_its_acls_name(
    stack, profile, token_endpoint, unique_name
):
    """The preflight's event hub check with an Entra ID token: the token's subject is the
    Kafka principal, and an ACL that names another identity is a missing data role."""
    from kafka import KafkaAdminClient
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType

    from azure_profile.kafka_check import EventHubForbidden, event_hub_partitions

    options = _entra_options(stack, token_endpoint)
    namespace = eventhubs.local_namespace(stack.settings)
    topic = f"{profile.workspace}.acl-{unique_name}"
    ensure_topic(stack.settings.kafka.bootstrap_servers, topic, partitions=2)
    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka.bootstrap_servers)

    def allow(principal: str) -> ACL:
        pattern = ResourcePattern(ResourceType.TOPIC, topic)
        return ACL(principal, "*", ACLOperation.READ, ACLPermissionType.ALLOW, pattern)

    try:
        assert event_hub_partitions(options, topic, namespace) == 2  # no ACL: open
        grant(admin, [allow("User:another-identity")])
        with pytest.raises(EventHubForbidden, match="TOPIC_AUTHORIZATION_FAILED"):
            event_hub_partitions(options, topic, namespace)
        grant(admin, [allow("User:app")])  # the token's subject
        assert event_hub_partitions(options, topic, namespace) == 2
    finally:
        admin.delete_acls([allow("User:another-identity"), allow("User:app")])
        admin.close()
        delete_topic(stack.settings.kafka.bootstrap_servers, topic)
