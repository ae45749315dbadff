"""The driver's class archive: named after what it depends on, used only when it exists
and still has the size it was built with."""

from __future__ import annotations

import pytest

from local_stack import class_archive

pytestmark = pytest.mark.unit


@pytest.fixture
def archive_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(class_archive, "ARCHIVE_DIR", tmp_path)
    return tmp_path


def test_the_archive_is_named_after_the_java_and_the_spark_it_was_dumped_for(
    archive_dir, monkeypatch
):
    import pyspark

    path = class_archive.archive_path()
    assert path.parent == archive_dir and path.name.startswith("driver-")
    assert class_archive.archive_path() == path
    monkeypatch.setattr(pyspark, "__version__", "0.0.0")
    assert class_archive.archive_path() != path


def test_the_local_driver_maps_the_archive_only_when_there_is_one(archive_dir):
    from spark.settings import load_profile

    def driver_options() -> str:
        return load_profile("local", "archive").spark_conf["spark.driver.extraJavaOptions"]

    assert class_archive.driver_options() == ""
    assert "SharedArchiveFile" not in driver_options()

    path = class_archive.archive_path()
    path.write_bytes(b"archive")
    class_archive.size_record(path).write_text("7\n")
    options = driver_options()
    assert options.startswith("-XX:+UseParallelGC ")
    assert f"-XX:SharedArchiveFile={class_archive.archive_path()}" in options
    assert class_archive.QUIET in options  # a JVM that cannot use it says nothing


@pytest.mark.parametrize(
    ("record", "damage"),
    [
        ("9\n", "is 7 bytes, built with 9"),  # truncated since it was built
        (None, "has no record of its size"),
        ("nine", "has no record of its size"),
    ],
)
def test_an_archive_not_as_built_is_not_mapped(archive_dir, caplog, record, damage):
    path = class_archive.archive_path()
    path.write_bytes(b"archive")
    if record is not None:
        class_archive.size_record(path).write_text(record)
    class_archive._WARNED.clear()
    with caplog.at_level("WARNING", logger="local_stack.class_archive"):
        assert class_archive.driver_options() == ""
        assert class_archive.driver_options() == ""
    warnings = [r.getMessage() for r in caplog.records if r.name == "local_stack.class_archive"]
    assert len(warnings) == 1  # once per process, not once per session
    assert damage in warnings[0] and "`make setup` rebuilds it" in warnings[0]
