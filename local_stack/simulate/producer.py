"""Writing records: to a Kafka(-compatible) topic with kafka-python, or to a JSON-lines file.

The Kafka writer takes the profile's client options unchanged, so the same code sends
to the local broker or to Event Hubs' Kafka endpoint.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka.net.sasl.oauth import AbstractTokenProvider

from local_stack.simulate.simulation import Record

# A JAAS option's value in double quotes, a quote or backslash in it escaped by a backslash.
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_JAAS = re.compile(rf"username={_QUOTED}\s+password={_QUOTED}")
_JAAS_OPTION = re.compile(rf"(\w+)={_QUOTED}")
# The Java client's standard OAUTHBEARER login: client credentials at a token endpoint.
OAUTH_LOGIN_HANDLER = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler"
# The same login under its names before Kafka 3.4 and in Databricks' shaded client: the
# simulator, outside any JVM, does the same for each.
OAUTH_LOGIN_HANDLERS = frozenset(
    f"{shade}org.apache.kafka.common.security.oauthbearer.{package}OAuthBearerLoginCallbackHandler"
    for shade in ("", "kafkashaded.")
    for package in ("", "secured.")
)


class ProducerError(RuntimeError):
    """The records could not be delivered; the message names the endpoint."""


# Java client options with a kafka-python argument of the same meaning and unit.
_SAME_MEANING = {
    "request.timeout.ms": "request_timeout_ms",
    "metadata.max.age.ms": "metadata_max_age_ms",
    "connections.max.idle.ms": "connections_max_idle_ms",
}
# The same, for the producer alone: kafka-python's admin client and consumer refuse them
# ("Unrecognized configs"), as the Java ones ignore them. A profile whose broker limits
# requests (Event Hubs: 1,046,528 bytes) sets max.request.size and batch.size.
_PRODUCER_ONLY = {
    "max.block.ms": "max_block_ms",
    "max.request.size": "max_request_size",
    "batch.size": "batch_size",
}
KAFKA_CLIENTS = ("producer", "consumer", "admin")
# Consumer-group options that the Spark source needs and a producer has no use for.
_CONSUMER_ONLY = {"session.timeout.ms"}


def _pem_trust_store(client_options: Mapping[str, str]) -> bool:
    """A PEM trust store is a CA file to kafka-python; a JKS or PKCS12 one is the JVM's."""
    return client_options.get("ssl.truststore.type", "JKS").upper() == "PEM"


def jvm_trust_store_only(client_options: Mapping[str, str]) -> bool:
    """A JKS or PKCS12 trust store (the Java client's) and no CA file kafka-python reads:
    a broker with a private CA, which Spark's client trusts and kafka-python would refuse."""
    return (
        "ssl.truststore.location" in client_options
        and not _pem_trust_store(client_options)
        and not any(key in client_options for key in ("ssl.ca.location", "ssl.cafile"))
    )


