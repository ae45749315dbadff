"""The native services of the local stack, run as plain processes (no Docker).

Each service owns a pid file and a log file under the state folder. ``start`` is
idempotent, and two at once start one process (a lock file per service), ``stop`` only
ever signals a process this project started (pid file plus a command-line check and, on
Linux, the boot and start tick recorded beside the pid, so a reused pid is never killed).
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from local_stack import eventhubs
from local_stack.jvm import broker_classpath
from local_stack.settings import NODE_DIR, PROJECT_ROOT, StackSettings
from local_stack.tls import ensure_tls_material, write_private

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A service could not be started, checked or stopped; the message says why."""


# How long `up` waits for an external service (a container still starting) to answer.
EXTERNAL_WAIT_S = 10.0


class StackSetupError(StackError):
    """The stack cannot start until someone acts (install a tool, free a port): trying
    again cannot help, so callers that retry (``flows.medallion.check_stack``) do not."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ports: tuple[int, ...]
    healthy: bool
    detail: str


class Service:
    """One process of the stack: how to start it, check it and stop it."""

    name: str = ""
    marker: str = ""  # a string the process's command line must contain
    stop_signal: signal.Signals = signal.SIGTERM
    stop_grace_s = 30.0  # from the stop signal to SIGKILL
    restart: str = "python -m local_stack down, then up"  # how to restart it on new settings
    may_run_elsewhere = False  # docker compose runs it when the stack's services are external

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.pid_file = settings.run_dir / f"{self.name}.pid"
        self.log_file = settings.log_dir / f"{self.name}.log"
        # Where this start's lines begin in the log, which earlier starts' lines precede.
        self.log_start = 0

    # What each service defines.
    def ports(self) -> tuple[int, ...]:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The child's environment (None: inherit this process's)."""
        return None

    def is_healthy(self) -> bool:
        raise NotImplementedError

    def start_timeout_s(self) -> float:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time preparation before the first start (e.g. formatting storage)."""

    @property
    def external(self) -> bool:
        """Run by someone else (stack setting ``services = "external"``, for the services
        docker compose can run): used where it answers, never started or stopped by the
        project."""
        return self.may_run_elsewhere and self.settings.external_services

    # Shared behaviour.
    def running_pid(self) -> int | None:
        """The pid of our running process, or None (stale pid files are removed)."""
        try:
            pid, *started = self.pid_file.read_text().split()
            pid = int(pid)
        except (OSError, ValueError):  # none, or none that can be read
            return None
        if _is_our_process(pid, self.marker, " ".join(started) or None):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def status(self) -> ServiceStatus:
        if self.external:
            healthy = self.is_healthy()
            detail = f"external, {'healthy' if healthy else 'not answering'}"
            return ServiceStatus(self.name, None, self.ports()[:1], healthy, detail)
        pid = self.running_pid()
        healthy = pid is not None and self.is_healthy()
        detail = "healthy" if healthy else "running, not answering"
        if pid is None:
            detail = "stopped"
        return ServiceStatus(self.name, pid, self.ports(), healthy, detail)

    def start(self) -> str:
        """Start the service unless it already runs; return what was done."""
        if self.external:
            return self._answering_elsewhere()
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        # Two starts at once (two flow runs after a reboot): the second waits for the first
        # to record its process, then reuses it, instead of launching a second one that
        # loses the ports and leaves the first untracked.
        with _held(self.settings.run_dir / f"{self.name}.lock", self.name):
            pid = self.running_pid()
            if pid is None:
                process = self._launch()
        if pid is not None:
            self._check_listening_on_our_ports(pid)
            # Its own start's lines (it may still be starting, by another caller): not an
            # earlier start's, whose "started" says nothing of it.
            with suppress(OSError, ValueError):
                self.log_start = int(self._log_start_file.read_text())
            self._wait_healthy(pid, lambda: _is_our_process(pid, self.marker))
            return f"{self.name}: already running (pid {pid}), reused"
        started = time.monotonic()
        self._wait_healthy(process.pid, lambda: process.poll() is None)
        return f"{self.name}: started (pid {process.pid}) in {time.monotonic() - started:.1f}s"

    def _launch(self) -> subprocess.Popen:
        for port in self.ports():
            _ensure_port_free(port, self.name)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_file.open("ab") as log_handle:
            self.log_start = log_handle.tell()
            process = subprocess.Popen(
                self.command(),
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.environment(),
            )
        self.pid_file.write_text(f"{process.pid} {_started(process.pid) or ''}".strip() + "\n")
        self._log_start_file.write_text(f"{self.log_start}\n")
        return process

    @property
    def _log_start_file(self) -> Path:
        return self.settings.run_dir / f"{self.name}.log-start"

    def _answering_elsewhere(self) -> str:
        # A container still starting gets a few seconds; a flow's stack check retries a
        # StackError for about a minute more.
        port = self.ports()[0]
        if _wait_for(self.is_healthy, EXTERNAL_WAIT_S):
            return f"{self.name}: external, answering on port {port}"
        raise StackError(
            f"{self.name}: nothing answers on port {port}, and the stack's services are"
            " external (REELHOUSE_STACK_SERVICES=external): start them (docker compose -f"
            " local_stack/docker-compose.yml up -d), or unset it to run them natively"
        )

    def _check_listening_on_our_ports(self, pid: int) -> None:
        """A running service keeps the ports it was started on: when the settings now name
        others (``REELHOUSE_KAFKA_PORT`` set after ``up``), reusing it would wait out the
        health check on ports nobody listens at. A service still starting listens on some of
        its ports only, never on others: listening on a port the settings do not name tells
        a service started with other settings. Its own process only: a worker's flow runs,
        its children, listen on ports of their own."""
        if not self.ports():
            return
        listening = _listening_ports(pid)
        if listening - set(self.ports()):
            raise StackSetupError(
                f"{self.name} (pid {pid}) listens on port(s)"
                f" {', '.join(map(str, sorted(listening)))}, but the settings now name"
                f" {', '.join(map(str, self.ports()))}; to move it, restart it ({self.restart})"
            )

    def stop(self) -> str:
        """Stop our process (SIGTERM, then SIGKILL) and wait until its ports are free."""
        if self.external and self.running_pid() is None:  # one of ours started before the
            return f"{self.name}: external, not stopped"  # switch is still ours to stop
        pid = self.running_pid()
        if pid is None:
            return f"{self.name}: not running"
        _terminate(pid, self.stop_signal, grace_s=self.stop_grace_s)
        self.pid_file.unlink(missing_ok=True)
        self._log_start_file.unlink(missing_ok=True)
        for port in self.ports():
            _wait_for(lambda port=port: not _port_in_use(port), 10.0)
        return f"{self.name}: stopped (pid {pid})"

    def _wait_healthy(self, pid: int, alive: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout_s()
        while time.monotonic() < deadline:
            if not alive():
                raise StackError(f"{self.name} exited during start-up. {self._log_tail()}")
            if self.is_healthy():
                return
            time.sleep(0.5)
        raise StackError(
            f"{self.name} (pid {pid}) did not become healthy within "
            f"{self.start_timeout_s():.0f}s. {self._log_tail()}"
        )

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return f"No log at {self.log_file}."
        return f"Log: {self.log_file}; last lines:\n" + "\n".join(tail)


class KafkaBroker(Service):
    """A single-node Apache Kafka broker in KRaft mode (broker and controller in one)."""

    name = "kafka"
    marker = "kafka.Kafka"
    may_run_elsewhere = True

    @property
    def data_dir(self) -> Path:
        return self.settings.state_dir / "kafka" / "data"

    @property
    def config_file(self) -> Path:
        return self.settings.state_dir / "kafka" / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.settings.state_dir / "kafka" / "log4j2.properties"

    @property
    def jwks_url(self) -> str:
        """The local token issuer's public keys, as the listener reads them."""
        return eventhubs.jwks_file(self.settings).resolve().as_uri()

    @property
    def eventhubs_keystore(self) -> Path:
        """The Event-Hubs-like listener's private key and certificate in one PEM file."""
        return self.settings.state_dir / "kafka" / "eventhubs-keystore.pem"

    def ports(self) -> tuple[int, ...]:
        kafka = self.settings.kafka
        return (kafka.port, kafka.controller_port, kafka.sasl_port)

    def start_timeout_s(self) -> float:
        return self.settings.kafka.start_timeout_s

    def server_properties(self) -> dict[str, str]:
        kafka = self.settings.kafka
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{kafka.host}:{kafka.controller_port}",
            "listeners": f"PLAINTEXT://{kafka.host}:{kafka.port},"
            f"CONTROLLER://{kafka.host}:{kafka.controller_port},"
            f"EVENTHUBS://{kafka.host}:{kafka.sasl_port}",
            "advertised.listeners": f"PLAINTEXT://{kafka.host}:{kafka.port},"
            f"EVENTHUBS://{kafka.host}:{kafka.sasl_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "EVENTHUBS:SASL_SSL",
            **self._eventhubs_listener_properties(),
            # Event Hubs' data roles as Kafka ACLs: an event hub (topic) without ACLs is open
            # to every login, as a role on the namespace opens all of them; one with ACLs
            # only to the principals they name (the preflight's tests deny one that way).
            # The local listeners' clients (the broker itself, the local profile) are
            # anonymous and super users: ACLs never apply to them.
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "true",
            "super.users": "User:ANONYMOUS",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(kafka.default_partitions),
            # Topics are created explicitly by the project, never by a typo.
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Simulated records carry their simulated arrival time (days in the past) as
            # timestamp: time-based retention would delete them at once. Bound by size.
            "log.retention.ms": "-1",
            "log.retention.bytes": str(2 * 1024**3),
            "message.max.bytes": str(2 * 1024 * 1024),
        }

    def _eventhubs_listener_properties(self) -> dict[str, str]:
        """The EVENTHUBS listener: what Event Hubs' Kafka endpoint accepts, and only that."""
        connection_string = eventhubs.ensure_connection_string(self.settings)
        # One PLAIN user, named literally $ConnectionString (Kafka's JAAS parser takes '$' in
        # an option name), whose password is the connection string. Kafka logs this
        # password-type value as [hidden].
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required"
            f' user_{eventhubs.USER_NAME}="{connection_string}";'
        )
        # OAUTHBEARER as Event Hubs takes it from Entra ID (the azure profile's entra_id):
        # a signed JWT whose signature, expiry, audience (the namespace) and issuer (the
        # tenant) the listener verifies with Kafka's JWT validator against the local
        # issuer's public key (``eventhubs.ensure_signing_key``), as Event Hubs does against
        # Entra ID's keys.
        # The tests get their tokens from a token endpoint of their own, signed with it.
        oauth_jaas = (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required"
            ' unsecuredLoginStringClaim_sub="broker";'  # the broker's own login, never used
        )
        return {
            "listener.name.eventhubs.sasl.enabled.mechanisms": "PLAIN,OAUTHBEARER",
            "listener.name.eventhubs.plain.sasl.jaas.config": jaas,
            "listener.name.eventhubs.oauthbearer.sasl.jaas.config": oauth_jaas,
            "listener.name.eventhubs.oauthbearer.sasl.server.callback.handler.class": (
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
            ),
            "sasl.oauthbearer.jwks.endpoint.url": self.jwks_url,
            "sasl.oauthbearer.expected.audience": eventhubs.oauth_audience(self.settings),
            # Event Hubs takes tokens of its own tenant only ("Invalid tenant name").
            "sasl.oauthbearer.expected.issuer": eventhubs.oauth_issuer(eventhubs.LOCAL_TENANT_ID),
            # A PEM key store: an unencrypted PKCS#8 key needs no ssl.key.password.
            "listener.name.eventhubs.ssl.keystore.type": "PEM",
            "listener.name.eventhubs.ssl.keystore.location": str(self.eventhubs_keystore),
        }

    def _settings_since_started(self) -> list[str]:
        """The broker settings that differ from those the running broker was started with
        (its configuration file), by name only: values may hold the connection string."""
        try:
            lines = self.config_file.read_text().splitlines()
        except OSError:
            return []
        written = dict(line.split("=", 1) for line in lines if "=" in line)
        wanted = self.server_properties()
        return sorted(
            key for key in wanted.keys() | written.keys() if wanted.get(key) != written.get(key)
        )

    def prepare(self) -> None:
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        tls = ensure_tls_material(self.settings)
        eventhubs.ensure_signing_key(self.settings)
        write_private(
            self.eventhubs_keystore,
            tls.private_key.read_text() + tls.certificate.read_text(),
        )
        properties = "\n".join(f"{key}={value}" for key, value in self.server_properties().items())
        # It holds the listener's connection string.
        write_private(self.config_file, properties + "\n")
        self.log4j_file.write_text(_BROKER_LOG4J)
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        format_command = [
            *self._java(),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config_file),
        ]
        completed = subprocess.run(format_command, capture_output=True, text=True)
        if completed.returncode != 0:
            raise StackError(
                f"formatting Kafka storage in {self.data_dir} failed: "
                f"{(completed.stderr or completed.stdout).strip().splitlines()[-1:]}"
            )

    def command(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.config_file)]

    def _java(self) -> list[str]:
        heap = self.settings.kafka.heap
        return [
            _java_binary(),
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.settings.log_dir}",
            # Kafka 4 reads no OAUTHBEARER key set from a URL it is not told to allow.
            f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={self.jwks_url}",
            "-cp",
            broker_classpath(),
        ]

    def is_healthy(self) -> bool:
        return kafka_answers(self.settings.kafka.bootstrap_servers, timeout_s=3.0)

    def start(self) -> str:
        """Start (or reuse) the broker; return once its SASL_SSL listener listens too."""
        if self.external:  # docker compose's broker has no SASL_SSL listener
            return super().start()
        message = super().start()
        stale = self._settings_since_started()
        if stale:
            message += (
                f"; it was started with other settings than this version's ({', '.join(stale)}):"
                " restart it (python -m local_stack down && python -m local_stack up)"
            )
        kafka = self.settings.kafka
        # Kafka opens all listeners together, so this waits only for a reused broker that was
        # started before the EVENTHUBS listener existed (or on another sasl_port).
        if not _wait_for(lambda: _port_in_use(kafka.sasl_port, kafka.host), 10.0):
            raise StackSetupError(
                f"kafka (pid {self.running_pid()}) answers on port {kafka.port} but not on its"
                f" SASL_SSL listener port {kafka.sasl_port}; restart it:"
                " python -m local_stack down && python -m local_stack up"
            )
        return message


