"""How a lake that does not answer is worded."""

from __future__ import annotations

import pytest

from spark.io.preflight import _storage_detail

pytestmark = pytest.mark.unit

# What hadoop-azure's client says when nothing listens at the endpoint (Azurite down).
ABFS_REFUSED = (
    "An error occurred while calling o41.exists.\n"
    ": Status code: -1 error code: null error message: java.net.ConnectException: Connection"
    " refusedjava.net.ConnectException: Connection refused\n"
    "\tat org.apache.hadoop.fs.azurebfs.services.AbfsRestOperation.executeHttpOperation"
)


@pytest.mark.parametrize(
    ("raised", "detail"),
    [
        (ABFS_REFUSED, "java.net.ConnectException: Connection refused"),
        (
            "x\njava.net.UnknownHostException: nowhere.invalid\n\tat ...",
            "java.net.UnknownHostException: nowhere.invalid",
        ),
        (
            "An error occurred\norg.apache.hadoop.fs.azurebfs.AbfsRestOperationException:"
            " Operation failed: Server failed to authenticate the request., 403",
            "org.apache.hadoop.fs.azurebfs.AbfsRestOperationException: Operation failed:"
            " Server failed to authenticate the request., 403",
        ),
        ("something else entirely", "something else entirely"),
    ],
)
def test_the_storage_clients_own_words_are_kept(raised, detail):
    assert _storage_detail(RuntimeError(raised)) == detail


@pytest.mark.parametrize(
    ("servers", "unknown"),
    [
        ("reelhouse-nowhere.invalid:9093", True),
        ("127.0.0.1:{free}", False),
        ("reelhouse-nowhere.invalid:9093,127.0.0.1:{free}", False),
    ],
)
def test_a_host_no_dns_server_knows_is_told_apart_from_one_that_is_down(servers, unknown):
    """Only a name that resolves nowhere is a typo; a refused port may be a broker starting."""
    from dataclasses import replace

    from spark.io.preflight import PreflightError, UnknownHostError, check_source_reachable
    from spark.settings import load_profile
    from tests.ports import free_port

    source = load_profile("local", "preflight").source
    source = replace(source, bootstrap_servers=servers.replace("{free}", str(free_port())))
    with pytest.raises(PreflightError, match=r"^Kafka source unreachable: ") as raised:
        check_source_reachable(source, timeout_s=1.0)
    assert isinstance(raised.value, UnknownHostError) is unknown
    assert ("no such host" in str(raised.value)) is unknown


def test_a_bracketed_ipv6_broker_is_reached():
    """Kafka writes an IPv6 address in brackets ([::1]:9092); the brackets are no host."""
    import socket
    from dataclasses import replace

    from spark.io.preflight import check_source_reachable
    from spark.settings import load_profile

    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with listener:
        port = listener.getsockname()[1]
        source = replace(
            load_profile("local", "preflight").source, bootstrap_servers=f"[::1]:{port}"
        )
        check_source_reachable(source, timeout_s=1.0)


@pytest.mark.parametrize(
    ("root", "checkpoint_root", "storage_conf", "endpoints"),
    [
        (
            "abfs://lake@devstoreaccount1.dfs.core.windows.net/lake",
            "abfs://lake@devstoreaccount1.dfs.core.windows.net/_checkpoints",
            {"fs.azure.abfs.endpoint": "http://[::1]:10000"},
            [("::1", 10000)],
        ),
        (
            "abfs://lake@devstoreaccount1.dfs.core.windows.net/lake",
            "abfs://lake@devstoreaccount1.dfs.core.windows.net/_checkpoints",
            {"fs.azure.abfs.endpoint": "127.0.0.1:10000"},
            [("127.0.0.1", 10000)],
        ),
        (
            "abfss://lake@prod.dfs.core.windows.net/lake",
            "abfss://checks@other.dfs.core.windows.net/_checkpoints",
            {},
            [("prod.dfs.core.windows.net", 443), ("other.dfs.core.windows.net", 443)],
        ),
        (
            "wasb://lake@acct.blob.core.windows.net/x",
            "/tmp/checkpoints",
            {},
            [("acct.blob.core.windows.net", 80)],
        ),
        ("file:/tmp/lake", "/tmp/checkpoints", {}, []),
        (
            "abfs://lake@acct.dfs.core.windows.net/lake",
            "abfs://lake@acct.dfs.core.windows.net/_checkpoints",
            {"fs.azure.always.use.https": "false"},
            [("acct.dfs.core.windows.net", 80)],
        ),
    ],
)
def test_the_lake_endpoints_come_from_the_roots_or_the_configured_endpoint(
    root, checkpoint_root, storage_conf, endpoints
):
    from spark.io.preflight import lake_endpoints
    from spark.settings import Lake

    lake = Lake(root=root, checkpoint_root=checkpoint_root, catalog="x", storage_conf=storage_conf)
    assert lake_endpoints(lake) == endpoints


