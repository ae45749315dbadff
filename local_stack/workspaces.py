"""Workspaces on the local stack: what each one holds, and dropping those no longer needed.

A workspace is the folder ``<name>`` under the local profile's lake root and under its
checkpoint root, and the topics ``<name>.*`` on the local broker. Tests, ``make bench`` and
experiments each make their own, so they pile up: 20 GB and 23,700 blobs after a few weeks
here. That costs more than disk. Azurite keeps every blob's metadata in one in-memory
database, and with 23,700 blobs a delete took 69-77 ms instead of 3.6 ms and a listing
14-18 ms instead of 5.7 ms (100 calls each against a fresh Azurite). Delta commits and
streaming checkpoints list, write and delete (a rename on the Blob endpoint is a copy and a
delete), so every query on the stack slows down.

Dropping deletes only what lies inside the named workspaces: a workspace ``test-1`` is the
blob ``lake/test-1`` (the folder marker) and the blobs under ``lake/test-1/``, never
``lake/test-10/...``.
"""

from __future__ import annotations

import fnmatch
import glob
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from local_stack.services import StackError, azurite_blob_service
from local_stack.settings import StackSettings
from spark.settings import is_workspace_name, load_profile

# The Blob API takes at most 256 sub-requests in one batch.
_BATCH_SIZE = 256


@dataclass(frozen=True)
class WorkspaceUsage:
    """What one workspace holds on the local stack."""

    name: str
    objects: int = 0
    bytes: int = 0
    topics: tuple[str, ...] = ()


class _Folder(Protocol):
    """A storage root whose first-level folders are workspaces."""

    location: str

    def usage(self) -> dict[str, tuple[int, int]]:
        """Objects and bytes per workspace."""
        ...

    def check_deletable(self, workspace: str) -> None:
        """Raise StackError if the workspace's folder here must not be deleted."""
        ...

    def delete(self, workspace: str) -> tuple[int, int]:
        """Delete one workspace's folder; the objects and bytes it held."""
        ...


def list_workspaces(settings: StackSettings) -> list[WorkspaceUsage]:
    """Every workspace with anything in the lake, the checkpoints or the broker."""
    _require_running(settings)
    objects: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for folder in _folders(settings):
        for workspace, (count, size) in folder.usage().items():
            objects[workspace] += count
            sizes[workspace] += size
    topics = _workspace_topics(settings)
    names = sorted(set(objects) | set(topics))
    return [
        WorkspaceUsage(name, objects[name], sizes[name], tuple(sorted(topics.get(name, ()))))
        for name in names
    ]


def drop_workspaces(settings: StackSettings, patterns: Iterable[str]) -> list[WorkspaceUsage]:
    """Delete every workspace whose name matches one of the shell-style ``patterns``
    (``bench-2026*``): its tables, checkpoints and topics. Returns what each one held."""
    chosen, _ = choose_workspaces(settings, patterns)
    return [drop_workspace(settings, usage) for usage in chosen]


def choose_workspaces(
    settings: StackSettings, patterns: Iterable[str]
) -> tuple[list[WorkspaceUsage], list[str]]:
    """The workspaces matching any of ``patterns``, and the patterns that match none."""
    patterns = list(patterns)
    if not patterns:
        raise StackError("name the workspaces to drop (shell patterns such as 'bench-*')")
    blank = [pattern for pattern in patterns if not pattern.strip()]
    if blank:
        raise StackError(f"workspace name {blank[0]!r} is empty: name the workspaces to drop")
    existing = list_workspaces(settings)
    chosen = [
        usage
        for usage in existing
        if any(fnmatch.fnmatchcase(usage.name, pattern) for pattern in patterns)
    ]
    unmatched = [
        pattern
        for pattern in patterns
        if not any(fnmatch.fnmatchcase(usage.name, pattern) for usage in existing)
    ]
    return chosen, unmatched


def drop_workspace(settings: StackSettings, usage: WorkspaceUsage) -> WorkspaceUsage:
    """Delete one workspace's folders and topics, and the stack's files of it (its quality
    report, its simulations' manifests and truths); what it held in the lake and broker."""
    folders = _folders(settings)
    for folder in folders:  # a link in any root stops the drop before anything goes
        folder.check_deletable(usage.name)
    for folder in folders:
        folder.delete(usage.name)
    _delete_topics(settings, usage.topics)
    _delete_local_files(settings, usage.name)
    return usage


def _delete_local_files(settings: StackSettings, workspace: str) -> None:
    report = settings.state_dir / "reports" / workspace
    if report.is_dir() and not report.is_symlink():
        shutil.rmtree(report)
    simulations = settings.state_dir / "simulations"
    # Named after the workspace's topics (<workspace>.viewing-events.manifest.json): a
    # workspace name holds no dot, so test-1. is never test-10.'s.
    for path in simulations.glob(f"{glob.escape(workspace)}.*") if simulations.is_dir() else ():
        if path.is_file():
            path.unlink()


def format_bytes(size: int) -> str:
    """``1536`` -> ``1.5 KB``."""
    amount = float(size)
    for unit in ("B", "KB", "MB"):
        if amount < 1024:
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GB"


def _require_running(settings: StackSettings) -> None:
    from local_stack.stack import LocalStack

    stack = LocalStack(settings)
    for service in stack.services:
        if not service.is_healthy():
            raise StackError(
                f"{service.name} is not running or not answering: start the stack with"
                " `make stack-up` (`python -m local_stack status` says which)"
            )


