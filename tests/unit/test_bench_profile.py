"""How ``python -m bench.profile`` reads Spark's job list; the backlog both bench commands
take."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bench.profile import Job, busy_seconds, jobs_since, seconds_per_step

pytestmark = pytest.mark.unit

SINCE = datetime(2026, 12, 4, 1, 50, 0, tzinfo=UTC).timestamp()


# As StreamExecution describes a micro-batch's jobs.
BATCH = "main.silver.events\nid = 5d0c-41\nrunId = 9e1a-07\nbatch = 0"


def _job(
    job_id: int, submitted: str, completed: str | None, tasks: int = 2, description: str = BATCH
) -> dict:
    # As the UI's REST API writes a job (/api/v1/applications/<id>/jobs).
    job = {
        "jobId": job_id,
        "name": f"save at NativeMethodAccessorImpl.java:{job_id}",
        "submissionTime": f"2026-12-04T{submitted}GMT",
        "numTasks": tasks,
        "description": description,
        "status": "SUCCEEDED" if completed else "RUNNING",
    }
    if completed:
        job["completionTime"] = f"2026-12-04T{completed}GMT"
    return job


def test_only_jobs_finished_since_the_start_are_kept_in_the_order_they_started():
    jobs = [
        _job(9, "01:50:04.250", "01:50:05.000"),
        _job(7, "01:49:59.999", "01:50:03.000"),  # the run before
        _job(8, "01:50:01.500", "01:50:04.000", tasks=4),
        _job(10, "01:50:06.000", None),  # still running
    ]

    found = jobs_since(jobs, SINCE)

    assert [job.job_id for job in found] == [8, 9]
    assert found[0] == Job(
        job_id=8,
        started_s=pytest.approx(1.5),
        seconds=pytest.approx(2.5),
        tasks=4,
        called_at="save at NativeMethodAccessorImpl.java:8",
    )
    assert found[1].started_s == pytest.approx(4.25)
    assert found[1].seconds == pytest.approx(0.75)


def test_overlapping_jobs_count_once_toward_busy_seconds():
    jobs = [
        Job(1, started_s=0.0, seconds=2.0, tasks=1, called_at=""),
        Job(2, started_s=1.0, seconds=2.0, tasks=1, called_at=""),  # 1-3: one more second
        Job(3, started_s=1.5, seconds=0.5, tasks=1, called_at=""),  # inside the others
        Job(4, started_s=5.0, seconds=1.0, tasks=1, called_at=""),  # after a gap
    ]

    assert busy_seconds(jobs) == pytest.approx(4.0)
    assert busy_seconds([]) == 0.0


def test_each_job_is_named_by_its_step_and_the_steps_are_summed():
    jobs = jobs_since(
        [
            _job(1, "01:50:01.000", "01:50:04.000", description=f"{BATCH} | silver: parse"),
            _job(2, "01:50:04.000", "01:50:05.000", description=f"{BATCH} | silver: gate | count"),
            _job(3, "01:50:05.000", "01:50:05.500"),  # the stream's own: no step
            _job(
                4,
                "01:50:05.500",
                "01:50:05.600",
                description=f"Delta: {BATCH} | silver: write: Compute snapshot for version: 0",
            ),
            _job(5, "01:50:06.000", "01:50:08.000", description=f"{BATCH} | silver: parse"),
            # A step outside any query (the gate's recorder thread) is named as it is.
            _job(6, "01:50:06.500", "01:50:06.750", description="quality: record batch 0"),
        ],
        SINCE,
    )

    assert [job.step for job in jobs] == [
        "silver: parse",
        "silver: gate | count",
        "",
        "silver: write: Compute snapshot for version: 0",
        "silver: parse",
        "quality: record batch 0",
    ]
    assert seconds_per_step(jobs) == pytest.approx(
        {
            "silver: parse": 5.0,
            "silver: gate | count": 1.0,
            "": 0.5,
            "quality: record batch 0": 0.25,
            "silver: write: Compute snapshot for version: 0": 0.1,
        }
    )
    assert list(seconds_per_step(jobs)) == [
        "silver: parse",
        "silver: gate | count",
        "",
        "quality: record batch 0",
        "silver: write: Compute snapshot for version: 0",
    ]


@pytest.mark.parametrize("command", ["bench.run", "bench.profile"])
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--events", "-1"], "argument --events: must be at least 1, not -1"),
        (["--fault-rate", "7"], "argument --fault-rate: must be between 0 and 1, not 7.0"),
        (["--warm-up-events", "0"], "argument --warm-up-events: must be at least 1, not 0"),
        (["--events", "1e6"], "argument --events: must be a whole number, not '1e6'"),
        (["--fault-rate", "some"], "argument --fault-rate: must be a number, not 'some'"),
        (["--events", "10000000000"], "argument --events: 10,000,000,000 would take about"),
    ],
)
def test_a_backlog_no_bench_can_run_is_refused_before_the_stack_starts(
    command, arguments, message, capsys
):
    from importlib import import_module

    extra = ["--layer", "silver"] if command == "bench.profile" else []
    with pytest.raises(SystemExit) as exited:
        import_module(command).main([*extra, *arguments])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bench_reads_its_backlog_from_the_earliest_offset_whatever_the_user_set(monkeypatch):
    from bench.run import _on_topic_of, bench_profile

    monkeypatch.setenv("REELHOUSE_SOURCE_STARTING_OFFSETS", '{"main.viewing-events": {"0": 4}}')
    profile = bench_profile("bench-x")
    together = _on_topic_of(profile, "bench-x-e2e")
    for source in (profile.source, together.source):
        assert source.spark_options()["startingOffsets"] == "earliest"
    assert together.source.topic == "bench-x.viewing-events"


class _Service:
    def __init__(self, name: str, pid: int | None, stops: list[str]) -> None:
        self.name, self.pid, self.stops = name, pid, stops

    def running_pid(self) -> int | None:
        return self.pid

    def stop(self) -> str:
        self.stops.append(self.name)
        return f"{self.name}: stopped"


def test_a_bench_stops_what_it_started_and_only_that_when_the_stack_fails(monkeypatch):
    import bench.run
    from local_stack.services import StackError

    stops: list[str] = []

    class Stack:
        services = [_Service("kafka", None, stops), _Service("azurite", 4242, stops)]

        def up(self):
            raise StackError("kafka: port 9092 is taken")

    monkeypatch.setattr(bench.run, "LocalStack", Stack)
    with pytest.raises(StackError):
        bench.run.start_stack()
    assert stops == ["kafka"]  # the user's own Azurite stays up


def test_a_bench_names_the_services_it_started_for_stopping_afterwards(monkeypatch, capsys):
    import bench.run

    stops: list[str] = []

    class Stack:
        services = [
            _Service("kafka", None, stops),
            _Service("azurite", None, stops),
            _Service("other", 7, stops),
        ]

        def up(self):
            return []

    monkeypatch.setattr(bench.run, "LocalStack", Stack)
    _, started = bench.run.start_stack()
    bench.run.stop_started(started)
    assert stops == ["azurite", "kafka"]  # in the reverse order of their start
    assert capsys.readouterr().out == "azurite: stopped\nkafka: stopped\n"


def test_a_bench_result_names_its_commit():
    import re

    from bench.run import _commit

    assert re.fullmatch(r"[0-9a-f]{12}(\+changes)?", _commit() or "")
