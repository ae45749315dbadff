"""Ports for tests that need one nothing listens on."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    """A loopback TCP port that was free a moment ago; the OS chose it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def silent_port() -> Iterator[tuple[int, list]]:
    """A loopback port that takes connections and never answers (a hung service): its
    number, and the connections it took so far."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list = []

    def take() -> None:
        try:
            while True:
                accepted.append(listener.accept())
        except OSError:  # closed
            pass

    threading.Thread(target=take, daemon=True).start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.close()
        for connection, _ in accepted:
            connection.close()
