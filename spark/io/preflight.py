"""Fast reachability checks, so a wrong endpoint fails in seconds with one clear line."""

from __future__ import annotations

import re
import socket

from spark.settings import EventSource, Profile


class PreflightError(RuntimeError):
    """An endpoint the profile names cannot be reached."""


class UnknownHostError(PreflightError):
    """No DNS server knows any host the profile names: a typo, not an outage; waiting and
    retrying cannot help (a resolver that cannot be reached is a ``PreflightError``)."""


# getaddrinfo's "no such name" answers; EAI_AGAIN (no answer yet) is not one of them.
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def check_source_reachable(source: EventSource, timeout_s: float = 5.0) -> None:
    """Open a TCP connection to a bootstrap server of the event source."""
    errors = []
    unknown = 0
    for server in source.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
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
    from spark.session import build_spark_session

    spark = build_spark_session(profile, app_name=app_name)
    check_lake_reachable(spark, profile)
    return spark
