"""The local broker's Event-Hubs-like listener: its namespace, address and secret.

Event Hubs' Kafka endpoint takes ``SASL_SSL`` with mechanism ``PLAIN``, the literal user
name ``$ConnectionString`` and a namespace connection string as password, or with
``OAUTHBEARER`` and an Entra ID token for the namespace. The broker's ``EVENTHUBS``
listener accepts both, so the azure profile's Kafka options can be tested on this
machine; its OAUTHBEARER takes unsigned tokens (``services.KafkaBroker``), there being no
Entra ID here. Its connection string is made once per machine with ``secrets`` and kept
in ``<state_dir>/eventhubs/connection-string`` (mode 0600, git-ignored); it is a secret
like the real one, never logged or printed.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from local_stack.settings import StackSettings
from local_stack.tls import write_private

USER_NAME = "$ConnectionString"
KEY_NAME = "RootManageSharedAccessKey"
KEY_BYTES = 32  # Event Hubs' shared access keys are 256-bit, base64-encoded


def local_namespace(settings: StackSettings) -> str:
    """The namespace the local connection string names (``stack.toml``)."""
    return settings.kafka.eventhubs_namespace


def oauth_scope(settings: StackSettings) -> str:
    """The scope an OAUTHBEARER token for the namespace carries (Entra ID's for Event Hubs,
    as ``azure_profile.eventhubs`` asks for it)."""
    return f"https://{local_namespace(settings)}.servicebus.windows.net/.default"


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