def azurite_blob_service(settings: StackSettings):
    """A Blob API client for the local Azurite that gives up in about a second when it is
    down: three tries half a second apart, not the Storage SDK's default of waiting 15 s
    and more between tries."""
    from azure.storage.blob import BlobServiceClient, LinearRetry

    return BlobServiceClient.from_connection_string(
        settings.azurite.connection_string,
        retry_policy=LinearRetry(backoff=0.5, random_jitter_range=0, retry_total=2),
        connection_timeout=5,
        read_timeout=60,
    )


class Azurite(Service):
    """Azurite, the Azure Storage emulator (blob, queue and table endpoints)."""

    name = "azurite"
    marker = "azurite"
    may_run_elsewhere = True

    # Azurite closes its servers and flushes its metadata on SIGINT; it ignores SIGTERM.
    stop_signal = signal.SIGINT

    @property
    def location(self) -> Path:
        return self.settings.state_dir / "azurite"

    def ports(self) -> tuple[int, ...]:
        azurite = self.settings.azurite
        return (azurite.blob_port, azurite.queue_port, azurite.table_port)

    def start_timeout_s(self) -> float:
        return self.settings.azurite.start_timeout_s

    def prepare(self) -> None:
        self.location.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        entry = NODE_DIR / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
        if not entry.exists():
            raise StackSetupError(f"Azurite is not installed ({entry} missing); run `make setup`")
        node = shutil.which("node")
        if node is None:
            raise StackSetupError("Node.js (node) is not on PATH; install Node 18+ and retry")
        azurite = self.settings.azurite
        return [
            node,
            str(entry),
            "--location",
            str(self.location),
            "--blobHost",
            azurite.host,
            "--blobPort",
            str(azurite.blob_port),
            "--queueHost",
            azurite.host,
            "--queuePort",
            str(azurite.queue_port),
            "--tableHost",
            azurite.host,
            "--tablePort",
            str(azurite.table_port),
            # Current Azure SDKs speak newer API versions than the emulator knows.
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            # Azurite sends usage telemetry to Microsoft unless told not to. Offline, its last
            # report held the process 10-30 s after the stop signal (often past our 30 s grace).
            "--disableTelemetry",
        ]

    def is_healthy(self) -> bool:
        azurite = self.settings.azurite
        if not all(_port_in_use(port) for port in self.ports()):
            return False
        # Any HTTP answer (403 for an unsigned request) proves the blob service is serving.
        try:
            urllib.request.urlopen(f"{azurite.blob_endpoint}?comp=list", timeout=2)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True


