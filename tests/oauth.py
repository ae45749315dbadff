"""A client-credentials token endpoint on this machine, for tests of OAuth logins."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus

# The form a client POSTs -> (HTTP status, JSON answer). The grant finds the client's id
# and secret in the form as ``client_id`` and ``client_secret`` also when the client sent
# them with HTTP Basic (RFC 6749 2.3.1), as Kafka's Java login handler does.
Grant = Callable[[dict[str, str]], tuple[int, dict]]


@contextmanager
def token_endpoint(grant: Grant) -> Iterator[str]:
    """Serve ``grant`` over HTTP on a free loopback port; yield the endpoint's URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            form.update(_basic_credentials(self.headers.get("Authorization", "")))
            status, body = grant(form)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tenant/oauth2/v2.0/token"
    finally:
        server.shutdown()
        server.server_close()


def _basic_credentials(header: str) -> dict[str, str]:
    """``client_id`` and ``client_secret`` from an ``Authorization: Basic`` header, each
    form-urlencoded before joining (RFC 6749 2.3.1); nothing for any other header."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return {}
    try:
        client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return {}
    return {"client_id": unquote_plus(client_id), "client_secret": unquote_plus(secret)}
