"""``python -m azure_profile.preflight``: is this Azure deployment ready to run reelhouse?

One line per check, each failure with a hint how to fix it; checks that depend on a
failed one are skipped. Exit code 0 when every check passed, 1 otherwise. No traceback
unless ``--debug``. Secrets are fetched to be tested, never printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

from azure_profile.deployment import (
    VAULT_SDK,
    VAULT_SYSTEM,
    Deployment,
    load_deployment,
    signs_in_as_service_principal,
    vault_reader,
)
from azure_profile.eventhubs import kafka_options
from azure_profile.profile import PROFILE_FILE, SECRET_PROVIDERS, secret_source
from azure_profile.secrets import TOKEN_REQUEST_OPTIONS, credential_failure, first_line
from spark.settings import (
    DEFAULT_WORKSPACE,
    SettingsError,
    resolve_placeholders,
    selected_workspace,
)

CONNECT_TIMEOUT_S = 5.0
STORAGE_SCOPE = "https://storage.azure.com/.default"
# How to give the vault's reader (``keyvault.identity``) a login, per reader.
VAULT_LOGIN_HINTS = {
    VAULT_SDK: "run with an identity: a managed identity in Azure (a user-assigned one named by"
    " AZURE_CLIENT_ID), AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for a service"
    " principal, or `az login`",
    VAULT_SYSTEM: "turn on the host's system-assigned managed identity (or `az login` on a"
    " workstation), or name a user-assigned one with REELHOUSE_KEYVAULT_IDENTITY;"
    " REELHOUSE_KEYVAULT_IDENTITY=sdk lets AZURE_CLIENT_SECRET's service principal read it",
}
USER_ASSIGNED_LOGIN_HINT = (
    "assign the user-assigned identity {identity} to the host (or name another with"
    " REELHOUSE_KEYVAULT_IDENTITY)"
)
SECRET_ACCESS_HINTS = {
    "forbidden": "grant the identity the role 'Key Vault Secrets User' on the vault; if it"
    " has it, check the vault's network rules and that the secret is enabled",
    "unreachable": "check REELHOUSE_KEYVAULT_URL and the vault's network access rules",
}


class CheckFailed(RuntimeError):
    """A check failed: ``str()`` says what, ``hint`` how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class CheckResult:
    name: str
    status: str  # ok | FAIL | skip
    detail: str
    hint: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text} (fix: {self.hint})" if self.hint else text


