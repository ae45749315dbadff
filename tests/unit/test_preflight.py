"""How a lake that does not answer is worded."""

from __future__ import annotations

import pytest

from spark.io.preflight import _storage_detail

pytestmark = pytest.mark.unit

# What hadoop-azure's client says when nothing listens at the endpoint (Azurite down).
ABFS_REFUSED = (
    "An error occurred while calling o41.exists.\n"
    ": Status code: -1 error code: null error message: java.net.ConnectException: Connection"
    " refusedjava.net.ConnectException: Connection refused\n"
    "\tat org.apache.hadoop.fs.azurebfs.services.AbfsRestOperation.executeHttpOperation"
)


@pytest.mark.parametrize(
    ("raised", "detail"),
    [
        (ABFS_REFUSED, "java.net.ConnectException: Connection refused"),
        (
            "x\njava.net.UnknownHostException: nowhere.invalid\n\tat ...",
            "java.net.UnknownHostException: nowhere.invalid",
        ),
        (
            "An error occurred\norg.apache.hadoop.fs.azurebfs.AbfsRestOperationException:"
            " Operation failed: Server failed to authenticate the request., 403",
            "org.apache.hadoop.fs.azurebfs.AbfsRestOperationException: Operation failed:"
            " Server failed to authenticate the request., 403",
        ),
        ("something else entirely", "something else entirely"),
    ],
)
def test_the_storage_clients_own_words_are_kept(raised, detail):
    assert _storage_detail(RuntimeError(raised)) == detail
