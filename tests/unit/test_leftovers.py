"""What the leftover cleanup deletes while another run creates the same table."""

from __future__ import annotations

import pytest

from spark.io import leftovers

pytestmark = pytest.mark.unit

FIRST_COMMIT = "00000000000000000000.json"
TEMPORARY = f".{FIRST_COMMIT}.0a1b.tmp"


class _Path:
    def __init__(self, name: str) -> None:
        self.name = name

    def getName(self) -> str:  # noqa: N802 - Hadoop's Path
        return self.name


class _Listing:
    def __init__(self, names: list[str]) -> None:
        self.names = list(names)

    def hasNext(self) -> bool:  # noqa: N802 - Hadoop's RemoteIterator
        return bool(self.names)

    def next(self):
        return _Status(_Path(self.names.pop(0)))


class _Status:
    def __init__(self, path: _Path) -> None:
        self.path = path

    def getPath(self) -> _Path:  # noqa: N802 - Hadoop's FileStatus
        return self.path


class _CreatingElsewhere:
    """A _delta_log another run is creating: its first commit's temporary file, renamed to
    the commit just as the cleanup deletes it (the rename wins the race)."""

    def __init__(self) -> None:
        self.names = [TEMPORARY]
        self.deleted_folder = False

    def exists(self, path) -> bool:
        return True

    def listFiles(self, folder, recursive):  # noqa: N802 - Hadoop's FileSystem
        return _Listing(self.names)

    def delete(self, path, recursive) -> bool:
        if isinstance(path, _Path) and path.name == TEMPORARY:
            self.names = [FIRST_COMMIT]  # renamed a moment before the delete came
            return False
        self.deleted_folder = True
        return True


def test_a_commit_that_lands_during_the_cleanup_is_kept(monkeypatch):
    """The folder went as a whole on the first listing: the other run's commit with it."""
    filesystem = _CreatingElsewhere()
    monkeypatch.setattr(leftovers, "_path", lambda spark, location: ("_delta_log", filesystem))

    assert leftovers.clear_uncommitted_delta_log(None, "abfs://lake/silver/events") == []
    assert not filesystem.deleted_folder
