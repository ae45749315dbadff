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


@pytest.mark.parametrize(
    ("servers", "unknown"),
    [
        ("reelhouse-nowhere.invalid:9093", True),
        ("127.0.0.1:{free}", False),
        ("reelhouse-nowhere.invalid:9093,127.0.0.1:{free}", False),
    ],
)
def test_a_host_no_dns_server_knows_is_told_apart_from_one_that_is_down(servers, unknown):
    """Only a name that resolves nowhere is a typo; a refused port may be a broker starting."""
    from dataclasses import replace

    from spark.io.preflight import PreflightError, UnknownHostError, check_source_reachable
    from spark.settings import load_profile
    from tests.ports import free_port

    source = load_profile("local", "preflight").source
    source = replace(source, bootstrap_servers=servers.replace("{free}", str(free_port())))
    with pytest.raises(PreflightError, match=r"^Kafka source unreachable: ") as raised:
        check_source_reachable(source, timeout_s=1.0)
    assert isinstance(raised.value, UnknownHostError) is unknown
    assert ("no such host" in str(raised.value)) is unknown
