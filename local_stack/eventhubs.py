"""The local broker's Event-Hubs-like listener: its namespace, address and secret.

Event Hubs' Kafka endpoint takes ``SASL_SSL`` with mechanism ``PLAIN``, the literal user
name ``$ConnectionString`` and a namespace connection string as password, or with
``OAUTHBEARER`` and an Entra ID token for the namespace. The broker's ``EVENTHUBS``
listener accepts both, so the azure profile's Kafka options can be tested on this
machine. Its connection string is made once per machine with ``secrets`` and kept in
``<state_dir>/eventhubs/connection-string`` (mode 0600, git-ignored); it is a secret like
the real one, never logged or printed.

Entra ID's part in OAUTHBEARER is played by a signing key made once per machine
(``<state_dir>/eventhubs/token-signing-key.pem``, mode 0600): ``issue_token`` signs RS256
JWTs with it as Entra ID signs its access tokens, for one tenant (``LOCAL_TENANT_ID``), and
the listener verifies their signature, expiry, audience and issuer (the tenant) against its
public half (``jwks.json``), as Event Hubs does against Entra ID's published keys and its own
tenant.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from local_stack.settings import StackSettings
from local_stack.tls import write_private

USER_NAME = "$ConnectionString"
KEY_NAME = "RootManageSharedAccessKey"
KEY_BYTES = 32  # Event Hubs' shared access keys are 256-bit, base64-encoded
SIGNING_KEY_ID = "reelhouse-local-entra"  # the ``kid`` of the tokens and of the JWKS entry
# The Entra ID tenant the local namespace belongs to (a fixed, made-up directory id).
LOCAL_TENANT_ID = "5e1f7a3c-0000-4000-8000-00000000feed"


def local_namespace(settings: StackSettings) -> str:
    """The namespace the local connection string names (``stack.toml``)."""
    return settings.kafka.eventhubs_namespace


def oauth_scope(settings: StackSettings) -> str:
    """The scope an OAUTHBEARER token for the namespace carries (Entra ID's for Event Hubs,
    as ``azure_profile.eventhubs`` asks for it)."""
    return f"https://{local_namespace(settings)}.servicebus.windows.net/.default"


def oauth_audience(settings: StackSettings) -> str:
    """The ``aud`` of a token for the namespace: the resource of its scope, as Entra ID
    issues a ``<resource>/.default`` token for ``<resource>``."""
    return oauth_scope(settings).removesuffix("/.default")


def oauth_issuer(tenant_id: str) -> str:
    """The ``iss`` of a tenant's access tokens for Event Hubs (Entra ID's v1.0 token issuer,
    which it uses for resources that accept v1.0 tokens, as Event Hubs does)."""
    return f"https://sts.windows.net/{tenant_id}/"


def bootstrap_servers(settings: StackSettings) -> str:
    """``host:port`` of the broker's Event-Hubs-like listener."""
    return f"{settings.kafka.host}:{settings.kafka.sasl_port}"


def connection_string_file(settings: StackSettings) -> Path:
    """Where the local connection string is kept (it may not exist yet)."""
    return settings.state_dir / "eventhubs" / "connection-string"


def format_connection_string(namespace: str, key: str) -> str:
    """An Event Hubs namespace connection string for a shared access ``key``."""
    return (
        f"Endpoint=sb://{namespace}.servicebus.windows.net/;"
        f"SharedAccessKeyName={KEY_NAME};SharedAccessKey={key}"
    )


def ensure_connection_string(settings: StackSettings) -> str:
    """The local connection string; generated and stored on first use."""
    path = connection_string_file(settings)
    namespace = local_namespace(settings)
    if path.exists():
        text = path.read_text().strip()
        # A namespace renamed in stack.toml gets a new connection string.
        if text.startswith(f"Endpoint=sb://{namespace}.servicebus.windows.net/;"):
            return text
    key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    text = format_connection_string(namespace, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, text + "\n")
    return text


def signing_key_file(settings: StackSettings) -> Path:
    """The local token issuer's private key (it may not exist yet)."""
    return settings.state_dir / "eventhubs" / "token-signing-key.pem"


def jwks_file(settings: StackSettings) -> Path:
    """The issuer's public key as a JSON Web Key Set: what the listener verifies with."""
    return settings.state_dir / "eventhubs" / "jwks.json"


def ensure_signing_key(settings: StackSettings) -> Path:
    """The signing key and its JWKS, made unless both exist; returns the JWKS path."""
    key_path, jwks_path = signing_key_file(settings), jwks_file(settings)
    if key_path.exists() and jwks_path.exists():
        return jwks_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": SIGNING_KEY_ID,
        "n": _b64_int(numbers.n),
        "e": _b64_int(numbers.e),
    }
    key_path.parent.mkdir(parents=True, exist_ok=True)
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    jwks_path.write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    return jwks_path


def issue_token(
    settings: StackSettings,
    subject: str,
    audience: str,
    lifetime_s: int,
    tenant_id: str = LOCAL_TENANT_ID,
) -> str:
    """An RS256 access token of ``tenant_id`` for ``subject`` and ``audience``, signed with
    the local key (Entra ID's part: what its token endpoint returns for a client-credentials
    grant)."""
    ensure_signing_key(settings)
    key = serialization.load_pem_private_key(signing_key_file(settings).read_bytes(), password=None)
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": SIGNING_KEY_ID}
    claims = {
        "iss": oauth_issuer(tenant_id),
        "tid": tenant_id,
        "sub": subject,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
    }
    signed = f"{_b64_json(header)}.{_b64_json(claims)}"
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64_json(part: dict) -> str:
    return _b64(json.dumps(part, separators=(",", ":")).encode())


def _b64_int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))
