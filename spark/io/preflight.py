"""Fast reachability checks, so a wrong endpoint fails in seconds with one clear line."""

from __future__ import annotations

import logging
import os
import re
import socket
from contextlib import suppress

from spark.settings import EventSource, Lake, Profile


class PreflightError(RuntimeError):
    """An endpoint the profile names cannot be reached."""


class UnknownHostError(PreflightError):
    """No DNS server knows any host the profile names: a typo, not an outage; waiting and
    retrying cannot help (a resolver that cannot be reached is a ``PreflightError``)."""


# A JVM told to reach the internet through a proxy, in any of the places its options come
# from: Spark's settings for the driver, and the variables every JVM (JAVA_TOOL_OPTIONS)
# or the java launcher Spark starts it with (JDK_JAVA_OPTIONS) reads.
_PROXY_OPTION = re.compile(r"-D(?:https?\.proxyHost|socksProxyHost)=\S")
_DRIVER_OPTIONS = ("spark.driver.defaultJavaOptions", "spark.driver.extraJavaOptions")
_JVM_VARIABLES = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS")

# getaddrinfo's "no such name" answers; EAI_AGAIN (no answer yet) is not one of them.
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def check_source_reachable(source: EventSource, timeout_s: float = 5.0) -> None:
    """Open a TCP connection to a bootstrap server of the event source."""
    errors = []
    unknown = 0
    for server in source.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:9092, as Kafka writes IPv6
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError) as error:
            errors.append(f"{server.strip()} ({error})")
            unknown += isinstance(error, socket.gaierror) and error.errno in _NO_SUCH_NAME
    message = (
        f"Kafka source unreachable: source.bootstrap_servers={source.bootstrap_servers}: "
        + "; ".join(errors)
    )
    if unknown == len(errors):
        raise UnknownHostError(f"{message} (no such host: check the name)")
    raise PreflightError(message)


def check_source_topic(profile: Profile, timeout_s: float = 10.0) -> int | None:
    """Ask the event source, as the profile's client options log in, for its topic; return
    its partition count (None when the profile's Kafka options are ones only Spark's own
    client takes: then Spark alone decides). Raise PreflightError when no answer comes
    within ``timeout_s`` (a security protocol the broker does not speak: Spark's client
    would retry until stopped), the broker refuses, or the topic does not exist (Spark
    would fail only once the query starts).
    For after ``check_source_reachable``."""
    from kafka.errors import KafkaError, KafkaTimeoutError

    # kafka-python's options from the Java client's (the simulator's translation).
    from local_stack.simulate.producer import (
        ProducerError,
        jvm_trust_store_only,
        kafka_python_config,
    )
    from local_stack.topics import UNKNOWN_TOPIC_OR_PARTITION, describe_topic

    source = profile.source
    where = f"{source.bootstrap_servers} (source.bootstrap_servers)"
    protocol = source.kafka_options.get("security.protocol", "PLAINTEXT")
    try:
        kafka_python_config(source.client_options(), client="admin")
    except ProducerError:
        return None  # options Spark's client takes and this one does not: Spark decides
    if jvm_trust_store_only(source.client_options()):
        return None  # kafka-python would trust the system's CAs alone, Spark the store
    client_log = logging.getLogger("kafka")  # a line per retry: the answer is ours, below
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        code, partitions = describe_topic(source.client_options(), source.topic, timeout_s)
    except ProducerError as error:  # the token endpoint refused
        raise PreflightError(f"Kafka source {where}: {error}") from None
    except KafkaTimeoutError:
        raise PreflightError(
            f"Kafka source {where} gave no answer within {timeout_s:.0f} s over security"
            f" protocol {protocol}: is that the protocol, and are these the credentials, its"
            " listener takes? (source.kafka_options)"
        ) from None
    except KafkaError as error:
        raise PreflightError(
            f"Kafka source {where} refused the request for topic {source.topic}:"
            f" {type(error).__name__} {error}"
        ) from None
    finally:
        client_log.setLevel(level)
    if code == UNKNOWN_TOPIC_OR_PARTITION:
        first = (
            f"send events to it first (python -m local_stack.simulate --workspace"
            f" {profile.workspace})"
            if profile.name == "local"
            else "create the event hub, or check the workspace"
        )
        raise PreflightError(f"topic {source.topic} does not exist at {where}: {first}")
    if code:
        raise PreflightError(
            f"Kafka source {where} answered for topic {source.topic} with Kafka error {code}"
        )
    return partitions


