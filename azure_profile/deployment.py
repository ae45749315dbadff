"""One Azure deployment's values (``azure.toml``), validated into typed settings."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from spark.settings import SettingsError, resolve_placeholders

DEPLOYMENT_FILE = Path(__file__).resolve().parent / "azure.toml"

EVENTHUBS_AUTH = ("connection_string", "entra_id")
LOGIN_MODULES = ("open_source", "databricks")
STORAGE_AUTH = ("service_principal", "managed_identity", "account_key")

_NAMESPACE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")


@dataclass(frozen=True)
class EventHubsSettings:
    namespace: str
    bootstrap_servers: str
    auth: str
    login_module: str
    truststore_pem: str

    @property
    def host(self) -> str:
        return f"{self.namespace}.servicebus.windows.net"


@dataclass(frozen=True)
class StorageSettings:
    account: str
    container: str
    auth: str
    tenant_id: str
    client_id: str
    emulator_endpoint: str

    @property
    def dfs_host(self) -> str:
        return f"{self.account}.dfs.core.windows.net"


@dataclass(frozen=True)
class KeyVaultSettings:
    url: str
    ca_file: str


@dataclass(frozen=True)
class Deployment:
    eventhubs: EventHubsSettings
    storage: StorageSettings
    keyvault: KeyVaultSettings


def load_deployment(path: Path = DEPLOYMENT_FILE) -> Deployment:
    """Read ``azure.toml``, fill it from the environment and validate it."""
    with path.open("rb") as handle:
        raw = resolve_placeholders(tomllib.load(handle))
    hubs, storage, vault = raw["eventhubs"], raw["storage"], raw["keyvault"]
    namespace = _required(
        hubs["namespace"], "Event Hubs namespace", "REELHOUSE_EVENTHUBS_NAMESPACE"
    )
    if not _NAMESPACE.match(namespace):
        raise SettingsError(
            f"Event Hubs namespace {namespace!r} is invalid: 6-50 letters, digits or '-',"
            " starting with a letter (REELHOUSE_EVENTHUBS_NAMESPACE)"
        )
    account = _required(storage["account"], "storage account", "REELHOUSE_ADLS_ACCOUNT")
    if not _ACCOUNT.match(account):
        raise SettingsError(
            f"storage account {account!r} is invalid: 3-24 lower-case letters or digits"
            " (REELHOUSE_ADLS_ACCOUNT)"
        )
    container = _required(storage["container"], "lake container", "REELHOUSE_ADLS_CONTAINER")
    if not _CONTAINER.match(container):
        raise SettingsError(
            f"container {container!r} is invalid: 3-63 lower-case letters, digits or single"
            " '-' (REELHOUSE_ADLS_CONTAINER)"
        )
    settings = Deployment(
        eventhubs=EventHubsSettings(
            namespace=namespace,
            bootstrap_servers=hubs["bootstrap_servers"]
            or f"{namespace}.servicebus.windows.net:9093",
            auth=_choice(hubs["auth"], EVENTHUBS_AUTH, "REELHOUSE_EVENTHUBS_AUTH"),
            login_module=_choice(
                hubs["login_module"], LOGIN_MODULES, "REELHOUSE_KAFKA_LOGIN_MODULE"
            ),
            truststore_pem=hubs["truststore_pem"],
        ),
        storage=StorageSettings(
            account=account,
            container=container,
            auth=_choice(storage["auth"], STORAGE_AUTH, "REELHOUSE_ADLS_AUTH"),
            tenant_id=storage["tenant_id"],
            client_id=storage["client_id"],
            emulator_endpoint=storage["emulator_endpoint"],
        ),
        keyvault=KeyVaultSettings(url=vault["url"].rstrip("/"), ca_file=vault["ca_file"]),
    )
    _check_identities(settings)
    return settings


def _check_identities(settings: Deployment) -> None:
    storage = settings.storage
    if storage.auth == "service_principal":
        _required(storage.tenant_id, "tenant id for the service principal", "AZURE_TENANT_ID")
        _required(storage.client_id, "client id of the service principal", "AZURE_CLIENT_ID")
    if settings.eventhubs.auth == "entra_id":
        _required(storage.tenant_id, "tenant id for Entra ID (OAUTHBEARER)", "AZURE_TENANT_ID")
        _required(storage.client_id, "client id for Entra ID (OAUTHBEARER)", "AZURE_CLIENT_ID")


def _required(value: str, what: str, variable: str) -> str:
    if not str(value).strip():
        raise SettingsError(f"azure profile: {what} is not set (set {variable})")
    return str(value).strip()


def _choice(value: str, allowed: tuple[str, ...], variable: str) -> str:
    if value not in allowed:
        raise SettingsError(f"{variable} must be one of {', '.join(allowed)}; got {value!r}")
    return value
