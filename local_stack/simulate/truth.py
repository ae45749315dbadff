"""Ground truth: the gold metrics computed in plain Python from the clean events.

The definitions here are the documented definitions of the gold tables (README,
"Gold metrics"); Spark's gold tables are compared against this output.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from spark.contract import region_timezones

# Engagement score weights (README "Gold metrics"): a minute watched is worth 1 point.
ENGAGEMENT_WEIGHTS = {"watch_minutes": 1.0, "completions": 10.0, "sessions": 2.0, "rec_clicks": 5.0}


def percentile(values: list[float], fraction: float) -> float:
    """Exact percentile with linear interpolation between closest ranks (Spark's percentile)."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def ground_truth(payloads: list[dict], late_event_times: Iterable[str] = ()) -> dict:
    """Every gold metric of the clean events, keyed as the gold tables are.

    ``late_event_times``: the ``event_ts`` of every record sent past silver's lateness
    bound (the ``late_arrival`` faults), which gold.daily_totals counts as excluded."""
    zones = {region: ZoneInfo(zone) for region, zone in region_timezones().items()}
    popularity: dict[tuple, dict] = defaultdict(
        lambda: {"plays": 0, "viewers": set(), "watch_s": 0.0}
    )
    traffic: dict[tuple, dict] = defaultdict(lambda: {"events": 0, "users": set()})
    engagement: dict[tuple, dict] = defaultdict(
        lambda: {"watch_s": 0.0, "completions": 0, "sessions": set(), "rec_clicks": 0}
    )
    trends: dict[tuple, int] = defaultdict(int)
    events_per_day: Counter[str] = Counter()
    sessions: dict[str, dict] = {}

    for event in payloads:
        moment = datetime.fromisoformat(event["event_ts"]).astimezone(UTC)
        region, user, kind = event["region"], event["user_id"], event["event_type"]
        hour = moment.replace(minute=0, second=0, microsecond=0)
        day = moment.date().isoformat()
        events_per_day[day] += 1
        local = moment.astimezone(zones[region])
        played = event.get("played_s") or 0.0

        if event["title_id"] is not None:
            cell = popularity[(region, hour.isoformat(), event["title_id"])]
            if kind == "play":
                cell["plays"] += 1
                cell["viewers"].add(user)
                trends[(region, event["genre"], day)] += 1
            cell["watch_s"] += played

        slot = traffic[(region, local.date().isoformat(), local.hour)]
        slot["events"] += 1
        slot["users"].add(user)

        daily = engagement[(user, day)]
        daily["watch_s"] += played
        daily["completions"] += kind == "complete"
        daily["rec_clicks"] += kind == "recommendation_click"
        daily["sessions"].add(event["session_id"])

        session = sessions.setdefault(
            event["session_id"],
            {"first": (moment, event["event_id"]), "start": moment, "end": moment}
            | {"titles": set(), "completed": False}
            | _attributes(event),
        )
        if (moment, event["event_id"]) < session["first"]:
            # A session's user, region and device are its first event's (time, then id).
            session.update(first=(moment, event["event_id"]), **_attributes(event))
        session["start"] = min(session["start"], moment)
        session["end"] = max(session["end"], moment)
        if kind == "play":
            session["titles"].add(event["title_id"])
        session["completed"] = session["completed"] or kind == "complete"

    return {
        "title_popularity": _title_popularity(popularity),
        "sessions": _sessions(sessions),
        "session_stats": _session_stats(sessions),
        "traffic_by_hour": [
            {
                "region": region,
                "local_date": date,
                "local_hour": hour,
                "events": cell["events"],
                "active_users": len(cell["users"]),
            }
            for (region, date, hour), cell in sorted(traffic.items())
        ],
        "user_engagement": _engagement(engagement),
        "regional_trends": _trends(trends),
        "daily_totals": _daily_totals(events_per_day, late_event_times),
    }


def _daily_totals(events: Counter[str], late_event_times: Iterable[str]) -> list[dict]:
    late = Counter(
        datetime.fromisoformat(moment).astimezone(UTC).date().isoformat()
        for moment in late_event_times
    )
    return [
        {"day": day, "events": events[day], "late_excluded": late[day]}
        for day in sorted(events.keys() | late.keys())
    ]


def _attributes(event: dict) -> dict:
    return {key: event[key] for key in ("user_id", "region", "device_type")}


def _title_popularity(cells: dict) -> list[dict]:
    return [
        {
            "region": region,
            "hour": hour,
            "title_id": title,
            "plays": cell["plays"],
            "unique_viewers": len(cell["viewers"]),
            "watch_minutes": cell["watch_s"] / 60.0,
        }
        for (region, hour, title), cell in sorted(cells.items())
    ]


def _sessions(sessions: dict) -> list[dict]:
    return [
        {
            "session_id": session_id,
            "user_id": s["user_id"],
            "region": s["region"],
            "device_type": s["device_type"],
            "start": s["start"].isoformat(),
            "end": s["end"].isoformat(),
            "duration_s": (s["end"] - s["start"]).total_seconds(),
            "titles_watched": len(s["titles"]),
            "completed": s["completed"],
        }
        for session_id, s in sorted(sessions.items())
    ]


def _session_stats(sessions: dict) -> list[dict]:
    groups: dict[tuple, list[float]] = defaultdict(list)
    for s in sessions.values():
        key = (s["region"], s["device_type"], s["start"].date().isoformat())
        groups[key].append((s["end"] - s["start"]).total_seconds())
    return [
        {
            "region": region,
            "device_type": device,
            "day": day,
            "sessions": len(values),
            "avg_duration_s": sum(values) / len(values),
            "median_duration_s": percentile(values, 0.5),
            "p90_duration_s": percentile(values, 0.9),
        }
        for (region, device, day), values in sorted(groups.items())
    ]


def engagement_score(
    watch_minutes: float, completions: int, sessions: int, rec_clicks: int
) -> float:
    weights = ENGAGEMENT_WEIGHTS
    return (
        weights["watch_minutes"] * watch_minutes
        + weights["completions"] * completions
        + weights["sessions"] * sessions
        + weights["rec_clicks"] * rec_clicks
    )


def _engagement(cells: dict) -> list[dict]:
    rows = []
    for (user, day), cell in sorted(cells.items()):
        minutes = cell["watch_s"] / 60.0
        rows.append(
            {
                "user_id": user,
                "day": day,
                "watch_minutes": minutes,
                "completions": cell["completions"],
                "sessions": len(cell["sessions"]),
                "rec_clicks": cell["rec_clicks"],
                "score": engagement_score(
                    minutes, cell["completions"], len(cell["sessions"]), cell["rec_clicks"]
                ),
            }
        )
    return rows


def _trends(plays: dict) -> list[dict]:
    rows = []
    for (region, genre, day), count in sorted(plays.items()):
        previous_day = datetime.fromisoformat(day).toordinal() - 1
        previous_key = (region, genre, datetime.fromordinal(previous_day).date().isoformat())
        previous = plays.get(previous_key, 0)
        rows.append(
            {
                "region": region,
                "genre": genre,
                "day": day,
                "plays": count,
                "previous_day_plays": previous,
                "change": count - previous,
                "change_pct": (count - previous) / previous if previous else None,
            }
        )
    return rows