# Ports of the Azure storage schemes when the profile names no endpoint: abfs keeps TLS
# unless fs.azure.always.use.https is false; wasb is plain HTTP.
_STORAGE_PORTS = {"abfs": 443, "abfss": 443, "wasb": 80, "wasbs": 443}


def lake_endpoints(lake: Lake) -> list[tuple[str, int]]:
    """The (host, port) pairs the lake's tables and checkpoints are reached at: the
    profile's ``fs.azure.abfs.endpoint`` when it names one (Azurite), else each root's
    account host. Empty for a filesystem this check does not know (a local path)."""
    return [(host, port) for host, port, _ in _lake_addresses(lake)]


def _lake_addresses(lake: Lake) -> list[tuple[str, int, bool]]:
    """``lake_endpoints``, each with whether the storage client speaks TLS to it."""
    configured = lake.storage_conf.get("fs.azure.abfs.endpoint", "").strip()
    plain = lake.storage_conf.get("fs.azure.always.use.https", "").strip().lower() == "false"
    endpoints = []
    for root in (lake.root, lake.checkpoint_root):
        scheme, _, rest = root.partition("://")
        scheme = scheme.lower()
        port = _STORAGE_PORTS.get(scheme)
        if port is None:
            continue
        if configured:
            given, _, address = configured.rpartition("://")
            address = address.rstrip("/")
            host, colon, port_text = address.rpartition(":")
            if not colon:
                host, port_text = address, str(port)
            if not port_text.isdigit():
                raise PreflightError(
                    f"setting fs.azure.abfs.endpoint is not host:port: {configured!r}"
                )
            tls = given.lower() == "https" if given else not (scheme == "abfs" and plain)
            endpoint = (host.removeprefix("[").removesuffix("]"), int(port_text), tls)
        else:
            tls = scheme in ("abfss", "wasbs") or (scheme == "abfs" and not plain)
            port = 80 if not tls else port
            endpoint = (rest.split("/")[0].rpartition("@")[2], port, tls)
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    return endpoints


def check_lake_endpoint(profile: Profile, timeout_s: float = 5.0) -> None:
    """Open a TCP connection to each storage endpoint of the lake and ask it ``HEAD /``,
    before any JVM starts: a lake whose endpoint nothing answers at, or that takes the
    connection and sends nothing, is named in seconds (``timeout_s`` a step). (Whether the
    account and its credentials work is ``check_lake_reachable``'s question.)

    A driver told to reach the internet through a proxy (``-Dhttps.proxyHost`` in its
    Java options, or in JAVA_TOOL_OPTIONS or JDK_JAVA_OPTIONS) may have no direct route to
    the endpoint: the JVM's check alone applies.
    """
    if driver_proxy(profile):
        return
    azurite = " (is Azurite running? `make stack-up`)" if profile.name == "local" else ""
    for host, port, tls in _lake_addresses(profile.lake):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
        except OSError as error:
            unknown = isinstance(error, socket.gaierror) and error.errno in _NO_SUCH_NAME
            raise (UnknownHostError if unknown else PreflightError)(
                f"lake unreachable: lake.root={profile.lake.root}: {host}:{port} ({error})"
                + (" (no such host: check the name)" if unknown else "")
                + azurite
            ) from None
        if not _answers_http(host, port, tls, timeout_s):
            # hadoop-azure waits 30 s a read, and tries again: minutes before its error.
            raise PreflightError(
                f"lake unreachable: lake.root={profile.lake.root}: {host}:{port} took the"
                f" connection and sent no answer within {timeout_s:g} s{azurite}"
            )


def _answers_http(host: str, port: int, https: bool, timeout_s: float) -> bool:
    """Whether anything answers an HTTP request there in time. Any answer will do, a
    refusal or a dropped connection too (whether the account and its credentials work is
    the JVM's check); the certificate is not verified: nothing is sent but ``HEAD /``."""
    import http.client
    import ssl

    connection = (
        http.client.HTTPSConnection(
            host, port, timeout=timeout_s, context=ssl._create_unverified_context()
        )
        if https
        else http.client.HTTPConnection(host, port, timeout=timeout_s)
    )
    try:
        connection.request("HEAD", "/")
        connection.getresponse()
    except TimeoutError:
        return False
    except (OSError, http.client.HTTPException):
        return True
    finally:
        connection.close()
    return True