def kafka_python_config(client_options: Mapping[str, str], client: str = "producer") -> dict:
    """Translate Java-client options (as Spark uses them) into the arguments of one
    kafka-python ``client`` (producer, consumer or admin)."""
    if client not in KAFKA_CLIENTS:
        raise ValueError(f"client must be one of {', '.join(KAFKA_CLIENTS)}, not {client!r}")
    config: dict = {}
    for key, value in client_options.items():
        if key in _SAME_MEANING:
            config[_SAME_MEANING[key]] = int(value)
        elif key in _PRODUCER_ONLY:
            if client == "producer":
                config[_PRODUCER_ONLY[key]] = int(value)
        elif key in _CONSUMER_ONLY:
            continue
        elif key == "compression.type":  # a broker that takes only some codecs, or none
            if client == "producer":
                config["compression_type"] = None if value == "none" else value
        elif key == "ssl.truststore.location" and _pem_trust_store(client_options):
            config["ssl_cafile"] = value  # a PEM trust store is a CA file to kafka-python
        elif key == "bootstrap.servers":
            config["bootstrap_servers"] = value.split(",")
        elif key == "security.protocol":
            config["security_protocol"] = value
        elif key == "sasl.mechanism":
            config["sasl_mechanism"] = value
        elif key == "sasl.jaas.config" and client_options.get("sasl.mechanism") == "OAUTHBEARER":
            continue  # read with the token endpoint, below
        elif key == "sasl.jaas.config":
            match = _JAAS.search(value)
            if not match:
                raise ProducerError('sasl.jaas.config has no username="..." password="..."')
            config["sasl_plain_username"] = _unquoted(match[1])
            config["sasl_plain_password"] = _unquoted(match[2])
        elif key == "sasl.login.callback.handler.class" and value in OAUTH_LOGIN_HANDLERS:
            continue  # what ClientCredentialsToken does in Python
        elif key == "sasl.oauthbearer.token.endpoint.url":
            continue  # read with the JAAS options, below
        elif key in ("ssl.ca.location", "ssl.cafile"):
            config["ssl_cafile"] = value
        elif key == "ssl.endpoint.identification.algorithm":
            config["ssl_check_hostname"] = value.lower() == "https"
        elif key.startswith("ssl.truststore."):
            continue  # a JKS/PKCS12 store is JVM-only; kafka-python uses ssl.ca.location
        else:
            raise ProducerError(f"unsupported Kafka client option for the simulator: {key}")
    if config.get("sasl_mechanism") == "OAUTHBEARER":
        config["sasl_oauth_token_provider"] = _client_credentials(client_options)
    return config


