"""Workspaces on local disk, storage roots the stack does not own, and a stopped stack."""

from __future__ import annotations

from dataclasses import replace

import pytest

from local_stack.services import StackError
from local_stack.settings import load_stack_settings
from local_stack.workspaces import (
    _delete_local_files,
    _folder,
    _LocalFolder,
    _require_running,
    format_bytes,
)
from tests.ports import free_port

pytestmark = pytest.mark.unit


def test_a_local_folder_drops_one_workspace_and_not_one_sharing_its_prefix(tmp_path):
    for relative, size in (("ws1/bronze/part-0", 3), ("ws1/_delta_log/0.json", 4), ("ws10/x", 5)):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    folder = _LocalFolder(tmp_path)

    assert folder.usage() == {"ws1": (2, 7), "ws10": (1, 5)}
    assert folder.delete("ws1") == (2, 7)
    assert folder.usage() == {"ws10": (1, 5)}
    assert folder.delete("ws1") == (0, 0)


def test_only_folders_a_workspace_could_be_are_workspaces(tmp_path):
    """A hidden folder, a name no workspace may have and a link to a folder elsewhere are
    listed as none, so no pattern drops them; a link is never followed."""
    root, elsewhere = tmp_path / "lake", tmp_path / "elsewhere"
    for relative in ("ws1/x", ".hidden/x", "Not A Workspace/x"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x")
    (elsewhere / "keep").parent.mkdir(parents=True)
    (elsewhere / "keep").write_bytes(b"kept")
    (root / "ws2").symlink_to(elsewhere, target_is_directory=True)
    folder = _LocalFolder(root)

    assert folder.usage() == {"ws1": (1, 1)}
    with pytest.raises(StackError, match=r"ws2 is a symbolic link, not a workspace's folder"):
        folder.delete("ws2")
    assert (elsewhere / "keep").read_bytes() == b"kept"


def test_a_file_root_is_a_local_folder(tmp_path):
    folder = _folder(load_stack_settings(), f"file:{tmp_path}/lake")

    assert isinstance(folder, _LocalFolder)
    assert folder.path == tmp_path / "lake"


@pytest.mark.parametrize(
    ("root", "message"),
    [
        (
            "abfss://lake@prodaccount.dfs.core.windows.net/lake",
            "abfss://lake@prodaccount.dfs.core.windows.net/lake is in storage account"
            " 'prodaccount', not the local stack's Azurite ('devstoreaccount1');"
            " drop its workspaces with Azure's own tools",
        ),
        (
            "s3a://bucket/lake",
            "s3a://bucket/lake is neither on Azurite (abfs://) nor a local folder (file:)",
        ),
    ],
)
def test_storage_the_local_stack_does_not_own_is_refused(root, message):
    with pytest.raises(StackError) as raised:
        _folder(load_stack_settings(), root)
    assert str(raised.value) == message


def test_a_stopped_stack_is_named():
    settings = load_stack_settings()
    settings = replace(
        settings,
        kafka=replace(settings.kafka, port=free_port()),
        azurite=replace(settings.azurite, blob_port=free_port()),
    )
    with pytest.raises(
        StackError, match=r"^kafka is not running or not answering: start the stack with"
    ):
        _require_running(settings)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.5 KB"),
        (5 * 2**20, "5.0 MB"),
        (3 * 2**40, "3072.0 GB"),
    ],
)
def test_sizes_read_as_a_person_would_write_them(size, text):
    assert format_bytes(size) == text


def test_a_link_in_one_root_stops_the_drop_before_anything_is_deleted(tmp_path, monkeypatch):
    from local_stack.workspaces import WorkspaceUsage, drop_workspace

    lake, checkpoints, elsewhere = tmp_path / "lake", tmp_path / "checkpoints", tmp_path / "x"
    (lake / "ws1").mkdir(parents=True)
    (lake / "ws1" / "part-0").write_bytes(b"kept")
    elsewhere.mkdir()
    checkpoints.mkdir()
    (checkpoints / "ws1").symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setenv("REELHOUSE_LAKE_ROOT", f"file://{lake}")
    monkeypatch.setenv("REELHOUSE_LAKE_CHECKPOINT_ROOT", f"file://{checkpoints}")
    monkeypatch.setenv("REELHOUSE_STACK_DIR", str(tmp_path / "state"))

    with pytest.raises(StackError, match=r"ws1 is a symbolic link, not a workspace's folder"):
        drop_workspace(load_stack_settings(), WorkspaceUsage("ws1"))
    assert (lake / "ws1" / "part-0").read_bytes() == b"kept"


def test_dropping_a_local_workspace_keeps_another_profile_s_simulations(tmp_path):
    """The azure profile's workspace main reads topic main.viewing-events as the local
    one does: its simulations' files are kept apart, and a local drop leaves them."""
    settings = replace(load_stack_settings(), state_dir=tmp_path)
    local, azure = settings.simulations_dir("local"), settings.simulations_dir("azure")
    assert (local, azure) == (tmp_path / "simulations", tmp_path / "simulations" / "azure")
    files = [
        folder / f"{topic}.{kind}.json"
        for folder in (local, azure)
        for topic in ("main.viewing-events", "main-2.viewing-events")
        for kind in ("manifest", "truth")
    ]
    for file in files:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("{}")

    _delete_local_files(settings, "main")

    assert [file.relative_to(tmp_path).as_posix() for file in files if file.exists()] == [
        "simulations/main-2.viewing-events.manifest.json",
        "simulations/main-2.viewing-events.truth.json",
        "simulations/azure/main.viewing-events.manifest.json",
        "simulations/azure/main.viewing-events.truth.json",
        "simulations/azure/main-2.viewing-events.manifest.json",
        "simulations/azure/main-2.viewing-events.truth.json",
    ]
