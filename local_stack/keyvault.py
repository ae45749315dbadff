"""A local Key Vault (secrets) endpoint and a managed-identity token endpoint.

Why this exists: the issue asks for Lowkey Vault, a Java implementation of Key Vault's
REST API, but Maven Central serves no ``lowkey-vault-app`` artifact to this machine (see
README "Parity tests (no subscription needed)", its Key Vault item). This process
implements the part of the same public protocol that reelhouse uses, so the azure
profile's unchanged SDK code path
(``DefaultAzureCredential`` -> ``SecretClient``) runs against it:

- **Key Vault secrets**, over HTTPS with the stack's self-signed certificate: an
  unauthenticated request gets ``401`` with the ``WWW-Authenticate: Bearer
  authorization=..., resource=...`` challenge the SDK expects; ``PUT/GET
  /secrets/{name}[/{version}]``, ``GET /secrets``, ``DELETE /secrets/{name}``, ``GET`` and
  ``DELETE /deletedsecrets/{name}``; errors in Key Vault's ``{"error": {"code", "message"}}``
  form (``SecretNotFound``, ``Unauthorized``, ``BadParameter``).
- **An App Service managed-identity endpoint** (``IDENTITY_ENDPOINT`` /
  ``IDENTITY_HEADER``, over http on loopback as in App Service): it issues the bearer
  tokens the vault accepts. A token from anywhere else is refused. Like an app with a
  system-assigned identity and one user-assigned identity (``USER_ASSIGNED_CLIENT_ID``),
  it answers a request naming no identity or that one; any other ``client_id`` gets App
  Service's ``400`` ("Unable to load the proper Managed Identity.").

Secrets live in this process's memory only (as in Lowkey Vault's default): a restart
empties the vault. Requests are logged without bodies, so values never reach the log.

Run: ``python -m local_stack.keyvault --port 10443 --identity-port 10444 --cert C --key K
--identity-header-file F`` (``python -m local_stack keyvault-up`` does it).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

VAULT_RESOURCE = "https://vault.azure.net"
# The tenant the challenge names; a managed identity ignores it.
TENANT_ID = "00000000-0000-0000-0000-000000000000"
# The client id of the one user-assigned identity the local host has (not a secret: a
# client id names an identity, it grants nothing).
USER_ASSIGNED_CLIENT_ID = "5e1f0c1d-7a3b-4c2e-9d4f-0a1b2c3d4e5f"
SYSTEM_ASSIGNED_CLIENT_ID = "0c5a9f6e-2b8d-4e71-a3c4-6f7e8d9a0b1c"
TOKEN_LIFETIME_S = 3600
RECOVERABLE_DAYS = 7
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_PATH = re.compile(
    r"^/(?P<kind>secrets|deletedsecrets)(?:/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?)?/?$"
)


@dataclass
class _Version:
    version: str
    value: str
    content_type: str | None
    tags: dict
    enabled: bool
    created: int


@dataclass
class Vault:
    """The vault's state: secrets (newest version last), deleted secrets, issued tokens."""

    versions: dict[str, list[_Version]] = field(default_factory=dict)
    deleted: dict[str, tuple[list[_Version], int]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch s)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue_token(self) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        expires = int(time.time()) + TOKEN_LIFETIME_S
        with self.lock:
            self.tokens[token] = expires
        return token, expires

    def token_valid(self, token: str) -> bool:
        with self.lock:
            return self.tokens.get(token, 0) > time.time()


