"""Key Vault secret resolution: what needs no vault (the vault itself: integration)."""

from __future__ import annotations

import pytest

from azure_profile.secrets import (
    KeyVaultSecrets,
    SecretResolutionError,
    credential_failure,
    credential_options,
    is_loopback,
)
from spark.settings import SettingsError
from tests.ports import silent_port

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("https://127.0.0.1:8443", True),
        ("https://localhost:8443/", True),
        ("https://[::1]:8443", True),
        ("https://reelhouse-kv.vault.azure.net", False),
        ("https://10.0.0.4", False),
    ],
)
def test_only_a_vault_on_this_machine_skips_the_challenge_resource_check(url, loopback):
    assert is_loopback(url) is loopback


class _Credential:
    """Counts token requests; a vault that is not there never gets one."""

    calls = 0

    def get_token(self, *scopes, **kwargs):
        self.calls += 1
        raise AssertionError("no token should be needed to find the vault down")


def test_an_unreachable_vault_fails_in_seconds_with_one_line_naming_it():
    secrets = KeyVaultSecrets("https://127.0.0.1:9", credential=_Credential())
    with pytest.raises(SecretResolutionError) as raised:
        secrets.get("eventhubs-connection-string")
    message = str(raised.value)
    assert raised.value.reason == "unreachable"
    assert "https://127.0.0.1:9" in message and "\n" not in message
    assert isinstance(raised.value, SettingsError)  # the runners' one-line error path


def test_a_vault_that_takes_the_connection_and_never_answers_is_named_after_two_waits(
    monkeypatch,
):
    monkeypatch.setattr("azure_profile.secrets.CONNECTION_TIMEOUT_S", 1)
    monkeypatch.setattr("azure_profile.secrets.READ_TIMEOUT_S", 1)
    with silent_port() as (port, accepted):
        url = f"https://127.0.0.1:{port}"
        with pytest.raises(SecretResolutionError) as raised:
            KeyVaultSecrets(url, credential=_Credential()).get("eventhubs-connection-string")
    assert raised.value.reason == "unreachable"
    assert str(raised.value).startswith(f"Key Vault {url} did not answer: ")
    assert len(accepted) == 2  # a read that timed out is tried again once, not twice


def test_the_vault_reader_is_handed_to_the_azure_sdk(monkeypatch):
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000002")
    assert credential_options("sdk") == {}  # the SDK's default: AZURE_CLIENT_ID
    # None, not absent: the SDK would otherwise take AZURE_CLIENT_ID for the identity.
    assert credential_options("system") == {
        "managed_identity_client_id": None,
        "workload_identity_client_id": "00000000-0000-0000-0000-000000000002",
        "exclude_environment_credential": True,
    }
    named = "5e1f0c1d-7a3b-4c2e-9d4f-0a1b2c3d4e5f"
    assert credential_options(named) == {
        "managed_identity_client_id": named,
        "workload_identity_client_id": named,
        "exclude_environment_credential": True,
    }


def _chain_failure(monkeypatch, *credentials) -> str:
    """``credential_failure`` of the SDK's own error when ``credentials``, chained as
    ``DefaultAzureCredential`` chains its own, all fail (no service principal, no CLI)."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ChainedTokenCredential

    for variable in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "PATH"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(ClientAuthenticationError) as failed:
        ChainedTokenCredential(*credentials).get_token("https://vault.azure.net/.default")
    return credential_failure(failed.value)


def test_a_chain_of_credentials_none_set_up_here_names_them_in_one_line(monkeypatch):
    from azure.identity import AzureCliCredential, EnvironmentCredential

    assert _chain_failure(monkeypatch, EnvironmentCredential(), AzureCliCredential()) == (
        "ChainedTokenCredential failed to retrieve a token from the included credentials;"
        " not set up here: EnvironmentCredential, AzureCliCredential"
    )
    # Any other error: its first line, as before.
    assert credential_failure(ValueError("first\nsecond")) == "first"


@pytest.mark.parametrize(
    ("reason", "kept"),
    [
        # azure-identity 1.27 on an Azure VM whose IMDS answers 400 (identity off, or not
        # the one named): worded "unavailable" too, and its reason is the one that matters.
        (
            "ManagedIdentityCredential authentication unavailable, no response from the IMDS"
            " endpoint. Token request error: (invalid_request) Identity not found",
            True,
        ),
        (
            "ManagedIdentityCredential authentication unavailable. No identity has been"
            " assigned to this resource. Error: Identity not found",
            True,
        ),
        # No metadata service at all: a host outside Azure.
        (
            "ManagedIdentityCredential authentication unavailable, no response from the IMDS"
            " endpoint.",
            False,
        ),
    ],
)
def test_a_managed_identity_the_host_lacks_keeps_its_reason(monkeypatch, reason, kept):
    from azure.identity import CredentialUnavailableError, EnvironmentCredential

    class ManagedIdentityCredential:  # the chain names a credential by its class
        def get_token(self, *scopes, **kwargs):
            raise CredentialUnavailableError(reason)

        def get_token_info(self, *scopes, **kwargs):
            return self.get_token(*scopes, **kwargs)

    chain = (EnvironmentCredential(), ManagedIdentityCredential())
    head = "ChainedTokenCredential failed to retrieve a token from the included credentials"
    assert _chain_failure(monkeypatch, *chain) == (
        f"{head}; ManagedIdentityCredential: {reason}; not set up here: EnvironmentCredential"
        if kept
        else f"{head}; not set up here: EnvironmentCredential, ManagedIdentityCredential"
    )
