"""Viewing sessions as state machines, producing clean events of the contract.

A session: app_open -> browse/search -> recommendations (impressions, maybe a click)
-> one or more titles, each played with pauses/resumes/seeks until stop or complete
-> maybe a rating. Timestamps advance with plausible gaps; playback positions
advance with the content actually played (``played_s``).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from local_stack.simulate.world import (
    AUDIO_LANGUAGES,
    DIURNAL_WEIGHTS,
    Device,
    Title,
    User,
    World,
)

DEFAULT_CTR = 0.12
# Delivery: most events reach the hub within a second or two; LATE_SHARE of them are
# held back by a flaky connection for up to MAX_CLEAN_LATENESS_S (inside the silver
# watermark, so they must still count).
LATE_SHARE = 0.01
MAX_CLEAN_LATENESS_S = 40 * 60
BITRATES = {"tv": 15000, "console": 12000, "web": 6000, "tablet": 4500, "mobile": 3000}


@dataclass
class SimulatedEvent:
    """A clean event plus what only the simulator knows (true and arrival times)."""

    payload: dict
    arrival_s: float
    sequence: int


@dataclass
class SessionConfig:
    start_epoch_s: float
    days: int
    ctr: float = DEFAULT_CTR
    _hour_cumulative: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        total = 0.0
        for weight in DIURNAL_WEIGHTS:
            total += weight
            self._hour_cumulative.append(total)

    def local_hour(self, rng: random.Random) -> int:
        point = rng.random() * self._hour_cumulative[-1]
        for hour, bound in enumerate(self._hour_cumulative):
            if point < bound:
                return hour
        return 23


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class SessionWriter:
    """Appends the events of one session to a list, in event-time order."""

    def __init__(
        self,
        rng: random.Random,
        world: World,
        user: User,
        device: Device,
        profile_number: int,
        start_s: float,
        sequence: int,
    ) -> None:
        self.rng = rng
        self.world = world
        self.user = user
        self.device = device
        self.zone = world.zones[user.region]
        self.clock_s = start_s
        self.sequence = sequence
        self.session_id = f"s-{rng.getrandbits(64):016x}"
        self.profile_id = f"p-{user.user_id[2:]}-{profile_number}"
        self.events: list[SimulatedEvent] = []

    def emit(self, event_type: str, title: Title | None = None, **fields) -> None:
        rng, device = self.rng, self.device
        client_time = datetime.fromtimestamp(self.clock_s + device.clock_skew_s, tz=self.zone)
        payload = {
            "event_id": new_uuid(rng),
            "schema_version": device.contract_version,
            "event_type": event_type,
            "event_ts": client_time.isoformat(timespec="milliseconds"),
            "user_id": self.user.user_id,
            "profile_id": self.profile_id,
            "session_id": self.session_id,
            "device_type": device.device_type,
            "app_version": device.app_version,
            "region": self.user.region,
            "country": self.user.country,
            "title_id": title.title_id if title else None,
            "title_name": title.name if title else None,
            "genre": title.genre if title else None,
            "position_s": None,
            "duration_s": None,
            "played_s": None,
            "search_query": None,
            "rec_row": None,
            "rec_rank": None,
            "rating": None,
            "bitrate_kbps": None,
            "network": device.network,
        }
        payload.update(fields)
        if device.contract_version == "1.1":
            playback = payload["position_s"] is not None
            payload["audio_language"] = AUDIO_LANGUAGES[self.user.region] if playback else None
        delay = rng.uniform(0.05, 1.5)
        if rng.random() < LATE_SHARE:
            delay += rng.uniform(5.0, MAX_CLEAN_LATENESS_S)
        self.events.append(SimulatedEvent(payload, self.clock_s + delay, self.sequence))
        self.sequence += 1

    def wait(self, low_s: float, high_s: float) -> None:
        self.clock_s += self.rng.uniform(low_s, high_s)


# One device runs one session at a time (an account's other devices and profiles may
# stream at once): a start drawn into one of the device's sessions is drawn again, up to
# START_DRAWS times; then the session goes to another user's device, as a device with no
# room left in the run's window takes no more.
START_DRAWS = 20
DEVICE_DRAWS = 200
SESSION_GAP_S = 60.0  # at least this long between two sessions of one device


def simulate_session(
    rng: random.Random,
    world: World,
    config: SessionConfig,
    sequence: int,
    busy: dict[tuple[str, int], list[tuple[float, float]]] | None = None,
) -> list[SimulatedEvent]:
    """All the events of one random session, in event-time order. ``busy`` holds each
    device's sessions so far, (start, end) by (user id, device number), and gets this one."""
    for _ in range(DEVICE_DRAWS):
        user = world.sample_user(rng)
        device_number = rng.randrange(len(user.devices))
        profile_number = rng.randint(1, user.profiles)
        taken = busy.setdefault((user.user_id, device_number), []) if busy is not None else []
        for _ in range(START_DRAWS):
            start_s = _session_start(rng, world, config, user)
            if _overlaps(taken, start_s, start_s):
                continue  # inside another session: no need to play this one to know
            writer = _play_session(rng, world, config, user, device_number, profile_number, start_s)
            if not _overlaps(taken, start_s, writer.clock_s):
                taken.append((start_s, writer.clock_s))
                for number, event in enumerate(writer.events):
                    event.sequence = sequence + number
                return writer.events
    raise ValueError(
        f"the devices drawn have no room left for another session in {config.days} day(s):"
        " simulate fewer events, or more --days"
    )


