"""``python -m local_stack up|down|status``: the native local stack.

``workspaces`` lists what each workspace holds (lake and checkpoint blobs, topics);
``drop-workspace NAME...`` deletes workspaces by name or shell pattern (``'bench-*'``);
``clean`` deletes the state folder of a stopped stack. ``prefect-down`` is refused while
flow runs are active; ``prefect-down --force`` stops them and records them Crashed.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from local_stack.prefect_runs import cancel_command, lock_name
from local_stack.services import StackError
from local_stack.stack import LocalStack
from local_stack.workspaces import (
    WorkspaceUsage,
    choose_workspaces,
    drop_workspace,
    format_bytes,
    list_workspaces,
)
from spark.settings import SettingsError, load_profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__)
    parser.add_argument(
        "command",
        choices=[
            "up",
            "down",
            "status",
            "keyvault-up",
            "keyvault-down",
            "azure-env",
            "prefect-up",
            "prefect-down",
            "workspaces",
            "drop-workspace",
            "clean",
        ],
    )
    parser.add_argument(
        "names", nargs="*", help="drop-workspace: workspace names or shell patterns ('test-*')"
    )
    parser.add_argument("--workspace", help="workspace whose topic `up` creates (default: main)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="prefect-down: stop even while flow runs are active (they are recorded Crashed)",
    )
    args = parser.parse_args(argv)
    if args.force and args.command != "prefect-down":
        parser.error(f"--force is for prefect-down only, not {args.command}")
    if args.names and args.command != "drop-workspace":
        parser.error(f"{args.command} takes no workspace names (got {' '.join(args.names)})")
    if args.workspace is not None and args.command == "drop-workspace":
        parser.error("drop-workspace takes workspace names, not --workspace")
    if args.workspace is not None and args.command != "up":
        # `down --workspace x` would stop the whole stack, not one workspace's part of it.
        parser.error(f"--workspace is for up only; {args.command} acts on the whole stack")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    # kafka-python warns about its own event loop while listing topics: not ours to act on.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    try:
        stack = LocalStack()
        if args.command == "up":
            topic = load_profile("local", args.workspace).source.topic
            for line in stack.up(topics=(topic,)):
                print(line)
            return 0
        actions = {
            "keyvault-up": stack.keyvault_up,
            "keyvault-down": stack.keyvault_down,
            "prefect-up": stack.prefect_up,
            "prefect-down": lambda: stack.prefect_down(force=args.force),
        }
        if args.command in actions:
            for line in actions[args.command]():
                print(line)
            return 0
        if args.command == "azure-env":
            # For `eval "$(python -m local_stack azure-env)"`: the azure profile on this stack.
            for key, value in stack.azure_environment().items():
                print(f"export {key}={shlex.quote(value)}")
            return 0
        if args.command == "workspaces":
            return _print_workspaces(list_workspaces(stack.settings))
        if args.command == "drop-workspace":
            return drop_unheld_workspaces(stack, args.names)
        if args.command == "down":
            for line in stack.down():
                print(line)
            return 0
        if args.command == "clean":
            print(stack.delete_state())
            return 0
        return _print_status(stack)
    except (StackError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def drop_unheld_workspaces(stack: LocalStack, names: list[str]) -> int:
    """``drop-workspace``: each matching workspace no flow run is active on (per a running
    Prefect server), then its lock; 1 when a name matched nothing or a workspace was kept."""
    chosen, unmatched = choose_workspaces(stack.settings, names)
    held = stack.runs_on_workspaces([usage.name for usage in chosen])
    for usage in chosen:  # each as it goes: a failure later leaves these told
        if usage.name in held:
            active = held[usage.name]
            runs = "; ".join(run.describe() for run in active)
            them = "it" if len(active) == 1 else "them"
            print(
                f"not dropped {usage.name}: {runs} {'is' if len(active) == 1 else 'are'}"
                f" active on it (wait for {them}, or cancel {them}:"
                f" {cancel_command(stack.settings.prefect.api_url, active)})",
                file=sys.stderr,
            )
            continue
        print(f"dropped {_describe(drop_workspace(stack.settings, usage))}", flush=True)
        if stack.delete_workspace_lock(usage.name):
            print(f"dropped {usage.name}'s Prefect lock {lock_name(usage.name)}")
    for pattern in unmatched:
        print(f"no workspace matches {pattern}", file=sys.stderr)
    return 1 if unmatched or held else 0


def _print_workspaces(workspaces: list[WorkspaceUsage]) -> int:
    print(f"{'workspace':<32} {'blobs':>8} {'size':>10}  topics")
    for usage in workspaces:
        print(
            f"{usage.name:<32} {usage.objects:>8} {format_bytes(usage.bytes):>10}"
            f"  {', '.join(usage.topics) or '-'}"
        )
    total = sum(usage.bytes for usage in workspaces)
    print(f"{len(workspaces)} workspaces, {format_bytes(total)}")
    return 0


def _describe(usage: WorkspaceUsage) -> str:
    topics = f", topics {', '.join(usage.topics)}" if usage.topics else ""
    return f"{usage.name}: {usage.objects} blobs, {format_bytes(usage.bytes)}{topics}"


def _print_status(stack: LocalStack) -> int:
    statuses = stack.status()
    print(f"{'service':<14} {'pid':>8}  {'ports':<20} health")
    for status in statuses:
        ports = ",".join(str(port) for port in status.ports)
        pid = str(status.pid) if status.pid else "-"
        print(f"{status.name:<14} {pid:>8}  {ports:<20} {status.detail}")
    # Started on demand (keyvault-up, prefect-up): shown while they run. A stopped worker
    # leaves deployment runs Late for good, with no word of why.
    for service in (stack.keyvault, stack.prefect_server, stack.prefect_worker):
        status = service.status()
        if status.pid:
            ports = ",".join(str(port) for port in status.ports) or "-"
            print(f"{status.name:<14} {status.pid:>8}  {ports:<20} {status.detail}")
    if stack.prefect_server.status().pid and not stack.prefect_worker.status().pid:
        print("prefect-worker: stopped: deployment runs wait (Late) until `make prefect-up`")
    print(f"logs: {stack.settings.log_dir}")
    return 0 if all(status.healthy for status in statuses) else 3


if __name__ == "__main__":
    sys.exit(main())
