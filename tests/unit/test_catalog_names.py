"""The catalog names a session drops, in a session that has not registered them yet."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_a_session_without_the_layer_s_database_has_nothing_to_drop(spark):
    """A new process (a replay deployment's run) has no silver database until it registers
    a table: SHOW TABLE EXTENDED in it raised SCHEMA_NOT_FOUND, and the replay failed."""
    from spark.catalog import drop_registrations, registered_location

    assert not spark.catalog.databaseExists("never_registered")
    drop_registrations(spark, ["never_registered.events"])
    assert registered_location(spark, "never_registered.events") is None
