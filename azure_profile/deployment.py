"""One Azure deployment's values (``azure.toml``), validated into typed settings."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from spark.settings import SettingsError, resolve_placeholders

DEPLOYMENT_FILE = Path(__file__).resolve().parent / "azure.toml"

EVENTHUBS_AUTH = ("connection_string", "entra_id")
LOGIN_MODULES = ("open_source", "databricks")
STORAGE_AUTH = ("service_principal", "managed_identity", "account_key")
# Who reads Key Vault (REELHOUSE_KEYVAULT_IDENTITY): the host's system-assigned managed
# identity, the Azure SDK's own choice from the environment, or a client id.
VAULT_SYSTEM = "system"
VAULT_SDK = "sdk"

_NAMESPACE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_CLIENT_ID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


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
    # VAULT_SYSTEM, VAULT_SDK or a user-assigned (managed or workload) identity's client id.
    identity: str = VAULT_SDK


def vault_reader(identity: str) -> str:
    """Who reads the vault, in words (for messages)."""
    if identity == VAULT_SYSTEM:
        return "the host's system-assigned managed identity (or `az login`)"
    if identity == VAULT_SDK:
        return "the Azure SDK's default identity (AZURE_CLIENT_ID names a user-assigned one)"
    return f"the user-assigned identity {identity}"


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
            bootstrap_servers=_bootstrap(hubs["bootstrap_servers"])
            or f"{namespace}.servicebus.windows.net:9093",
            auth=_choice(hubs["auth"], EVENTHUBS_AUTH, "REELHOUSE_EVENTHUBS_AUTH"),
            login_module=_choice(
                hubs["login_module"], LOGIN_MODULES, "REELHOUSE_KAFKA_LOGIN_MODULE"
            ),
            # Not checked here: Spark's executors read it, and may hold files the driver
            # does not (the preflight, on the driver, names one it cannot read).
            truststore_pem=str(hubs["truststore_pem"]).strip(),
        ),
        storage=StorageSettings(
            account=account,
            container=container,
            auth=_choice(storage["auth"], STORAGE_AUTH, "REELHOUSE_ADLS_AUTH"),
            tenant_id=storage["tenant_id"],
            client_id=storage["client_id"],
            emulator_endpoint=_host_port(
                storage["emulator_endpoint"], "REELHOUSE_ADLS_EMULATOR_ENDPOINT"
            ),
        ),
        keyvault=KeyVaultSettings(
            url=vault["url"].rstrip("/"),
            ca_file=_existing_file(vault["ca_file"], "REELHOUSE_KEYVAULT_CA_FILE"),
        ),
    )
    _check_identities(settings)
    return replace(
        settings,
        keyvault=replace(settings.keyvault, identity=_vault_identity(vault["identity"], settings)),
    )


def signs_in_as_service_principal(settings: Deployment) -> bool:
    """AZURE_CLIENT_ID names a service principal (an app registration whose secret,
    ``client_secret``, the deployment needs), not a managed identity."""
    return settings.storage.auth == "service_principal" or settings.eventhubs.auth == "entra_id"


def _vault_identity(value: str, settings: Deployment) -> str:
    """Who reads Key Vault: REELHOUSE_KEYVAULT_IDENTITY, else the system-assigned identity
    when AZURE_CLIENT_ID names the service principal (the Azure SDK would ask the host for
    a managed identity of that id, which no host has), else the SDK's own choice."""
    value = value.strip()
    if not value:
        return VAULT_SYSTEM if signs_in_as_service_principal(settings) else VAULT_SDK
    if value in (VAULT_SYSTEM, VAULT_SDK) or _CLIENT_ID.match(value):
        return value
    raise SettingsError(
        f"REELHOUSE_KEYVAULT_IDENTITY must be {VAULT_SYSTEM!r}, {VAULT_SDK!r} or a"
        f" user-assigned identity's client id (a GUID); got {value!r}"
    )


def _check_identities(settings: Deployment) -> None:
    storage = settings.storage
    if storage.auth == "service_principal":
        _required(storage.tenant_id, "tenant id for the service principal", "AZURE_TENANT_ID")
        _required(storage.client_id, "client id of the service principal", "AZURE_CLIENT_ID")
    if settings.eventhubs.auth == "entra_id":
        _required(storage.tenant_id, "tenant id for Entra ID (OAUTHBEARER)", "AZURE_TENANT_ID")
        _required(storage.client_id, "client id for Entra ID (OAUTHBEARER)", "AZURE_CLIENT_ID")
        if storage.auth == "managed_identity":
            # One AZURE_CLIENT_ID cannot name both: OAUTHBEARER signs in with a secret,
            # which a managed identity does not have.
            raise SettingsError(
                "REELHOUSE_EVENTHUBS_AUTH=entra_id signs in as the service principal"
                " AZURE_CLIENT_ID, which REELHOUSE_ADLS_AUTH=managed_identity would take for a"
                " managed identity: use REELHOUSE_ADLS_AUTH=service_principal (the same"
                " principal) or account_key"
            )


def _required(value: str, what: str, variable: str) -> str:
    if not str(value).strip():
        raise SettingsError(f"azure profile: {what} is not set (set {variable})")
    return str(value).strip()


def _host_port(value: str, variable: str, example: str = "127.0.0.1:10000") -> str:
    """``""`` (not set) or ``host:port``, the port a number from 1 to 65535."""
    value = str(value).strip()
    if not value:
        return ""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{variable} must look like host:port ({example}); got {value!r}")
    return value


def _bootstrap(value: str) -> str:
    """``""`` (the namespace's endpoint) or ``host:port,...``: Spark's Kafka client refuses
    a server without its port."""
    value = str(value).strip()
    for address in value.split(",") if value else ():
        if not address.strip() or any(space.isspace() for space in address.strip()):
            raise SettingsError(
                f"REELHOUSE_EVENTHUBS_BOOTSTRAP lists an empty server or one with a space in"
                f" its name: {value!r}"
            )
        _host_port(
            address, "REELHOUSE_EVENTHUBS_BOOTSTRAP", "<namespace>.servicebus.windows.net:9093"
        )
    return value


def _existing_file(value: str, variable: str) -> str:
    """``""`` (not set) or the path of a file that exists on the driver (a certificate
    its client loads only when it first connects, by then far from the setting)."""
    value = str(value).strip()
    if value and not Path(value).is_file():
        raise SettingsError(f"{variable} names {value!r}, which is not a file")
    return value


def _choice(value: str, allowed: tuple[str, ...], variable: str) -> str:
    if value not in allowed:
        raise SettingsError(f"{variable} must be one of {', '.join(allowed)}; got {value!r}")
    return value