@pytest.mark.parametrize(
    ("endpoint", "error", "words"),
    [
        ("127.0.0.1:{free}", "PreflightError", "127.0.0.1:{free} ("),
        ("reelhouse-nowhere.invalid:10000", "UnknownHostError", "no such host: check the name"),
        ("127.0.0.1:blob", "PreflightError", "fs.azure.abfs.endpoint is not host:port"),
    ],
)
def test_a_lake_endpoint_nothing_answers_at_is_named_before_a_jvm_starts(endpoint, error, words):
    from dataclasses import replace

    from spark.io import preflight
    from spark.settings import load_profile
    from tests.ports import free_port

    port = str(free_port())
    profile = load_profile("local", "preflight")
    conf = {**profile.lake.storage_conf, "fs.azure.abfs.endpoint": endpoint.replace("{free}", port)}
    profile = replace(profile, lake=replace(profile.lake, storage_conf=conf))
    with pytest.raises(preflight.PreflightError) as raised:
        preflight.check_lake_endpoint(profile, timeout_s=1.0)
    assert type(raised.value).__name__ == error
    assert words.replace("{free}", port) in str(raised.value)
    assert str(raised.value).count("\n") == 0


@pytest.mark.parametrize("https", [False, True])
def test_a_lake_endpoint_that_takes_connections_and_never_answers_is_named(https):
    """A hung endpoint: hadoop-azure would wait 30 s a read and try again (minutes)."""
    from dataclasses import replace

    from spark.io import preflight
    from spark.settings import load_profile
    from tests.ports import silent_port

    profile = load_profile("local", "preflight")
    with silent_port() as (port, _):
        endpoint = f"127.0.0.1:{port}"
        conf = {
            **profile.lake.storage_conf,
            "fs.azure.abfs.endpoint": endpoint,
            "fs.azure.always.use.https": str(https).lower(),
        }
        profile = replace(profile, lake=replace(profile.lake, storage_conf=conf))
        with pytest.raises(preflight.PreflightError) as raised:
            preflight.check_lake_endpoint(profile, timeout_s=0.5)
    assert f"{endpoint} took the connection and sent no answer within 0.5 s" in str(raised.value)


@pytest.mark.parametrize("https", [False, True])
def test_a_lake_endpoint_that_answers_passes_whatever_it_answers(https, tmp_path, monkeypatch):
    """A storage endpoint answers ``HEAD /`` with an error status (Azure: 400): that is
    an answer. Over TLS its certificate is not this check's question."""
    import http.server
    import ssl
    import threading
    from dataclasses import replace

    from local_stack.settings import load_stack_settings
    from local_stack.tls import ensure_tls_material
    from spark.io import preflight
    from spark.settings import load_profile

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(400)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refusing)
    if https:
        monkeypatch.setenv("REELHOUSE_STACK_DIR", str(tmp_path))
        material = ensure_tls_material(load_stack_settings())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(material.certificate, material.private_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = load_profile("local", "preflight")
    conf = {
        **profile.lake.storage_conf,
        "fs.azure.abfs.endpoint": f"127.0.0.1:{server.server_address[1]}",
        "fs.azure.always.use.https": str(https).lower(),
    }
    profile = replace(profile, lake=replace(profile.lake, storage_conf=conf))
    try:
        preflight.check_lake_endpoint(profile, timeout_s=2.0)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("root", "conf", "tls"),
    [
        ("abfss://c@acct.dfs.core.windows.net/lake", {}, True),
        ("abfs://c@acct.dfs.core.windows.net/lake", {"fs.azure.always.use.https": "false"}, False),
        ("abfs://c@acct.dfs.core.windows.net/lake", {}, True),
        ("wasb://c@acct.blob.core.windows.net/lake", {}, False),
        (
            "abfs://c@acct.dfs.core.windows.net/lake",
            {"fs.azure.abfs.endpoint": "https://h:1"},
            True,
        ),
    ],
)
def test_tls_is_spoken_where_the_storage_client_speaks_it(root, conf, tls):
    from spark.io.preflight import _lake_addresses
    from spark.settings import Lake

    lake = Lake(root=root, checkpoint_root=root, catalog="x", storage_conf=conf)
    assert [address[2] for address in _lake_addresses(lake)] == [tls]