@dataclass
class Preflight:
    """The checks, run in order; a check's prerequisites must have passed."""

    debug: bool = False
    workspace: str = DEFAULT_WORKSPACE
    results: list[CheckResult] = field(default_factory=list)
    deployment: Deployment | None = None
    secret_names: dict[str, str] = field(default_factory=dict)
    secrets_provider: str = ""
    secrets: dict[str, str] = field(default_factory=dict)

    def run(self) -> list[CheckResult]:
        self._check("configuration", [], self._configuration)
        self._check("key vault", ["configuration"], self._key_vault)
        self._check("secrets", ["key vault"], self._secrets)
        self._check("event hubs reachable", ["configuration"], self._event_hubs_reachable)
        self._check(
            "event hubs sasl handshake", ["event hubs reachable", "secrets"], self._kafka_handshake
        )
        self._check("event hub", ["event hubs sasl handshake"], self._event_hub)
        self._check("storage reachable", ["configuration"], self._storage_reachable)
        self._check("lake container", ["storage reachable", "secrets"], self._container)
        return self.results

    @property
    def passed(self) -> bool:
        return all(result.status == "ok" for result in self.results)

    def _check(self, name: str, needs: list[str], action: Callable[[], str]) -> None:
        failed = [
            result.name for result in self.results if result.name in needs and result.status != "ok"
        ]
        if failed:
            self.results.append(CheckResult(name, "skip", f"needs {', '.join(failed)}"))
            return
        try:
            detail = action()
        except CheckFailed as failure:
            self.results.append(CheckResult(name, "FAIL", str(failure), failure.hint))
        except Exception as error:  # an unexpected failure is still one line
            if self.debug:
                traceback.print_exc()
            message = " ".join(str(error).split())[:300] or type(error).__name__
            self.results.append(CheckResult(name, "FAIL", message, "rerun with --debug"))
        else:
            self.results.append(CheckResult(name, "ok", detail))

    # -- the checks --------------------------------------------------------------------
    def _configuration(self) -> str:
        import tomllib

        try:
            self.deployment = load_deployment()
            with PROFILE_FILE.open("rb") as handle:
                secrets = resolve_placeholders(tomllib.load(handle))["secrets"]
        except SettingsError as error:
            hint = "set the variable named, see README 'Running on Azure'"
            raise CheckFailed(str(error), hint) from None
        self.secrets_provider = secrets["provider"]
        self.secret_names = self._needed_secrets(dict(secrets["names"]))
        hubs, storage = self.deployment.eventhubs, self.deployment.storage
        if storage.auth == "managed_identity":
            _check_imds_identity()
        return (
            f"namespace {hubs.namespace} ({hubs.auth}), account {storage.account}"
            f"/{storage.container} ({storage.auth}), secrets from {self.secrets_provider}"
        )

    def _needed_secrets(self, names: dict[str, str]) -> dict[str, str]:
        hubs, storage = self.deployment.eventhubs, self.deployment.storage
        needed = {}
        if hubs.auth == "connection_string":
            needed["eventhubs_connection_string"] = names["eventhubs_connection_string"]
        if signs_in_as_service_principal(self.deployment):
            needed["client_secret"] = names["client_secret"]
        if storage.auth == "account_key":
            needed["storage_account_key"] = names["storage_account_key"]
        return needed

    def _key_vault(self) -> str:
        if self.secrets_provider not in SECRET_PROVIDERS:
            raise CheckFailed(
                f"secrets provider {self.secrets_provider!r} is unknown",
                f"set REELHOUSE_SECRETS_PROVIDER to one of {', '.join(SECRET_PROVIDERS)}",
            )
        if self.secrets_provider != "keyvault":
            return f"not used (secrets from {self.secrets_provider})"
        url = self.deployment.keyvault.url
        if not url:
            raise CheckFailed("Key Vault URL is not set", "set REELHOUSE_KEYVAULT_URL")
        parsed = urlparse(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise CheckFailed(
                f"Key Vault URL {url!r} is not an https URL", "use https://<vault>.vault.azure.net"
            )
        _reach(parsed.hostname, parsed.port or 443, "Key Vault")
        return f"{url} reachable; read as {vault_reader(self.deployment.keyvault.identity)}"

    def _vault_login_hint(self) -> str:
        identity = self.deployment.keyvault.identity
        if identity in VAULT_LOGIN_HINTS:
            return VAULT_LOGIN_HINTS[identity]
        return USER_ASSIGNED_LOGIN_HINT.format(identity=identity)

    def _secrets(self) -> str:
        try:
            lookup = secret_source(self.secrets_provider, self.deployment)
        except SettingsError as error:
            raise CheckFailed(str(error), "set REELHOUSE_SECRETS_PROVIDER") from None
        missing = []
        for purpose, name in self.secret_names.items():
            try:
                self.secrets[purpose] = lookup(name)
            except Exception as error:  # SettingsError or SecretResolutionError: one line
                reason = getattr(error, "reason", "missing")
                if reason == "authentication":  # the same for every secret: say it once
                    raise CheckFailed(str(error), self._vault_login_hint()) from None
                if reason in SECRET_ACCESS_HINTS:
                    raise CheckFailed(str(error), SECRET_ACCESS_HINTS[reason]) from None
                missing.append(f"{name}: {' '.join(str(error).split())}")
        if missing:
            raise CheckFailed(
                "; ".join(missing),
                "set REELHOUSE_SECRET_<NAME> for each (the name upper-cased, - as _)"
                if self.secrets_provider == "environment"
                else "create the secret: az keyvault secret set --vault-name <vault> --name <name>",
            )
        return f"{len(self.secret_names)} present ({', '.join(self.secret_names.values())})"

    def _event_hubs_reachable(self) -> str:
        hubs = self.deployment.eventhubs
        for address in hubs.bootstrap_servers.split(","):  # host:port each (the settings)
            host, _, port = address.strip().rpartition(":")
            _reach(host, int(port), f"Event Hubs namespace {hubs.namespace}")
        return f"{hubs.bootstrap_servers} reachable"

    def _kafka_handshake(self) -> str:
        from azure_profile.kafka_check import (
            KafkaCheckError,
            KafkaTlsError,
            KafkaUnreachable,
            check_kafka_sasl,
        )

        hubs, storage = self.deployment.eventhubs, self.deployment.storage
        try:
            options = kafka_options(
                hubs,
                connection_string=self.secrets.get("eventhubs_connection_string"),
                client_secret=self.secrets.get("client_secret"),
                tenant_id=storage.tenant_id,
                client_id=storage.client_id,
            )
        except SettingsError as error:
            raise CheckFailed(str(error), "store the namespace's connection string") from None
        try:
            check_kafka_sasl(
                {"bootstrap.servers": hubs.bootstrap_servers, **options}, hubs.namespace
            )
        except KafkaUnreachable as error:
            raise CheckFailed(
                str(error),
                "check the namespace's networking (public access or a private endpoint, its"
                " firewall) and that this host may connect out on port 9093",
            ) from None
        except KafkaTlsError as error:
            raise CheckFailed(
                str(error),
                "trust the endpoint's certificate authority (the system's, or a PEM file in"
                " REELHOUSE_EVENTHUBS_TRUSTSTORE_PEM)",
            ) from None
        except KafkaCheckError as error:
            raise CheckFailed(
                str(error),
                "copy the namespace's connection string (Shared access policies) into the secret"
                if hubs.auth == "connection_string"
                else "check AZURE_TENANT_ID, AZURE_CLIENT_ID and the client secret, and give the"
                " service principal the Azure Event Hubs Data Sender and Receiver roles",
            ) from None
        mechanism = "PLAIN" if hubs.auth == "connection_string" else "OAUTHBEARER"
        return f"SASL {mechanism} accepted by namespace {hubs.namespace}"

    def _connection_string_hub(self) -> str | None:
        """The one event hub the connection string is for (its ``EntityPath``), if any."""
        from azure_profile.eventhubs import parse_connection_string

        connection_string = self.secrets.get("eventhubs_connection_string")
        if self.deployment.eventhubs.auth != "connection_string" or not connection_string:
            return None
        return parse_connection_string(connection_string).entity_path

    def _event_hub(self) -> str:
        from azure_profile.kafka_check import (
            EventHubForbidden,
            EventHubMissing,
            KafkaCheckError,
            event_hub_partitions,
        )
        from spark.settings import load_profile

        hubs = self.deployment.eventhubs
        # The workspace's event hub and Kafka options exactly as the jobs get them.
        try:
            source = load_profile("azure", self.workspace).source
            source.check_starting_offsets()
        except SettingsError as error:
            raise CheckFailed(str(error), "see README 'Running on Azure'") from None
        scoped = self._connection_string_hub()
        if scoped is not None and scoped.lower() != source.topic.lower():  # as Event Hubs
            raise CheckFailed(
                f"the Event Hubs connection string is for event hub {scoped!r} (EntityPath),"
                f" the workspace reads {source.topic!r}: Event Hubs refuses it any other",
                "use a namespace-level policy's connection string, or one of event hub"
                f" {source.topic}",
            )
        try:
            partitions = event_hub_partitions(source.client_options(), source.topic, hubs.namespace)
        except EventHubMissing as error:
            raise CheckFailed(
                str(error),
                "create it: az eventhubs eventhub create --resource-group <group>"
                f" --namespace-name {hubs.namespace} --name {source.topic} --partition-count 4;"
                " or check --workspace and REELHOUSE_EVENTHUB",
            ) from None
        except EventHubForbidden as error:
            raise CheckFailed(
                str(error),
                "use a connection string of a policy with Listen and Send"
                if hubs.auth == "connection_string"
                else "give the identity the Azure Event Hubs Data Receiver and Sender roles"
                " on the namespace or the event hub",
            ) from None
        except KafkaCheckError as error:
            raise CheckFailed(str(error), "rerun with --debug") from None
        return f"{source.topic}: {partitions} partitions, readable"

    def _storage_reachable(self) -> str:
        storage = self.deployment.storage
        host, port = _storage_address(self.deployment)
        _reach(host, port, f"storage account {storage.account}")
        return f"{host}:{port} reachable"

    def _container(self) -> str:
        from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

        storage = self.deployment.storage
        credential = self._storage_credential()
        if storage.auth == "account_key":
            refused_hint = (
                f"check the account key secret ({self.secret_names['storage_account_key']}):"
                f" it must be one of account {storage.account}'s two access keys"
            )
        else:
            self._storage_sign_in(credential)
            refused_hint = "give the identity 'Storage Blob Data Contributor' on the account"
        try:
            exists = self._container_exists(credential)
        except ClientAuthenticationError as error:  # 403 AuthenticationFailed: a wrong key
            raise CheckFailed(
                f"storage account {storage.account} refused the credentials ({first_line(error)})",
                refused_hint,
            ) from None
        except HttpResponseError as error:
            if error.status_code == 403:  # AuthorizationPermissionMismatch: no role
                raise CheckFailed(
                    f"storage account {storage.account} refused the credentials"
                    f" ({first_line(error)})",
                    refused_hint,
                ) from None
            raise CheckFailed(
                f"storage account {storage.account}: {first_line(error)}",
                "check REELHOUSE_ADLS_ACCOUNT and the identity's role assignments",
            ) from None
        except AzureError as error:
            raise CheckFailed(
                f"storage account {storage.account}: {first_line(error)}",
                "check REELHOUSE_ADLS_ACCOUNT and the identity's role assignments",
            ) from None
        if not exists:
            raise CheckFailed(
                f"container {storage.container!r} does not exist in account {storage.account}",
                f"create it: az storage container create -n {storage.container}"
                f" --account-name {storage.account} --auth-mode login",
            )
        return f"container {storage.container} present"

    def _storage_sign_in(self, credential) -> None:
        """A token for the lake, before the lake is asked: a login that Entra ID (or the
        host's identity endpoint) refuses is named as such, not as the account's refusal."""
        from azure.core.exceptions import ClientAuthenticationError

        storage = self.deployment.storage
        if storage.auth == "service_principal":
            who = f"the service principal {storage.client_id}"
            hint = (
                f"check the client secret ({self.secret_names['client_secret']}), AZURE_CLIENT_ID"
                " and AZURE_TENANT_ID"
            )
        else:
            who = f"the managed identity {storage.client_id or '(system-assigned)'}"
            hint = (
                "check that the host has this identity (AZURE_CLIENT_ID names a user-assigned"
                " one; unset, the system-assigned one)"
            )
        try:
            credential.get_token(STORAGE_SCOPE)
        except ClientAuthenticationError as error:
            raise CheckFailed(
                f"storage account {storage.account}: {who} cannot sign in"
                f" ({credential_failure(error)})",
                hint,
            ) from None

    def _container_exists(self, credential) -> bool:
        """Asked through the API Spark's lake driver speaks: on Azure the DFS endpoint
        (hadoop-azure's ``abfss://``), listing one path of the container, which also needs
        the identity's read role; on an emulator (Azurite serves no DFS) the Blob API."""
        storage = self.deployment.storage
        options = {
            "credential": credential,
            "connection_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": 10,
            "retry_total": 0,
        }
        if storage.emulator_endpoint:
            from azure.storage.blob import ContainerClient

            host, port = _storage_address(self.deployment)
            account_url = f"http://{host}:{port}/{storage.account}"
            return ContainerClient(account_url, storage.container, **options).exists()
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.filedatalake import FileSystemClient

        client = FileSystemClient(f"https://{storage.dfs_host}", storage.container, **options)
        try:
            next(iter(client.get_paths(recursive=False, max_results=1)), None)
        except ResourceNotFoundError:  # FilesystemNotFound: the root of none
            return False
        return True

    def _storage_credential(self):
        storage = self.deployment.storage
        if storage.auth == "account_key":
            from azure.core.credentials import AzureNamedKeyCredential

            return AzureNamedKeyCredential(storage.account, self.secrets["storage_account_key"])
        if storage.auth == "service_principal":
            from azure.identity import ClientSecretCredential

            return ClientSecretCredential(
                storage.tenant_id,
                storage.client_id,
                self.secrets["client_secret"],
                **TOKEN_REQUEST_OPTIONS,
            )
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(
            client_id=storage.client_id or None, **TOKEN_REQUEST_OPTIONS
        )


# Where a host gives its managed identity other than through the instance metadata
# service (IMDS): App Service, Functions and Container Apps (IDENTITY_ENDPOINT), AKS
# workload identity (a federated token file).
_NON_IMDS_IDENTITY = {
    "IDENTITY_ENDPOINT": "App Service, Functions, Container Apps, Arc and Service Fabric",
    "MSI_ENDPOINT": "Cloud Shell and Azure Machine Learning",
    "AZURE_FEDERATED_TOKEN_FILE": "AKS workload identity",
}


def _check_imds_identity() -> None:
    """hadoop-azure's managed identity (``MsiTokenProvider``) asks IMDS alone
    (169.254.169.254), which a VM, a scale set or an AKS node has. The Python SDK the
    other checks use also finds the identities given otherwise, so they would pass where
    Spark cannot sign in to the lake: refused here instead."""
    for variable, host in _NON_IMDS_IDENTITY.items():
        if os.environ.get(variable):
            raise CheckFailed(
                f"{variable} is set: this host gives its managed identity as {host} do,"
                " which Spark's lake driver (hadoop-azure's MsiTokenProvider, IMDS only)"
                " cannot use",
                "set REELHOUSE_ADLS_AUTH=service_principal (or account_key) here, or run on a"
                " VM, scale set or AKS node identity",
            )


def _storage_address(deployment: Deployment) -> tuple[str, int]:
    storage = deployment.storage
    if storage.emulator_endpoint:
        host, _, port = storage.emulator_endpoint.rpartition(":")
        return host, int(port)
    return storage.dfs_host, 443  # Spark's lake driver speaks DFS


def _reach(host: str, port: int, what: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return
    except socket.gaierror:
        raise CheckFailed(
            f"{what}: host {host} is not known (DNS)",
            "check the name; from a private network, check the private DNS zone",
        ) from None
    except TimeoutError:
        raise CheckFailed(
            f"{what}: {host}:{port} did not answer within {CONNECT_TIMEOUT_S:.0f}s",
            "check firewall rules / network access of the resource",
        ) from None
    except OSError as error:
        raise CheckFailed(
            f"{what}: cannot connect to {host}:{port} ({error.strerror or error})",
            "check the address and that the service runs",
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m azure_profile.preflight", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    parser.add_argument(
        "--workspace", help="whose event hub to check (default: REELHOUSE_WORKSPACE, or main)"
    )
    args = parser.parse_args(argv)
    try:
        workspace = selected_workspace(args.workspace)
    except SettingsError as error:
        parser.error(str(error))
    # The Azure and Kafka clients log each failed attempt over many lines; the checks'
    # one-line results say it all (--debug shows everything).
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.CRITICAL)
    # kafka-python logs every request it sends at DEBUG, the SASL login's connection string
    # (and its key) among them: never below INFO, --debug or not.
    logging.getLogger("kafka").setLevel(max(logging.getLogger().level, logging.INFO))
    preflight = Preflight(debug=args.debug, workspace=workspace)
    for result in preflight.run():
        print(result.line())
    failed = sum(result.status == "FAIL" for result in preflight.results)
    print("preflight passed" if preflight.passed else f"preflight failed: {failed} check(s)")
    return 0 if preflight.passed else 1


if __name__ == "__main__":
    sys.exit(main())
