"""The simulator: determinism, labelled faults checked by an independent classifier, realism."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from local_stack.simulate.faults import FAULT_KINDS, OVERSIZE_BYTES
from local_stack.simulate.simulation import SimulationRequest, simulate
from spark.contract import EVENT_TYPES, contract, required_fields

pytestmark = pytest.mark.unit

NUMERIC = ("position_s", "duration_s", "played_s", "rating", "rec_row", "rec_rank", "bitrate_kbps")


@pytest.fixture(scope="module")
def run():
    return simulate(SimulationRequest(events=100_000, seed=11, fault_rate=0.02))


def classify(value: bytes, timestamp_ms: int, seen_ids: set[str]) -> str | None:
    """Name the fault of a raw record from its bytes and broker timestamp alone (None = clean)."""
    if len(value) > OVERSIZE_BYTES:
        return "oversize_payload"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "non_utf8"
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return "malformed_json" if text.rstrip().endswith("}") else "truncated_record"
    if any(field not in event for field in required_fields()):
        return "missing_required_field"
    if any(isinstance(event.get(field), str) for field in NUMERIC):
        return "wrong_type"
    if event["event_type"] not in EVENT_TYPES:
        return "unknown_event_type"
    try:
        moment = datetime.fromisoformat(event["event_ts"])
        assert moment.tzinfo is not None
    except (ValueError, AssertionError):
        return "unparsable_timestamp"
    arrival = datetime.fromtimestamp(timestamp_ms / 1000, tz=moment.tzinfo)
    if not arrival - timedelta(days=30) <= moment <= arrival + timedelta(minutes=5):
        return "timestamp_out_of_range"
    if arrival - moment > timedelta(hours=1):
        return "late_arrival"
    rating, position = event.get("rating"), event.get("position_s")
    if (rating is not None and not 1 <= rating <= 5) or (
        position is not None and (position < 0 or position > event["duration_s"])
    ):
        return "invalid_value"
    if event["event_id"] in seen_ids:
        return "duplicate"
    seen_ids.add(event["event_id"])
    return None


def test_manifest_counts_equal_an_independent_classification(run):
    seen: set[str] = set()
    observed = Counter()
    by_index = {}
    for index, record in enumerate(run.records):
        kind = classify(record.value, record.timestamp_ms, seen)
        if kind:
            observed[kind] += 1
            by_index[index] = kind
    manifest = run.manifest
    assert manifest["events"] == 100_000
    assert manifest["records"] == len(run.records) == 100_000 + sum(manifest["faults"].values())
    assert dict(observed) == {kind: n for kind, n in manifest["faults"].items() if n}
    assert set(observed) == set(FAULT_KINDS)  # every kind was injected at 2 %
    assert by_index == {label["index"]: label["kind"] for label in manifest["labels"]}


def test_the_truth_counts_the_late_records_by_the_utc_day_they_happened(run):
    seen: set[str] = set()
    late = Counter(
        datetime.fromisoformat(json.loads(record.value)["event_ts"]).astimezone(UTC).date()
        for record in run.records
        if classify(record.value, record.timestamp_ms, seen) == "late_arrival"
    )
    totals = run.truth["daily_totals"]
    assert {row["day"]: row["late_excluded"] for row in totals if row["late_excluded"]} == {
        day.isoformat(): count for day, count in late.items()
    }
    assert sum(late.values()) == run.manifest["faults"]["late_arrival"] > 0
    assert sum(row["events"] for row in totals) == run.manifest["events"]


def test_clean_events_satisfy_the_contract(run):
    validator = jsonschema.Draft202012Validator(
        contract(), format_checker=jsonschema.FormatChecker()
    )
    for payload in run.clean_payloads[::10]:
        validator.validate(payload)
        if payload["position_s"] is not None:
            assert 0 <= payload["position_s"] <= payload["duration_s"]


@pytest.mark.parametrize(
    ("event_type", "field"),
    [("play", "genre"), ("pause", "title_name"), ("stop", "bitrate_kbps"), ("rating", "genre")],
)
def test_the_contract_wants_a_value_where_silver_does(run, event_type, field):
    """Null title fields are for events without a title: on a playback or title event
    silver quarantines them as missing_required_field, and the contract says so too."""
    validator = jsonschema.Draft202012Validator(contract())
    payload = next(p for p in run.clean_payloads if p["event_type"] == event_type)
    validator.validate(payload)

    assert not validator.is_valid({**payload, field: None})


def test_newer_schema_version_adds_a_field_and_stays_valid(run):
    drifted = [payload for payload in run.clean_payloads if payload["schema_version"] == "1.1"]
    assert 0.02 < len(drifted) / len(run.clean_payloads) < 0.15
    assert all("audio_language" in payload for payload in drifted)
    assert not any(
        "audio_language" in p for p in run.clean_payloads if p["schema_version"] == "1.0"
    )


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    def produce(seed: int, name: str) -> tuple[bytes, bytes]:
        path = tmp_path / name
        command = [
            sys.executable,
            "-m",
            "local_stack.simulate",
            "--events",
            "3000",
            "--seed",
            str(seed),
            "--fault-rate",
            "0.05",
            "--out",
            f"jsonl:{path}",
        ]
        subprocess.run(command, check=True, capture_output=True)
        return path.read_bytes(), (tmp_path / f"{name}.manifest.json").read_bytes()

    first, second, other = produce(5, "a.jsonl"), produce(5, "b.jsonl"), produce(6, "c.jsonl")
    assert first == second
    assert first[0] != other[0]


def test_a_run_without_truth_removes_the_earlier_truth_beside_its_manifest(tmp_path):
    out = ["--out", f"jsonl:{tmp_path}/events.jsonl", "--events", "20"]
    simulate = [sys.executable, "-m", "local_stack.simulate", *out]
    subprocess.run(simulate, check=True, capture_output=True)
    truth = tmp_path / "events.jsonl.truth.json"
    assert truth.exists()
    subprocess.run([*simulate, "--no-truth", "--seed", "8"], check=True, capture_output=True)
    assert not truth.exists()
    assert json.loads((tmp_path / "events.jsonl.manifest.json").read_text())["seed"] == 8


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--out", "jsonl:{folder}"], "--out {folder} is a folder; name a file"),
        (["--manifest", "{folder}"], "--manifest {folder} is a folder; name a file"),
        (["--truth", "{folder}/file.txt/t.json"], "{folder}/file.txt is a file, not a folder"),
        (["--ctr", "7"], "--ctr must be between 0 and 1, got 7.0"),
        (["--faults", "", "--fault-rate", "0.1"], "--faults names no fault kind"),
        (["--faults", "duplicate,non_utf8,duplicate"], "--faults names duplicate more than once"),
        (["--producers", "0"], "--producers must be >= 1, got 0"),
        (["--rate", "-5"], "--rate must be >= 0 (0 = as fast as possible), got -5.0"),
        (["--rate", "nan"], "--rate must be >= 0"),
        (["--topic", "main.x"], "--topic applies only to --out kafka; --out jsonl:{folder}/"),
        (["--no-create-topic"], "--no-create-topic applies only to --out kafka"),
        (
            ["--workspace", "w", "--producers", "1", "--rate", "0", "--partitions", "2"],
            "--partitions, --rate, --producers, --workspace apply only to --out kafka",
        ),
    ],
)
def test_bad_arguments_are_one_line_before_anything_is_written(tmp_path, arguments, message):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "file.txt").write_text("not a folder")
    out = ["--out", f"jsonl:{folder}/events.jsonl"]
    command = [sys.executable, "-m", "local_stack.simulate", "--events", "50", *out]
    command += [argument.format(folder=folder) for argument in arguments]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        # A stack setting it does not need must not stop it either (nor its --help).
        env={**os.environ, "REELHOUSE_KAFKA_PARTITIONS": "abc"},
    )
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    assert message.format(folder=folder) in lines[0]
    assert sorted(path.name for path in folder.iterdir()) == ["file.txt"]


def _as_unprivileged(command: list[str]) -> list[str]:
    """``command`` run without the power to ignore file permissions: as it is for a user
    other than root; for root (CI) without the capabilities that let root write anywhere."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv (util-linux): cannot drop write-anywhere rights")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]


