"""The ``azure`` profile provider, registered under the ``reelhouse.profiles`` entry point.

``profile.toml`` has the contract's shape (the same keys as the local profile);
``azure.toml`` says which namespace, account, vault and identities one deployment uses.
The secrets the chosen authentication modes need are resolved at run time, once per
process, and exist only in memory: in the Kafka options and Hadoop settings handed to
Spark, which redacts them (see ``spark.session``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from azure_profile.deployment import Deployment, load_deployment, signs_in_as_service_principal
from azure_profile.eventhubs import kafka_options
from azure_profile.storage import lake_url, storage_conf
from spark.settings import SettingsError, resolve_placeholders

PROFILE_FILE = Path(__file__).resolve().parent / "profile.toml"
SECRET_PROVIDERS = ("keyvault", "environment")


class AzureProfileProvider:
    """Builds the azure profile from ``profile.toml``, ``azure.toml`` and the secrets."""

    def raw_profile(self) -> Mapping[str, Any]:
        with PROFILE_FILE.open("rb") as handle:
            raw = resolve_placeholders(tomllib.load(handle))
        deployment = load_deployment()
        secrets = secret_source(raw["secrets"]["provider"], deployment)
        names = raw["secrets"]["names"]
        hubs, storage = deployment.eventhubs, deployment.storage
        client_secret = (
            secrets(names["client_secret"]) if signs_in_as_service_principal(deployment) else None
        )
        source, lake = raw["source"], raw["lake"]
        source["bootstrap_servers"] = hubs.bootstrap_servers
        source["kafka_options"] = kafka_options(
            hubs,
            connection_string=(
                secrets(names["eventhubs_connection_string"])
                if hubs.auth == "connection_string"
                else None
            ),
            client_secret=client_secret,
            tenant_id=storage.tenant_id,
            client_id=storage.client_id,
        )
        lake["root"] = lake_url(storage, "lake")
        lake["checkpoint_root"] = lake_url(storage, "_checkpoints")
        lake["storage_conf"] = storage_conf(
            storage,
            client_secret=client_secret if storage.auth == "service_principal" else None,
            account_key=(
                secrets(names["storage_account_key"]) if storage.auth == "account_key" else None
            ),
        )
        return raw


def secret_source(provider: str, deployment: Deployment):
    """A function name -> secret value for the configured provider (cached per process)."""
    if provider == "keyvault":
        vault = deployment.keyvault
        if not vault.url:
            raise SettingsError(
                "azure profile: Key Vault URL is not set (set REELHOUSE_KEYVAULT_URL)"
            )
        return _key_vault(vault.url, vault.ca_file or None, vault.identity).get
    if provider == "environment":
        return _environment_secret
    raise SettingsError(
        f"secrets provider {provider!r} is unknown; use one of {', '.join(SECRET_PROVIDERS)}"
        " (REELHOUSE_SECRETS_PROVIDER)"
    )


def environment_variable(secret_name: str) -> str:
    """``eventhubs-connection-string`` -> ``REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING``."""
    return "REELHOUSE_SECRET_" + secret_name.upper().replace("-", "_")


def _environment_secret(name: str) -> str:
    return resolve_placeholders("${" + environment_variable(name) + "}")


@cache
def _key_vault(url: str, ca_file: str | None, identity: str):
    from azure_profile.secrets import KeyVaultSecrets

    return KeyVaultSecrets(url, ca_file=ca_file, identity=identity)


PROVIDER = AzureProfileProvider()
