"""Fast reachability checks, so a wrong endpoint fails in seconds with one clear line."""

from __future__ import annotations

import socket

from spark.settings import EventSource, Profile


class PreflightError(RuntimeError):
    """An endpoint the profile names cannot be reached."""


def check_source_reachable(source: EventSource, timeout_s: float = 5.0) -> None:
    """Open a TCP connection to a bootstrap server of the event source."""
    errors = []
    for server in source.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError) as error:
            errors.append(f"{server.strip()} ({error})")
    raise PreflightError(
        f"Kafka source unreachable: source.bootstrap_servers={source.bootstrap_servers}: "
        + "; ".join(errors)
    )


def check_lake_reachable(spark, profile: Profile) -> None:
    """Ask the lake's filesystem whether its root exists (fails fast on a dead endpoint)."""
    jvm = spark._jvm
    root = jvm.org.apache.hadoop.fs.Path(profile.lake.root)
    try:
        root.getFileSystem(spark._jsc.hadoopConfiguration()).exists(root)
    except Exception as error:  # a Py4J error carrying the storage client's message
        message = str(error).strip().splitlines()
        detail = next(
            (line for line in message if "Exception" in line),
            message[0] if message else type(error).__name__,
        )
        raise PreflightError(
            f"lake unreachable: lake.root={profile.lake.root}: {detail.strip()[:300]}"
        ) from None
