"""The local Key Vault stand-in answers while another client sits idle on its port."""

from __future__ import annotations

import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

from local_stack.keyvault import serve
from local_stack.settings import load_stack_settings
from local_stack.tls import ensure_tls_material
from tests.ports import free_port

pytestmark = pytest.mark.unit


def test_an_idle_connection_holds_no_other_request(tmp_path):
    material = ensure_tls_material(replace(load_stack_settings(), state_dir=tmp_path))
    port = free_port()
    servers = serve(
        "127.0.0.1", port, free_port(), material.certificate, material.private_key, "header"
    )
    trusting = ssl.create_default_context(cafile=str(material.certificate))
    trusting.check_hostname = False
    try:
        with socket.create_connection(("127.0.0.1", port)):  # connects, says nothing
            request = urllib.request.Request(f"https://127.0.0.1:{port}/secrets?api-version=7.4")
            with pytest.raises(urllib.error.HTTPError) as answered:
                urllib.request.urlopen(request, context=trusting, timeout=5)
        assert answered.value.code == 401  # no token: the vault answered, and in time
    finally:
        for server in servers:
            server.shutdown()
