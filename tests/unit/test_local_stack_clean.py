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


@pytest.mark.parametrize("command", ["down", "status", "clean", "workspaces"])
def test_workspace_is_refused_where_the_command_acts_on_the_whole_stack(command, capsys):
    """``down --workspace test-1`` would stop every service, not one workspace's part."""
    from local_stack.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main([command, "--workspace", "test-1"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert f"--workspace is for up only; {command} acts on the whole stack" in error
