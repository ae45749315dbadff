"""The azure profile: Kafka options for Event Hubs, ADLS settings, secrets, redaction."""

from __future__ import annotations

import re

import pytest

from azure_profile.deployment import load_deployment
from azure_profile.eventhubs import kafka_options, parse_connection_string
from azure_profile.kafka_check import KafkaAuthError, KafkaTlsError, KafkaUnreachable
from azure_profile.preflight import CheckFailed, Preflight
from azure_profile.storage import lake_url, storage_conf
from local_stack.simulate.producer import kafka_python_config
from spark.session import REDACTION_CONF
from spark.settings import PRODUCER_OPTIONS, SettingsError, load_profile
from tests.unit.conftest import (
    ACCOUNT_KEY,
    CLIENT_SECRET,
    CONNECTION_STRING,
    FAKE_KEY,
)

pytestmark = pytest.mark.unit


def test_azure_profile_reads_event_hubs_adls_and_secrets(azure_environment):
    profile = load_profile("azure", "main")
    assert profile.source.bootstrap_servers == "reelhouse-test.servicebus.windows.net:9093"
    assert profile.source.topic == "main.viewing-events"
    options = profile.source.spark_options()
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert options["kafka.sasl.mechanism"] == "PLAIN"
    assert options["kafka.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
        f' username="$ConnectionString" password="{CONNECTION_STRING}";'
    )
    assert options["kafka.request.timeout.ms"] == "60000"
    assert options["failOnDataLoss"] == "true"
    assert options["groupIdPrefix"] == "main.reelhouse"
    assert profile.lake.root == ("abfss://lake@reelhousetest.dfs.core.windows.net/lake/main")
    host = "reelhousetest.dfs.core.windows.net"
    conf = profile.lake.storage_conf
    assert conf[f"fs.azure.account.auth.type.{host}"] == "OAuth"
    assert conf[f"fs.azure.account.oauth2.client.secret.{host}"] == CLIENT_SECRET
    assert conf[f"fs.azure.account.oauth2.client.endpoint.{host}"] == (
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/oauth2/token"
    )
    assert ACCOUNT_KEY not in str(conf)  # the fallback key is not even fetched


def test_databricks_gets_the_shaded_login_module(azure_environment, monkeypatch):
    monkeypatch.setenv("REELHOUSE_KAFKA_LOGIN_MODULE", "databricks")
    jaas = load_profile("azure").source.kafka_options["sasl.jaas.config"]
    assert jaas.startswith("kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule ")


def test_databricks_gets_the_shaded_oauth_login(azure_environment, monkeypatch):
    monkeypatch.setenv("REELHOUSE_EVENTHUBS_AUTH", "entra_id")
    monkeypatch.setenv("REELHOUSE_KAFKA_LOGIN_MODULE", "databricks")
    options = load_profile("azure").source.kafka_options
    assert options["sasl.jaas.config"].startswith(
        "kafkashaded.org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule "
    )
    assert options["sasl.login.callback.handler.class"] == (
        "kafkashaded.org.apache.kafka.common.security.oauthbearer.secured"
        ".OAuthBearerLoginCallbackHandler"
    )
    # The simulator, outside Databricks, logs in the same way with the same options.
    provider = kafka_python_config(options)["sasl_oauth_token_provider"]
    assert provider.client_id == "00000000-0000-0000-0000-000000000002"


def test_entra_id_uses_oauthbearer_without_a_connection_string(azure_environment, monkeypatch):
    monkeypatch.setenv("REELHOUSE_EVENTHUBS_AUTH", "entra_id")
    monkeypatch.delenv("REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING")
    options = load_profile("azure").source.kafka_options
    assert options["sasl.mechanism"] == "OAUTHBEARER"
    assert (
        'scope="https://reelhouse-test.servicebus.windows.net/.default"'
        in (options["sasl.jaas.config"])
    )
    assert options["sasl.oauthbearer.token.endpoint.url"] == (
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/oauth2/v2.0/token"
    )


