"""The local stack as a whole: start, stop and report every service in order."""

from __future__ import annotations

import logging
import shutil
import subprocess

from local_stack.prefect_runs import (
    ActiveRun,
    cancel_command,
    delete_workspace_lock,
    process_is_gone,
    read_active_runs,
    record_crashed,
)
from local_stack.services import (
    Azurite,
    KafkaBroker,
    KeyVaultStandIn,
    PrefectServer,
    PrefectWorker,
    Service,
    ServiceStatus,
    StackError,
    _prefect_binary,
    azurite_blob_service,
    prefect_environment,
)
from local_stack.settings import PROJECT_ROOT, StackSettings, load_stack_settings
from local_stack.topics import ensure_topic

log = logging.getLogger(__name__)

# A prefect CLI call (a deployment, a work pool) that takes longer has a server that hangs.
PREFECT_COMMAND_TIMEOUT_S = 300
# What the stack and the project write under the state folder: `clean` deletes a folder
# that holds nothing else (REELHOUSE_STACK_DIR may name any folder).
STATE_ENTRIES = frozenset(
    (
        "azurite",
        "eventhubs",
        "kafka",
        "keyvault",
        "logs",
        "prefect",
        "reports",
        "run",
        "simulations",
        "tls",
    )
)


class LocalStack:
    """Apache Kafka (KRaft) and Azurite as native processes under the state folder."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or load_stack_settings()
        self.kafka = KafkaBroker(self.settings)
        self.azurite = Azurite(self.settings)
        self.keyvault = KeyVaultStandIn(self.settings)
        self.prefect_server = PrefectServer(self.settings)
        self.prefect_worker = PrefectWorker(self.settings)

    @property
    def services(self) -> tuple[Service, ...]:
        return (self.kafka, self.azurite)

    def up(self, topics: tuple[str, ...] = ()) -> list[str]:
        """Start what is not running (idempotent) and create the given topics."""
        messages = [service.start() for service in self.services]
        if self.ensure_lake_container():
            messages.append(f"container {self.settings.azurite.lake_container}: created")
        for topic in topics:
            created = ensure_topic(
                self.settings.kafka.bootstrap_servers,
                topic,
                partitions=self.settings.kafka.default_partitions,
            )
            messages.append(f"topic {topic}: {'created' if created else 'exists'}")
        return messages

    def ensure_lake_container(self, name: str | None = None) -> bool:
        """Create the local lake's blob container (or container ``name``) if it is missing;
        True when created."""
        from azure.core.exceptions import (
            HttpResponseError,
            ResourceExistsError,
            ServiceRequestError,
        )

        client = azurite_blob_service(self.settings)
        container = name or self.settings.azurite.lake_container
        try:
            client.create_container(container)
        except ResourceExistsError:
            return False
        except ServiceRequestError as error:
            raise StackError(
                f"cannot create container {container} on Azurite"
                f" ({self.settings.azurite.blob_endpoint}): {str(error).splitlines()[0]};"
                " is it running? `make stack-up`"
            ) from None
        except HttpResponseError as error:  # a name Azurite refuses, another account's
            raise StackError(
                f"Azurite refused container {container!r} of account"
                f" {self.settings.azurite.account!r}: {error.message.splitlines()[0]}; check"
                " the container and account names (local_stack/stack.toml)"
            ) from None
        return True

    def keyvault_up(self) -> list[str]:
        """Start the local Key Vault (on demand) and store the local stack's secrets in it
        under the azure profile's names."""
        from local_stack import parity

        messages = [self.keyvault.start()]
        if self.ensure_lake_container(parity.AZURE_CONTAINER):
            messages.append(f"container {parity.AZURE_CONTAINER}: created")
        header = self.keyvault.identity_header_file.read_text().strip()
        names = parity.store_local_secrets(
            parity.secret_client(self.settings, header), self.settings
        )
        messages.append(f"key vault at {self.settings.keyvault.url}: secrets {', '.join(names)}")
        return messages

    def azure_environment(self, container: str | None = None) -> dict[str, str]:
        """The azure profile's variables for this stack (the identity header included)."""
        from local_stack import parity

        header = self.keyvault.identity_header_file
        # Variables that point at a vault nothing answers at would fail later, far from here.
        if not header.is_file() or not self.keyvault.is_healthy():
            raise StackError(
                "the local Key Vault is not running: run `python -m local_stack keyvault-up` first"
            )
        return {
            **parity.azure_environment(self.settings, container or parity.AZURE_CONTAINER),
            "IDENTITY_HEADER": header.read_text().strip(),
        }

    def keyvault_down(self) -> list[str]:
        return [self.keyvault.stop()]

    def down(self) -> list[str]:
        """Stop what this project started (the key vault too), in reverse order."""
        messages = []
        for service in (self.keyvault, *reversed(self.services)):
            try:
                messages.append(service.stop())
            except StackError as error:
                messages.append(f"{service.name}: {error}")
        return messages

    def delete_state(self) -> str:
        """Delete the state folder (broker data, lake, checkpoints, logs, Prefect's
        database) once every service is stopped, and only when it holds nothing but what
        the stack writes there."""
        state = self.settings.state_dir
        if not state.exists():
            return f"{state}: nothing to delete"
        running = [
            service.name
            for service in (*self.services, self.keyvault, self.prefect_server, self.prefect_worker)
            if service.running_pid() is not None
        ]
        if running:
            raise StackError(
                f"{', '.join(running)} still running: stop them first"
                " (python -m local_stack down, prefect-down)"
            )
        try:
            entries = list(state.iterdir())
            foreign = sorted(entry.name for entry in entries if entry.name not in STATE_ENTRIES)
            if foreign:
                raise StackError(
                    f"{state} holds {', '.join(foreign[:5])}, which the stack does not write"
                    " there: not deleted (check REELHOUSE_STACK_DIR, or delete the folder"
                    " yourself)"
                )
            # Entry by entry: a state folder that is a link to another disk stays a link.
            for entry in entries:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            if not state.is_symlink():
                state.rmdir()
        except OSError as error:
            raise StackError(f"cannot delete {state}: {error}") from None
        return f"{state}: deleted"

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]

    def is_healthy(self) -> bool:
        return all(status.healthy for status in self.status())

    def prefect_up(self) -> list[str]:
        """Start the Prefect server and a process worker, then deploy ``prefect.yaml``."""
        messages = [self.prefect_server.start()]
        pool = self.settings.prefect.work_pool
        created = self._prefect("work-pool", "create", pool, "--type", "process", check=False)
        answer = f"{created.stdout}\n{created.stderr}"
        if created.returncode != 0 and "already exists" not in answer:
            tail = " | ".join(answer.strip().splitlines()[-3:])
            raise StackError(f"prefect work-pool create {pool} failed: {tail}")
        messages.append(f"work pool {pool}: {'created' if created.returncode == 0 else 'exists'}")
        messages.append(self.prefect_worker.start())
        self._prefect("--no-prompt", "deploy", "--all")
        messages.append(
            f"deployed prefect.yaml; UI at http://{self.settings.prefect.host}:"
            f"{self.settings.prefect.port}"
        )
        return messages

    def prefect_down(self, force: bool = False) -> list[str]:
        """Stop the worker, then the server. Stopping the worker stops the runs it started,
        so this is refused while the server holds runs whose process lives (or is not on
        record), unless ``force``. Runs whose process is gone once the worker stopped are
        recorded as Crashed, not left Running for someone to delete by hand."""
        api_url = self.settings.prefect.api_url
        messages: list[str] = []
        active: list[ActiveRun] = []
        if self.prefect_server.running_pid() is not None:
            try:
                active = read_active_runs(api_url)
            except StackError as error:
                if not force:
                    raise StackError(
                        f"cannot list the active flow runs before stopping: {error}"
                        " (make prefect-down FORCE=1 stops the worker and server anyway)"
                    ) from None
                messages.append(f"active flow runs not checked: {error}")
            living = [run for run in active if not process_is_gone(run.pid)]
            if living and not force:
                raise StackError(_refuse_active_runs(living, api_url))
        messages.append(self.prefect_worker.stop())
        if active:  # a run the worker stopped may have recorded its own end meanwhile
            try:
                still = {run.id for run in read_active_runs(api_url)}
            except StackError as error:
                still = set()
                messages.append(f"active flow runs not checked again: {error}")
            active = [run for run in active if run.id in still]
        for run in active:
            if not process_is_gone(run.pid):
                why = "no process on record" if run.pid is None else f"process {run.pid} runs"
                messages.append(f"{run.describe()}: left {run.state} ({why})")
                continue
            try:
                record_crashed(api_url, run)
                messages.append(f"{run.describe()}: recorded Crashed (process {run.pid} ended)")
            except StackError as error:
                messages.append(f"{run.describe()}: still {run.state} on record: {error}")
        messages.append(self.prefect_server.stop())
        return messages

    def runs_on_workspaces(self, workspaces: list[str]) -> dict[str, list[ActiveRun]]:
        """The Prefect server's active runs on each of ``workspaces`` (local profile), those
        whose process lives or is not on record; none when the server is not running."""
        if not workspaces or self.prefect_server.running_pid() is None:
            return {}
        try:
            active = read_active_runs(self.settings.prefect.api_url)
        except StackError as error:
            raise StackError(
                f"cannot check the workspaces' active flow runs: {error}"
                " (make prefect-down, or wait for the server)"
            ) from None
        held: dict[str, list[ActiveRun]] = {}
        for run in active:
            if run.workspace in workspaces and not process_is_gone(run.pid):
                held.setdefault(run.workspace, []).append(run)
        return held

    def delete_workspace_lock(self, workspace: str) -> bool:
        """Delete the workspace's lock from a running Prefect server; False when there was
        none to delete (or no server runs: the lock is recreated on first use anyway)."""
        if self.prefect_server.running_pid() is None:
            return False
        return delete_workspace_lock(self.settings.prefect.api_url, workspace)

    def _prefect(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        try:
            completed = subprocess.run(
                [_prefect_binary(), *arguments],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                env=prefect_environment(self.settings),
                timeout=PREFECT_COMMAND_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise StackError(
                f"prefect {' '.join(arguments)} did not finish in {PREFECT_COMMAND_TIMEOUT_S} s"
                f" (is the server at {self.settings.prefect.api_url} answering?)"
            ) from None
        if check and completed.returncode != 0:
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
            raise StackError(f"prefect {' '.join(arguments)} failed: {' | '.join(tail)}")
        return completed


def _refuse_active_runs(active: list[ActiveRun], api_url: str) -> str:
    runs = "; ".join(run.describe() for run in active)
    them = "it" if len(active) == 1 else "them"
    return (
        f"{len(active)} flow run{'s are' if len(active) > 1 else ' is'} active: {runs}."
        f" Stopping Prefect would stop {them}: wait, cancel {them}"
        f" ({cancel_command(api_url, active)}), or stop anyway with make prefect-down FORCE=1,"
        f" which records {them} Crashed"
    )
