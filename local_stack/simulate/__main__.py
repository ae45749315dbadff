"""``python -m local_stack.simulate``: simulate viewing events into Kafka or a JSON-lines file."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from kafka.errors import KafkaError

from local_stack.settings import load_stack_settings
from local_stack.simulate.faults import FAULT_KINDS
from local_stack.simulate.producer import (
    ProducerError,
    check_not_ahead,
    send_to_kafka,
    write_jsonl,
)
from local_stack.simulate.simulation import (
    DEFAULT_START,
    SimulationRequest,
    simulate,
    start_datetime,
)
from local_stack.topics import ensure_topic
from spark.io.preflight import PreflightError, check_source_reachable
from spark.settings import SettingsError, load_profile

DEFAULT_PRODUCERS = 2
# The options that only act on Kafka (where and how records are sent), by their field. Their
# parser defaults are None, so that one given beside --out jsonl:PATH is seen and refused.
_KAFKA_OPTIONS = {
    "topic": "--topic",
    "partitions": "--partitions",
    "create_topic": "--no-create-topic",
    "rate": "--rate",
    "producers": "--producers",
    "profile": "--profile",
    "workspace": "--workspace",
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        request = _request(args)
        if args.partitions is not None and args.partitions < 1:
            raise ValueError(f"--partitions must be >= 1, got {args.partitions}")
        if args.producers is not None and args.producers < 1:
            raise ValueError(f"--producers must be >= 1, got {args.producers}")
        if args.rate is not None and not args.rate >= 0:  # NaN too
            raise ValueError(f"--rate must be >= 0 (0 = as fast as possible), got {args.rate}")
        if args.out.startswith("jsonl:"):
            _check_no_kafka_options(args)
            path = Path(args.out.removeprefix("jsonl:"))
            manifest_path = Path(args.manifest or f"{path}.manifest.json")
            truth_path = Path(args.truth or f"{path}.truth.json")
            target = str(path)
            _check_writable("--out", path)
        elif args.out == "kafka":  # a broker that is down is named in seconds, before the work
            profile = load_profile(args.profile, args.workspace)
            topic = args.topic or profile.source.topic
            _check_in_workspace(topic, profile.workspace)
            check_source_reachable(profile.source)
            runs = load_stack_settings().simulations_dir(profile.name)
            manifest_path = Path(args.manifest or runs / f"{topic}.manifest.json")
            truth_path = Path(args.truth or runs / f"{topic}.truth.json")
            target = f"topic {topic}"
        else:
            raise ValueError(f"--out must be 'kafka' or 'jsonl:PATH', got {args.out!r}")
        # Before the events go out: a manifest that cannot be written after them is lost.
        files = {"--manifest": manifest_path}
        if request.with_truth:
            files["--truth"] = truth_path
        if args.out.startswith("jsonl:"):
            files["--out"] = path
        by_path: dict[Path, str] = {}
        for option, file in files.items():
            other = by_path.setdefault(file.resolve(), option)
            if other != option:
                raise ValueError(f"{other} and {option} name the same file {file}")
        _check_writable("--manifest", manifest_path)
        if request.with_truth:
            _check_writable("--truth", truth_path)
        started = time.monotonic()
        simulation = simulate(request)
        generated_s = time.monotonic() - started
        if args.out.startswith("jsonl:"):
            seconds = write_jsonl(simulation.records, path)
        else:
            # Before the topic is created: a refused run leaves nothing behind.
            check_not_ahead(simulation.records, start_datetime(request.start_time))
            if args.create_topic is not False:
                partitions = args.partitions or load_stack_settings().kafka.default_partitions
                try:
                    ensure_topic(
                        profile.source.bootstrap_servers,
                        topic,
                        partitions,
                        client_options=profile.source.client_options(),
                    )
                except KafkaError as error:  # a name Kafka refuses, an ACL
                    raise ProducerError(f"cannot create topic {topic!r}: {error}") from None
            seconds = send_to_kafka(
                simulation.records,
                topic,
                profile.source.client_options(),
                args.rate or 0.0,
                progress=not args.quiet,
                producers=args.producers or DEFAULT_PRODUCERS,
            )
        _write_json(manifest_path, simulation.manifest)
        if simulation.truth is not None:
            _write_json(truth_path, simulation.truth)
        elif args.truth is None and truth_path.resolve() not in by_path:
            truth_path.unlink(missing_ok=True)  # an earlier run's would mislead
    except (ValueError, SettingsError, ProducerError, PreflightError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk that filled up, a folder removed meanwhile
        where = f"cannot write {error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    manifest = simulation.manifest
    rate = manifest["records"] / seconds if seconds else float("inf")
    print(
        f"simulated events={manifest['events']} records={manifest['records']} "
        f"faults={sum(manifest['faults'].values())} bytes={manifest['bytes']} "
        f"generate_s={generated_s:.1f} send_s={seconds:.1f} records_per_s={rate:,.0f} "
        f"-> {target}; manifest {manifest_path}"
    )
    return 0


def _check_no_kafka_options(args: argparse.Namespace) -> None:
    """``--out jsonl:PATH`` writes a file: an option that only acts on Kafka is refused, not
    ignored (a --topic or --rate the user believes took effect)."""
    given = [option for field, option in _KAFKA_OPTIONS.items() if getattr(args, field) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to"
            f" --out kafka; --out {args.out} writes a file"
        )


def _check_in_workspace(topic: str, workspace: str) -> None:
    """A workspace's topics are ``<workspace>.*``: its layers read one of them, and dropping
    the workspace deletes them all. Another workspace's topic (or one of none) is refused:
    its events would land where this workspace's tools never look, or among another's."""
    if not topic.startswith(f"{workspace}.") or topic == f"{workspace}.":
        raise ValueError(
            f"--topic {topic!r} is not a topic of workspace {workspace!r} (its topics start"
            f" with {workspace + '.'!r}); name one that does, or give that topic's --workspace"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local_stack.simulate", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="clean events to generate")
    parser.add_argument(
        "--rate", type=float, help="records/s to Kafka; 0 (the default) = as fast as possible"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="share of clean events drawn for a fault: each yields one faulty record of a"
        " --faults kind that applies to it (invalid_value needs a position or a rating;"
        " an event with none of the kinds yields none)",
    )
    parser.add_argument("--faults", default="all", help=f"comma list of: {','.join(FAULT_KINDS)}")
    parser.add_argument("--start-time", default=DEFAULT_START, help="ISO-8601 with offset")
    parser.add_argument("--days", type=int, default=2, help="days of viewing the run spans")
    parser.add_argument("--ctr", type=float, default=0.12, help="recommendation click-through rate")
    parser.add_argument(
        "--topic", help="WORKSPACE.NAME; default: the profile's topic for the workspace"
    )
    parser.add_argument(
        "--partitions", type=int, help="of a topic it creates; default: the stack's setting"
    )
    parser.add_argument(
        "--no-create-topic", dest="create_topic", action="store_false", default=None
    )
    parser.add_argument("--out", default="kafka", help="kafka | jsonl:PATH")
    parser.add_argument(
        "--manifest",
        help="default: PATH.manifest.json (jsonl) or .stack/simulations/[PROFILE/] (kafka;"
        " the profile's folder for any profile but local)",
    )
    parser.add_argument(
        "--truth",
        help="ground-truth file; default: PATH.truth.json (jsonl) or .stack/simulations/[PROFILE/]",
    )
    parser.add_argument("--no-truth", action="store_true", help="skip the ground truth (faster)")
    parser.add_argument("--profile", help="default: REELHOUSE_PROFILE or local")
    parser.add_argument("--workspace", help="default: REELHOUSE_WORKSPACE or main")
    parser.add_argument(
        "--producers",
        type=int,
        help=f"producer processes (records split by key); default {DEFAULT_PRODUCERS}",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


# The request names its fields as the flows' parameters do; here they are options.
_OPTIONS = {
    "events": "--events",
    "fault_rate": "--fault-rate",
    "faults": "--faults",
    "start_time": "--start-time",
    "days": "--days",
    "ctr": "--ctr",
}


def _request(args: argparse.Namespace) -> SimulationRequest:
    try:
        return SimulationRequest(
            events=args.events,
            seed=args.seed,
            fault_rate=args.fault_rate,
            faults=_fault_kinds(args.faults),
            start_time=args.start_time,
            days=args.days,
            ctr=args.ctr,
            with_truth=not args.no_truth,
        )
    except ValueError as error:
        field, _, rest = str(error).partition(" ")
        raise ValueError(f"{_OPTIONS.get(field, field)} {rest}") from None


def _fault_kinds(text: str) -> tuple[str, ...]:
    if text == "all":
        return FAULT_KINDS
    return tuple(kind.strip() for kind in text.split(",") if kind.strip())


def _check_writable(option: str, path: Path) -> None:
    """ValueError naming ``option`` when ``path`` cannot be written as a file: it is a
    folder or a file this user cannot write, or its nearest existing folder is a file or
    one this user cannot write in (to create the file, or the folders up to it). Nothing
    is created."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; name a file")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ValueError(f"{option} {path}: no permission to write it")
        return
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: no permission to write in {folder}")


def _write_json(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1, sort_keys=False))


if __name__ == "__main__":
    sys.exit(main())