@pytest.mark.parametrize(
    ("option", "target", "message"),
    [
        ("--out", "locked/events.jsonl", "--out {target}: no permission to write in {locked}"),
        ("--out", "locked/new/e.jsonl", "--out {target}: no permission to write in {locked}"),
        ("--manifest", "read-only.json", "--manifest {target}: no permission to write it"),
    ],
)
def test_a_path_without_write_permission_is_refused_in_one_line(tmp_path, option, target, message):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    read_only = tmp_path / "read-only.json"
    read_only.write_text("{}")
    read_only.chmod(0o444)
    target = tmp_path / target
    arguments = {"--out": f"jsonl:{tmp_path}/events.jsonl", option: str(target)}
    if option == "--out":
        arguments["--out"] = f"jsonl:{target}"
    command = [sys.executable, "-m", "local_stack.simulate", "--events", "50"]
    command += [part for pair in arguments.items() for part in pair]
    try:
        completed = subprocess.run(_as_unprivileged(command), capture_output=True, text=True)
    finally:
        locked.chmod(0o755)  # pytest removes tmp_path later
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    assert message.format(target=target, locked=locked) in lines[0]
    assert list(locked.iterdir()) == [] and read_only.read_text() == "{}"
    assert not (tmp_path / "events.jsonl").exists()


