"""The azure profile, unchanged, against local implementations of its services' protocols.

- Key Vault: the local Key Vault endpoint and managed-identity endpoint
  (``local_stack/keyvault.py``); secrets are read through ``DefaultAzureCredential`` and
  ``SecretClient``, the code path used in Azure.
- Event Hubs: the broker's ``SASL_SSL`` listener (PLAIN, ``$ConnectionString``, TLS).
- ADLS: Azurite's Blob endpoint through hadoop-azure's ABFS driver.

One medallion flow run in a subprocess (Prefect, simulator, Spark bronze and silver with
their gates, report) with the Spark event log on; then every log, event log, Prefect
database and report it produced is searched for the secrets' values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local_stack import eventhubs
from local_stack.jvm import spark_jars
from local_stack.parity import secret_client
from local_stack.settings import EMULATOR_KEY, PROJECT_ROOT
from local_stack.topics import ensure_topic
from spark.settings import SettingsError, load_profile
from tests.conftest import grant
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.azure_parity]

EVENTS = 3000
PARTITIONS = 4


@dataclass(frozen=True)
class Parity:
    environment: dict[str, str]
    connection_string: str
    account_key: str
    container: str
    workspace: str

    def secret_values(self) -> list[str]:
        key = self.connection_string.rpartition("SharedAccessKey=")[2]
        return [self.connection_string, key, self.account_key]


def _secret_client(stack):
    header = stack.keyvault.identity_header_file.read_text().strip()
    return secret_client(stack.settings, header)


@pytest.fixture(scope="module")
def parity(stack, profile) -> Iterator[Parity]:
    """The key vault running and filled, a lake container, and the azure profile's variables."""
    from azure.storage.blob import BlobServiceClient

    from azure_profile.profile import _key_vault

    started_here = stack.keyvault.running_pid() is None
    stack.keyvault_up()  # also stores the local secrets under the profile's secret names
    container = f"parity-{uuid.uuid4().hex[:8]}"
    stack.ensure_lake_container(container)
    environment = stack.azure_environment(container)
    workspace = f"{profile.workspace}-azure"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        for variable in ("AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_CLIENT_ID"):
            patch.delenv(variable, raising=False)
        _key_vault.cache_clear()
        # The workspace's event hub, created as a user creates one before the first run.
        ensure_topic(
            stack.settings.kafka.bootstrap_servers,
            load_profile("azure", workspace).source.topic,
            PARTITIONS,
        )
        yield Parity(
            environment=environment,
            connection_string=eventhubs.ensure_connection_string(stack.settings),
            account_key=EMULATOR_KEY,
            container=container,
            workspace=workspace,
        )
        _key_vault.cache_clear()
    BlobServiceClient.from_connection_string(
        stack.settings.azurite.connection_string
    ).delete_container(container)
    if started_here:
        stack.keyvault_down()


def test_the_azure_profile_reads_its_secrets_from_key_vault(parity):
    azure = load_profile("azure", parity.workspace)

    jaas = azure.source.kafka_options["sasl.jaas.config"]
    assert jaas.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required")
    assert f'password="{parity.connection_string}"' in jaas
    assert azure.source.kafka_options["security.protocol"] == "SASL_SSL"
    assert azure.source.bootstrap_servers == parity.environment["REELHOUSE_EVENTHUBS_BOOTSTRAP"]
    account_host = "devstoreaccount1.dfs.core.windows.net"
    assert azure.lake.storage_conf[f"fs.azure.account.key.{account_host}"] == parity.account_key
    assert azure.lake.root == f"abfs://{parity.container}@{account_host}/lake/{parity.workspace}"


