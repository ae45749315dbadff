"""Secrets from Azure Key Vault, resolved at run time and cached for the run.

``DefaultAzureCredential`` finds the identity the code runs as (a managed identity in
Azure, a service principal from ``AZURE_*`` variables, or a developer's ``az login``);
``azure-keyvault-secrets`` reads the secrets. Which managed identity reads the vault is
the deployment's ``keyvault.identity`` (``credential_options``), not necessarily
AZURE_CLIENT_ID: that can name the service principal whose secret the vault holds.
Values live only in this process's memory: never written to disk, never logged (errors
name the secret, never its value).
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlparse

from azure_profile.deployment import VAULT_SDK, VAULT_SYSTEM, vault_reader
from spark.settings import SettingsError

# Key Vault answers in milliseconds; a vault that does not answer in seconds is down.
CONNECTION_TIMEOUT_S = 5
READ_TIMEOUT_S = 10
RETRIES = 2
# An identity's token request (Entra ID, a managed identity's endpoint): without these the
# SDK waits up to 300 s a try, three times over, for an endpoint that takes the
# connection and never answers. Only a connection or a read that failed is tried once
# more: the answers the SDK waits out stay its own (IMDS's 410 while a VM boots, ~70 s).
TOKEN_REQUEST_OPTIONS = {
    "connection_timeout": CONNECTION_TIMEOUT_S,
    "read_timeout": READ_TIMEOUT_S,
    "retry_connect": 1,
    "retry_read": 1,
}


class SecretResolutionError(SettingsError):
    """A secret could not be read; the message names the secret and the vault, not a value.

    ``reason`` is one of ``missing``, ``authentication``, ``forbidden``, ``unreachable``,
    ``refused``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyVaultSecrets:
    """Read secrets by name from one vault; each is fetched once per process."""

    def __init__(
        self,
        url: str,
        credential=None,
        ca_file: str | None = None,
        identity: str = VAULT_SDK,
    ) -> None:
        self.url = url.rstrip("/")
        self._credential = credential
        self._ca_file = ca_file
        self._identity = identity
        self._client = None
        self._values: dict[str, str] = {}

    def get(self, name: str) -> str:
        """The current value of secret ``name``."""
        if name not in self._values:
            self._values[name] = self._fetch(name)
        return self._values[name]

    def _fetch(self, name: str) -> str:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            secret = self._secret_client().get_secret(name)
        except ResourceNotFoundError:
            raise SecretResolutionError(
                f"secret {name!r} does not exist in Key Vault {self.url}", "missing"
            ) from None
        except ClientAuthenticationError as error:
            raise SecretResolutionError(
                f"cannot authenticate to Key Vault {self.url} to read secret {name!r}"
                f" as {vault_reader(self._identity)}: {credential_failure(error)}",
                "authentication",
            ) from None
        except ServiceRequestError as error:
            raise SecretResolutionError(
                f"Key Vault {self.url} is unreachable: {first_line(error)}", "unreachable"
            ) from None
        except ServiceResponseError as error:  # connected, and no answer in time
            raise SecretResolutionError(
                f"Key Vault {self.url} did not answer: {first_line(error)}", "unreachable"
            ) from None
        except HttpResponseError as error:
            if error.status_code == 403:  # a role, the vault's firewall, a disabled secret
                raise SecretResolutionError(
                    f"Key Vault {self.url} refused to let the identity read secret {name!r}:"
                    f" {first_line(error)}",
                    "forbidden",
                ) from None
            raise SecretResolutionError(
                f"Key Vault {self.url} refused secret {name!r}: HTTP {error.status_code}"
                f" {first_line(error)}",
                "refused",
            ) from None
        if not secret.value:
            raise SecretResolutionError(
                f"secret {name!r} in Key Vault {self.url} is empty", "missing"
            )
        return secret.value

    def _secret_client(self):
        if self._client is None:
            from azure.identity import DefaultAzureCredential
            from azure.keyvault.secrets import SecretClient

            options = {
                "retry_total": RETRIES,
                # A vault that takes the connection and never answers is named after two
                # read timeouts (20 s), not three of 15 s; a reset read is tried again once.
                "retry_read": 1,
                "connection_timeout": CONNECTION_TIMEOUT_S,
                "read_timeout": READ_TIMEOUT_S,
                # A vault on this machine (parity tests) has an IP-address host that the
                # SDK's check of the challenge's resource domain cannot match; its tokens
                # never leave the machine. Every other vault keeps the check.
                "verify_challenge_resource": not is_loopback(self.url),
            }
            if self._ca_file:
                options["connection_verify"] = self._ca_file
            credential = self._credential or DefaultAzureCredential(
                **credential_options(self._identity), **TOKEN_REQUEST_OPTIONS
            )
            self._client = SecretClient(self.url, credential, **options)
        return self._client


