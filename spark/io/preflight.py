"""Fast reachability checks, so a wrong endpoint fails in seconds with one clear line."""

from __future__ import annotations

import socket

from spark.settings import EventSource


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