def test_managed_identity_needs_no_secret(azure_environment, monkeypatch):
    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", "managed_identity")
    monkeypatch.delenv("REELHOUSE_SECRET_REELHOUSE_CLIENT_SECRET")
    conf = load_profile("azure").lake.storage_conf
    host = "reelhousetest.dfs.core.windows.net"
    assert conf[f"fs.azure.account.oauth.provider.type.{host}"] == (
        "org.apache.hadoop.fs.azurebfs.oauth2.MsiTokenProvider"
    )
    assert conf[f"fs.azure.account.oauth2.client.id.{host}"] == (
        "00000000-0000-0000-0000-000000000002"
    )


@pytest.mark.parametrize(
    ("storage_auth", "eventhubs_auth", "identity"),
    [
        # AZURE_CLIENT_ID is the service principal whose secret the vault holds: no host
        # has a managed identity of that id, so the vault is read as the host's own.
        ("service_principal", "connection_string", "system"),
        ("account_key", "entra_id", "system"),
        # AZURE_CLIENT_ID names the managed identity itself: the SDK takes it, as ABFS does.
        ("managed_identity", "connection_string", "sdk"),
        ("account_key", "connection_string", "sdk"),
    ],
)
def test_the_vault_reader_defaults_to_an_identity_the_host_has(
    azure_environment, monkeypatch, storage_auth, eventhubs_auth, identity
):
    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", storage_auth)
    monkeypatch.setenv("REELHOUSE_EVENTHUBS_AUTH", eventhubs_auth)
    assert load_deployment().keyvault.identity == identity


@pytest.mark.parametrize("identity", ["system", "sdk", "5E1F0C1D-7A3B-4C2E-9D4F-0A1B2C3D4E5F"])
def test_the_vault_reader_can_be_named(azure_environment, monkeypatch, identity):
    monkeypatch.setenv("REELHOUSE_KEYVAULT_IDENTITY", identity)
    assert load_deployment().keyvault.identity == identity


def test_entra_id_with_a_managed_identity_for_storage_is_refused_in_one_line(
    azure_environment, monkeypatch
):
    monkeypatch.setenv("REELHOUSE_EVENTHUBS_AUTH", "entra_id")
    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", "managed_identity")
    with pytest.raises(SettingsError) as refused:
        load_deployment()
    message = str(refused.value)
    assert "entra_id signs in as the service principal AZURE_CLIENT_ID" in message
    assert "REELHOUSE_ADLS_AUTH=service_principal" in message and "\n" not in message


def test_account_key_is_a_fallback(azure_environment, monkeypatch):
    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", "account_key")
    conf = load_profile("azure").lake.storage_conf
    assert conf == {
        "fs.azure.account.auth.type.reelhousetest.dfs.core.windows.net": "SharedKey",
        "fs.azure.account.key.reelhousetest.dfs.core.windows.net": ACCOUNT_KEY,
    }


def test_the_preflight_asks_the_lake_s_dfs_endpoint_as_spark_does(azure_environment, monkeypatch):
    """Spark reaches the lake at <account>.dfs.core.windows.net: a private endpoint or a
    firewall rule for the Blob endpoint alone must not pass the preflight."""
    import socket

    import urllib3.util.connection

    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", "account_key")  # no token to fetch first
    asked: list[tuple[str, int]] = []

    def refused(address, *args, **kwargs):
        asked.append(address[:2])
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(urllib3.util.connection, "create_connection", refused)
    preflight = Preflight(
        deployment=load_deployment(),
        secrets={"storage_account_key": ACCOUNT_KEY},
        secret_names={"storage_account_key": "adls-account-key"},
    )
    with pytest.raises(CheckFailed):
        preflight._storage_reachable()
    with pytest.raises(CheckFailed) as failed:
        preflight._container()
    assert asked == [("reelhousetest.dfs.core.windows.net", 443)] * 2
    assert str(failed.value).startswith("storage account reelhousetest: "), failed.value


