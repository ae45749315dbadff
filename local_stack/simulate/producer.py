"""Writing records: to a Kafka(-compatible) topic with kafka-python, or to a JSON-lines file.

The Kafka writer takes the profile's client options unchanged, so the same code sends
to the local broker or to Event Hubs' Kafka endpoint.
"""

from __future__ import annotations

import multiprocessing
import re
import sys
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

from local_stack.simulate.simulation import Record

_JAAS = re.compile(r'username="(?P<user>[^"]*)"\s+password="(?P<password>[^"]*)"')


class ProducerError(RuntimeError):
    """The records could not be delivered; the message names the endpoint."""


# Java client options with a kafka-python argument of the same meaning and unit.
_SAME_MEANING = {
    "request.timeout.ms": "request_timeout_ms",
    "metadata.max.age.ms": "metadata_max_age_ms",
    "connections.max.idle.ms": "connections_max_idle_ms",
}
# Consumer-group options that the Spark source needs and a producer has no use for.
_CONSUMER_ONLY = {"session.timeout.ms"}


def kafka_python_config(client_options: Mapping[str, str]) -> dict:
    """Translate Java-client options (as Spark uses them) into kafka-python arguments."""
    config: dict = {}
    truststore_type = client_options.get("ssl.truststore.type", "JKS")
    for key, value in client_options.items():
        if key in _SAME_MEANING:
            config[_SAME_MEANING[key]] = int(value)
        elif key in _CONSUMER_ONLY:
            continue
        elif key == "ssl.truststore.location" and truststore_type.upper() == "PEM":
            config["ssl_cafile"] = value  # a PEM trust store is a CA file to kafka-python
        elif key == "bootstrap.servers":
            config["bootstrap_servers"] = value.split(",")
        elif key == "security.protocol":
            config["security_protocol"] = value
        elif key == "sasl.mechanism":
            config["sasl_mechanism"] = value
        elif key == "sasl.jaas.config":
            match = _JAAS.search(value)
            if not match:
                raise ProducerError('sasl.jaas.config has no username="..." password="..."')
            config["sasl_plain_username"] = match["user"]
            config["sasl_plain_password"] = match["password"]
        elif key in ("ssl.ca.location", "ssl.cafile"):
            config["ssl_cafile"] = value
        elif key == "ssl.endpoint.identification.algorithm":
            config["ssl_check_hostname"] = value.lower() == "https"
        elif key.startswith("ssl.truststore."):
            continue  # a JKS/PKCS12 store is JVM-only; kafka-python uses ssl.ca.location
        else:
            raise ProducerError(f"unsupported Kafka client option for the simulator: {key}")
    return config


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
    config = kafka_python_config(client_options)
    producers = max(1, producers)
    context = multiprocessing.get_context("fork")
    sent = context.Value("q", 0)
    _SHARED.update(records=records, sent=sent)
    started = time.monotonic()
    jobs = [(index, producers, topic, config, rate / producers) for index in range(producers)]
    try:
        with context.Pool(producers) as pool:
            pending = pool.map_async(_send_share, jobs)
            _show_progress(pending, sent, len(records), progress)
            outcomes = pending.get()
    finally:
        _SHARED.clear()
    failures = [outcome for outcome in outcomes if outcome]
    if failures:
        raise ProducerError(failures[0])
    return time.monotonic() - started


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
        defaults = {"max_block_ms": 30000, "request_timeout_ms": 30000}
        producer = KafkaProducer(
            acks="all",
            linger_ms=50,
            batch_size=1024 * 1024,
            max_request_size=4 * 1024 * 1024,
            compression_type=_best_compression(),
            **{**defaults, **config},  # the profile's timeouts win
        )
    except KafkaError as error:
        return f"cannot reach Kafka at {bootstrap}: {error}"
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
        return f"delivery to topic {topic} at {bootstrap} failed: {error}"
    finally:
        producer.close(timeout=10)
    with sent.get_lock():
        sent.value += mine % 2000
    if errors:
        return f"{len(errors)} records to topic {topic} were not acknowledged: {errors[0]}"
    return None


def _show_progress(pending, sent, total: int, progress: bool) -> None:
    if not progress:
        pending.wait()
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="rec", file=sys.stderr) as bar:
        while not pending.ready():
            pending.wait(0.5)
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