def _unquoted(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _client_credentials(client_options: Mapping[str, str]) -> ClientCredentialsToken:
    """The Java client's OAUTHBEARER login (token endpoint, client id, secret and scope in
    its JAAS options) as a kafka-python token provider."""
    if client_options.get("sasl.login.callback.handler.class") not in OAUTH_LOGIN_HANDLERS:
        raise ProducerError(
            f"OAUTHBEARER needs sasl.login.callback.handler.class={OAUTH_LOGIN_HANDLER}"
        )
    endpoint = client_options.get("sasl.oauthbearer.token.endpoint.url")
    if not endpoint:
        raise ProducerError("OAUTHBEARER needs sasl.oauthbearer.token.endpoint.url")
    options = {
        match[1]: _unquoted(match[2])
        for match in _JAAS_OPTION.finditer(client_options.get("sasl.jaas.config", ""))
    }
    missing = [name for name in ("clientId", "clientSecret") if not options.get(name)]
    if missing:
        raise ProducerError(f"OAUTHBEARER sasl.jaas.config has no {' or '.join(missing)}")
    return ClientCredentialsToken(
        endpoint, options["clientId"], options["clientSecret"], options.get("scope")
    )


class ClientCredentialsToken(AbstractTokenProvider):
    """An OAuth 2.0 client-credentials access token (Entra ID's, for Event Hubs), fetched
    from the token endpoint when first needed and again at 80 % of its lifetime, as the
    Java client's ``OAuthBearerLoginCallbackHandler`` does.

    Plain strings and numbers only: the producer processes get it pickled. kafka-python
    asks for the token on its network thread when it logs in; ``send_to_kafka`` fetches the
    first one before the producers start, so a refused login is one line, not a timeout.
    """

    REFRESH_AT = 0.8
    REFRESH_MARGIN_S = 60

    def __init__(
        self, endpoint: str, client_id: str, client_secret: str, scope: str | None
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self._token: str | None = None
        self._refresh_at = 0.0
        # Why the last fetch failed (None after a success): kafka-python fetches on its
        # network thread and only reports the timeout it ends in, so the producer names it.
        self.last_failure: str | None = None

    def __repr__(self) -> str:  # never the secret, nor the token
        return f"ClientCredentialsToken({self.endpoint!r}, client_id={self.client_id!r})"

    def token(self) -> str:
        if self._token is None or time.time() >= self._refresh_at:
            fetched_at = time.time()
            try:
                self._token, lifetime_s = self._fetch()
            except ProducerError as error:
                self.last_failure = str(error)
                raise
            self.last_failure = None
            # The Java client's default (sasl.login.refresh.window.factor): at 80 % of the
            # lifetime, and never later than a minute before it ends.
            self._refresh_at = fetched_at + min(
                lifetime_s * self.REFRESH_AT, lifetime_s - self.REFRESH_MARGIN_S
            )
        return self._token

    def _fetch(self, timeout_s: float = 10.0) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret,
        }
        if self.scope:
            form["scope"] = self.scope
        request = urllib.request.Request(
            self.endpoint,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        where = f"token endpoint {self.endpoint} (client {self.client_id})"
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer = json.loads(response.read())
            token, lifetime_s = str(answer["access_token"]), float(answer.get("expires_in", 3600))
        except urllib.error.HTTPError as error:
            if error.code >= 500:
                raise ProducerError(f"{where} failed: {_oauth_error(error)}") from None
            message = f"{where} refused the client credentials: {_oauth_error(error)}"
            raise ProducerError(message) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            raise ProducerError(f"cannot reach {where}: {reason}") from None
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ProducerError(f"{where} answered without a usable access token") from None
        if not token:
            raise ProducerError(f"{where} answered without a usable access token")
        return token, lifetime_s


def _oauth_error(error: urllib.error.HTTPError) -> str:
    """``HTTP 401 invalid_client`` (and the first line of the server's description)."""
    try:
        body = json.loads(error.read())
    except (ValueError, OSError):
        body = {}
    code = body.get("error") if isinstance(body, dict) else None
    description = str(body.get("error_description") or "").splitlines() if code else []
    return " ".join(
        part for part in (f"HTTP {error.code}", code, description[0] if description else "") if part
    )


def send_to_kafka(
    records: list[Record],
    topic: str,
    client_options: Mapping[str, str],
    rate: float,
    progress: bool,
    producers: int = 2,
) -> float:
    """Send every record (acks=all) and wait for every acknowledgement; return seconds.

    ``producers`` processes share the work, split by key, so each key's records keep
    their order (one key always goes to one process and one partition). One
    kafka-python producer tops out near 28,000 records/s here; two reach about 46,000.
    """
    if producers < 1:
        raise ValueError(f"producers must be >= 1, got {producers}")
    check_not_ahead(records)
    config = kafka_python_config(client_options)
    if "sasl_oauth_token_provider" in config:
        # Here, in one line, not as a login the producers retry until their timeout; the
        # producer processes inherit the token.
        config["sasl_oauth_token_provider"].token()
    context = multiprocessing.get_context("fork")
    sent = context.Value("q", 0)
    _SHARED.update(records=records, sent=sent)
    started = time.monotonic()
    jobs = [(index, producers, topic, config, rate / producers) for index in range(producers)]
    try:
        # Not multiprocessing.Pool: its map never ends when a worker dies (the OOM killer,
        # a crash in a codec's C code); the executor's futures fail with BrokenProcessPool.
        with ProcessPoolExecutor(producers, mp_context=context) as executor:
            pending = [executor.submit(_send_share, job) for job in jobs]
            _show_progress(pending, sent, len(records), progress)
            try:
                outcomes = [future.result() for future in pending]
            except BrokenProcessPool:
                raise ProducerError(
                    f"a producer process died after {sent.value:,} of {len(records):,} records"
                    f" were sent to {topic} (out of memory? see dmesg): the topic holds part"
                    " of the run; send it again to a new topic"
                ) from None
    finally:
        _SHARED.clear()
    failures = [outcome for outcome in outcomes if outcome]
    if failures:
        others = f" (and {len(failures) - 1} more of {producers} producers)" * (len(failures) > 1)
        raise ProducerError(failures[0] + others)
    return time.monotonic() - started


# A Kafka 4 broker refuses records timed further ahead than this
# (log.message.timestamp.after.max.ms, one hour by default).
AHEAD_LIMIT_S = 3600
# What the start time a refusal suggests keeps to spare: a run's length varies with its
# start by about an hour (measured: 180,095 to 183,819 s for two days).
START_MARGIN_S = 3 * 3600


def check_not_ahead(records: list, start: datetime | None = None) -> None:
    """Before anything is sent (or created): records a broker would refuse for their time,
    which a simulation started near now has (its sessions run on into the future). Given
    the run's ``start``, the error names the latest start time that fits."""
    latest_ms = max((record.timestamp_ms for record in records), default=None)
    limit_s = time.time() + AHEAD_LIMIT_S - 60  # a minute for the sending itself
    if latest_ms is not None and latest_ms / 1000 > limit_s:
        moment = datetime.fromtimestamp(latest_ms / 1000, UTC).isoformat(timespec="seconds")
        if start is not None:
            # Another start draws other sessions, whose run may end a little later.
            over_s = math.ceil(latest_ms / 1000 - limit_s) + START_MARGIN_S
            fits = (start - timedelta(seconds=over_s)).isoformat(timespec="seconds")
            advice = (
                f"give a --start-time no later than {fits} (three hours to spare: another"
                " start draws other sessions)"
            )
        else:
            latest = datetime.fromtimestamp(limit_s, UTC).isoformat(timespec="seconds")
            advice = (
                "give a --start-time whose run (its --days and late deliveries) ends before"
                f" {latest}"
            )
        raise ProducerError(
            f"the simulated records run until {moment}, more than an hour from now: Kafka"
            f" refuses records timed that far ahead, so none was sent; {advice}"
        )


# Handed to forked producer processes by inheritance (copy-on-write, never pickled).
_SHARED: dict = {}


def _send_share(job: tuple) -> str | None:
    """One producer process: send the records whose key hashes to ``index``."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    index, count, topic, config, rate = job
    records, sent = _SHARED["records"], _SHARED["sent"]
    bootstrap = ",".join(config.get("bootstrap_servers", []))
    try:
        settings = {
            "acks": "all",
            "linger_ms": 50,
            "batch_size": 1024 * 1024,
            "max_request_size": 4 * 1024 * 1024,
            "compression_type": _best_compression(),
            "max_block_ms": 30000,
            "request_timeout_ms": 30000,
            **config,  # the profile's timeouts, sizes and codec win
        }
        # The Java client's max.block.ms bounds the wait for the first metadata too;
        # kafka-python has a timeout of its own for it.
        settings["bootstrap_timeout_ms"] = settings["max_block_ms"]
        producer = KafkaProducer(**settings)
    except KafkaError as error:
        return _with_token_failure(f"cannot reach Kafka at {bootstrap}: {error}", config)
    errors: list[Exception] = []
    started = time.monotonic()
    mine = 0
    try:
        for record in records:
            if zlib.crc32(record.key) % count != index:
                continue
            if rate > 0:
                delay = started + mine / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            future = producer.send(
                topic, key=record.key, value=record.value, timestamp_ms=record.timestamp_ms
            )
            future.add_errback(errors.append)
            mine += 1
            if mine % 2000 == 0:
                with sent.get_lock():
                    sent.value += 2000
        producer.flush()
    except KafkaError as error:
        return _with_token_failure(
            f"delivery to topic {topic} at {bootstrap} failed: {error}", config
        )
    finally:
        producer.close(timeout=10)
    with sent.get_lock():
        sent.value += mine % 2000
    if errors:
        return _with_token_failure(
            f"{len(errors)} records to topic {topic} were not acknowledged: {errors[0]}", config
        )
    return None


def _with_token_failure(message: str, config: dict) -> str:
    """``message``, and why this process's OAUTHBEARER token could not be refreshed if that
    is what the producer timed out on."""
    failure = getattr(config.get("sasl_oauth_token_provider"), "last_failure", None)
    if failure is None:
        return message
    return f"{message}; its OAUTHBEARER token could not be refreshed: {failure}"


def _show_progress(pending: list[Future], sent, total: int, progress: bool) -> None:
    if not progress:
        wait(pending)
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="rec", file=sys.stderr) as bar:
        while not all(future.done() for future in pending):
            wait(pending, timeout=0.5)
            bar.update(sent.value - bar.n)
        bar.update(sent.value - bar.n)


def write_jsonl(records: list[Record], path: Path) -> float:
    """One record per line (values never contain a newline)."""
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for record in records:
            handle.write(record.value)
            handle.write(b"\n")
    return time.monotonic() - started


def _best_compression() -> str | None:
    for module, codec in (("lz4", "lz4"), ("zstandard", "zstd"), ("snappy", "snappy")):
        try:
            __import__(module)
            return codec
        except ImportError:
            continue
    return "gzip"