def _folders(settings: StackSettings) -> list[_Folder]:
    """The lake root and the checkpoint root of the local profile, without a workspace."""
    lake = load_profile("local", "main").lake
    roots = (lake.root.removesuffix("/main"), lake.checkpoint_root.removesuffix("/main"))
    return [_folder(settings, root) for root in roots]


def _folder(settings: StackSettings, root: str) -> _Folder:
    parts = urlsplit(root)
    if parts.scheme == "file":
        return _LocalFolder(Path(parts.path))
    if parts.scheme in ("abfs", "abfss"):
        container, _, host = parts.netloc.partition("@")
        account = host.split(".", 1)[0]
        if account != settings.azurite.account:
            raise StackError(
                f"{root} is in storage account {account!r}, not the local stack's Azurite"
                f" ({settings.azurite.account!r}); drop its workspaces with Azure's own tools"
            )
        return _BlobFolder(settings, container, parts.path.strip("/"), root)
    raise StackError(f"{root} is neither on Azurite (abfs://) nor a local folder (file:)")


class _BlobFolder:
    """A folder in an Azurite container, reached over the Blob API (Azurite has no DFS)."""

    def __init__(self, settings: StackSettings, container: str, path: str, location: str):
        self.container = azurite_blob_service(settings).get_container_client(container)
        self.prefix = f"{path}/" if path else ""
        self.location = location

    def usage(self) -> dict[str, tuple[int, int]]:
        from azure.core.exceptions import ResourceNotFoundError

        objects: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        try:
            for blob in self.container.list_blobs(
                name_starts_with=self.prefix, include=["metadata"]
            ):
                # A workspace is a folder: its blobs, and the marker blob hadoop-azure writes
                # for the folder itself; a blob beside them (a README) is none.
                workspace, inside, _ = blob.name[len(self.prefix) :].partition("/")
                if is_workspace_name(workspace) and (inside or _is_folder_marker(blob)):
                    objects[workspace] += 1
                    sizes[workspace] += blob.size or 0
        except ResourceNotFoundError:  # no container yet: nothing was ever written
            return {}
        return {workspace: (objects[workspace], sizes[workspace]) for workspace in objects}

    def check_deletable(self, workspace: str) -> None:
        """A blob folder holds blobs only: each is deleted by its name."""

    def delete(self, workspace: str) -> tuple[int, int]:
        from azure.core.exceptions import ResourceNotFoundError

        marker = f"{self.prefix}{workspace}"
        try:
            blobs = [
                blob
                for blob in self.container.list_blobs(name_starts_with=marker, include=["metadata"])
                if (blob.name == marker and _is_folder_marker(blob))
                or blob.name.startswith(f"{marker}/")
            ]
        except ResourceNotFoundError:  # no container: a workspace with topics only
            return 0, 0
        for batch in _batches([blob.name for blob in blobs], _BATCH_SIZE):
            responses = self.container.delete_blobs(
                *batch, delete_snapshots="include", raise_on_any_failure=False
            )
            for name, response in zip(batch, responses, strict=True):
                if response.status_code not in (202, 404):  # 404: deleted meanwhile
                    raise StackError(
                        f"could not delete {self.location}/{name[len(self.prefix) :]}:"
                        f" HTTP {response.status_code} {response.reason}"
                    )
        return len(blobs), sum(blob.size or 0 for blob in blobs)


def _is_folder_marker(blob) -> bool:
    """The blob hadoop-azure writes for a folder itself (a file of that name is not one)."""
    return (blob.metadata or {}).get("hdi_isfolder") == "true"


class _LocalFolder:
    """A folder on local disk (``REELHOUSE_LAKE_ROOT=file:///...``)."""

    def __init__(self, path: Path):
        self.path = path
        self.location = str(path)

    def usage(self) -> dict[str, tuple[int, int]]:
        if not self.path.is_dir():
            return {}
        usage = {}
        for folder in self.path.iterdir():
            # A file beside the workspaces' folders is none, nor a folder no workspace could
            # be named (.hidden), nor a link to a folder elsewhere.
            if folder.is_symlink() or not folder.is_dir() or not is_workspace_name(folder.name):
                continue
            files = [path for path in folder.rglob("*") if path.is_file()]
            usage[folder.name] = (len(files), sum(path.stat().st_size for path in files))
        return usage

    def check_deletable(self, workspace: str) -> None:
        folder = self.path / workspace
        if folder.is_symlink():
            raise StackError(
                f"{folder} is a symbolic link, not a workspace's folder: not followed;"
                " remove the link yourself"
            )

    def delete(self, workspace: str) -> tuple[int, int]:
        self.check_deletable(workspace)
        folder = self.path / workspace
        if not folder.is_dir():
            return 0, 0
        files = [path for path in folder.rglob("*") if path.is_file()]
        size = sum(path.stat().st_size for path in files)
        shutil.rmtree(folder)
        return len(files), size


def _workspace_topics(settings: StackSettings) -> dict[str, list[str]]:
    """Topics by workspace: ``bench-1.viewing-events`` belongs to ``bench-1``."""
    from local_stack.topics import list_topics

    topics: dict[str, list[str]] = {}
    for topic in list_topics(settings.kafka.bootstrap_servers):
        workspace, dot, _ = topic.partition(".")
        if dot and is_workspace_name(workspace):  # not the broker's own (__consumer_offsets)
            topics.setdefault(workspace, []).append(topic)
    return topics


def _delete_topics(settings: StackSettings, topics: tuple[str, ...]) -> None:
    from local_stack.topics import delete_topic

    for topic in topics:
        delete_topic(settings.kafka.bootstrap_servers, topic)


def _batches(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
