"""Listing and dropping workspaces on the real local stack (Kafka, Azurite, Spark + Delta)."""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

from local_stack.__main__ import main
from local_stack.services import azurite_blob_service
from local_stack.stack import LocalStack
from local_stack.topics import ensure_topic, list_topics
from local_stack.workspaces import drop_workspaces, list_workspaces
from spark.settings import load_profile

pytestmark = pytest.mark.integration


def _blob_names(stack: LocalStack, prefix: str) -> list[str]:
    container = BlobServiceClient.from_connection_string(
        stack.settings.azurite.connection_string
    ).get_container_client(stack.settings.azurite.lake_container)
    return [blob.name for blob in container.list_blobs(name_starts_with=prefix)]


def _fill(stack: LocalStack, spark, workspace: str) -> None:
    """A Delta table written by Spark, a checkpoint file and a topic, as a run leaves them."""
    target = load_profile("local", workspace)
    spark.range(5).write.format("delta").save(target.lake.table_location("bronze.events"))
    offsets = spark._jvm.org.apache.hadoop.fs.Path(
        f"{target.lake.checkpoint_location('bronze_events')}/offsets/0"
    )
    filesystem = offsets.getFileSystem(spark._jsc.hadoopConfiguration())
    stream = filesystem.create(offsets)
    stream.write(b"v1\n")
    stream.close()
    ensure_topic(stack.settings.kafka.bootstrap_servers, target.source.topic, partitions=1)


def test_drop_workspace_deletes_its_tables_checkpoints_and_topics_and_nothing_else(
    stack: LocalStack, spark, profile, capsys
):
    from delta.tables import DeltaTable

    dropped = f"{profile.workspace}-drop"
    # Names that share its prefix: a workspace of their own, and one derived from it.
    neighbour, derived = f"{dropped}0", f"{dropped}-derived"
    for workspace in (dropped, neighbour, derived):
        _fill(stack, spark, workspace)

    usage = {entry.name: entry for entry in list_workspaces(stack.settings)}
    lake_blobs = _blob_names(stack, f"lake/{dropped}/")
    checkpoint_blobs = _blob_names(stack, f"_checkpoints/{dropped}/")
    assert lake_blobs and checkpoint_blobs
    # Each folder also has its marker blob (lake/<workspace>, _checkpoints/<workspace>).
    assert usage[dropped].objects == len(lake_blobs) + len(checkpoint_blobs) + 2
    assert usage[dropped].bytes > 0
    assert usage[dropped].topics == (f"{dropped}.viewing-events",)

    # The stack's files of a workspace: its report, its simulations' manifest and truth.
    state = stack.settings.state_dir
    files = {
        workspace: [
            state / "reports" / workspace / "index.html",
            state / "simulations" / f"{workspace}.viewing-events.manifest.json",
            state / "simulations" / f"{workspace}.viewing-events.truth.json",
        ]
        for workspace in (dropped, neighbour)
    }
    for path in (path for paths in files.values() for path in paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")

    assert main(["drop-workspace", dropped]) == 0
    assert f"dropped {dropped}: {usage[dropped].objects} blobs" in capsys.readouterr().out
    assert not any(path.exists() for path in files[dropped])
    assert not (state / "reports" / dropped).exists()
    assert all(path.exists() for path in files[neighbour])

    location = load_profile("local", dropped).lake.table_location("bronze.events")
    assert not DeltaTable.isDeltaTable(spark, location)
    left = _blob_names(stack, f"lake/{dropped}")
    assert left and all(name.startswith((f"lake/{neighbour}", f"lake/{derived}")) for name in left)
    assert _blob_names(stack, f"_checkpoints/{dropped}/") == []
    topics = list_topics(stack.settings.kafka.bootstrap_servers)
    assert f"{dropped}.viewing-events" not in topics
    for workspace in (neighbour, derived):
        assert f"{workspace}.viewing-events" in topics
        kept = load_profile("local", workspace).lake.table_location("bronze.events")
        assert spark.read.format("delta").load(kept).count() == 5

    # A shell pattern drops both that remain.
    names = [entry.name for entry in drop_workspaces(stack.settings, [f"{dropped}*"])]
    assert names == sorted([neighbour, derived])
    assert _blob_names(stack, f"lake/{dropped}") == []
    remaining = {entry.name for entry in list_workspaces(stack.settings)}
    assert not {dropped, neighbour, derived} & remaining


def test_drop_workspace_without_a_name_is_refused(stack: LocalStack, capsys):
    assert main(["drop-workspace"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: name the workspaces to drop (shell patterns such as 'bench-*')"
    )


def test_a_container_never_written_to_holds_no_workspace(stack: LocalStack):
    from local_stack.workspaces import _folder

    account = stack.settings.azurite.account
    folder = _folder(stack.settings, f"abfs://never-made@{account}.dfs.core.windows.net/lake")

    assert folder.usage() == {}
    assert folder.delete("main") == (0, 0)


def test_a_blob_beside_the_workspaces_is_no_workspace(stack: LocalStack, unique_name):
    from local_stack.workspaces import _folder

    account = stack.settings.azurite.account
    container = f"beside-{unique_name}"
    stack.ensure_lake_container(container)
    client = azurite_blob_service(stack.settings).get_container_client(container)
    client.upload_blob("lake/README", b"not a workspace")
    client.upload_blob("lake/ws-1/bronze/events/part-0", b"12345")
    client.upload_blob("lake/_spark_metadata/x", b"no workspace name")
    # A file named as a workspace, beside that workspace's checkpoints' folder.
    client.upload_blob("lake/ws-2", b"a file")
    client.upload_blob("_checkpoints/ws-2/offsets/0", b"v1")
    try:
        folder = _folder(stack.settings, f"abfs://{container}@{account}.dfs.core.windows.net/lake")
        assert folder.usage() == {"ws-1": (1, 5)}
        assert folder.delete("ws-2") == (0, 0)
        names = {blob.name for blob in client.list_blobs()}
        assert {"lake/ws-2", "lake/README", "lake/_spark_metadata/x"} <= names
    finally:
        client.delete_container()


def test_drop_workspace_names_what_matched_nothing_and_refuses_an_empty_name(
    stack: LocalStack, capsys
):
    assert main(["drop-workspace", "no-such-workspace-x", "nor-y*"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "no workspace matches no-such-workspace-x",
        "no workspace matches nor-y*",
    ]
    assert main(["drop-workspace", " "]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: workspace name ' ' is empty: name the workspaces to drop"
    )