class KeyVaultStandIn(Service):
    """The local Key Vault and managed-identity endpoints (``local_stack/keyvault.py``)."""

    name = "keyvault"
    marker = "local_stack.keyvault"
    restart = "python -m local_stack keyvault-down, then keyvault-up"

    @property
    def identity_header_file(self) -> Path:
        """The App Service ``IDENTITY_HEADER`` value clients must send (mode 0600)."""
        return self.settings.state_dir / "keyvault" / "identity-header"

    def identity_environment(self) -> dict[str, str]:
        """What makes ``DefaultAzureCredential`` use this machine's managed identity."""
        return {
            "IDENTITY_ENDPOINT": self.settings.keyvault.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header_file.read_text().strip(),
        }

    def ports(self) -> tuple[int, ...]:
        return (self.settings.keyvault.port, self.settings.keyvault.identity_port)

    def start_timeout_s(self) -> float:
        return self.settings.keyvault.start_timeout_s

    def prepare(self) -> None:
        if not self.identity_header_file.exists():
            self.identity_header_file.parent.mkdir(parents=True, exist_ok=True)
            write_private(self.identity_header_file, uuid.uuid4().hex + "\n")

    def command(self) -> list[str]:
        keyvault = self.settings.keyvault
        tls = ensure_tls_material(self.settings)
        return [
            sys.executable,
            "-m",
            "local_stack.keyvault",
            "--host",
            keyvault.host,
            "--port",
            str(keyvault.port),
            "--identity-port",
            str(keyvault.identity_port),
            "--cert",
            str(tls.certificate),
            "--key",
            str(tls.private_key),
            "--identity-header-file",
            str(self.identity_header_file),
        ]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}

    def is_healthy(self) -> bool:
        keyvault = self.settings.keyvault
        # The identity endpoint refuses a request without its header: any answer is health.
        try:
            urllib.request.urlopen(keyvault.identity_endpoint, timeout=2)
        except urllib.error.HTTPError:
            return _port_in_use(keyvault.port, keyvault.host)
        except OSError:
            return False
        return False