def test_an_emulator_endpoint_switches_to_the_blob_api_over_http(azure_environment, monkeypatch):
    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", "account_key")
    monkeypatch.setenv("REELHOUSE_ADLS_EMULATOR_ENDPOINT", "127.0.0.1:10000")
    deployment = load_deployment()
    assert lake_url(deployment.storage, "lake") == (
        "abfs://lake@reelhousetest.dfs.core.windows.net/lake"
    )
    conf = storage_conf(deployment.storage, account_key=ACCOUNT_KEY)
    assert conf["fs.azure.abfs.endpoint"] == "127.0.0.1:10000"
    assert conf["fs.azure.fns.account.service.type"] == "BLOB"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("REELHOUSE_EVENTHUBS_NAMESPACE", "", "Event Hubs namespace is not set"),
        (
            "REELHOUSE_EVENTHUBS_NAMESPACE",
            "bad_name!",
            "Event Hubs namespace 'bad_name!' is invalid",
        ),
        ("REELHOUSE_ADLS_ACCOUNT", "Upper", "storage account 'Upper' is invalid"),
        ("REELHOUSE_ADLS_CONTAINER", "a", "container 'a' is invalid"),
        ("REELHOUSE_ADLS_AUTH", "sas", "REELHOUSE_ADLS_AUTH must be one of"),
        (
            "REELHOUSE_ADLS_EMULATOR_ENDPOINT",
            "127.0.0.1:abc",
            "REELHOUSE_ADLS_EMULATOR_ENDPOINT must look like host:port",
        ),
        ("AZURE_TENANT_ID", "", "tenant id for the service principal is not set"),
        ("REELHOUSE_SECRETS_PROVIDER", "vault", "secrets provider 'vault' is unknown"),
        (
            "REELHOUSE_KEYVAULT_IDENTITY",
            "my-identity",
            "REELHOUSE_KEYVAULT_IDENTITY must be 'system', 'sdk' or a user-assigned"
            " identity's client id (a GUID); got 'my-identity'",
        ),
        ("REELHOUSE_SECRETS_PROVIDER", "keyvault", "Key Vault URL is not set"),
        (
            "REELHOUSE_KEYVAULT_CA_FILE",
            "/nonexistent.pem",
            "REELHOUSE_KEYVAULT_CA_FILE names '/nonexistent.pem', which is not a file",
        ),
        (
            "REELHOUSE_EVENTHUBS_BOOTSTRAP",
            "127.0.0.1:99999",
            "REELHOUSE_EVENTHUBS_BOOTSTRAP must look like host:port"
            " (<namespace>.servicebus.windows.net:9093); got '127.0.0.1:99999'",
        ),
        (
            "REELHOUSE_EVENTHUBS_BOOTSTRAP",
            "ns.servicebus.windows.net",
            "must look like host:port (<namespace>.servicebus.windows.net:9093);"
            " got 'ns.servicebus.windows.net'",
        ),
        ("REELHOUSE_EVENTHUBS_BOOTSTRAP", ",", "lists an empty server or one with a space"),
        ("REELHOUSE_EVENTHUBS_BOOTSTRAP", "my host:9093", "in its name: 'my host:9093'"),
        ("REELHOUSE_EVENTHUBS_BOOTSTRAP", ":9093", "got ':9093'"),
        (
            "REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING",
            "Endpoint=sb://other-namespace.servicebus.windows.net/;SharedAccessKeyName=R;"
            "SharedAccessKey=x",
            "connection string is for namespace 'other-namespace'",
        ),
        (
            "REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING",
            f"SharedAccessKey={FAKE_KEY}",
            "connection string lacks Endpoint, SharedAccessKeyName",
        ),
    ],
)
def test_misconfigurations_are_named_in_one_line(
    azure_environment, monkeypatch, variable, value, message
):
    monkeypatch.setenv(variable, value)
    monkeypatch.delenv("REELHOUSE_KEYVAULT_URL", raising=False)
    with pytest.raises(SettingsError, match=re.escape(message)) as error:
        load_profile("azure")
    assert "\n" not in str(error.value)
    assert FAKE_KEY not in str(error.value)


