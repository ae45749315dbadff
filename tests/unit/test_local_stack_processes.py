"""Which process a service's pid file names: one start of it at a time, and never a
process that merely looks like it (a pid reused after a reboot or a crash)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace

import psutil
import pytest

from local_stack.services import Service
from local_stack.settings import load_stack_settings
from tests.ports import free_port

pytestmark = pytest.mark.unit


class _Standin(Service):
    """A service whose process is a small HTTP server on a free port; its preparation is
    slow enough for two starts to overlap in it."""

    name = "standin"
    marker = "reelhouse-standin"
    stop_grace_s = 5.0

    def __init__(self, settings, port: int, launched: list[int]) -> None:
        super().__init__(settings)
        self.port = port
        self.launched = launched

    def ports(self) -> tuple[int, ...]:
        return (self.port,)

    def command(self) -> list[str]:
        self.launched.append(self.port)
        serve = f"import http.server as h; h.test(h.BaseHTTPRequestHandler, port={self.port})"
        return [sys.executable, "-c", serve, self.marker]

    def is_healthy(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1).close()
        except urllib.error.HTTPError:
            return True  # it answers (501 to GET)
        except OSError:
            return False
        return True

    def start_timeout_s(self) -> float:
        return 20.0

    def prepare(self) -> None:
        time.sleep(0.3)


def test_two_starts_at_once_launch_one_process_and_both_use_it(tmp_path):
    settings = replace(load_stack_settings(), state_dir=tmp_path)
    port, launched = free_port(), []
    services = [_Standin(settings, port, launched) for _ in range(2)]
    earlier = "an earlier start of it: started\n"
    services[0].log_file.parent.mkdir(parents=True)
    services[0].log_file.write_text(earlier)
    gate, said = threading.Barrier(2), []

    def start(service: Service) -> None:
        gate.wait()
        said.append(service.start())

    threads = [threading.Thread(target=start, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert len(launched) == 1, said
        # The reusing caller reads the launched process's own lines for its health.
        assert {service.log_start for service in services} == {len(earlier)}
        assert sorted(message.split(" (")[0] for message in said) == [
            "standin: already running",
            "standin: started",
        ]
        pid = services[0].running_pid()
        assert pid is not None and all(f"pid {pid}" in message for message in said)
    finally:
        assert services[0].stop().startswith("standin: stopped (pid ")
    assert services[1].running_pid() is None


@pytest.mark.parametrize("recorded", ["its own start", "another start", "another boot", "none"])
def test_a_pid_file_names_a_process_only_if_it_started_when_recorded(tmp_path, recorded):
    """A process with the service's command line whose start is not the one recorded beside
    the pid is another that got the pid (another project's Azurite after a reboot): never
    reported as ours, never signalled. A pid file without a start (an older version's) is
    judged by the command line alone."""
    from local_stack.services import _started

    settings = replace(load_stack_settings(), state_dir=tmp_path)
    service = _Standin(settings, free_port(), [])
    lookalike = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", service.marker]
    )
    try:
        deadline = time.monotonic() + 10  # its command line is the test's until it execs
        while service.marker not in " ".join(psutil.Process(lookalike.pid).cmdline()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        boot, ticks = _started(lookalike.pid).split()
        line = {
            "its own start": f"{lookalike.pid} {boot} {ticks}",
            "another start": f"{lookalike.pid} {boot} {int(ticks) - 1}",
            "another boot": f"{lookalike.pid} 00000000-0000-0000-0000-000000000000 {ticks}",
            "none": f"{lookalike.pid}",
        }[recorded]
        service.pid_file.parent.mkdir(parents=True)
        service.pid_file.write_text(line + "\n")
        if recorded in ("its own start", "none"):
            assert service.running_pid() == lookalike.pid
        else:
            assert service.running_pid() is None
            assert service.stop() == "standin: not running"
            assert lookalike.poll() is None  # not signalled
            assert not service.pid_file.exists()  # the stale file is gone
    finally:
        lookalike.kill()
        lookalike.wait()


def test_a_launched_process_s_pid_file_records_its_start(tmp_path):
    from local_stack.services import _started

    settings = replace(load_stack_settings(), state_dir=tmp_path)
    service = _Standin(settings, free_port(), [])
    assert service.start().startswith("standin: started (pid ")
    try:
        pid, boot, ticks = service.pid_file.read_text().split()
        assert _started(int(pid)) == f"{boot} {ticks}"
        assert service.running_pid() == int(pid)
    finally:
        assert service.stop().startswith("standin: stopped")


def test_a_certificate_near_its_end_is_made_anew_and_a_valid_one_is_kept(tmp_path, monkeypatch):
    """825 days after setup the parity listener and the local vault would serve an expired
    certificate until `clean`; within 30 days of its end the next start makes a new one."""
    import datetime

    from cryptography import x509

    from local_stack import tls

    settings = replace(load_stack_settings(), state_dir=tmp_path)
    first = tls.ensure_tls_material(settings).certificate.read_bytes()
    assert tls.ensure_tls_material(settings).certificate.read_bytes() == first  # kept

    ending = x509.load_pem_x509_certificate(first).not_valid_after_utc
    soon = ending - datetime.timedelta(days=tls.RENEW_DAYS - 1)
    monkeypatch.setattr(tls, "_now", lambda: soon)
    renewed = tls.ensure_tls_material(settings).certificate.read_bytes()
    assert renewed != first
    renewed_end = x509.load_pem_x509_certificate(renewed).not_valid_after_utc
    assert renewed_end - soon > datetime.timedelta(days=tls.VALID_DAYS - 1)