def driver_proxy(profile: Profile) -> str | None:
    """Where the driver JVM is told to use a proxy (a setting or variable name), if it is."""
    places = [(key, profile.spark_conf.get(key, "")) for key in _DRIVER_OPTIONS]
    places += [(name, os.environ.get(name, "")) for name in _JVM_VARIABLES]
    return next((place for place, options in places if _PROXY_OPTION.search(options)), None)


def check_lake_reachable(spark, profile: Profile) -> None:
    """Ask the lake's filesystem whether its root exists (fails fast on a dead endpoint)."""
    jvm = spark._jvm
    root = jvm.org.apache.hadoop.fs.Path(profile.lake.root)
    try:
        root.getFileSystem(spark._jsc.hadoopConfiguration()).exists(root)
    except Exception as error:  # a Py4J error carrying the storage client's message
        raise PreflightError(
            f"lake unreachable: lake.root={profile.lake.root}: {_storage_detail(error)}"
            + (" (is Azurite running? `make stack-up`)" if profile.name == "local" else "")
        ) from None


def _storage_detail(error: Exception) -> str:
    """The storage client's own words: ``java.net.ConnectException: Connection refused``
    rather than the ABFS wrapper's ``Status code: -1 error code: null error message: ...``."""
    text = str(error).strip()
    network = re.search(
        r"java\.(?:net|io)\.\w+(?:Exception|Error)(?::[^\n]*?)?(?=java\.|\n|$)", text
    )
    if network:
        return network.group(0).strip()
    lines = text.splitlines()
    detail = next(
        (line for line in lines if "Exception" in line),
        lines[0] if lines else type(error).__name__,
    )
    return detail.strip()[:300]


def lake_session(profile: Profile, app_name: str):
    """A Spark session for ``profile`` whose lake answers; ``PreflightError`` naming the lake
    root within seconds of the session's start when it does not (Azurite down, a wrong
    account), instead of a Java stack trace from the first table read."""
    check_lake_endpoint(profile)  # seconds, before a JVM is started
    spark = start_session(profile, app_name)
    check_lake_reachable(spark, profile)
    return spark


def start_session(profile: Profile, app_name: str):
    """``build_spark_session``; ``PreflightError`` in one line, instead of PySpark's
    traceback, when Spark's JVM exits before the session starts (a setting it refuses: its
    own words are above, on stderr) or refuses to start its context (a master URL no
    cluster manager takes: the reason is in the line)."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkRuntimeError
    from pyspark.errors.exceptions.captured import CapturedException

    from spark.session import build_spark_session

    settings = (
        f"the Spark settings of profile {profile.name!r} (spark.master"
        f" {profile.spark_master!r}, REELHOUSE_SPARK_CONF, the driver's memory and options)"
    )
    try:
        return build_spark_session(profile, app_name=app_name)
    except PySparkRuntimeError as error:
        if error.getCondition() != "JAVA_GATEWAY_EXITED":
            raise
        raise PreflightError(
            "Spark's JVM exited before the session started (its reason is above): check Java"
            f" (java on the PATH, JAVA_HOME) and {settings}"
        ) from None
    except (Py4JJavaError, CapturedException) as error:
        raise PreflightError(
            f"Spark refused to start the session: {_java_reason(error)}; check {settings}"
        ) from None


def _java_reason(error: Exception) -> str:
    """``org.apache.spark.SparkException: Could not parse Master URL: 'x'``: the Java
    exception's own line of a Py4J error (its first line names only the call). Once a
    session has run in the process, PySpark hands the Java exceptions it knows over as its
    own (``IllegalArgumentException``, the Java one kept as their origin)."""
    from py4j.protocol import Py4JError
    from pyspark.errors.exceptions.captured import CapturedException

    if isinstance(error, CapturedException):
        text = f"{type(error).__name__}: {error}"
        origin = getattr(error, "_origin", None)  # the Java exception, when it came from one
        if origin is not None:
            with suppress(Py4JError):  # a JVM gone since: PySpark's own words
                text = origin.toString()
        return text.strip().splitlines()[0][:300]
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines[1:]:
        if not line.startswith("at "):
            return line.removeprefix(":").strip()[:300]
    return lines[0][:300] if lines else type(error).__name__
