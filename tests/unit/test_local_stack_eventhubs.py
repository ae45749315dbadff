"""The broker's Event-Hubs-like listener: its properties, connection string and files."""

from __future__ import annotations

import base64
import re
import stat
from dataclasses import replace

import pytest

from azure_profile.eventhubs import parse_connection_string
from local_stack import eventhubs
from local_stack.services import KafkaBroker
from local_stack.settings import load_stack_settings
from local_stack.tls import tls_material

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(tmp_path):
    loaded = load_stack_settings()
    kafka = replace(
        loaded.kafka, port=29092, controller_port=29093, sasl_port=29094, host="127.0.0.1"
    )
    return replace(loaded, state_dir=tmp_path, kafka=kafka)


def test_connection_string_has_the_event_hubs_format_and_a_256_bit_key(settings):
    text = eventhubs.ensure_connection_string(settings)

    match = re.fullmatch(
        r"Endpoint=sb://reelhouse-local\.servicebus\.windows\.net/;"
        r"SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=(?P<key>[A-Za-z0-9+/=]+)",
        text,
    )
    assert match, "not an Event Hubs connection string"
    assert len(base64.b64decode(match["key"], validate=True)) == 32
    # The azure profile's own parser accepts it for the configured namespace.
    assert parse_connection_string(text).namespace == eventhubs.local_namespace(settings)


def test_connection_string_is_made_once_and_kept_private(settings):
    first = eventhubs.ensure_connection_string(settings)
    path = eventhubs.connection_string_file(settings)

    assert eventhubs.ensure_connection_string(settings) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = replace(settings, state_dir=settings.state_dir / "other-machine")
    assert eventhubs.ensure_connection_string(other) != first


def test_a_renamed_namespace_gets_a_new_connection_string(settings):
    eventhubs.ensure_connection_string(settings)
    renamed = replace(settings, kafka=replace(settings.kafka, eventhubs_namespace="reelhouse-two"))

    text = eventhubs.ensure_connection_string(renamed)

    assert parse_connection_string(text).namespace == "reelhouse-two"


def test_server_properties_add_a_sasl_ssl_listener_and_keep_plaintext(settings):
    properties = KafkaBroker(settings).server_properties()
    connection_string = eventhubs.ensure_connection_string(settings)

    assert properties["listeners"] == (
        "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093,EVENTHUBS://127.0.0.1:29094"
    )
    assert properties["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:29092,EVENTHUBS://127.0.0.1:29094"
    )
    assert properties["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,EVENTHUBS:SASL_SSL"
    )
    assert properties["inter.broker.listener.name"] == "PLAINTEXT"
    assert properties["controller.listener.names"] == "CONTROLLER"
    assert properties["listener.name.eventhubs.sasl.enabled.mechanisms"] == "PLAIN,OAUTHBEARER"
    namespace = eventhubs.local_namespace(settings)
    # Tokens are verified (signature, expiry, audience) against the local issuer's key set.
    assert properties["listener.name.eventhubs.oauthbearer.sasl.server.callback.handler.class"] == (
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
    )
    jwks = settings.state_dir / "eventhubs" / "jwks.json"
    assert properties["sasl.oauthbearer.jwks.endpoint.url"] == jwks.resolve().as_uri()
    assert properties["sasl.oauthbearer.expected.audience"] == (
        f"https://{namespace}.servicebus.windows.net"
    )
    assert (
        "unsecuredValidator"
        not in properties["listener.name.eventhubs.oauthbearer.sasl.jaas.config"]
    )
    assert properties["listener.name.eventhubs.plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required"
        f' user_$ConnectionString="{connection_string}";'
    )
    assert properties["listener.name.eventhubs.ssl.keystore.type"] == "PEM"
    assert properties["listener.name.eventhubs.ssl.keystore.location"] == str(
        settings.state_dir / "kafka" / "eventhubs-keystore.pem"
    )
    assert eventhubs.bootstrap_servers(settings) == "127.0.0.1:29094"
    assert KafkaBroker(settings).ports() == (29092, 29093, 29094)


def test_prepare_writes_the_secret_bearing_files_for_the_owner_only(settings):
    broker = KafkaBroker(settings)
    # An already formatted data folder: prepare() then only writes its files.
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text("node.id=1\n")

    broker.prepare()

    tls = tls_material(settings)
    keystore = broker.eventhubs_keystore.read_text()
    assert keystore == tls.private_key.read_text() + tls.certificate.read_text()
    assert "-----BEGIN PRIVATE KEY-----" in keystore  # PKCS#8, unencrypted
    assert eventhubs.ensure_connection_string(settings) in broker.config_file.read_text()
    for path in (
        broker.config_file,
        broker.eventhubs_keystore,
        eventhubs.signing_key_file(settings),
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_broker_started_with_older_settings_is_named_by_setting(settings):
    broker = KafkaBroker(settings)
    properties = broker.server_properties()
    properties["listener.name.eventhubs.sasl.enabled.mechanisms"] = "PLAIN"
    del properties["listener.name.eventhubs.oauthbearer.sasl.jaas.config"]
    broker.config_file.parent.mkdir(parents=True, exist_ok=True)
    broker.config_file.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))

    assert broker._settings_since_started() == [
        "listener.name.eventhubs.oauthbearer.sasl.jaas.config",
        "listener.name.eventhubs.sasl.enabled.mechanisms",
    ]
    broker.config_file.write_text(
        "".join(f"{k}={v}\n" for k, v in broker.server_properties().items())
    )
    assert broker._settings_since_started() == []


def test_issued_tokens_verify_against_the_key_set_the_listener_reads(settings):
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    token = eventhubs.issue_token(settings, "app", "https://ns.example", lifetime_s=60)
    header, claims, signature = (
        base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")
    )
    (jwk,) = json.loads(eventhubs.jwks_file(settings).read_text())["keys"]
    assert json.loads(header) == {"alg": "RS256", "typ": "JWT", "kid": jwk["kid"]}
    decoded = json.loads(claims)
    assert (decoded["sub"], decoded["aud"]) == ("app", "https://ns.example")
    tenant = eventhubs.LOCAL_TENANT_ID
    assert (decoded["iss"], decoded["tid"]) == (f"https://sts.windows.net/{tenant}/", tenant)
    assert decoded["exp"] - decoded["iat"] == 60

    def number(name: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(jwk[name] + "=" * (-len(jwk[name]) % 4)))

    public = rsa.RSAPublicNumbers(number("e"), number("n")).public_key()
    signed = token.rsplit(".", 1)[0].encode()
    public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())  # raises if not
    # The key is made once: a later token is signed by the same key.
    before = eventhubs.jwks_file(settings).read_text()
    eventhubs.issue_token(settings, "app", "https://ns.example", lifetime_s=60)
    assert eventhubs.jwks_file(settings).read_text() == before
