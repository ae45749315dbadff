"""Java-client options (as the profiles give them) translated for kafka-python."""

from __future__ import annotations

import pytest

from local_stack.simulate.producer import ProducerError, kafka_python_config

pytestmark = pytest.mark.unit

JAAS = (
    "org.apache.kafka.common.security.plain.PlainLoginModule required"
    ' username="$ConnectionString" password="Endpoint=sb://ns.servicebus.windows.net/;'
    'SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=a2V5/+==";'
)


def test_event_hubs_options_with_a_pem_trust_store():
    config = kafka_python_config(
        {
            "bootstrap.servers": "127.0.0.1:9094",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.jaas.config": JAAS,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": "/state/tls/localhost.crt.pem",
            "request.timeout.ms": "60000",
            "session.timeout.ms": "30000",
            "metadata.max.age.ms": "180000",
            "connections.max.idle.ms": "180000",
        }
    )

    assert config == {
        "bootstrap_servers": ["127.0.0.1:9094"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "$ConnectionString",
        "sasl_plain_password": "Endpoint=sb://ns.servicebus.windows.net/;"
        "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=a2V5/+==",
        "ssl_cafile": "/state/tls/localhost.crt.pem",
        "request_timeout_ms": 60000,
        "metadata_max_age_ms": 180000,
        "connections_max_idle_ms": 180000,
    }


@pytest.mark.parametrize("store_type", [None, "JKS", "PKCS12"])
def test_a_jvm_trust_store_is_not_a_ca_file(store_type):
    options = {"ssl.truststore.location": "/etc/truststore.jks", "ssl.truststore.password": "x"}
    if store_type:
        options["ssl.truststore.type"] = store_type

    assert kafka_python_config(options) == {}


def test_an_option_the_simulator_cannot_honour_is_named():
    with pytest.raises(ProducerError, match="unsupported .*: sasl.login.callback.handler.class"):
        kafka_python_config({"sasl.login.callback.handler.class": "x"})


EVERY_TIMEOUT = {
    "bootstrap.servers": "127.0.0.1:9094",
    "request.timeout.ms": "60000",
    "max.block.ms": "5000",
    "metadata.max.age.ms": "180000",
    "connections.max.idle.ms": "180000",
}


@pytest.mark.parametrize("client", ["producer", "consumer", "admin"])
def test_each_client_gets_only_arguments_it_accepts(client):
    import kafka

    cls = {
        "producer": kafka.KafkaProducer,
        "consumer": kafka.KafkaConsumer,
        "admin": kafka.KafkaAdminClient,
    }[client]

    config = kafka_python_config(EVERY_TIMEOUT, client=client)

    assert set(config) - set(cls.DEFAULT_CONFIG) == set()
    assert config["request_timeout_ms"] == 60000
    assert ("max_block_ms" in config) == (client == "producer")


def test_an_unknown_client_is_named():
    with pytest.raises(ValueError, match="client must be one of producer, consumer, admin"):
        kafka_python_config({}, client="streams")


def test_records_timed_over_an_hour_ahead_are_refused_before_any_is_sent():
    """A Kafka 4 broker refuses them one by one (log.message.timestamp.after.max.ms): a run
    started near now would lose its future records. None is sent, and the error says
    which start time would do. No broker listens at this address: nothing was tried."""
    import time

    from local_stack.simulate.producer import send_to_kafka
    from local_stack.simulate.simulation import Record

    now_ms = int(time.time() * 1000)
    records = [Record(b"k", b"now", now_ms), Record(b"k", b"later", now_ms + 2 * 3600 * 1000)]
    with pytest.raises(ProducerError) as refused:
        send_to_kafka(records, "t", {"bootstrap.servers": "127.0.0.1:1"}, rate=0, progress=False)
    message = str(refused.value)
    assert "more than an hour from now: Kafka refuses records timed that far ahead" in message
    assert "so none was sent; give a --start-time" in message


def test_given_its_start_a_run_too_far_ahead_is_told_the_latest_start_that_fits():
    import time
    from datetime import UTC, datetime, timedelta

    from local_stack.simulate.producer import check_not_ahead
    from local_stack.simulate.simulation import Record

    start = datetime.fromtimestamp(int(time.time()), UTC)
    last_ms = int(start.timestamp() * 1000) + 2 * 3600 * 1000  # two hours on
    with pytest.raises(ProducerError) as refused:
        check_not_ahead([Record(b"k", b"v", last_ms)], start)
    advice = str(refused.value).rsplit("no later than ", 1)[1]
    fits = datetime.fromisoformat(advice.split(" (", 1)[0])
    # An hour ahead is the broker's limit, less a minute for the sending, and three hours
    # to spare: 4 h 1 min earlier.
    assert timedelta(minutes=240) <= start - fits <= timedelta(minutes=242)
    assert advice.endswith("(three hours to spare: another start draws other sessions)")


def test_the_options_spark_is_not_handed_are_the_producer_s_own():
    """Spark's source only consumes: the producer options a profile gives are kept from it
    (``spark.settings.PRODUCER_OPTIONS``), and they are the ones the simulator's producer
    alone takes; the two lists are written twice and held equal here."""
    from local_stack.simulate import producer
    from spark.settings import PRODUCER_OPTIONS

    assert set(PRODUCER_OPTIONS) == {*producer._PRODUCER_ONLY, "compression.type"}
    options = {"compression.type": "gzip", "max.request.size": "1", "batch.size": "1"}
    options |= {"max.block.ms": "1"}
    for client in ("consumer", "admin"):
        assert kafka_python_config(options, client=client) == {}
    assert set(kafka_python_config(options, client="producer")) == {
        "compression_type",
        "max_request_size",
        "batch_size",
        "max_block_ms",
    }


def _second_producer_dies(job: tuple) -> str | None:
    """A producer process killed while it sends (the OOM killer's SIGKILL)."""
    import os
    import signal

    if job[0] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return None


def test_a_producer_process_that_dies_is_named_not_waited_for(monkeypatch):
    """multiprocessing.Pool waited for a killed worker's result forever, saying nothing."""
    import threading
    import time

    from local_stack.simulate import producer
    from local_stack.simulate.simulation import Record

    monkeypatch.setattr(producer, "_send_share", _second_producer_dies)
    now_ms = int(time.time() * 1000)
    records = [Record(f"k{i}".encode(), b"v", now_ms) for i in range(3)]
    outcome: list = []

    def send() -> None:
        try:
            producer.send_to_kafka(
                records, "t", {"bootstrap.servers": "127.0.0.1:1"}, rate=0, progress=False
            )
        except Exception as error:
            outcome.append(error)

    sender = threading.Thread(target=send, daemon=True)  # a hang fails, not blocks, the test
    sender.start()
    sender.join(60)
    assert not sender.is_alive(), "send_to_kafka still waits for a dead producer"
    (error,) = outcome
    assert isinstance(error, ProducerError)
    assert str(error) == (
        "a producer process died after 0 of 3 records were sent to t (out of memory? see"
        " dmesg): the topic holds part of the run; send it again to a new topic"
    )