def test_a_service_principal_secret_is_read_from_the_vault_as_the_hosts_identity(
    stack, parity, monkeypatch
):
    """AZURE_CLIENT_ID names the service principal; the vault that holds its secret is read
    as the host's own managed identity. (The Azure SDK, left to itself, would ask the host
    for a managed identity of the principal's id, and App Service answers 400.)"""
    from azure_profile.profile import _key_vault
    from local_stack.keyvault import USER_ASSIGNED_CLIENT_ID

    client = _secret_client(stack)
    client.set_secret("reelhouse-client-secret", "parity-client-secret")
    monkeypatch.setenv("REELHOUSE_ADLS_AUTH", "service_principal")
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000002")
    try:
        for identity in ("", USER_ASSIGNED_CLIENT_ID, "sdk"):
            monkeypatch.setenv("REELHOUSE_KEYVAULT_IDENTITY", identity)
            _key_vault.cache_clear()
            if identity == "sdk":
                with pytest.raises(SettingsError, match="as the Azure SDK's default identity"):
                    load_profile("azure", parity.workspace)
                continue
            conf = load_profile("azure", parity.workspace).lake.storage_conf
            host = "devstoreaccount1.dfs.core.windows.net"
            assert conf[f"fs.azure.account.oauth2.client.secret.{host}"] == "parity-client-secret"
            assert conf[f"fs.azure.account.oauth2.client.id.{host}"] == (
                "00000000-0000-0000-0000-000000000002"
            )
    finally:
        _key_vault.cache_clear()
        client.begin_delete_secret("reelhouse-client-secret").wait()
        client.purge_deleted_secret("reelhouse-client-secret")


def test_preflight_passes_against_the_local_services(parity, capsys):
    from azure_profile.preflight import main

    assert main(["--workspace", parity.workspace]) == 0
    lines = capsys.readouterr().out.splitlines()
    checks = [line.split(":")[0] for line in lines if line[:4] in ("ok  ", "FAIL", "skip")]
    assert len(checks) == 8
    event_hub = f"ok   event hub: {parity.workspace}.viewing-events: {PARTITIONS} partitions"
    assert any(line.startswith(event_hub) for line in lines), lines
    assert all(line.startswith("ok") for line in lines if line[:4] in ("ok  ", "FAIL", "skip"))
    assert not any(value in "\n".join(lines) for value in parity.secret_values())