def test_a_missing_secret_names_its_variable(azure_environment, monkeypatch):
    monkeypatch.delenv("REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING")
    with pytest.raises(SettingsError, match="REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING"):
        load_profile("azure")


def test_connection_string_parts():
    parsed = parse_connection_string(CONNECTION_STRING + ";EntityPath=viewing-events")
    assert (parsed.namespace, parsed.key_name, parsed.entity_path) == (
        "reelhouse-test",
        "RootManageSharedAccessKey",
        "viewing-events",
    )


def test_a_parity_trust_store_is_passed_as_pem(azure_environment, monkeypatch, tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("REELHOUSE_EVENTHUBS_TRUSTSTORE_PEM", str(tmp_path / "ca.pem"))
    deployment = load_deployment()
    options = kafka_options(deployment.eventhubs, connection_string=CONNECTION_STRING)
    assert options["ssl.truststore.type"] == "PEM"
    assert options["ssl.truststore.location"] == str(tmp_path / "ca.pem")


@pytest.mark.parametrize(
    "text",
    [
        f'PlainLoginModule required username="$ConnectionString" password="{CONNECTION_STRING}";',
        CONNECTION_STRING,
        f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={ACCOUNT_KEY};",
        "https://a.blob.core.windows.net/c?sv=2024-01-01&sig=abcDEF%2B123%3D&se=2026",
        f'OAuthBearerLoginModule required clientId="x" clientSecret="{CLIENT_SECRET}";',
    ],
)
def test_spark_redaction_masks_every_secret_form(text):
    pattern = REDACTION_CONF["spark.redaction.string.regex"]
    redacted = re.sub(pattern, "*********(redacted)", text)
    for secret in (FAKE_KEY, ACCOUNT_KEY, CLIENT_SECRET, "abcDEF%2B123%3D"):
        assert secret not in redacted


@pytest.mark.parametrize(
    "key",
    [
        "kafka.sasl.jaas.config",
        "fs.azure.account.key.reelhousetest.dfs.core.windows.net",
        "fs.azure.account.oauth2.client.secret.reelhousetest.dfs.core.windows.net",
        "spark.hadoop.fs.azure.account.key.devstoreaccount1.dfs.core.windows.net",
    ],
)
def test_spark_redaction_covers_every_secret_setting(key):
    assert re.search(REDACTION_CONF["spark.redaction.regex"], key)
    assert re.search(REDACTION_CONF["spark.sql.redaction.options.regex"], key)


@pytest.mark.parametrize(
    ("raised", "hint"),
    [
        (KafkaTlsError("TLS to x:9093 failed"), "trust the endpoint's certificate authority"),
        (KafkaUnreachable("cannot reach x:9093: no answer"), "check the namespace's networking"),
        (KafkaAuthError("x:9093 rejected the login"), "copy the namespace's connection string"),
    ],
)
def test_the_handshake_s_hint_follows_what_failed(azure_environment, monkeypatch, raised, hint):
    def failing(options, namespace):
        raise raised

    monkeypatch.setattr("azure_profile.kafka_check.check_kafka_sasl", failing)
    preflight = Preflight(
        deployment=load_deployment(),
        secrets={"eventhubs_connection_string": CONNECTION_STRING},
    )
    with pytest.raises(CheckFailed) as failed:
        preflight._kafka_handshake()
    assert str(failed.value) == str(raised)
    assert failed.value.hint.startswith(hint)


@pytest.mark.parametrize("auth", ["service_principal", "managed_identity"])
def test_a_token_endpoint_that_never_answers_is_given_up_on(azure_environment, monkeypatch, auth):
    """Entra ID (or a managed identity's endpoint) takes the connection and never answers.
    With the SDK's defaults the preflight's storage check waited 300 s a try, three times;
    a vault's login, the same. Timeouts of 1 s here, not 5 s (connection, which covers
    Entra ID's TLS handshake) and 10 s (read): the credential uses the options it is given
    (without them it still waits at 120 s)."""
    import threading

    import urllib3.util.connection
    from azure.core.exceptions import ClientAuthenticationError

    from azure_profile.secrets import TOKEN_REQUEST_OPTIONS
    from tests.ports import silent_port

    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", auth)
    monkeypatch.setitem(TOKEN_REQUEST_OPTIONS, "connection_timeout", 1)
    monkeypatch.setitem(TOKEN_REQUEST_OPTIONS, "read_timeout", 1)
    with silent_port() as (port, accepted):
        # Entra ID and the instance metadata service, as a stalled network gives them.
        connect = urllib3.util.connection.create_connection

        def stalled(address, *args, **kwargs):
            host, _ = address
            if host in ("login.microsoftonline.com", "169.254.169.254"):
                address = ("127.0.0.1", port)
            return connect(address, *args, **kwargs)

        monkeypatch.setattr(urllib3.util.connection, "create_connection", stalled)
        preflight = Preflight(deployment=load_deployment(), secrets={"client_secret": "x"})
        credential = preflight._storage_credential()
        outcome: list[BaseException] = []

        def ask() -> None:
            try:
                credential.get_token("https://storage.azure.com/.default")
            except BaseException as error:  # noqa: BLE001 - the test reads it
                outcome.append(error)

        worker = threading.Thread(target=ask, daemon=True)
        worker.start()
        worker.join(120)
        assert accepted, "the credential never reached the stalled endpoint"
    assert outcome, "the credential still waited after 120 s"
    assert isinstance(outcome[0], ClientAuthenticationError), repr(outcome[0])


def test_a_client_secret_with_a_quote_or_backslash_reaches_both_kafka_clients_whole(
    azure_environment, monkeypatch
):
    secret = 'ab"c\\d~e'
    monkeypatch.setenv("REELHOUSE_EVENTHUBS_AUTH", "entra_id")
    monkeypatch.setenv("REELHOUSE_SECRET_REELHOUSE_CLIENT_SECRET", secret)
    options = load_profile("azure").source.kafka_options
    # The Java client's JAAS parser reads \" and \\ as a quote and a backslash.
    assert 'clientSecret="ab\\"c\\\\d~e"' in options["sasl.jaas.config"]
    # Spark's redaction masks all of it, the escaped quote included.
    jaas = options["sasl.jaas.config"]
    masked = re.sub(REDACTION_CONF["spark.redaction.string.regex"], "*", jaas)
    assert "clientSecret" not in masked and "d~e" not in masked, masked
    assert kafka_python_config(options)["sasl_oauth_token_provider"]._secret == secret


@pytest.mark.parametrize(
    ("variable", "host"),
    [
        ("IDENTITY_ENDPOINT", "App Service, Functions, Container Apps, Arc and Service Fabric"),
        ("MSI_ENDPOINT", "Cloud Shell and Azure Machine Learning"),
        ("AZURE_FEDERATED_TOKEN_FILE", "AKS workload identity"),
    ],
)
def test_a_managed_identity_spark_s_lake_driver_cannot_use_is_refused(
    azure_environment, monkeypatch, variable, host
):
    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", "managed_identity")
    monkeypatch.setenv(variable, "http://localhost:42356/msi/token")
    with pytest.raises(CheckFailed) as failed:
        Preflight()._configuration()
    assert f"{variable} is set: this host gives its managed identity as {host} do" in str(
        failed.value
    )
    assert failed.value.hint.startswith("set REELHOUSE_ADLS_AUTH=service_principal")
    monkeypatch.delenv(variable)
    assert "(managed_identity)" in Preflight()._configuration()


def test_a_connection_string_for_another_event_hub_is_named(azure_environment, monkeypatch):
    scoped = f"{CONNECTION_STRING.rstrip(';')};EntityPath=viewing-events"
    monkeypatch.setenv("REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING", scoped)
    preflight = Preflight(workspace="main")
    preflight._configuration()
    preflight.secrets = {"eventhubs_connection_string": scoped}
    with pytest.raises(CheckFailed) as failed:
        preflight._event_hub()
    assert str(failed.value) == (
        "the Event Hubs connection string is for event hub 'viewing-events' (EntityPath),"
        " the workspace reads 'main.viewing-events': Event Hubs refuses it any other"
    )


def test_a_secret_missing_from_the_environment_is_told_how_to_set_it(
    azure_environment, monkeypatch
):
    monkeypatch.delenv("REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING")
    preflight = Preflight()
    preflight._configuration()
    with pytest.raises(CheckFailed) as failed:
        preflight._secrets()
    assert "REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING" in str(failed.value)
    assert failed.value.hint.startswith("set REELHOUSE_SECRET_<NAME> for each")


@pytest.mark.parametrize(
    ("variables", "hint"),
    [
        # A service principal signs in to the lake: the host's own identity reads the vault.
        ({}, "turn on the host's system-assigned managed identity"),
        (
            {"REELHOUSE_KEYVAULT_IDENTITY": "5e1f0c1d-7a3b-4c2e-9d4f-0a1b2c3d4e5f"},
            "assign the user-assigned identity 5e1f0c1d-7a3b-4c2e-9d4f-0a1b2c3d4e5f to the host",
        ),
        ({"REELHOUSE_KEYVAULT_IDENTITY": "sdk"}, "run with an identity: a managed identity"),
    ],
)
def test_a_vault_login_that_fails_is_told_how_its_reader_gets_one(
    azure_environment, monkeypatch, variables, hint
):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    preflight = Preflight(deployment=load_deployment())
    assert preflight._vault_login_hint().startswith(hint)


def test_a_service_principal_that_cannot_sign_in_is_not_the_account_s_refusal(
    azure_environment, monkeypatch
):
    """Entra ID refuses (here: cannot be reached) the lake's service principal: the
    storage check names the login and how to mend it, not a role on the account."""
    import urllib3.util.connection

    asked: list[str] = []

    def refused(address, *args, **kwargs):
        asked.append(address[0])
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", refused)
    preflight = Preflight(
        deployment=load_deployment(),
        secrets={"client_secret": CLIENT_SECRET},
        secret_names={"client_secret": "reelhouse-client-secret"},
    )
    with pytest.raises(CheckFailed) as failed:
        preflight._container()
    assert str(failed.value).startswith(
        "storage account reelhousetest: the service principal"
        " 00000000-0000-0000-0000-000000000002 cannot sign in ("
    )
    assert failed.value.hint == (
        "check the client secret (reelhouse-client-secret), AZURE_CLIENT_ID and AZURE_TENANT_ID"
    )
    assert "login.microsoftonline.com" in asked
    assert "reelhousetest.dfs.core.windows.net" not in asked  # the lake is not asked


def test_the_simulator_keeps_to_event_hubs_request_limits_and_spark_is_not_told(
    azure_environment,
):
    """Event Hubs closes a connection sending a request over 1,046,528 bytes and, on
    Standard, refuses compressed records: the simulator's producer (1 MiB batches, 4 MiB
    requests, lz4 by default) must not send either there."""
    import kafka

    source = load_profile("azure", "main").source
    producer = kafka_python_config(source.client_options(), client="producer")
    assert producer["max_request_size"] == 1_000_000 < 1_046_528
    assert producer["batch_size"] <= producer["max_request_size"]
    assert producer["compression_type"] is None
    assert set(producer) - set(kafka.KafkaProducer.DEFAULT_CONFIG) == set()
    for client in ("consumer", "admin"):
        config = kafka_python_config(source.client_options(), client=client)
        assert not {"max_request_size", "batch_size", "compression_type"} & set(config)
    spark = source.spark_options()
    assert not [key for key in spark if key.split(".", 1)[-1] in PRODUCER_OPTIONS]
    assert spark["kafka.request.timeout.ms"] == "60000"  # the rest still reach Spark
