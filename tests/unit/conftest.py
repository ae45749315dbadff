"""Shared unit fixtures: a complete azure deployment, its secrets from the environment."""

from __future__ import annotations

import pytest

FAKE_KEY = "c2VjcmV0LWtleS1mb3ItdW5pdC10ZXN0cy1vbmx5LTAxMjM0NTY3OA=="
CONNECTION_STRING = (
    "Endpoint=sb://reelhouse-test.servicebus.windows.net/;"
    f"SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={FAKE_KEY}"
)
CLIENT_SECRET = "unit~test~client~secret~0123456789"
ACCOUNT_KEY = "dW5pdC10ZXN0LWFjY291bnQta2V5LTAxMjM0NTY3ODkwMTIzNDU2Nzg5"


@pytest.fixture(autouse=True)
def native_stack_settings(monkeypatch):
    """Unit tests describe the native stack, also in a shell set up for docker compose's."""
    monkeypatch.delenv("REELHOUSE_STACK_SERVICES", raising=False)


@pytest.fixture
def azure_environment(monkeypatch):
    values = {
        "REELHOUSE_EVENTHUBS_NAMESPACE": "reelhouse-test",
        "REELHOUSE_ADLS_ACCOUNT": "reelhousetest",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
        "REELHOUSE_SECRETS_PROVIDER": "environment",
        "REELHOUSE_SECRET_EVENTHUBS_CONNECTION_STRING": CONNECTION_STRING,
        "REELHOUSE_SECRET_REELHOUSE_CLIENT_SECRET": CLIENT_SECRET,
        "REELHOUSE_SECRET_ADLS_ACCOUNT_KEY": ACCOUNT_KEY,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values