class PrefectServer(Service):
    """A local Prefect server (API and UI), its database under the state folder."""

    name = "prefect-server"
    marker = "server start"
    restart = "make prefect-down, then make prefect-up"

    def ports(self) -> tuple[int, ...]:
        return (self.settings.prefect.port,)

    def start_timeout_s(self) -> float:
        return self.settings.prefect.start_timeout_s

    def prepare(self) -> None:
        self.settings.prefect.home.mkdir(parents=True, exist_ok=True)

    def environment(self) -> dict[str, str]:
        return prefect_environment(self.settings)

    def command(self) -> list[str]:
        prefect = self.settings.prefect
        return [
            _prefect_binary(),
            "server",
            "start",
            "--host",
            prefect.host,
            "--port",
            str(prefect.port),
        ]

    def is_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.settings.prefect.api_url}/health", timeout=2):
                return True
        except OSError:
            return False


class PrefectWorker(Service):
    """A process worker of the project's work pool."""

    name = "prefect-worker"
    marker = "worker start"
    # Stopped, the worker gives each run's process up to 30 s to end before it kills it
    # (prefect.runner's process manager). The runs have sessions of their own, so killing
    # the worker's group first would leave a run still stopping alive.
    stop_grace_s = 45.0
    restart = "make prefect-down, then make prefect-up"

    def ports(self) -> tuple[int, ...]:
        return ()

    def start_timeout_s(self) -> float:
        return 60.0

    def environment(self) -> dict[str, str]:
        # Ask the local server for work every 2 s, not Prefect's 10 s: a deployment run
        # starts about 4 s sooner on average, for a query the server answers in
        # milliseconds.
        return {**prefect_environment(self.settings), "PREFECT_WORKER_QUERY_SECONDS": "2"}

    def command(self) -> list[str]:
        return [
            _prefect_binary(),
            "worker",
            "start",
            "--pool",
            self.settings.prefect.work_pool,
            "--type",
            "process",
            "--name",
            "reelhouse-local-worker",
        ]

    def is_healthy(self) -> bool:
        # The log of this start only: an earlier start's "started" says nothing of this one.
        try:
            with self.log_file.open("rb") as log:
                log.seek(self.log_start)
                return b"started" in log.read().lower()
        except FileNotFoundError:
            return False