def test_top_titles_differ_across_regions(run):
    plays = defaultdict(Counter)
    for row in run.truth["title_popularity"]:
        plays[row["region"]][row["title_id"]] += row["plays"]
    top10 = {
        region: tuple(t for t, _ in counter.most_common(10)) for region, counter in plays.items()
    }
    assert len(set(top10.values())) >= 3


def test_each_region_peaks_in_its_local_evening(run):
    events = defaultdict(Counter)
    for row in run.truth["traffic_by_hour"]:
        events[row["region"]][row["local_hour"]] += row["events"]
    peaks = {region: counter.most_common(1)[0][0] for region, counter in events.items()}
    assert len(peaks) == 8
    assert all(18 <= hour <= 23 for hour in peaks.values()), peaks


def test_session_durations_and_click_through_are_plausible(run):
    durations = [session["duration_s"] for session in run.truth["sessions"]]
    assert 15 * 60 <= statistics.median(durations) <= 60 * 60  # documented range
    kinds = Counter(payload["event_type"] for payload in run.clean_payloads)
    ctr = kinds["recommendation_click"] / kinds["recommendation_impression"]
    assert 0.06 <= ctr <= 0.14  # documented range for the default --ctr 0.12


def test_one_device_runs_one_session_at_a_time(run):
    """An account's devices and profiles may stream at once; one device may not. (Two
    devices of one user that the payload cannot tell apart are left out.)"""
    from random import Random

    from local_stack.simulate.world import build_world

    world = build_world(Random(11 * 7919 + 1))  # the run's world (seed 11)
    twins = set()
    for user in world.users:
        kinds = Counter((d.device_type, d.app_version, d.network) for d in user.devices)
        twins |= {(user.user_id, *kind) for kind, count in kinds.items() if count > 1}
    spans = {}
    for payload in run.clean_payloads:
        moment = datetime.fromisoformat(payload["event_ts"])
        device = tuple(payload[key] for key in ("user_id", "device_type", "app_version", "network"))
        first, last, _ = spans.get(payload["session_id"], (moment, moment, device))
        spans[payload["session_id"]] = (min(first, moment), max(last, moment), device)
    by_device = defaultdict(list)
    for first, last, device in spans.values():
        if device not in twins:
            by_device[device].append((first, last))
    overlapping = [
        (device, earlier, later)
        for device, sessions in by_device.items()
        for earlier, later in zip(sorted(sessions), sorted(sessions)[1:], strict=False)
        if later[0] < earlier[1]
    ]
    assert len(spans) > 6_000
    assert not overlapping, overlapping[:3]


def test_a_recommendation_click_plays_its_title(run):
    clicked, played = {}, defaultdict(set)
    for payload in run.clean_payloads:
        if payload["event_type"] == "recommendation_click":
            clicked[payload["session_id"]] = payload["title_id"]
        elif payload["event_type"] == "play":
            played[payload["session_id"]].add(payload["title_id"])
    assert len(clicked) > 1_000
    assert all(title in played[session] for session, title in clicked.items())


@pytest.mark.parametrize(
    ("start_time", "region"),
    [
        ("2026-11-01T00:00:00+00:00", "us-east"),  # US clocks go back that night
        ("2026-11-01T00:00:00+00:00", "us-west"),
        ("2026-03-28T00:00:00+00:00", "uk"),  # and Europe's go forward on the 29th
        ("2026-03-28T00:00:00+00:00", "germany"),
        ("2026-03-28T00:00:00+00:00", "japan"),
    ],
)
def test_a_session_starts_in_the_local_hour_drawn_also_on_a_day_clocks_change(start_time, region):
    """Seconds from local midnight put every hour after a clock change an hour off: on the
    default start, four in five US evening sessions began at 19 or 21 h, not 20 h."""
    from random import Random

    from local_stack.simulate.sessions import SessionConfig, _session_start
    from local_stack.simulate.world import build_world

    world = build_world(Random(1))
    user = next(user for user in world.users if user.region == region)
    zone = world.zones[region]
    config = SessionConfig(datetime.fromisoformat(start_time).timestamp(), days=2)
    rng = Random(5)
    for hour in range(24):
        config.local_hour = lambda _, hour=hour: hour
        for _ in range(50):
            start = _session_start(rng, world, config, user)
            assert config.start_epoch_s <= start < config.start_epoch_s + 2 * 86400
            assert datetime.fromtimestamp(start, tz=zone).hour == hour, (hour, start)


