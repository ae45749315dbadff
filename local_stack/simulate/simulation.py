"""One simulated run: clean events, labelled faults, arrival order, manifest, ground truth."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from local_stack.simulate.faults import FAULT_KINDS, applicable_kinds, encode, make_fault
from local_stack.simulate.sessions import SessionConfig, simulate_session
from local_stack.simulate.truth import ground_truth
from local_stack.simulate.world import build_world
from spark.contract import contract

DEFAULT_START = "2026-11-01T00:00:00+00:00"


@dataclass(frozen=True)
class SimulationRequest:
    events: int
    seed: int = 7
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULT_KINDS
    start_time: str = DEFAULT_START
    days: int = 2
    ctr: float = 0.12
    with_truth: bool = True

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ValueError(f"events must be >= 0, got {self.events}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {self.fault_rate}")
        _check_fits_in_memory(self.events, self.fault_rate, self.with_truth)
        unknown = [kind for kind in self.faults if kind not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
        repeated = sorted({kind for kind in self.faults if self.faults.count(kind) > 1})
        if repeated:  # a kind named twice would be drawn twice as often
            raise ValueError(f"faults names {', '.join(repeated)} more than once")
        if self.fault_rate > 0 and not self.faults:
            raise ValueError(f"faults names no fault kind; known: {', '.join(FAULT_KINDS)}")
        if self.days < 1:
            raise ValueError(f"days must be >= 1, got {self.days}")
        if not 0.0 <= self.ctr <= 1.0:
            raise ValueError(f"ctr must be between 0 and 1, got {self.ctr}")
        start = start_datetime(self.start_time)
        if start.timestamp() < 0:  # Kafka's record timestamps count from 1970 (in UTC)
            raise ValueError(f"start_time {self.start_time!r} is before 1970 in UTC")
        try:
            # The run with its late deliveries, in UTC and in the furthest zone ahead of it.
            start.astimezone(UTC) + timedelta(days=self.days + 1, hours=14)
        except OverflowError:
            raise ValueError(
                f"start_time {self.start_time!r} with days={self.days} runs past the year 9999"
            ) from None


# A run is built in memory before it is sent. Peak RSS per event, measured on 100,000
# events: 1,192 bytes without the ground truth (the records, their payloads and the lists
# that hold them), 2,496 with it, 3,738 with it and a tenth faulty (an oversize fault's
# payload alone is 66-196 KiB, a sixth of the faults).
BYTES_PER_EVENT = 1_200
TRUTH_BYTES_PER_EVENT = 1_300
BYTES_PER_FAULT_RATE = 12_500  # per event, times the fault rate


def _check_fits_in_memory(events: int, fault_rate: float, with_truth: bool) -> None:
    """ValueError when the run would take more than half the memory available now (the
    rest is for sending it, each producer process copying about 0.6 KB a record, and for
    the services and Spark beside it)."""
    import psutil

    per_event = BYTES_PER_EVENT + TRUTH_BYTES_PER_EVENT * with_truth
    needed = events * (per_event + BYTES_PER_FAULT_RATE * fault_rate)
    available = psutil.virtual_memory().available
    if needed > available / 2:
        raise ValueError(
            f"events {events:,} would take about {needed / 2**30:.1f} GiB of memory to build,"
            f" more than half the {available / 2**30:.1f} GiB available: simulate fewer events"
            " (runs into one topic add up)"
        )


@dataclass(frozen=True)
class Record:
    """One raw record as it goes on the wire."""

    key: bytes
    value: bytes
    timestamp_ms: int


@dataclass
class Simulation:
    records: list[Record]
    manifest: dict
    truth: dict | None
    clean_payloads: list[dict] = field(default_factory=list)


def start_datetime(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"start_time {text!r} is not an ISO-8601 date-time") from None
    if moment.tzinfo is None:
        raise ValueError(f"start_time {text!r} needs a UTC offset, e.g. {DEFAULT_START}")
    return moment


def simulate(request: SimulationRequest) -> Simulation:
    """Generate the run described by ``request`` (deterministic for a seed)."""
    rng = random.Random(request.seed)
    world = build_world(random.Random(request.seed * 7919 + 1))
    config = SessionConfig(
        start_datetime(request.start_time).timestamp(), request.days, request.ctr
    )
    fault_rng = random.Random(request.seed * 104729 + 3)

    # (arrival_s, sequence, key, value, fault kind or None, event_id)
    pending: list[tuple[float, int, bytes, bytes, str | None, str | None]] = []
    clean_payloads: list[dict] = []
    sequence = 0
    produced = 0
    busy: dict[tuple[str, int], list[tuple[float, float]]] = {}  # each device's sessions
    while produced < request.events:
        session = simulate_session(rng, world, config, sequence, busy)
        session = session[: request.events - produced]
        sequence += len(session)
        produced += len(session)
        for event in session:
            key = event.payload["user_id"].encode()
            pending.append(
                (
                    event.arrival_s,
                    event.sequence,
                    key,
                    encode(event.payload),
                    None,
                    event.payload["event_id"],
                )
            )
            if request.with_truth:
                clean_payloads.append(event.payload)
            if request.fault_rate and fault_rng.random() < request.fault_rate:
                kinds = applicable_kinds(event, request.faults)
                if kinds:
                    kind = kinds[fault_rng.randrange(len(kinds))]
                    value, event_id, arrival = make_fault(fault_rng, kind, event)
                    pending.append((arrival, sequence, key, value, kind, event_id))
                    sequence += 1

    pending.sort(key=lambda item: (item[0], item[1]))
    records = [Record(key, value, int(arrival * 1000)) for arrival, _, key, value, _, _ in pending]
    labels = [
        {
            "index": index,
            "kind": kind,
            "event_id": event_id,
            "sha1": hashlib.sha1(value).hexdigest(),
        }
        for index, (_, _, _, value, kind, event_id) in enumerate(pending)
        if kind is not None
    ]
    fault_counts = Counter(label["kind"] for label in labels)
    manifest = {
        "seed": request.seed,
        "contract_version": contract()["x-contract-version"],
        "events": produced,
        "records": len(records),
        "bytes": sum(len(record.value) for record in records),
        "fault_rate": request.fault_rate,
        "faults": {kind: fault_counts.get(kind, 0) for kind in FAULT_KINDS},
        "start_time": request.start_time,
        "days": request.days,
        "ctr": request.ctr,
        "labels": labels,
    }
    truth = None
    if request.with_truth:
        late = [
            json.loads(value)["event_ts"]
            for _, _, _, value, kind, _ in pending
            if kind == "late_arrival"
        ]
        truth = ground_truth(clean_payloads, late)
    return Simulation(records, manifest, truth, clean_payloads)
