"""The local stack as a whole: start, stop and report every service in order."""

from __future__ import annotations

import logging

from local_stack.services import Azurite, KafkaBroker, Service, ServiceStatus, StackError
from local_stack.settings import StackSettings, load_stack_settings
from local_stack.topics import ensure_topic

log = logging.getLogger(__name__)


class LocalStack:
    """Apache Kafka (KRaft) and Azurite as native processes under the state folder."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or load_stack_settings()
        self.kafka = KafkaBroker(self.settings)
        self.azurite = Azurite(self.settings)

    @property
    def services(self) -> tuple[Service, ...]:
        return (self.kafka, self.azurite)

    def up(self, topics: tuple[str, ...] = ()) -> list[str]:
        """Start what is not running (idempotent) and create the given topics."""
        messages = [service.start() for service in self.services]
        for topic in topics:
            created = ensure_topic(
                self.settings.kafka.bootstrap_servers,
                topic,
                partitions=self.settings.kafka.default_partitions,
            )
            messages.append(f"topic {topic}: {'created' if created else 'exists'}")
        return messages

    def down(self) -> list[str]:
        """Stop what this project started, in reverse order."""
        messages = []
        for service in reversed(self.services):
            try:
                messages.append(service.stop())
            except StackError as error:
                messages.append(f"{service.name}: {error}")
        return messages

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]

    def is_healthy(self) -> bool:
        return all(status.healthy for status in self.status())