@pytest.mark.parametrize(
    ("place", "options"),
    [
        ("spark.driver.extraJavaOptions", "-XX:+UseParallelGC -Dhttps.proxyHost=proxy.example"),
        ("spark.driver.defaultJavaOptions", "-Dhttp.proxyHost=proxy.example"),
        ("JAVA_TOOL_OPTIONS", "-Dhttps.proxyHost=proxy.example -Dhttps.proxyPort=3128"),
        ("JDK_JAVA_OPTIONS", "-DsocksProxyHost=socks.example"),
    ],
)
def test_a_driver_behind_a_proxy_leaves_the_lake_check_to_its_jvm(monkeypatch, place, options):
    from dataclasses import replace

    from spark.io import preflight
    from spark.settings import load_profile
    from tests.ports import free_port

    for variable in ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"):
        monkeypatch.delenv(variable, raising=False)
    profile = load_profile("local", "preflight")
    conf = {**profile.lake.storage_conf, "fs.azure.abfs.endpoint": f"127.0.0.1:{free_port()}"}
    direct = replace(
        profile,
        lake=replace(profile.lake, storage_conf=conf),
        spark_conf={"spark.driver.extraJavaOptions": "-XX:+UseParallelGC"},
    )
    with pytest.raises(preflight.PreflightError):  # nothing listens: a direct check fails
        preflight.check_lake_endpoint(direct, timeout_s=1.0)
    proxied = direct
    if place.startswith("spark."):
        proxied = replace(direct, spark_conf={**direct.spark_conf, place: options})
    else:
        monkeypatch.setenv(place, options)
    assert preflight.driver_proxy(proxied) == place
    preflight.check_lake_endpoint(proxied, timeout_s=1.0)  # no direct route is needed


def test_a_setting_refused_after_an_earlier_session_is_one_line_too(spark, monkeypatch):
    """Once a session has run in the process, PySpark hands Spark's IllegalArgumentException
    over as its own captured exception, not a Py4J error: a session that then refuses a
    setting is still one line naming the Java exception and its reason."""
    from pyspark.errors.exceptions.captured import CapturedException

    from spark import session as sessions
    from spark.io.preflight import PreflightError, start_session
    from spark.settings import load_profile

    with pytest.raises(CapturedException) as refused:  # Spark's own refusal, from its JVM
        spark.conf.set("spark.sql.shuffle.partitions", "many")

    def refusing_build(profile, app_name):
        raise refused.value

    monkeypatch.setattr(sessions, "build_spark_session", refusing_build)
    with pytest.raises(PreflightError) as error:
        start_session(load_profile("local"), "x")
    message = str(error.value)
    assert message.startswith("Spark refused to start the session: org.apache.spark."), message
    assert "spark.sql.shuffle.partitions" in message and "\n" not in message, message


def _profile_with_kafka_options(monkeypatch, bootstrap: str, options: dict):
    import json

    from spark.settings import load_profile

    monkeypatch.setenv("REELHOUSE_SOURCE_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("REELHOUSE_SOURCE_KAFKA_OPTIONS", json.dumps(options))
    return load_profile("local", "preflight")


def test_the_topic_check_times_out_in_one_line_whatever_timeout_the_profile_sets(monkeypatch):
    """The azure profile sets request.timeout.ms: the check's own timeout takes its place
    (passed twice, it was a TypeError)."""
    from spark.io.preflight import PreflightError, check_source_topic
    from tests.ports import free_port

    nothing = f"127.0.0.1:{free_port()}"
    profile = _profile_with_kafka_options(monkeypatch, nothing, {"request.timeout.ms": "60000"})
    with pytest.raises(PreflightError, match=rf"^Kafka source {nothing} .* no answer within 1 s"):
        check_source_topic(profile, timeout_s=1)


def test_options_only_spark_s_client_takes_leave_the_topic_to_spark(monkeypatch):
    from spark.io.preflight import check_source_topic

    options = {"client.dns.lookup": "use_all_dns_ips"}
    profile = _profile_with_kafka_options(monkeypatch, "127.0.0.1:1", options)
    assert check_source_topic(profile, timeout_s=1) is None


@pytest.mark.parametrize(
    ("options", "left_to_spark"),
    [
        ({"ssl.truststore.location": "/etc/kafka/ca.jks"}, True),  # JKS by default
        ({"ssl.truststore.type": "PKCS12", "ssl.truststore.location": "/ca.p12"}, True),
        ({"ssl.truststore.location": "/ca.jks", "ssl.ca.location": "/ca.pem"}, False),
        ({"ssl.truststore.type": "PEM", "ssl.truststore.location": "/ca.pem"}, False),
    ],
)
def test_a_java_trust_store_leaves_the_topic_to_spark(monkeypatch, options, left_to_spark):
    """kafka-python cannot read a JKS or PKCS12 store: it would trust the system's CAs
    alone and refuse a broker with a private CA that Spark's client, reading the store,
    trusts. Without a CA file it can read, the check is Spark's."""
    from spark.io import preflight
    from tests.ports import free_port

    nothing = f"127.0.0.1:{free_port()}"
    profile = _profile_with_kafka_options(
        monkeypatch, nothing, {"security.protocol": "SSL", **options}
    )
    if left_to_spark:
        assert preflight.check_source_topic(profile, timeout_s=1) is None
    else:
        with pytest.raises(preflight.PreflightError, match="no answer within 1 s"):
            preflight.check_source_topic(profile, timeout_s=1)