def _overlaps(taken: list[tuple[float, float]], start_s: float, end_s: float) -> bool:
    """[start_s, end_s] comes within SESSION_GAP_S of one of the ``taken`` sessions."""
    return any(
        start_s < end + SESSION_GAP_S and begin < end_s + SESSION_GAP_S for begin, end in taken
    )


def _play_session(
    rng: random.Random,
    world: World,
    config: SessionConfig,
    user: User,
    device_number: int,
    profile_number: int,
    start_s: float,
) -> SessionWriter:
    writer = SessionWriter(
        rng, world, user, user.devices[device_number], profile_number, start_s, sequence=0
    )
    popularity = world.popularity[user.region]

    writer.emit("app_open")
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        writer.wait(3, 40)
        writer.emit("browse")
    if rng.random() < 0.3:
        writer.wait(5, 30)
        query_title = popularity.sample(rng)
        writer.emit("search", search_query=_search_text(rng, query_title))

    chosen: Title | None = None
    row = rng.randint(1, 6)
    for rank in range(1, rng.randint(2, 6)):
        writer.wait(1, 8)
        shown = popularity.sample(rng)
        writer.emit("recommendation_impression", shown, rec_row=row, rec_rank=rank)
        if chosen is None and rng.random() < config.ctr:
            writer.wait(1, 6)
            writer.emit("recommendation_click", shown, rec_row=row, rec_rank=rank)
            chosen = shown

    titles_to_watch = 1
    while titles_to_watch < 4 and rng.random() < 0.35:
        titles_to_watch += 1
    if chosen is None and rng.random() < 0.12:
        titles_to_watch = 0  # opened the app, looked around, left (a click plays its title)
    for number in range(titles_to_watch):
        title = chosen if (number == 0 and chosen) else popularity.sample(rng)
        writer.wait(2, 25)
        _watch(writer, title)
    return writer


def _session_start(rng: random.Random, world: World, config: SessionConfig, user: User) -> float:
    """A start in the run's window, at a local hour drawn from the diurnal curve.

    The hour is the wall clock's, on a day that clocks change too (as seconds from local
    midnight, every hour after the change was an hour off). A draw that falls outside
    the window, or into an hour that day skips, is drawn again: the window's local days
    are sampled in proportion to the part of them it holds."""
    zone = world.zones[user.region]
    end_s = config.start_epoch_s + config.days * 86400
    first_day = datetime.fromtimestamp(config.start_epoch_s, tz=zone).date()
    local_days = (datetime.fromtimestamp(end_s - 1, tz=zone).date() - first_day).days + 1
    for _ in range(START_DRAWS * 50):
        day = rng.randrange(local_days)
        hour = config.local_hour(rng)
        local_hour = datetime.combine(first_day + timedelta(days=day), time(hour), tzinfo=zone)
        start = local_hour.timestamp() + rng.uniform(0, 3600)
        if (
            config.start_epoch_s <= start < end_s
            and datetime.fromtimestamp(start, tz=zone).hour == hour
        ):
            return start
    raise ValueError(f"no start in the run's window has the local hour {hour} in {zone}")


def _watch(writer: SessionWriter, title: Title) -> None:
    rng = writer.rng
    duration = float(title.duration_s)
    bitrate = BITRATES[writer.device.device_type]
    resume_at = 0.0 if rng.random() < 0.7 else round(rng.uniform(0, duration * 0.6), 1)
    position = resume_at
    playback = {"duration_s": duration, "bitrate_kbps": bitrate}
    writer.emit("play", title, position_s=position, **playback)
    # Attention span for this title: some give up early, many watch to the end.
    remaining_attention = rng.expovariate(1.0 / (duration * 0.8))
    while True:
        segment = min(rng.expovariate(1.0 / 900.0) + 30.0, duration - position)
        segment = round(min(segment, max(remaining_attention, 5.0)), 1)
        writer.clock_s += segment
        position = round(position + segment, 1)
        remaining_attention -= segment
        playback["bitrate_kbps"] = max(800, bitrate + rng.choice((-1500, -500, 0, 0, 500)))
        if position >= duration - 0.05:
            writer.emit("complete", title, position_s=duration, played_s=segment, **playback)
            if rng.random() < 0.25:
                writer.wait(3, 20)
                writer.emit("rating", title, rating=_stars(rng))
            return
        if remaining_attention <= 0:
            writer.emit("stop", title, position_s=position, played_s=segment, **playback)
            if rng.random() < 0.08:
                writer.wait(3, 20)
                writer.emit("rating", title, rating=_stars(rng))
            return
        action = rng.random()
        if action < 0.6:
            writer.emit("pause", title, position_s=position, played_s=segment, **playback)
            writer.wait(5, 240)
            writer.emit("resume", title, position_s=position, **playback)
        else:
            writer.emit("seek", title, position_s=position, played_s=segment, **playback)
            jump = rng.uniform(-120, 300)
            position = round(min(max(position + jump, 0.0), duration - 1.0), 1)
            writer.emit("resume", title, position_s=position, **playback)


def _stars(rng: random.Random) -> int:
    return rng.choices((1, 2, 3, 4, 5), weights=(4, 6, 15, 35, 40))[0]


def _search_text(rng: random.Random, title: Title) -> str:
    words = title.name.split()
    return " ".join(words[1 : 1 + rng.randint(1, 2)]).lower()
