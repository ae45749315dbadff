"""What maintenance sets on a table so that VACUUM keeps the retention it was given."""

from __future__ import annotations

import pytest

from spark.maintenance import (
    LOG_RETENTION_PROPERTY,
    RETENTION_PROPERTY,
    interval_hours,
    retention_changes,
    vacuum_changes,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "hours"),
    [
        (None, 168.0),  # Delta's default: a week
        ("interval 1 week", 168.0),
        ("interval 30 days", 720.0),
        ("INTERVAL 1 week 2 days 3 hours", 219.0),
        ("interval 90 minutes", 1.5),
        ("interval 720 hours", 720.0),
        ("interval 2 months", None),  # not a fixed number of hours: left to Delta
        ("30 days or so", None),
    ],
)
def test_a_retention_property_in_hours(value, hours):
    properties = {} if value is None else {RETENTION_PROPERTY: value}
    assert interval_hours(properties, RETENTION_PROPERTY) == hours


def test_the_default_log_retention_is_30_days():
    assert interval_hours({}, LOG_RETENTION_PROPERTY) == 720.0


def test_a_week_on_a_table_without_properties_changes_nothing():
    assert retention_changes({}, 168) == {}
    assert retention_changes({RETENTION_PROPERTY: "interval 7 days"}, 168) == {}


def test_thirty_days_set_the_files_retention_alone():
    assert retention_changes({}, 720) == {RETENTION_PROPERTY: "interval 720 hours"}


def test_more_than_the_log_keeps_raises_the_log_retention_too():
    """Delta refuses a files' retention longer than the log's (30 days by default)."""
    assert retention_changes({}, 1000) == {
        RETENTION_PROPERTY: "interval 1000 hours",
        LOG_RETENTION_PROPERTY: "interval 1000 hours",
    }


def test_under_30_days_the_log_retention_is_left_out():
    properties = {
        LOG_RETENTION_PROPERTY: "interval 365 days",
        RETENTION_PROPERTY: "interval 1000 hours",
    }
    assert retention_changes(properties, 200) == {RETENTION_PROPERTY: "interval 200 hours"}


@pytest.mark.parametrize(
    ("log", "retention"),
    [("interval 1000 hours", 900), ("interval 365 days", 1200), ("interval 1 day -1 hours", 900)],
)
def test_over_30_days_the_log_retention_goes_along_as_it_is(log, retention):
    """Delta checks the files' retention against the log's in the same statement, or else
    against the default 30 days: a longer log retention (or one not read here, for Delta to
    judge) is given again, unchanged."""
    properties = {LOG_RETENTION_PROPERTY: log, RETENTION_PROPERTY: "interval 1000 hours"}
    assert retention_changes(properties, retention) == {
        RETENTION_PROPERTY: f"interval {retention} hours",
        LOG_RETENTION_PROPERTY: log,
    }


def test_a_retention_already_kept_changes_nothing_over_30_days():
    properties = {
        LOG_RETENTION_PROPERTY: "interval 1000 hours",
        RETENTION_PROPERTY: "interval 1000 hours",
    }
    assert retention_changes(properties, 1000) == {}


def test_a_log_retention_lowered_by_hand_is_raised_again():
    """The files' retention is as asked, but someone set the log's shorter since."""
    properties = {
        LOG_RETENTION_PROPERTY: "interval 30 days",
        RETENTION_PROPERTY: "interval 1000 hours",
    }
    assert retention_changes(properties, 1000) == {
        RETENTION_PROPERTY: "interval 1000 hours",
        LOG_RETENTION_PROPERTY: "interval 1000 hours",
    }


def test_a_log_retention_under_the_files_is_raised_under_30_days_too():
    assert retention_changes({LOG_RETENTION_PROPERTY: "interval 100 hours"}, 168) == {
        RETENTION_PROPERTY: "interval 168 hours",
        LOG_RETENTION_PROPERTY: "interval 168 hours",
    }


@pytest.mark.parametrize("kept", [None, "interval 1 week", "interval 30 days"])
def test_the_nightly_run_keeps_each_table_s_own_retention(kept):
    """No retention given (the schedule gives none): a table raised to 30 days on purpose
    keeps it, where the run used to lower every table to its 168 h default each night."""
    properties = {} if kept is None else {RETENTION_PROPERTY: kept}
    assert vacuum_changes(properties, None) == {}


def test_the_nightly_run_raises_a_retention_under_the_floor():
    assert vacuum_changes({RETENTION_PROPERTY: "interval 2 days"}, None) == {
        RETENTION_PROPERTY: "interval 168 hours"
    }


def test_a_retention_given_is_set_even_when_shorter_than_the_table_s():
    assert vacuum_changes({RETENTION_PROPERTY: "interval 30 days"}, 168) == {
        RETENTION_PROPERTY: "interval 168 hours"
    }
    with pytest.raises(ValueError, match="below the floor"):
        vacuum_changes({}, 24)


@pytest.mark.parametrize("kept", ["interval 2 months", "interval 500 milliseconds"])
def test_a_retention_the_nightly_run_cannot_read_is_not_vacuumed(kept):
    """Delta takes forms this run does not read: 500 milliseconds would let VACUUM remove
    files almost at once, 2 months must not be lowered. Neither is judged: refused."""
    from spark.maintenance import UnreadRetention

    with pytest.raises(UnreadRetention, match=f"= '{kept}' is not a form this run reads"):
        vacuum_changes({RETENTION_PROPERTY: kept}, None)