def _preflight_lines(environment: dict[str, str], workspace: str) -> list[str]:
    """Run the preflight as a user would; return its check lines (and check it exits 1)."""
    completed = subprocess.run(
        [sys.executable, "-m", "azure_profile.preflight", "--workspace", workspace],
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stdout + completed.stderr
    return completed.stdout.splitlines()


WRONG_KEY = eventhubs.format_connection_string("reelhouse-local", "d3JvbmcgYnV0IHdlbGwgZm9ybWVk")
MISCONFIGURATIONS = {
    # name: (environment overrides, secrets to store first, failing check, words in its line)
    "missing secret": (
        {"REELHOUSE_SECRET_NAME_EVENTHUBS": "no-such-secret"},
        {},
        "secrets",
        ["no-such-secret", "does not exist"],
    ),
    "wrong namespace": (
        {"REELHOUSE_EVENTHUBS_NAMESPACE": "reelhouse-other"},
        {},
        "event hubs sasl handshake",
        ["reelhouse-other", "reelhouse-local"],
    ),
    "wrong key": (
        {"REELHOUSE_SECRET_NAME_EVENTHUBS": "parity-wrong-key"},
        {"parity-wrong-key": WRONG_KEY},
        "event hubs sasl handshake",
        ["rejected the credentials", "reelhouse-local"],
    ),
    "malformed connection string": (
        {"REELHOUSE_SECRET_NAME_EVENTHUBS": "parity-malformed"},
        {"parity-malformed": "this is not a connection string"},
        "event hubs sasl handshake",
        ["malformed"],
    ),
    "unreachable event hubs": (
        {"REELHOUSE_EVENTHUBS_BOOTSTRAP": "127.0.0.1:{free_port}"},
        {},
        "event hubs reachable",
        ["reelhouse-local", "127.0.0.1"],
    ),
    "unknown event hubs host": (
        {"REELHOUSE_EVENTHUBS_BOOTSTRAP": "reelhouse-nowhere.invalid:9093"},
        {},
        "event hubs reachable",
        ["reelhouse-nowhere.invalid"],
    ),
    "missing event hub": (
        {"REELHOUSE_EVENTHUB": "no-such-hub"},
        {},
        "event hub",
        ["has no event hub", "no-such-hub", "az eventhubs eventhub create"],
    ),
    "offsets of another workspace's event hub": (
        {"REELHOUSE_SOURCE_STARTING_OFFSETS": '{"main.viewing-events": {"0": 1}}'},
        {},
        "event hub",
        ["source.starting_offsets", "topic 'main.viewing-events', but this workspace reads"],
    ),
    "missing container": (
        {"REELHOUSE_ADLS_CONTAINER": "no-such-container"},
        {},
        "lake container",
        ["no-such-container"],
    ),
    "wrong account key": (
        {"REELHOUSE_SECRET_NAME_ADLS_KEY": "parity-wrong-account-key"},
        {"parity-wrong-account-key": "d3Jvbmcga2V5IGJ1dCB3ZWxsIGZvcm1lZCBiYXNlNjQ="},
        "lake container",
        ["devstoreaccount1", "refused the credentials", "check the account key secret"],
    ),
    "unreachable storage": (
        {"REELHOUSE_ADLS_EMULATOR_ENDPOINT": "127.0.0.1:{free_port}"},
        {},
        "storage reachable",
        ["devstoreaccount1"],
    ),
    "unreachable key vault": (
        {"REELHOUSE_KEYVAULT_URL": "https://127.0.0.1:{free_port}"},
        {},
        "key vault",
        ["Key Vault", "127.0.0.1"],
    ),
    "key vault not https": (
        {"REELHOUSE_KEYVAULT_URL": "http://127.0.0.1:10443"},
        {},
        "key vault",
        ["https"],
    ),
    "no identity": (
        {"IDENTITY_HEADER": "not-the-identity-header"},
        {},
        "secrets",
        ["cannot authenticate", "az login"],
    ),
    "namespace unset": (
        {"REELHOUSE_EVENTHUBS_NAMESPACE": ""},
        {},
        "configuration",
        ["REELHOUSE_EVENTHUBS_NAMESPACE"],
    ),
}


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_preflight_names_each_misconfiguration(stack, parity, case):
    overrides, stored, failing, words = MISCONFIGURATIONS[case]
    client = _secret_client(stack)
    for name, value in stored.items():
        client.set_secret(name, value)
    port = str(free_port())
    environment = {
        **parity.environment,
        **{key: value.replace("{free_port}", port) for key, value in overrides.items()},
    }

    lines = _preflight_lines(environment, parity.workspace)

    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1, lines
    assert failed[0].startswith(f"FAIL {failing}:"), lines
    assert "(fix: " in failed[0]
    for word in words:
        assert word in failed[0], failed[0]
    # Checks after it that need it are skipped, never run against a broken setup.
    assert all(line[:4] in ("ok  ", "FAIL", "skip") for line in lines[:-1]), lines
    text = "\n".join(lines)
    assert not any(value in text for value in [*parity.secret_values(), *stored.values()])


def test_preflight_names_an_event_hub_the_credentials_may_not_read(stack, parity):
    """An event hub whose only role holder is another identity: Event Hubs answers the
    metadata request with TOPIC_AUTHORIZATION_FAILED (the local broker by its ACLs)."""
    from kafka import KafkaAdminClient
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ResourcePattern, ResourceType

    environment = {**parity.environment, "REELHOUSE_EVENTHUB": "locked"}
    locked = f"{parity.workspace}.locked"
    ensure_topic(stack.settings.kafka.bootstrap_servers, locked, PARTITIONS)
    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka.bootstrap_servers)
    others_only = ACL(
        principal="User:another-identity",
        host="*",
        operation=ACLOperation.READ,
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(ResourceType.TOPIC, locked),
    )
    try:
        grant(admin, [others_only])
        lines = _preflight_lines(environment, parity.workspace)
    finally:
        admin.delete_acls([others_only])
        admin.close()

    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed == [
        f"FAIL event hub: namespace reelhouse-local does not let these credentials read event"
        f" hub {locked} (TOPIC_AUTHORIZATION_FAILED) (fix: use a connection string of a policy"
        " with Listen and Send)"
    ], lines


