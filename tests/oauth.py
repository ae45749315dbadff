"""A client-credentials token endpoint on this machine, for tests of OAuth logins."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

# The form a client POSTs -> (HTTP status, JSON answer).
Grant = Callable[[dict[str, str]], tuple[int, dict]]


@contextmanager
def token_endpoint(grant: Grant) -> Iterator[str]:
    """Serve ``grant`` over HTTP on a free loopback port; yield the endpoint's URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
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
