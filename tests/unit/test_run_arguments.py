"""``python -m spark.run``'s arguments (the layers named, the micro-batch interval) and signals."""

from __future__ import annotations

import functools
import logging
import re
import threading

import pytest

from spark import run
from spark.run import parse_interval, parse_layers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "interval"),
    [
        ("1s", "1 second"),
        ("5s", "5 seconds"),
        (" 10 s ", "10 seconds"),
        ("500ms", "500 milliseconds"),
        ("1m", "1 minute"),
        ("5 seconds", "5 seconds"),
        ("1 second", "1 second"),
        ("05 minutes", "5 minutes"),
        ("250 milliseconds", "250 milliseconds"),
    ],
)
def test_an_interval_becomes_the_text_spark_and_the_log_read(text, interval):
    assert parse_interval(text) == interval


@pytest.mark.parametrize(
    "text", ["", "5", "five seconds", "-1s", "1h", "1.5s", "5 secs", "5 sseconds"]
)
def test_a_malformed_interval_is_named(text):
    message = f"must look like 5s, 500ms, 1m or 5 seconds, got {text!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_interval(text)


def test_layers_run_in_medallion_order_once_each():
    assert parse_layers("gold, bronze,silver,bronze") == ["bronze", "silver", "gold"]


def test_a_second_signal_exits_at_once_and_the_first_only_asks_to_stop(
    monkeypatch, capsys, request
):
    exits = []
    monkeypatch.setattr(run.os, "_exit", exits.append)
    # The first signal quiets Py4J's logger for the rest of the process; the tests after
    # this one keep its level.
    py4j = logging.getLogger("py4j.clientserver")
    request.addfinalizer(functools.partial(py4j.setLevel, py4j.level))
    stop = threading.Event()

    run._stopping(stop)
    assert stop.is_set() and exits == []

    run._stopping(stop)
    assert exits == [run.INTERRUPTED]
    assert capsys.readouterr().err.startswith("error: interrupted again: ")
    assert py4j.level == logging.CRITICAL


def test_offsets_of_another_workspace_s_topic_are_refused_before_a_jvm_starts(monkeypatch, capsys):
    def no_session(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr(run, "lake_session", no_session)
    monkeypatch.setenv("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"main.viewing-events": {"0": 4}}')
    assert run.main(["--workspace", "other", "--layers", "bronze"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "error: source.starting_offsets gives offsets of topic 'main.viewing-events', but this"
        " workspace reads 'other.viewing-events'; name that topic (with its workspace), or"
        " start from earliest or latest"
    ), error
