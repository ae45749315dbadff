"""The simulated world: regions, a title catalog with regional tastes, users and devices.

All of it is drawn from one seeded ``random.Random``, so a seed fixes the world.
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from spark.contract import DEVICE_TYPES, GENRES, NETWORKS, REGIONS, region_timezones

TITLE_COUNT = 600
SCRIPT_TITLE = "<script>alert('reel')</script> & Co"
USER_COUNT = 12_000

# Share of accounts per region and the countries each region serves.
REGION_WEIGHTS = {
    "us-east": 0.19,
    "us-west": 0.12,
    "brazil": 0.13,
    "uk": 0.10,
    "germany": 0.10,
    "india": 0.16,
    "japan": 0.10,
    "australia": 0.10,
}
REGION_COUNTRIES = {
    "us-east": ("US", "CA"),
    "us-west": ("US", "MX"),
    "brazil": ("BR", "AR"),
    "uk": ("GB", "IE"),
    "germany": ("DE", "AT", "CH"),
    "india": ("IN", "LK"),
    "japan": ("JP",),
    "australia": ("AU", "NZ"),
}

# Sessions started per local hour (0-23): quiet at night, a lunch bump, an evening peak.
DIURNAL_WEIGHTS = (
    1.2,
    0.7,
    0.4,
    0.3,
    0.3,
    0.4,
    0.8,
    1.3,
    1.6,
    1.7,
    1.8,
    2.0,
    2.4,
    2.3,
    2.1,
    2.2,
    2.6,
    3.4,
    4.6,
    6.0,
    7.2,
    7.6,
    5.6,
    2.9,
)

DEVICE_WEIGHTS = {"tv": 0.42, "mobile": 0.25, "tablet": 0.10, "web": 0.15, "console": 0.08}
DEVICE_NETWORKS = {
    "tv": ("wifi", "ethernet"),
    "console": ("ethernet", "wifi"),
    "web": ("wifi", "ethernet"),
    "mobile": ("cellular_4g", "cellular_5g", "wifi"),
    "tablet": ("wifi", "cellular_5g"),
}
APP_VERSIONS = ("8.41.0", "8.42.1", "8.43.0", "9.0.2", "9.1.0")
# Regions drift to newer contract versions at different speeds (schema drift).
CONTRACT_1_1_SHARE = 0.06
AUDIO_LANGUAGES = {
    "us-east": "en",
    "us-west": "en",
    "brazil": "pt-BR",
    "uk": "en",
    "germany": "de",
    "india": "hi",
    "japan": "ja",
    "australia": "en",
}

_WORDS_A = (
    "Silent",
    "Crimson",
    "Last",
    "Hidden",
    "Broken",
    "Golden",
    "Midnight",
    "Electric",
    "Lost",
    "Wild",
    "Frozen",
    "Secret",
    "Burning",
    "Quiet",
    "Iron",
    "Paper",
    "Velvet",
    "Neon",
    "Hollow",
    "Distant",
)
_WORDS_B = (
    "Harbor",
    "Kingdom",
    "Signal",
    "Garden",
    "Empire",
    "River",
    "Protocol",
    "Circus",
    "Frontier",
    "Orchard",
    "Station",
    "Verdict",
    "Tapes",
    "Summer",
    "Machine",
    "Island",
    "Archive",
    "Heist",
    "Choir",
    "Lighthouse",
)
GENRE_RUNTIME_S = {
    "drama": (2400, 3600),
    "comedy": (1320, 1800),
    "action": (5400, 8400),
    "thriller": (2700, 3600),
    "documentary": (2700, 5400),
    "kids": (660, 1500),
    "anime": (1380, 1500),
    "romance": (5400, 7200),
    "horror": (5100, 6600),
    "sci-fi": (2700, 3900),
    "reality": (2400, 3000),
    "crime": (2700, 3600),
}
# Regional tastes: a region multiplies the popularity of its favourite genres.
REGION_GENRE_TASTE = {
    "us-east": {"crime": 1.8, "drama": 1.4},
    "us-west": {"sci-fi": 2.0, "comedy": 1.4},
    "brazil": {"romance": 2.2, "reality": 1.6},
    "uk": {"crime": 2.0, "documentary": 1.6},
    "germany": {"thriller": 2.2, "documentary": 1.4},
    "india": {"drama": 2.0, "romance": 1.8},
    "japan": {"anime": 3.0, "kids": 1.5},
    "australia": {"reality": 2.0, "action": 1.6},
}


@dataclass(frozen=True)
class Title:
    title_id: str
    name: str
    genre: str
    duration_s: int


@dataclass(frozen=True)
class Device:
    device_type: str
    app_version: str
    network: str
    clock_skew_s: float
    contract_version: str


@dataclass(frozen=True)
class User:
    user_id: str
    region: str
    country: str
    profiles: int
    devices: tuple[Device, ...]
    activity: float


class Popularity:
    """Weighted sampling of titles in one region (Zipf-like, regionally shuffled)."""

    def __init__(self, titles: list[Title], weights: list[float]) -> None:
        self.titles = titles
        self.cumulative = list(itertools.accumulate(weights))

    def sample(self, rng: random.Random) -> Title:
        point = rng.random() * self.cumulative[-1]
        return self.titles[bisect(self.cumulative, point)]


@dataclass
class World:
    titles: list[Title]
    users: list[User]
    user_cumulative: list[float]
    popularity: dict[str, Popularity]
    zones: dict[str, ZoneInfo]

    def sample_user(self, rng: random.Random) -> User:
        point = rng.random() * self.user_cumulative[-1]
        return self.users[bisect(self.user_cumulative, point)]


def build_world(rng: random.Random) -> World:
    """Draw the catalog, the regional popularity and the users."""
    assert set(REGION_WEIGHTS) == set(REGIONS), "regions must match the event contract"
    titles = _build_titles(rng)
    popularity = {region: _regional_popularity(rng, titles, region) for region in REGIONS}
    users = _build_users(rng)
    return World(
        titles=titles,
        users=users,
        user_cumulative=list(itertools.accumulate(user.activity for user in users)),
        popularity=popularity,
        zones={region: ZoneInfo(zone) for region, zone in region_timezones().items()},
    )


def _build_titles(rng: random.Random) -> list[Title]:
    titles = []
    for number in range(1, TITLE_COUNT + 1):
        genre = GENRES[rng.randrange(len(GENRES))]
        low, high = GENRE_RUNTIME_S[genre]
        name = f"The {rng.choice(_WORDS_A)} {rng.choice(_WORDS_B)}"
        if number % 7 == 0:
            name += f" {rng.randint(2, 5)}"
        titles.append(Title(f"t-{number:05d}", name, genre, rng.randint(low, high)))
    # Free-text names reach the report: a popular title carries markup that must be
    # shown as text, never run.
    popular = titles[1]
    titles[1] = Title(popular.title_id, SCRIPT_TITLE, popular.genre, popular.duration_s)
    return titles


def _regional_popularity(rng: random.Random, titles: list[Title], region: str) -> Popularity:
    # A global Zipf ranking, locally perturbed: each region re-ranks by its own taste
    # and a random local preference, so top-10 lists differ between regions.
    taste = REGION_GENRE_TASTE[region]
    weights = []
    for rank, title in enumerate(titles, start=1):
        base = 1.0 / (rank**0.9)
        local = rng.lognormvariate(0.0, 0.9) * taste.get(title.genre, 1.0)
        weights.append(base * local)
    return Popularity(titles, weights)


def _build_users(rng: random.Random) -> list[User]:
    regions = list(REGION_WEIGHTS)
    region_cumulative = list(itertools.accumulate(REGION_WEIGHTS.values()))
    device_types = list(DEVICE_WEIGHTS)
    device_cumulative = list(itertools.accumulate(DEVICE_WEIGHTS.values()))
    assert set(device_types) == set(DEVICE_TYPES)
    users = []
    for number in range(1, USER_COUNT + 1):
        region = regions[bisect(region_cumulative, rng.random() * region_cumulative[-1])]
        country = rng.choice(REGION_COUNTRIES[region])
        devices = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            device_type = device_types[
                bisect(device_cumulative, rng.random() * device_cumulative[-1])
            ]
            network = rng.choice(DEVICE_NETWORKS[device_type])
            assert network in NETWORKS
            # Most clocks are within a second or two; a few are a minute off.
            skew = rng.gauss(0.0, 1.5) if rng.random() < 0.95 else rng.uniform(-60.0, 60.0)
            version = "1.1" if rng.random() < CONTRACT_1_1_SHARE else "1.0"
            devices.append(Device(device_type, rng.choice(APP_VERSIONS), network, skew, version))
        users.append(
            User(
                user_id=f"u-{number:06d}",
                region=region,
                country=country,
                profiles=rng.randint(1, 4),
                devices=tuple(devices),
                activity=rng.paretovariate(2.5),
            )
        )
    return users