def credential_options(identity: str) -> dict:
    """``DefaultAzureCredential``'s arguments for the identity that reads the vault.

    The SDK takes AZURE_CLIENT_ID for the managed identity's client id unless told
    otherwise; ``None`` means the system-assigned identity. A workload identity (AKS)
    keeps the environment's client id unless one is named. A named reader leaves out the
    SDK's environment credential (AZURE_CLIENT_SECRET): the vault is read as the reader
    named, or a developer's ``az login``, never as the lake's service principal.
    """
    if identity == VAULT_SDK:
        return {}
    # A service principal in AZURE_CLIENT_SECRET (or a certificate) comes first in the SDK's
    # chain: it would read the vault instead of the identity named, and preflight would
    # name the wrong one to grant a role.
    if identity == VAULT_SYSTEM:
        return {
            "managed_identity_client_id": None,
            "workload_identity_client_id": os.environ.get("AZURE_CLIENT_ID"),
            "exclude_environment_credential": True,
        }
    return {
        "managed_identity_client_id": identity,
        "workload_identity_client_id": identity,
        "exclude_environment_credential": True,
    }


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is this machine (localhost or a loopback address)."""
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def first_line(error: BaseException) -> str:
    """An error's first line with its whitespace collapsed (the SDKs' messages run over
    many lines), or the error's type when it says nothing."""
    text = str(getattr(error, "message", None) or error).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(error).__name__


# How azure-identity words a credential that found nothing to use on this host (no
# variables, no CLI, no package, no identity endpoint), as against one that was tried and
# failed, whose reason is kept: "authentication unavailable" alone is not enough, IMDS's
# "No identity has been assigned to this resource" is worded so too.
_NOT_SET_UP = (
    "not fully configured",
    "No accounts were found in the cache",
    "Shared token cache unavailable",
    "not found on path",
    "is not installed",
    "could not be found",
    "requires the '",
    "package is required",
)


# No instance metadata service answered (a host outside Azure): the whole reason, for the
# same words begin IMDS's refusal on an Azure VM ("... no response from the IMDS endpoint.
# Token request error: (invalid_request) Identity not found"), whose reason is kept.
_NO_ENDPOINT = frozenset(
    {
        "ManagedIdentityCredential authentication unavailable, no response from the IMDS endpoint.",
        "ManagedIdentityCredential authentication unavailable.",
    }
)


def credential_failure(error: Exception) -> str:
    """A chained credential's failure (``DefaultAzureCredential``) in one line: why each
    credential that was tried failed, then the names of those not set up here. The
    SDK's message lists them over a dozen lines, and its first line says none of it."""
    text = str(getattr(error, "message", None) or error).strip()
    head, marker, attempts = text.partition("\nAttempted credentials:\n")
    if not marker:
        return first_line(error)
    failed: list[str] = []
    not_set_up: list[str] = []
    for line in attempts.splitlines():
        if not line.startswith("\t"):  # "Visit <guide>", "To mitigate this issue, ..."
            continue
        name, _, reason = line.strip().partition(": ")
        if reason in _NO_ENDPOINT or any(words in reason for words in _NOT_SET_UP):
            not_set_up.append(name)
        else:
            failed.append(f"{name}: {reason}")
    parts = [head.rstrip("."), *failed]
    if not_set_up:
        parts.append(f"not set up here: {', '.join(not_set_up)}")
    return " ".join("; ".join(parts).split())
