"""The Kafka login check's answers that need no broker: unreachable, untrusted TLS."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import replace

import pytest

from azure_profile.kafka_check import (
    KafkaCheckError,
    KafkaTlsError,
    KafkaUnreachable,
    check_kafka_sasl,
)
from local_stack.settings import load_stack_settings
from local_stack.tls import ensure_tls_material
from tests.ports import free_port

pytestmark = pytest.mark.unit

SASL_PLAIN = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "PLAIN",
    "sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required"
    ' username="$ConnectionString" password="Endpoint=sb://x.servicebus.windows.net/;k=v";',
}


def test_a_closed_port_is_named_as_unreachable():
    port = free_port()
    options = {"bootstrap.servers": f"127.0.0.1:{port}", **SASL_PLAIN}

    with pytest.raises(KafkaUnreachable, match=rf"cannot reach 127\.0\.0\.1:{port} .*reelhouse-x"):
        check_kafka_sasl(options, "reelhouse-x", timeout_s=2)


def test_an_untrusted_certificate_is_reported_as_such(tmp_path):
    settings = replace(load_stack_settings(), state_dir=tmp_path)
    material = ensure_tls_material(settings)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(material.certificate, material.private_key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept_one() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client rejects the certificate

        server = threading.Thread(target=accept_one, daemon=True)
        server.start()
        # No trust store: the self-signed certificate is not among the system's roots.
        options = {"bootstrap.servers": f"127.0.0.1:{port}", **SASL_PLAIN}
        with pytest.raises(KafkaTlsError, match="certificate is not trusted") as raised:
            check_kafka_sasl(options, "reelhouse-x", timeout_s=5)
        server.join(timeout=5)
    assert "\n" not in str(raised.value)


def test_options_kafka_python_cannot_use_are_a_check_error():
    options = {"bootstrap.servers": "127.0.0.1:1", "sasl.login.callback.handler.class": "x"}

    with pytest.raises(KafkaCheckError, match="reelhouse-x"):
        check_kafka_sasl(options, "reelhouse-x")
