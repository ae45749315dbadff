"""Can these Kafka client options log in, and read the event hub? Fast, one-line answers
for the preflight.

Each bootstrap address is checked in the order a client meets its failures: TCP connect,
TLS handshake (is the certificate trusted?), then the Kafka handshake with SASL. Every
step runs once, with no retry, so a wrong key fails in well under a second instead of
after a client's bootstrap timeout. kafka-python 3.0 retries a rejected login until
that timeout and then reports only a timeout, which is why the SASL step drives one
connection of its network layer directly.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Mapping

from local_stack.simulate.producer import ProducerError, kafka_python_config
from local_stack.topics import (
    TOPIC_AUTHORIZATION_FAILED,
    UNKNOWN_TOPIC_OR_PARTITION,
    describe_topic,
)


class KafkaCheckError(RuntimeError):
    """The options cannot be used; ``str()`` is one line and never quotes a secret."""


class KafkaUnreachable(KafkaCheckError):
    """No TCP connection to a bootstrap address."""


class KafkaTlsError(KafkaCheckError):
    """The TLS handshake failed, usually because the certificate is not trusted."""


class KafkaAuthError(KafkaCheckError):
    """The endpoint rejected the SASL credentials."""


class EventHubMissing(KafkaCheckError):
    """The namespace has no event hub of that name."""


class EventHubForbidden(KafkaCheckError):
    """The credentials log in, but may not read the event hub."""


def check_kafka_sasl(
    client_options: Mapping[str, str], namespace: str, timeout_s: float = 10
) -> None:
    """Connect and log in once to every bootstrap address; raise KafkaCheckError if one fails."""
    try:
        config = kafka_python_config(client_options, client="admin")
    except ProducerError as error:
        raise KafkaCheckError(f"Kafka client options for {namespace}: {error}") from None
    if not config.get("bootstrap_servers"):
        raise KafkaCheckError(f"Kafka client options for {namespace} name no bootstrap.servers")
    if "sasl_oauth_token_provider" in config:
        try:
            config["sasl_oauth_token_provider"].token()
        except ProducerError as error:
            raise KafkaAuthError(f"no OAUTHBEARER token for {namespace}: {error}") from None
    deadline = time.monotonic() + timeout_s  # for Kafka's steps, after the token's
    uses_tls = config.get("security_protocol", "PLAINTEXT") in ("SSL", "SASL_SSL")
    if uses_tls:
        config["ssl_context"] = _ssl_context(config)
    for address in config["bootstrap_servers"]:
        host, _, port = address.strip().rpartition(":")
        _connect(host, int(port), namespace, deadline, config["ssl_context"] if uses_tls else None)
        _log_in(config, address.strip(), namespace, deadline)


def event_hub_partitions(
    client_options: Mapping[str, str], event_hub: str, namespace: str, timeout_s: float = 10
) -> int:
    """How many partitions ``event_hub`` has, as the credentials in ``client_options`` see
    it; raise EventHubMissing or EventHubForbidden (one line each) if they cannot read it.

    For after ``check_kafka_sasl`` passed: the login is known to work, so the Kafka client's
    own retries end fast. A metadata request names the event hub, as Spark's source does;
    Event Hubs answers it with an authorization error when the identity holds no data role
    on it (or the connection string's policy has no Listen claim).
    """
    from kafka.errors import KafkaError

    try:
        code, partitions = describe_topic(client_options, event_hub, timeout_s)
    except (KafkaError, ProducerError) as error:
        raise KafkaCheckError(
            f"cannot describe event hub {event_hub} in namespace {namespace}:"
            f" {type(error).__name__} {error}"
        ) from None
    if code == UNKNOWN_TOPIC_OR_PARTITION:
        raise EventHubMissing(f"namespace {namespace} has no event hub {event_hub}")
    if code == TOPIC_AUTHORIZATION_FAILED:
        raise EventHubForbidden(
            f"namespace {namespace} does not let these credentials read event hub {event_hub}"
            " (TOPIC_AUTHORIZATION_FAILED)"
        )
    if code:
        raise KafkaCheckError(
            f"namespace {namespace} answered for event hub {event_hub} with Kafka error {code}"
        )
    return partitions


def _ssl_context(config: dict) -> ssl.SSLContext:
    # The same context as kafka-python builds, made here so the TLS step can name the cause.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = config.get("ssl_check_hostname", True)
    if config.get("ssl_cafile"):
        try:
            context.load_verify_locations(config["ssl_cafile"])
        except (OSError, ssl.SSLError) as error:
            raise KafkaTlsError(
                f"cannot read the trusted certificates {config['ssl_cafile']}: {error}"
            ) from None
    else:
        context.load_default_certs()
    return context


def _connect(
    host: str, port: int, namespace: str, deadline: float, context: ssl.SSLContext | None
) -> None:
    where = f"{host}:{port} (Event Hubs namespace {namespace})"
    try:
        connection = socket.create_connection((host, port), timeout=_remaining(deadline))
    except socket.gaierror:
        raise KafkaUnreachable(f"cannot reach {where}: host {host} is not known (DNS)") from None
    except TimeoutError:
        raise KafkaUnreachable(f"cannot reach {where}: no answer within the timeout") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise KafkaUnreachable(f"cannot reach {where}: {reason}") from None
    with connection:
        if context is None:
            return
        try:
            with context.wrap_socket(connection, server_hostname=host):
                return
        except ssl.SSLCertVerificationError as error:
            raise KafkaTlsError(
                f"TLS to {where} failed: the certificate is not trusted"
                f" ({error.verify_message}); trust its issuer (ssl.truststore.location)"
            ) from None
        except (ssl.SSLError, OSError) as error:
            raise KafkaTlsError(f"TLS to {where} failed: {error}") from None


def _log_in(config: dict, address: str, namespace: str, deadline: float) -> None:
    """One Kafka connection (API versions, then SASL), no retry."""
    from kafka.errors import (
        KafkaConnectionError,
        SaslAuthenticationFailedError,
        UnsupportedSaslMechanismError,
    )
    from kafka.net.manager import KafkaConnectionManager
    from kafka.net.selector import NetworkSelector

    single = {**config, "bootstrap_servers": [address]}
    network = NetworkSelector(**single)
    manager = KafkaConnectionManager(network, **single)
    try:
        node = manager.cluster.bootstrap_brokers()[0]
        connection = manager.get_connection(node.node_id, timeout_ms=_remaining(deadline) * 1000)
        network.poll(timeout_ms=_remaining(deadline) * 1000, future=connection.init_future)
        # Read the outcome before closing: closing fails a pending handshake.
        finished, error = connection.init_future.is_done, connection.init_future.exception
        versions_answered = connection.broker_version_data is not None
    finally:
        manager.close()
        network.close()
    if not finished:
        raise KafkaUnreachable(
            f"{address} (Event Hubs namespace {namespace}) did not complete the Kafka"
            " handshake within the timeout"
        )
    if error is None:
        return
    if isinstance(error, SaslAuthenticationFailedError):
        reason = str(error).rpartition(": ")[2] or "no reason given"
    elif isinstance(error, KafkaConnectionError) and versions_answered and _uses_sasl(config):
        # A broker closes the connection right after its "authentication failed" answer.
        # kafka-python 3.0.12 drops an answer that arrives together with the close, so a
        # close after the API versions exchange is the broker ending a failed login (the
        # Java client reads it the same way: "terminated during authentication").
        reason = "the broker closed the connection during authentication"
    else:
        reason = None
    if reason is not None:
        credentials = (
            "the service principal's token (does it hold an Azure Event Hubs Data role?)"
            if config.get("sasl_mechanism") == "OAUTHBEARER"
            else "the connection string"
        )
        raise KafkaAuthError(
            f"Event Hubs namespace {namespace} rejected the credentials"
            f" (SASL authentication failed: {reason}) at {address}; check {credentials}"
        )
    if isinstance(error, UnsupportedSaslMechanismError):
        raise KafkaAuthError(f"Event Hubs namespace {namespace} at {address}: {error}")
    raise KafkaCheckError(
        f"Kafka handshake with {address} (Event Hubs namespace {namespace}) failed: {error}"
    )


def _uses_sasl(config: dict) -> bool:
    return config.get("security_protocol") in ("SASL_PLAINTEXT", "SASL_SSL")


def _remaining(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())
