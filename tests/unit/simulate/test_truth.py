"""Ground-truth definitions on a handful of hand-written events."""

from __future__ import annotations

import pytest

from local_stack.simulate.truth import ground_truth, percentile

pytestmark = pytest.mark.unit


def _event(
    kind,
    ts,
    user="u-000001",
    session="s-0000000000000001",
    title="t-00001",
    genre="drama",
    played=None,
    region="japan",
    device="tv",
    event_id=None,
):
    return {
        "event_id": event_id or f"e-{ts}-{kind}-{user}",
        "event_type": kind,
        "event_ts": ts,
        "user_id": user,
        "session_id": session,
        "title_id": title,
        "genre": genre,
        "played_s": played,
        "region": region,
        "device_type": device,
    }


def test_percentile_interpolates_linearly_between_ranks():
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.9) == pytest.approx(37.0)
    assert percentile([7.0], 0.9) == 7.0


def test_metrics_follow_their_definitions():
    events = [
        _event("play", "2026-11-01T20:00:00.000+09:00"),
        _event("pause", "2026-11-01T20:10:00.000+09:00", played=600.0),
        _event("complete", "2026-11-01T20:30:00.000+09:00", played=1200.0),
        _event("recommendation_click", "2026-11-01T20:31:00.000+09:00"),
        _event(
            "play", "2026-11-01T20:40:00.000+09:00", user="u-000002", session="s-0000000000000002"
        ),
        _event(
            "play", "2026-11-02T20:40:00.000+09:00", user="u-000002", session="s-0000000000000003"
        ),
        _event(
            "play", "2026-11-02T20:45:00.000+09:00", user="u-000003", session="s-0000000000000004"
        ),
    ]
    truth = ground_truth(events)
    popularity = {(r["hour"], r["title_id"]): r for r in truth["title_popularity"]}
    first_hour = popularity[("2026-11-01T11:00:00+00:00", "t-00001")]
    assert (first_hour["plays"], first_hour["unique_viewers"]) == (2, 2)
    assert first_hour["watch_minutes"] == 30.0

    sessions = {s["session_id"]: s for s in truth["sessions"]}
    assert sessions["s-0000000000000001"]["duration_s"] == 31 * 60
    assert sessions["s-0000000000000001"]["completed"] is True
    assert sessions["s-0000000000000001"]["titles_watched"] == 1

    traffic = {(r["local_date"], r["local_hour"]): r for r in truth["traffic_by_hour"]}
    assert traffic[("2026-11-01", 20)] == {
        "region": "japan",
        "local_date": "2026-11-01",
        "local_hour": 20,
        "events": 5,
        "active_users": 2,
    }

    engagement = {(r["user_id"], r["day"]): r for r in truth["user_engagement"]}
    first = engagement[("u-000001", "2026-11-01")]
    assert first["score"] == 30.0 + 10 * 1 + 2 * 1 + 5 * 1

    trends = {r["day"]: r for r in truth["regional_trends"]}
    assert trends["2026-11-01"]["plays"] == 2 and trends["2026-11-01"]["change_pct"] is None
    assert trends["2026-11-02"]["change"] == 0 and trends["2026-11-02"]["change_pct"] == 0.0


def test_a_session_is_its_first_event_s_user_region_and_device_whatever_the_arrival_order():
    """Events arrive out of order; the earliest (then the smallest event id) names them."""
    events = [
        _event("play", "2026-11-01T10:05:00+00:00", device="mobile", region="brazil"),
        _event("app_open", "2026-11-01T10:00:00+00:00", device="tv", event_id="e-2"),
        _event("search", "2026-11-01T10:00:00+00:00", device="web", event_id="e-1"),
    ]
    (session,) = ground_truth(events)["sessions"]
    assert (session["device_type"], session["region"]) == ("web", "japan")
    assert session["duration_s"] == 300.0


def test_a_session_over_midnight_counts_on_both_days_and_starts_on_the_first():
    events = [
        _event("play", "2026-11-01T23:50:00+00:00"),
        _event("complete", "2026-11-02T00:20:00+00:00", played=1800.0),
    ]
    truth = ground_truth(events)
    days = {r["day"]: r for r in truth["user_engagement"]}
    assert (days["2026-11-01"]["sessions"], days["2026-11-02"]["sessions"]) == (1, 1)
    assert (days["2026-11-01"]["watch_minutes"], days["2026-11-02"]["watch_minutes"]) == (0, 30)
    (stats,) = truth["session_stats"]
    assert (stats["day"], stats["sessions"], stats["median_duration_s"]) == ("2026-11-01", 1, 1800)


def test_daily_totals_count_events_and_late_records_by_the_utc_day_they_happened():
    events = [
        _event("play", "2026-11-01T20:00:00.000+09:00"),  # 11:00 UTC on the 1st
        _event("pause", "2026-11-02T08:30:00.000+09:00"),  # 23:30 UTC on the 1st
        _event("play", "2026-11-02T09:30:00.000+09:00"),  # 00:30 UTC on the 2nd
    ]
    late = ["2026-11-01T08:00:00.000+09:00", "2026-10-31T23:59:59.000-01:00"]
    assert ground_truth(events, late)["daily_totals"] == [
        {"day": "2026-10-31", "events": 0, "late_excluded": 1},
        {"day": "2026-11-01", "events": 2, "late_excluded": 1},
        {"day": "2026-11-02", "events": 1, "late_excluded": 0},
    ]
