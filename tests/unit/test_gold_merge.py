"""The gold MERGE condition: the key, and the recompute window's days on the target."""

from __future__ import annotations

from datetime import date

import pytest

from spark.catalog import GOLD_TABLES
from spark.jobs.gold import gold_writer, merge_condition
from spark.transforms.gold import DATES, KEYS

pytestmark = pytest.mark.unit


def test_the_condition_matches_the_key_within_the_batch_days():
    days = [date(2026, 11, 2), date(2026, 11, 1), date(2026, 11, 3)]

    assert merge_condition("gold.title_popularity", days) == (
        "target.`region` <=> source.`region`"
        " AND target.`event_hour` <=> source.`event_hour`"
        " AND target.`title_id` <=> source.`title_id`"
        " AND target.`event_date` IN (DATE'2026-11-01', DATE'2026-11-02', DATE'2026-11-03')"
    )
    assert merge_condition("gold.sessions", days[:1]) == (
        "target.`session_id` <=> source.`session_id` AND target.`start_date` IN (DATE'2026-11-02')"
    )


def test_every_gold_table_prunes_by_its_date_its_partitions_if_it_has_them():
    assert DATES.keys() == KEYS.keys()
    for spec in GOLD_TABLES:
        assert spec.partition_by in ((), (DATES[spec.name],)), spec.name


def test_the_writer_is_the_job_and_its_query_and_nothing_less():
    """A batch MERGEs as its query (a new checkpoint's batches are merged, not skipped as
    the old query's); without the query's id it would be skipped, so it is refused."""
    assert gold_writer("main.gold", "6d1f") == "main.gold.6d1f"
    for missing in (None, ""):
        with pytest.raises(RuntimeError, match=r"main.gold: a gold batch needs its streaming"):
            gold_writer("main.gold", missing)
