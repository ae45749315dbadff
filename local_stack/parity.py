"""The azure profile pointed at this machine's stack: its variables and its vault's secrets.

The Event-Hubs-like listener (``eventhubs.py``), Azurite and the local Key Vault
(``keyvault.py``) stand in for Event Hubs, ADLS and Key Vault; this module says how the
azure profile reaches them, for the parity tests and for ``python -m local_stack azure-env``.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

from local_stack import eventhubs
from local_stack.settings import EMULATOR_KEY, StackSettings
from local_stack.tls import tls_material

# The azure profile's lake on this machine: a container of its own, so that its tables
# and checkpoints never mix with the local profile's (container "lake").
AZURE_CONTAINER = "azure-parity"
# The azure profile's default secret names (azure_profile/profile.toml).
SECRET_NAMES = {
    "eventhubs_connection_string": "eventhubs-connection-string",
    "storage_account_key": "adls-account-key",
}


def azure_environment(settings: StackSettings, container: str) -> dict[str, str]:
    """The azure profile's variables for the local stack (no secret values among them)."""
    certificate = str(tls_material(settings).certificate)
    return {
        "REELHOUSE_EVENTHUBS_NAMESPACE": eventhubs.local_namespace(settings),
        "REELHOUSE_EVENTHUBS_BOOTSTRAP": eventhubs.bootstrap_servers(settings),
        "REELHOUSE_EVENTHUBS_TRUSTSTORE_PEM": certificate,
        "REELHOUSE_ADLS_ACCOUNT": settings.azurite.account,
        "REELHOUSE_ADLS_CONTAINER": container,
        "REELHOUSE_ADLS_AUTH": "account_key",  # Azurite has no OAuth
        "REELHOUSE_ADLS_EMULATOR_ENDPOINT": f"{settings.azurite.host}:{settings.azurite.blob_port}",
        "REELHOUSE_KEYVAULT_URL": settings.keyvault.url,
        "REELHOUSE_KEYVAULT_CA_FILE": certificate,
        "REELHOUSE_SECRETS_PROVIDER": "keyvault",
        "IDENTITY_ENDPOINT": settings.keyvault.identity_endpoint,
    }


class LocalIdentity:
    """A token credential from the local managed-identity endpoint, for seeding the vault.

    The azure profile itself never uses this: it reads through ``DefaultAzureCredential``,
    which finds the same endpoint through ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``.
    """

    def __init__(self, endpoint: str, header: str) -> None:
        self.endpoint = endpoint
        self.header = header

    def get_token(self, *scopes: str, **_: object):
        from azure.core.credentials import AccessToken

        resource = scopes[0].removesuffix("/.default")
        query = urllib.parse.urlencode({"api-version": "2019-08-01", "resource": resource})
        request = urllib.request.Request(
            f"{self.endpoint}?{query}", headers={"X-IDENTITY-HEADER": self.header}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.load(response)
        return AccessToken(answer["access_token"], int(answer["expires_on"]))


def secret_client(settings: StackSettings, identity_header: str):
    """A ``SecretClient`` on the local vault, as an operator's ``az keyvault`` would be."""
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        settings.keyvault.url,
        LocalIdentity(settings.keyvault.identity_endpoint, identity_header),
        connection_verify=str(tls_material(settings).certificate),
        verify_challenge_resource=False,
        retry_total=1,
    )


def store_local_secrets(client, settings: StackSettings) -> list[str]:
    """Put the local stack's secrets into the vault under the azure profile's names."""
    values = {
        SECRET_NAMES["eventhubs_connection_string"]: eventhubs.ensure_connection_string(settings),
        SECRET_NAMES["storage_account_key"]: EMULATOR_KEY,
    }
    for name, value in values.items():
        client.set_secret(name, value)
    return sorted(values)
