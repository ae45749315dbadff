"""Event Hubs' Kafka endpoint: connection strings and the Kafka client options.

The same options drive Spark's Kafka source (prefixed ``kafka.``), the simulator's
producer and the preflight's handshake. Event Hubs speaks Kafka 1.0+ on port 9093 with
``SASL_SSL``: ``PLAIN`` with the literal user name ``$ConnectionString`` and a
connection string as password, or ``OAUTHBEARER`` with an Entra ID token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from azure_profile.deployment import EventHubsSettings
from spark.settings import SettingsError

PLAIN_LOGIN_MODULES = {
    "open_source": "org.apache.kafka.common.security.plain.PlainLoginModule",
    # Databricks Runtime ships a shaded Kafka client: the same class under kafkashaded.
    "databricks": "kafkashaded.org.apache.kafka.common.security.plain.PlainLoginModule",
}
OAUTH_LOGIN_MODULES = {
    "open_source": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule",
    "databricks": "kafkashaded.org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule",
}
OAUTH_CALLBACK_HANDLERS = {
    # Kafka 3.4+'s name for the client-credentials login.
    "open_source": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
    # The name Databricks' guide for Event Hubs uses, in its shaded client (the class's
    # name before 3.4, kept by later 3.x clients).
    "databricks": "kafkashaded.org.apache.kafka.common.security.oauthbearer.secured"
    ".OAuthBearerLoginCallbackHandler",
}

# Event Hubs closes idle connections after 240 s and expects generous timeouts; these are
# the values its Kafka guide recommends.
EVENTHUBS_CLIENT_DEFAULTS = {
    "request.timeout.ms": "60000",
    "session.timeout.ms": "30000",
    "metadata.max.age.ms": "180000",
    "connections.max.idle.ms": "180000",
    # For the simulator's producer (Spark's source is not handed them): Event Hubs closes
    # a connection that sends a request over 1,046,528 bytes, and takes compressed
    # records only on Premium and Dedicated (gzip alone), so none on Standard.
    "max.request.size": "1000000",
    "batch.size": "262144",
    "compression.type": "none",
}

_ENDPOINT = re.compile(r"^sb://(?P<namespace>[A-Za-z0-9-]+)\.servicebus\.windows\.net/?$")


@dataclass(frozen=True)
class ConnectionString:
    """The non-secret parts of an Event Hubs connection string."""

    namespace: str
    key_name: str
    entity_path: str | None


def parse_connection_string(text: str) -> ConnectionString:
    """Check the shape of an Event Hubs connection string; errors never quote the key."""
    parts: dict[str, str] = {}
    for piece in text.strip().strip(";").split(";"):
        name, separator, value = piece.partition("=")
        if not separator or not value:
            raise SettingsError(
                "Event Hubs connection string is malformed: expected"
                " Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=...;"
                "SharedAccessKey=..."
            )
        parts[name.strip()] = value.strip()
    missing = [
        key for key in ("Endpoint", "SharedAccessKeyName", "SharedAccessKey") if key not in parts
    ]
    if missing:
        raise SettingsError(f"Event Hubs connection string lacks {', '.join(missing)}")
    endpoint = _ENDPOINT.match(parts["Endpoint"])
    if not endpoint:
        raise SettingsError(
            "Event Hubs connection string's Endpoint must look like"
            " sb://<namespace>.servicebus.windows.net/"
        )
    return ConnectionString(
        namespace=endpoint["namespace"],
        key_name=parts["SharedAccessKeyName"],
        entity_path=parts.get("EntityPath"),
    )


def kafka_options(
    settings: EventHubsSettings,
    connection_string: str | None = None,
    client_secret: str | None = None,
    tenant_id: str = "",
    client_id: str = "",
) -> dict[str, str]:
    """Java Kafka client options for the namespace (Spark adds the ``kafka.`` prefix)."""
    options = {"security.protocol": "SASL_SSL", **EVENTHUBS_CLIENT_DEFAULTS}
    if settings.auth == "connection_string":
        if not connection_string:
            raise SettingsError("Event Hubs connection string secret is empty")
        parsed = parse_connection_string(connection_string)
        if parsed.namespace.lower() != settings.namespace.lower():
            raise SettingsError(
                f"the Event Hubs connection string is for namespace {parsed.namespace!r},"
                f" the profile names {settings.namespace!r} (REELHOUSE_EVENTHUBS_NAMESPACE)"
            )
        password = _jaas_quoted(connection_string.strip())
        options["sasl.mechanism"] = "PLAIN"
        options["sasl.jaas.config"] = (
            f"{PLAIN_LOGIN_MODULES[settings.login_module]} required"
            f' username="$ConnectionString" password="{password}";'
        )
    else:
        if not client_secret:
            raise SettingsError("Entra ID client secret for OAUTHBEARER is empty")
        options["sasl.mechanism"] = "OAUTHBEARER"
        options["sasl.login.callback.handler.class"] = OAUTH_CALLBACK_HANDLERS[
            settings.login_module
        ]
        options["sasl.oauthbearer.token.endpoint.url"] = (
            f"https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token"
        )
        options["sasl.jaas.config"] = (
            f'{OAUTH_LOGIN_MODULES[settings.login_module]} required clientId="{client_id}"'
            f' clientSecret="{_jaas_quoted(client_secret)}"'
            f' scope="https://{settings.host}/.default";'
        )
    if settings.truststore_pem:
        options["ssl.truststore.type"] = "PEM"
        options["ssl.truststore.location"] = settings.truststore_pem
    return options


def _jaas_quoted(value: str) -> str:
    """``value`` inside a JAAS option's double quotes: a quote or backslash escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