class VaultHandler(BaseHTTPRequestHandler):
    """Key Vault's secrets REST API (the subset above)."""

    server_version = "reelhouse-keyvault/1"
    protocol_version = "HTTP/1.1"
    # A client that connects and says nothing (or never finishes the TLS handshake) holds
    # only its own thread, and only this long.
    timeout = 30
    vault: Vault  # set on the subclass made per server

    # -- dispatch -----------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        body = self._read_body()
        if not self._authorized():
            self._challenge()
            return
        if "api-version" not in parse_qs(url.query):
            self._error(HTTPStatus.BAD_REQUEST, "BadParameter", "api-version is required")
            return
        match = _PATH.match(url.path)
        if not match:
            self._error(HTTPStatus.NOT_FOUND, "NotFound", f"no such resource: {url.path}")
            return
        kind, name, version = match["kind"], match["name"], match["version"] or None
        if name is not None and not _NAME.match(name):
            self._error(
                HTTPStatus.BAD_REQUEST,
                "BadParameter",
                "secret names are 1-127 letters, digits or '-'",
            )
            return
        if kind == "secrets" and method == "GET" and name is None:
            self._list_secrets()
        elif name is None:
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "BadParameter", f"{method} {url.path}")
        elif kind == "secrets" and method == "PUT":
            self._set_secret(name, body)
        elif kind == "secrets" and method == "GET":
            self._get_secret(name, version)
        elif kind == "secrets" and method == "DELETE":
            self._delete_secret(name)
        elif kind == "deletedsecrets" and method == "GET":
            self._get_deleted(name)
        elif kind == "deletedsecrets" and method == "DELETE":
            self._purge_deleted(name)
        else:
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "BadParameter", f"{method} {url.path}")

    # -- operations ---------------------------------------------------------------------
    def _set_secret(self, name: str, body: bytes) -> None:
        try:
            request = json.loads(body or b"{}")
            value = request["value"]
        except (ValueError, KeyError):
            self._error(HTTPStatus.BAD_REQUEST, "BadParameter", "body must be JSON with 'value'")
            return
        if not isinstance(value, str):
            self._error(HTTPStatus.BAD_REQUEST, "BadParameter", "'value' must be a string")
            return
        attributes = request.get("attributes") or {}
        entry = _Version(
            version=uuid.uuid4().hex,
            value=value,
            content_type=request.get("contentType"),
            tags=request.get("tags") or {},
            enabled=attributes.get("enabled", True),
            created=int(time.time()),
        )
        with self.vault.lock:
            if name in self.vault.deleted:
                self._error(
                    HTTPStatus.CONFLICT,
                    "Conflict",
                    f"Secret {name} is currently in a deleted but recoverable state",
                )
                return
            self.vault.versions.setdefault(name, []).append(entry)
        self._json(HTTPStatus.OK, self._bundle(name, entry))

    def _get_secret(self, name: str, version: str | None) -> None:
        with self.vault.lock:
            versions = list(self.vault.versions.get(name, []))
        chosen = versions[-1] if versions and not version else None
        if version:
            chosen = next((item for item in versions if item.version == version), None)
        if chosen is None:
            self._not_found(name)
            return
        if not chosen.enabled:
            self._error(
                HTTPStatus.FORBIDDEN,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
            )
            return
        self._json(HTTPStatus.OK, self._bundle(name, chosen))

    def _list_secrets(self) -> None:
        with self.vault.lock:
            latest = {name: versions[-1] for name, versions in self.vault.versions.items()}
        items = []
        for name, entry in sorted(latest.items()):
            item = self._bundle(name, entry)
            del item["value"]
            item["id"] = f"{self._vault_url()}/secrets/{name}"
            items.append(item)
        self._json(HTTPStatus.OK, {"value": items, "nextLink": None})

    def _delete_secret(self, name: str) -> None:
        with self.vault.lock:
            versions = self.vault.versions.pop(name, None)
            if versions is not None:
                self.vault.deleted[name] = (versions, int(time.time()))
        if versions is None:
            self._not_found(name)
            return
        self._json(HTTPStatus.OK, self._deleted_bundle(name))

    def _get_deleted(self, name: str) -> None:
        with self.vault.lock:
            known = name in self.vault.deleted
        if not known:
            self._error(HTTPStatus.NOT_FOUND, "SecretNotFound", f"Deleted Secret not found: {name}")
            return
        self._json(HTTPStatus.OK, self._deleted_bundle(name))

    def _purge_deleted(self, name: str) -> None:
        with self.vault.lock:
            known = self.vault.deleted.pop(name, None) is not None
        if not known:
            self._error(HTTPStatus.NOT_FOUND, "SecretNotFound", f"Deleted Secret not found: {name}")
            return
        self._send(HTTPStatus.NO_CONTENT, b"", None)

    # -- representations ----------------------------------------------------------------
    def _bundle(self, name: str, entry: _Version) -> dict:
        bundle = {
            "value": entry.value,
            "id": f"{self._vault_url()}/secrets/{name}/{entry.version}",
            "attributes": {
                "enabled": entry.enabled,
                "created": entry.created,
                "updated": entry.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": RECOVERABLE_DAYS,
            },
            "tags": entry.tags,
        }
        if entry.content_type:
            bundle["contentType"] = entry.content_type
        return bundle

    def _deleted_bundle(self, name: str) -> dict:
        with self.vault.lock:
            versions, deleted_at = self.vault.deleted[name]
        bundle = self._bundle(name, versions[-1])
        del bundle["value"]
        bundle.update(
            recoveryId=f"{self._vault_url()}/deletedsecrets/{name}",
            deletedDate=deleted_at,
            scheduledPurgeDate=deleted_at + RECOVERABLE_DAYS * 86400,
        )
        return bundle

    def _vault_url(self) -> str:
        return f"https://{self.headers.get('Host', 'localhost')}"

    # -- protocol -----------------------------------------------------------------------
    def _authorized(self) -> bool:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and self.vault.token_valid(token.strip())

    def _challenge(self) -> None:
        challenge = (
            f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}",'
            f' resource="{VAULT_RESOURCE}"'
        )
        message = "AKV10000: Request is missing a Bearer or PoP token."
        if self.headers.get("Authorization"):
            message = "AKV10032: Invalid issuer or expired token."
        self._error(
            HTTPStatus.UNAUTHORIZED, "Unauthorized", message, {"WWW-Authenticate": challenge}
        )

    def _not_found(self, name: str) -> None:
        self._error(
            HTTPStatus.NOT_FOUND,
            "SecretNotFound",
            f"A secret with (name/id) {name} was not found in this key vault.",
        )

    def _error(self, status: HTTPStatus, code: str, message: str, headers=None) -> None:
        self._json(status, {"error": {"code": code, "message": message}}, headers)

    def _json(self, status: HTTPStatus, document: dict, headers=None) -> None:
        self._send(
            status, json.dumps(document).encode(), "application/json; charset=utf-8", headers
        )

    def _send(self, status, payload: bytes, content_type: str | None, headers=None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base's name)
        # Request line and status only: never a body, never a header.
        sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")


class IdentityHandler(BaseHTTPRequestHandler):
    """App Service's managed-identity protocol: GET ?api-version&resource, X-IDENTITY-HEADER."""

    server_version = "reelhouse-identity/1"
    vault: Vault
    identity_header: str

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        if not secrets.compare_digest(
            self.headers.get("X-IDENTITY-HEADER", ""), self.identity_header
        ):
            self._reply(HTTPStatus.UNAUTHORIZED, {"error": "invalid X-IDENTITY-HEADER"})
            return
        resource = (query.get("resource") or [""])[0].removesuffix("/.default").rstrip("/")
        if resource != VAULT_RESOURCE:
            self._reply(
                HTTPStatus.BAD_REQUEST,
                {"error": "invalid_resource", "error_description": f"unknown resource {resource}"},
            )
            return
        client_id = (query.get("client_id") or [""])[0]
        if client_id not in ("", USER_ASSIGNED_CLIENT_ID):
            # App Service's answer for an identity the app does not have.
            self._reply(
                HTTPStatus.BAD_REQUEST,
                {
                    "statusCode": 400,
                    "message": "Unable to load the proper Managed Identity.",
                    "correlationId": str(uuid.uuid4()),
                },
            )
            return
        token, expires = self.vault.issue_token()
        self._reply(
            HTTPStatus.OK,
            {
                "access_token": token,
                "expires_on": str(expires),
                "resource": VAULT_RESOURCE,
                "token_type": "Bearer",
                "client_id": client_id or SYSTEM_ASSIGNED_CLIENT_ID,
            },
        )

    def _reply(self, status: HTTPStatus, document: dict) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        # The query has the resource only; the token is in the body, never logged.
        sys.stderr.write(f"{self.log_date_time_string()} identity {format % args}\n")


def serve(
    host: str,
    port: int,
    identity_port: int,
    certificate: Path,
    private_key: Path,
    identity_header: str,
) -> tuple[ThreadingHTTPServer, ThreadingHTTPServer]:
    """Start both servers on daemon threads; return them (``shutdown()`` stops them)."""
    vault = Vault()
    vault_handler = type("Handler", (VaultHandler,), {"vault": vault})
    identity_handler = type(
        "Identity", (IdentityHandler,), {"vault": vault, "identity_header": identity_header}
    )
    vault_server = ThreadingHTTPServer((host, port), vault_handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, private_key)
    # The handshake happens in each connection's own thread, on its first read: done on
    # accept, one idle TCP connection would hold every other request at the door.
    vault_server.socket = context.wrap_socket(
        vault_server.socket, server_side=True, do_handshake_on_connect=False
    )
    identity_server = ThreadingHTTPServer((host, identity_port), identity_handler)
    for server in (vault_server, identity_server):
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return vault_server, identity_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack.keyvault", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--identity-port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument(
        "--identity-header-file",
        type=Path,
        required=True,
        help="file holding the X-IDENTITY-HEADER value (IDENTITY_HEADER)",
    )
    args = parser.parse_args(argv)
    try:
        header = args.identity_header_file.read_text().strip()
        servers = serve(args.host, args.port, args.identity_port, args.cert, args.key, header)
    except OSError as error:  # a busy port, a missing certificate: one line, not a traceback
        where = f" ({error.filename})" if error.filename else ""
        print(  # noqa: T201
            f"error: key vault stand-in cannot start on {args.host}:{args.port}"
            f" (identity {args.identity_port}): {error.strerror or error}{where}",
            file=sys.stderr,
        )
        return 1
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print(  # noqa: T201 (the service's start-up line in its log)
        f"key vault on https://{args.host}:{args.port}, managed identity on"
        f" http://{args.host}:{args.identity_port}/msi/token",
        flush=True,
    )
    stopped.wait()
    for server in servers:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