@pytest.fixture(scope="module")
def azure_run(parity, tmp_path_factory) -> dict:
    """One medallion flow run on the azure profile, in its own process, as Prefect runs it."""
    folder = tmp_path_factory.mktemp("azure-run")
    events = folder / "spark-events"
    events.mkdir()
    environment = {
        **{key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"},
        **parity.environment,
        "REELHOUSE_SPARK_JARS": ",".join(str(jar) for jar in spark_jars()),
        "REELHOUSE_SPARK_EVENT_LOG": "true",
        "REELHOUSE_SPARK_EVENT_LOG_DIR": f"file:{events}",
        # 2 cores, as the local profile (50 snapshot tasks per commit: 155 s -> 112 s)
        "REELHOUSE_SPARK_SHUFFLE_PARTITIONS": "4",
        "REELHOUSE_DELTA_SNAPSHOT_PARTITIONS": "2",
        # A Prefect database of this run alone, to be searched afterwards.
        "PREFECT_HOME": str(folder / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    # A script file, not `python -c`: pyspark takes a __main__ without a file for doctests.
    script = folder / "run_medallion.py"
    script.write_text(
        "import json\n"
        "from flows.medallion import medallion\n"
        f"result = medallion(profile='azure', workspace={parity.workspace!r}, events={EVENTS},"
        " fault_rate=0.02, seed=11, simulate=True, layers='bronze,silver')\n"
        "print('RESULT ' + json.dumps(result))\n"
    )
    completed = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=PROJECT_ROOT,
        timeout=900,
    )
    (folder / "stdout.log").write_text(completed.stdout)
    (folder / "stderr.log").write_text(completed.stderr)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result_line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return {"folder": folder, "result": json.loads(result_line.removeprefix("RESULT "))}


def test_the_medallion_flow_runs_on_the_azure_profile_through_every_parity_service(
    spark, parity, azure_run
):
    result = azure_run["result"]
    simulation = result["simulation"]
    assert simulation["events"] == EVENTS
    # The producer and Spark's Kafka source both went through the SASL_SSL listener, and
    # the lake is in the parity container: the tables hold every record exactly once.
    azure = load_profile("azure", parity.workspace)
    assert azure.lake.root.startswith(f"abfs://{parity.container}@")

    def table(name):
        return spark.read.format("delta").load(azure.lake.table_location(name))

    assert table("bronze.events").count() == simulation["records"]
    assert table("silver.events").count() == simulation["events"]
    assert table("silver.quarantine").count() == simulation["records"] - simulation["events"]
    assert result["rows"]["bronze.events"] == simulation["records"]
    # Gold runs the same code on the same session settings; the local tests prove it.
    assert Path(result["report"]).exists()


def _searched_files(parity: Parity, azure_run: dict, stack) -> list[Path]:
    report = Path(azure_run["result"]["report"]).parent
    roots = [azure_run["folder"], report, stack.settings.log_dir]
    files = [path for root in roots for path in root.rglob("*") if path.is_file()]
    return files


def test_no_secret_value_appears_in_any_log_event_log_prefect_record_or_report(
    parity, azure_run, stack
):
    files = _searched_files(parity, azure_run, stack)
    kinds = {
        "spark event log": [path for path in files if "spark-events" in path.parts],
        "prefect database": [path for path in files if ".db" in path.name],
        "report": [path for path in files if path.suffix == ".html"],
        "service log": [path for path in files if path.parent == stack.settings.log_dir],
        "run output": [path for path in files if path.name in ("stdout.log", "stderr.log")],
    }
    # The search covers something of every kind, or it would prove nothing.
    assert all(kinds.values()), {kind: len(paths) for kind, paths in kinds.items()}
    contents = {path: _readable(path) for path in files}
    needles = set()
    for value in parity.secret_values():
        needles |= {value.encode(), json.dumps(value)[1:-1].encode(), value.encode("utf-16-le")}
    leaks = [str(path) for path, data in contents.items() if any(n in data for n in needles)]
    assert leaks == []
    # The redaction is what kept them out: Spark did see the secret-bearing settings.
    event_log = b"".join(contents[path] for path in kinds["spark event log"])
    redacted_key = (
        b'"fs.azure.account.key.devstoreaccount1.dfs.core.windows.net":"*********(redacted)"'
    )
    assert redacted_key in event_log


def _readable(path: Path) -> bytes:
    """A file's bytes as a reader would see them (Spark compresses its event log)."""
    data = path.read_bytes()
    if path.suffix == ".zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(data).read()
    return data
