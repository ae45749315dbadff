"""ADLS Gen2: lake paths and hadoop-azure (ABFS) settings per authentication mode."""

from __future__ import annotations

from azure_profile.deployment import StorageSettings
from spark.settings import BLOB_SERVICE_TYPE, SettingsError

CLIENT_CREDENTIALS_PROVIDER = "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider"
MANAGED_IDENTITY_PROVIDER = "org.apache.hadoop.fs.azurebfs.oauth2.MsiTokenProvider"


def lake_url(settings: StorageSettings, path: str = "") -> str:
    """``abfss://<container>@<account>.dfs.core.windows.net/<path>`` (``abfs://`` on an
    emulator, which speaks plain http)."""
    scheme = "abfs" if settings.emulator_endpoint else "abfss"
    suffix = path.strip("/")
    return f"{scheme}://{settings.container}@{settings.dfs_host}/{suffix}".rstrip("/")


def storage_conf(
    settings: StorageSettings, client_secret: str | None = None, account_key: str | None = None
) -> dict[str, str]:
    """Hadoop settings (``fs.azure.*``, scoped to the account) for the chosen auth mode."""
    host = settings.dfs_host
    conf: dict[str, str] = {}
    if settings.auth == "service_principal":
        if not client_secret:
            raise SettingsError("the service principal's client secret is empty")
        conf |= {
            f"fs.azure.account.auth.type.{host}": "OAuth",
            f"fs.azure.account.oauth.provider.type.{host}": CLIENT_CREDENTIALS_PROVIDER,
            f"fs.azure.account.oauth2.client.id.{host}": settings.client_id,
            f"fs.azure.account.oauth2.client.secret.{host}": client_secret,
            f"fs.azure.account.oauth2.client.endpoint.{host}": (
                f"https://login.microsoftonline.com/{settings.tenant_id}/oauth2/token"
            ),
        }
    elif settings.auth == "managed_identity":
        conf |= {
            f"fs.azure.account.auth.type.{host}": "OAuth",
            f"fs.azure.account.oauth.provider.type.{host}": MANAGED_IDENTITY_PROVIDER,
        }
        if settings.tenant_id:
            conf[f"fs.azure.account.oauth2.msi.tenant.{host}"] = settings.tenant_id
        if settings.client_id:  # a user-assigned identity; empty: the system-assigned one
            conf[f"fs.azure.account.oauth2.client.id.{host}"] = settings.client_id
    else:
        if not account_key:
            raise SettingsError("the storage account key is empty")
        conf |= {
            f"fs.azure.account.auth.type.{host}": "SharedKey",
            f"fs.azure.account.key.{host}": account_key,
        }
    if settings.emulator_endpoint:
        # An emulator (Azurite) serves the Blob API over http on host:port, no DFS API.
        conf |= {
            "fs.azure.abfs.endpoint": settings.emulator_endpoint,
            "fs.azure.always.use.https": "false",
            "fs.azure.networking.library": "JDK_HTTP_URL_CONNECTION",
            BLOB_SERVICE_TYPE: "BLOB",
            "fs.azure.account.hns.enabled": "false",
        }
    return conf
