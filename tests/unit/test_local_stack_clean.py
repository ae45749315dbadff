"""``make clean`` (``python -m local_stack clean``) deletes the stack's state folder, and
only a folder that holds nothing but what the stack writes there."""

from __future__ import annotations

from dataclasses import replace

import pytest

from local_stack.services import StackError
from local_stack.settings import load_stack_settings
from local_stack.stack import STATE_ENTRIES, LocalStack

pytestmark = pytest.mark.unit


def _stack(state_dir) -> LocalStack:
    return LocalStack(replace(load_stack_settings(), state_dir=state_dir))


def test_a_stopped_stack_s_state_is_deleted(tmp_path):
    state = tmp_path / "stack"
    for entry in sorted(STATE_ENTRIES):
        (state / entry).mkdir(parents=True)
    (state / "logs" / "kafka.log").write_text("log")

    assert _stack(state).delete_state() == f"{state}: deleted"
    assert not state.exists()
    assert _stack(state).delete_state() == f"{state}: nothing to delete"


def test_a_folder_holding_anything_else_is_kept(tmp_path):
    """REELHOUSE_STACK_DIR may name any folder: one with a file the stack never writes is
    not the stack's alone."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "thesis.tex").write_text("years of work")

    with pytest.raises(StackError, match=r"holds thesis.tex, which the stack does not write"):
        _stack(tmp_path).delete_state()
    assert (tmp_path / "thesis.tex").read_text() == "years of work"


def test_a_running_service_s_state_is_kept(tmp_path, monkeypatch):
    (tmp_path / "kafka").mkdir()
    stack = _stack(tmp_path)
    monkeypatch.setattr(stack.kafka, "running_pid", lambda: 4242)

    with pytest.raises(StackError, match=r"^kafka still running: stop them first"):
        stack.delete_state()
    assert (tmp_path / "kafka").is_dir()


def test_a_state_folder_linked_to_another_disk_is_emptied_and_stays_a_link(tmp_path):
    disk = tmp_path / "big-disk" / "reelhouse"
    (disk / "kafka" / "data").mkdir(parents=True)
    (disk / "run").mkdir()
    state = tmp_path / "stack"
    state.symlink_to(disk)

    assert _stack(state).delete_state() == f"{state}: deleted"
    assert state.is_symlink() and list(disk.iterdir()) == []


def test_a_state_path_that_is_a_file_is_one_line(tmp_path):
    state = tmp_path / "stack"
    state.write_text("not a folder")
    with pytest.raises(StackError, match=rf"^cannot delete {state}: "):
        _stack(state).delete_state()


def test_drop_workspace_takes_names_not_the_option(capsys):
    from local_stack.__main__ import main

    with pytest.raises(SystemExit):
        main(["drop-workspace", "--workspace", "test-1"])
    assert "drop-workspace takes workspace names, not --workspace" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["down", "status", "clean", "workspaces"])
def test_workspace_is_refused_where_the_command_acts_on_the_whole_stack(command, capsys):
    """``down --workspace test-1`` would stop every service, not one workspace's part."""
    from local_stack.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main([command, "--workspace", ""])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"--workspace is for up only; {command} acts on the whole stack" in error


def test_a_service_listening_elsewhere_is_named_with_its_own_restart(tmp_path):
    """This test's process plays the running service, listening on a port the settings do
    not name; a worker (no ports of its own, its flow runs listen on theirs) is not judged."""
    import os
    import socket

    from local_stack.services import StackSetupError

    stack = _stack(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        stack.prefect_worker._check_listening_on_our_ports(os.getpid())
        with pytest.raises(StackSetupError) as refused:
            stack.keyvault._check_listening_on_our_ports(os.getpid())
    message = str(refused.value)
    assert message.startswith(f"keyvault (pid {os.getpid()}) listens on port(s) "), message
    assert str(port) in message
    assert message.endswith("restart it (python -m local_stack keyvault-down, then keyvault-up)")
