"""The local Key Vault stand-in: it answers while another client sits idle on its port, and
its identity endpoint hands tokens only to the identities its host has, as App Service
does, so the vault reader the azure profile picks is checked through the Azure SDK."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from azure_profile.secrets import KeyVaultSecrets, SecretResolutionError
from local_stack.keyvault import USER_ASSIGNED_CLIENT_ID, serve
from local_stack.settings import load_stack_settings
from local_stack.tls import ensure_tls_material
from tests.ports import free_port

pytestmark = pytest.mark.unit


def test_an_idle_connection_holds_no_other_request(tmp_path):
    material = ensure_tls_material(replace(load_stack_settings(), state_dir=tmp_path))
    port = free_port()
    servers = serve(
        "127.0.0.1", port, free_port(), material.certificate, material.private_key, "header"
    )
    trusting = ssl.create_default_context(cafile=str(material.certificate))
    trusting.check_hostname = False
    try:
        with socket.create_connection(("127.0.0.1", port)):  # connects, says nothing
            request = urllib.request.Request(f"https://127.0.0.1:{port}/secrets?api-version=7.4")
            with pytest.raises(urllib.error.HTTPError) as answered:
                urllib.request.urlopen(request, context=trusting, timeout=5)
        assert answered.value.code == 401  # no token: the vault answered, and in time
    finally:
        for server in servers:
            server.shutdown()


SERVICE_PRINCIPAL_ID = "00000000-0000-0000-0000-000000000002"


@pytest.fixture
def vault(tmp_path, monkeypatch):
    """The local vault and identity endpoint in this process, holding one secret, with
    AZURE_CLIENT_ID naming a service principal as the azure profile's defaults do."""
    from azure.keyvault.secrets import SecretClient

    from local_stack.parity import LocalIdentity

    material = ensure_tls_material(replace(load_stack_settings(), state_dir=tmp_path))
    port, identity_port = free_port(), free_port()
    servers = serve(
        "127.0.0.1", port, identity_port, material.certificate, material.private_key, "header"
    )
    url, endpoint = f"https://127.0.0.1:{port}", f"http://127.0.0.1:{identity_port}/msi/token"
    writer = SecretClient(
        url,
        LocalIdentity(endpoint, "header"),
        connection_verify=str(material.certificate),
        verify_challenge_resource=False,
    )
    writer.set_secret("reelhouse-client-secret", "the-value")
    writer.set_secret("adls-account-key", "a-key", enabled=False)
    for variable in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", "header")
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("AZURE_CLIENT_ID", SERVICE_PRINCIPAL_ID)
    yield url, str(material.certificate)
    for server in servers:
        server.shutdown()


@pytest.mark.parametrize("identity", ["system", USER_ASSIGNED_CLIENT_ID])
def test_the_vault_is_read_as_an_identity_the_host_has(vault, identity):
    url, certificate = vault
    secrets = KeyVaultSecrets(url, ca_file=certificate, identity=identity)
    assert secrets.get("reelhouse-client-secret") == "the-value"


@pytest.mark.parametrize("identity", ["system", USER_ASSIGNED_CLIENT_ID])
def test_a_service_principal_in_the_environment_does_not_take_the_reader_s_place(
    vault, monkeypatch, identity
):
    """AZURE_CLIENT_SECRET beside AZURE_CLIENT_ID (the lake's service principal, which the
    SDK's chain tries first) must not read the vault in place of the reader named: here its
    login would fail (Entra ID is not reachable from the tests), as the wrong reader's would."""
    url, certificate = vault
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "the-lake-principal-s-secret")
    secrets = KeyVaultSecrets(url, ca_file=certificate, identity=identity)
    assert secrets.get("reelhouse-client-secret") == "the-value"


@pytest.mark.parametrize(
    ("identity", "reader"),
    [
        # The Azure SDK's default asks the host for a managed identity named by
        # AZURE_CLIENT_ID, here the service principal: App Service answers 400.
        ("sdk", "the Azure SDK's default identity"),
        ("0c5a9f6e-0000-4e71-a3c4-6f7e8d9a0b1c", "the user-assigned identity 0c5a9f6e-0000"),
    ],
)
def test_an_identity_the_host_lacks_is_named_in_one_line(vault, identity, reader):
    url, certificate = vault
    with pytest.raises(SecretResolutionError) as refused:
        KeyVaultSecrets(url, ca_file=certificate, identity=identity).get("reelhouse-client-secret")
    message = str(refused.value)
    assert refused.value.reason == "authentication"
    assert f"to read secret 'reelhouse-client-secret' as {reader}" in message
    assert "\n" not in message and "the-value" not in message
    # Why the one credential that was tried failed, not only that the chain did.
    assert (
        "DefaultAzureCredential failed to retrieve a token from the included credentials;"
        " ManagedIdentityCredential: App Service managed identity configuration not found in"
        " environment. Token request error: (invalid_scope) 400, Unable to load the proper"
        " Managed Identity.; not set up here: "
    ) in message
    assert "WorkloadIdentityCredential, SharedTokenCacheCredential," in message


def test_a_refusal_keeps_key_vault_s_own_reason(vault):
    """403 is a missing role, or the vault's firewall, or a disabled secret: Key Vault
    says which, and the message keeps it."""
    url, certificate = vault
    with pytest.raises(SecretResolutionError) as refused:
        KeyVaultSecrets(url, ca_file=certificate, identity="system").get("adls-account-key")
    message = str(refused.value)
    assert refused.value.reason == "forbidden"
    assert message.startswith(f"Key Vault {url} refused to let the identity read secret")
    assert "Operation get is not allowed on a disabled secret." in message
    assert "\n" not in message and "a-key" not in message


def test_the_stand_in_on_a_busy_port_is_one_line(tmp_path, capsys):
    """``keyvault-up`` names the port first; run by hand, the stand-in says it itself."""
    from local_stack.keyvault import main

    header = tmp_path / "header"
    header.write_text("header")
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code = main(
            [
                *("--port", str(port), "--identity-port", str(free_port())),
                *("--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem")),
                *("--identity-header-file", str(header)),
            ]
        )
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith(f"error: key vault stand-in cannot start on 127.0.0.1:{port}")
    assert "in use" in error and len(error.splitlines()) == 1