def prefect_environment(settings: StackSettings) -> dict[str, str]:
    """What a Prefect client needs to talk to the local server."""
    from spark.settings import environment_with

    return environment_with(
        PREFECT_API_URL=settings.prefect.api_url,
        PREFECT_HOME=str(settings.prefect.home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        # flows.guard's leases on disk: they outlive a restarted server (the Makefile too).
        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect.server.concurrency.lease_storage.filesystem",
        REELHOUSE_PROJECT_DIR=str(PROJECT_ROOT),
    )


def _prefect_binary() -> str:
    import sys

    return str(Path(sys.executable).with_name("prefect"))


def kafka_answers(bootstrap_servers: str, timeout_s: float) -> bool:
    """True when a broker at ``bootstrap_servers`` answers a metadata request."""
    from kafka.errors import KafkaError

    from local_stack.topics import admin_client

    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    if not _port_in_use(int(port), host):
        return False
    try:
        admin = admin_client(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=int(timeout_s * 1000),
            # The client's own bootstrap wait is 30 s: a port that accepts and never
            # answers must not hold `status` that long.
            bootstrap_timeout_ms=int(timeout_s * 1000),
            client_id="reelhouse-health",
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports a process listens on (empty if it cannot be seen)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {
        connection.laddr.port
        for connection in connections
        if connection.status == psutil.CONN_LISTEN
    }


def port_owner(port: int) -> str | None:
    """``name (pid N)`` of the process listening on ``port``, if it can be found."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for connection in connections:
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            if connection.pid is None:
                return None
            try:
                return f"{psutil.Process(connection.pid).name()} (pid {connection.pid})"
            except psutil.Error:
                return f"pid {connection.pid}"
    return None


def _ensure_port_free(port: int, service: str) -> None:
    # A process killed a moment ago may still be closing its sockets: give it a few seconds.
    if _port_in_use(port) and not _wait_for(lambda: not _port_in_use(port), 5.0):
        owner = port_owner(port)
        held_by = f"held by {owner}" if owner else "held by another program"
        raise StackSetupError(
            f"port {port} needed by {service} is {held_by}; stop it or set another port "
            "(see local_stack/stack.toml)"
        )


def _port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


# How long a start waits for another start of the same service to record its process.
START_LOCK_WAIT_S = 120.0
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _started(pid: int) -> str | None:
    """When ``pid`` started, as ``<boot id> <clock ticks since boot>`` (Linux's
    /proc/<pid>/stat): unlike a start time in wall-clock seconds, which psutil derives from
    the clock now, a clock stepped since (NTP, a VM waking) does not change it. None where
    there is no /proc, or no such process."""
    try:
        boot = _BOOT_ID.read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command, which may hold spaces
    return f"{boot} {fields[19]}" if len(fields) > 19 else None


def _is_our_process(pid: int, marker: str, started: str | None = None) -> bool:
    """``pid`` runs our command (``marker`` in its command line) and, given when the
    process we launched started (``_started``, from its pid file), is that process: not
    one that got its pid after a reboot or a crash with a like command (another project's
    Azurite, docker's Kafka)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if started is not None and _started(pid) not in (started, None):
            return False
        return marker in " ".join(process.cmdline())
    except psutil.Error:
        return False


@contextmanager
def _held(lock_file: Path, service: str) -> Iterator[None]:
    """An exclusive lock on ``lock_file`` for the block (released when the process ends,
    however it ends); a StackError after ``START_LOCK_WAIT_S``."""
    with lock_file.open("a") as handle:
        deadline = time.monotonic() + START_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"{service}: another start of it has held {lock_file} for"
                        f" {START_LOCK_WAIT_S:.0f} s; is a `make stack-up` stuck?"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _terminate(pid: int, stop_signal: signal.Signals, grace_s: float) -> None:
    try:
        os.killpg(pid, stop_signal)
    except ProcessLookupError:
        return
    if _wait_for(lambda: not psutil.pid_exists(pid) or _is_zombie(pid), grace_s):
        return
    log.warning("pid %s ignored its stop signal for %.0fs; sending SIGKILL", pid, grace_s)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _wait_for(lambda: not psutil.pid_exists(pid) or _is_zombie(pid), 10.0)


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackSetupError("Java (java) is not on PATH; install OpenJDK 17 and retry")
    return java


_BROKER_LOG4J = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""