def test_a_run_near_the_year_9999_moves_its_timestamps_back_only():
    """timestamp_out_of_range moves a date-time years off: forward past 9999 it could
    not be written (the run failed with "year 10005 is out of range")."""
    request = SimulationRequest(
        events=300,
        fault_rate=1.0,
        faults=("timestamp_out_of_range",),
        start_time="9990-01-01T00:00:00+00:00",
    )
    records = simulate(request).records
    years = {json.loads(record.value)["event_ts"][:4] for record in records}
    assert len(records) > 300 and max(years) == "9990" and "9963" in years


def test_a_run_too_large_for_memory_counts_its_ground_truth_and_faults(monkeypatch):
    """The truth doubles a run's memory (2,496 bytes an event against 1,192, measured),
    a tenth of faults adds half as much again: 1M events fit in 4 GiB without the truth,
    not with it."""
    from types import SimpleNamespace

    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=4 * 2**30))
    SimulationRequest(events=1_000_000, with_truth=False)
    with pytest.raises(ValueError, match=r"^events 1,000,000 would take about 2\.3 GiB"):
        SimulationRequest(events=1_000_000)
    SimulationRequest(events=600_000, with_truth=True)
    with pytest.raises(ValueError, match=r"would take about 2\.8 GiB"):
        SimulationRequest(events=600_000, with_truth=True, fault_rate=0.2)


def test_world_is_large_enough():
    from random import Random

    from local_stack.simulate.world import build_world

    world = build_world(Random(1))
    assert len(world.titles) >= 500 and len(world.users) >= 10_000
    assert all(1 <= len(user.devices) <= 3 for user in world.users)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--fault-rate", "2"], "--fault-rate must be between 0 and 1"),
        (["--faults", "gremlins"], "unknown fault kind(s) ['gremlins']"),
        (["--start-time", "tomorrow"], "--start-time 'tomorrow' is not an ISO-8601"),
        (["--out", "s3://x"], "--out must be 'kafka' or 'jsonl:PATH'"),
        (
            ["--topic", "bench.viewing-events", "--workspace", "main"],
            "--topic 'bench.viewing-events' is not a topic of workspace 'main'",
        ),
        (
            ["--topic", "viewing-events", "--workspace", "main"],
            "is not a topic of workspace 'main' (its topics start",
        ),
        (["--topic", "main.", "--workspace", "main"], "--topic 'main.' is not a topic of"),
        (["--start-time", "0001-01-01T00:00:00+00:00"], "is before 1970"),
        (["--start-time", "1970-01-01T00:00:00+05:00"], "is before 1970 in UTC"),
        (
            ["--start-time", "9999-12-31T00:00:00+00:00", "--days", "3"],
            "with days=3 runs past the year 9999",
        ),
        (  # in its own zone it ends in 9999, in UTC (and Sydney) after it
            ["--start-time", "9999-12-29T23:00:00-12:00", "--days", "1"],
            "with days=1 runs past the year 9999",
        ),
        (["--out", "jsonl:run.jsonl", "--manifest", "run.jsonl"], "--manifest and --out name"),
        (["--out", "jsonl:r.jsonl", "--truth", "m.json", "--manifest", "m.json"], "the same file"),
    ],
)
def test_bad_arguments_fail_with_one_line(arguments, message, tmp_path):
    """Named before the broker is asked: here no broker listens."""
    from tests.ports import free_port

    completed = subprocess.run(
        [sys.executable, "-m", "local_stack.simulate", "--events", "10", *arguments],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "REELHOUSE_SOURCE_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"},
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [f"error: {completed.stderr.strip()[7:]}"]
    assert message in completed.stderr


def test_a_broker_that_is_down_is_named_in_one_line_before_any_work(tmp_path):
    from tests.ports import free_port

    nothing = f"127.0.0.1:{free_port()}"
    completed = subprocess.run(
        [sys.executable, "-m", "local_stack.simulate", "--events", "1000000", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "REELHOUSE_SOURCE_BOOTSTRAP_SERVERS": nothing},
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"error: Kafka source unreachable: source.bootstrap_servers={nothing}: "
        f"{nothing} ([Errno 111] Connection refused)"
    ]
