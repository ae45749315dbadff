"""The local stack's self-signed TLS certificate, made at the first start of a service that
uses it, and again at one within 30 days of its end.

The Azure parity services (the broker's Event-Hubs-like ``SASL_SSL`` listener and the
local Key Vault endpoint) speak TLS the way their Azure counterparts do. They share one
certificate for ``localhost`` / ``127.0.0.1``, written to ``<state_dir>/tls/`` (git-ignored,
never committed): a PEM certificate that clients trust and a PEM private key (PKCS#8,
unencrypted: it only guards loopback traffic of this machine).
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from local_stack.settings import StackSettings

log = logging.getLogger(__name__)

VALID_DAYS = 825  # the longest validity current TLS clients accept for a leaf certificate
# A certificate this close to its end is made anew when a service using it starts: past
# it, the parity listener and the local Key Vault would serve an expired one until `clean`.
RENEW_DAYS = 30


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the certificate (also the clients' trust anchor) and its private key."""

    certificate: Path
    private_key: Path


def tls_material(settings: StackSettings) -> TlsMaterial:
    """Where the certificate and key live (they may not exist yet)."""
    folder = settings.state_dir / "tls"
    return TlsMaterial(folder / "localhost.crt.pem", folder / "localhost.key.pem")


def ensure_tls_material(settings: StackSettings) -> TlsMaterial:
    """Create the certificate and key unless both exist and the certificate is valid for
    ``RENEW_DAYS`` more; return their paths. (A service already running keeps serving the
    certificate it started with: restart it after a renewal, `python -m local_stack down`
    then `up`.)"""
    material = tls_material(settings)
    material.certificate.parent.mkdir(parents=True, exist_ok=True)
    # The broker and the local vault each make it at their start: one at a time, or two
    # starts could each write a key and a certificate, and pair one's key with the other's.
    with (material.certificate.parent / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        existing = material.certificate.exists() and material.private_key.exists()
        if existing and not _expires_soon(material.certificate):
            return material
        _create(material)
    if existing:
        log.warning(
            "the local TLS certificate was near its end and is made anew (%s): restart the"
            " broker or the local vault if it runs with the old one (python -m local_stack"
            " down, then up, and keyvault-up for the vault)",
            material.certificate,
        )
    return material


def _create(material: TlsMaterial) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        # Self-signed: the certificate is its own trust anchor.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Each file whole or not at all, for a reader that does not take the lock.
    for path, content, write in (
        (material.private_key, key_pem, write_private),
        (
            material.certificate,
            certificate.public_bytes(serialization.Encoding.PEM),
            lambda path, data: path.write_bytes(data),
        ),
    ):
        partial = path.with_name(f".{path.name}.new")
        write(partial, content)
        partial.replace(path)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _expires_soon(certificate: Path) -> bool:
    """Its end is within ``RENEW_DAYS`` (or it cannot be read as a certificate)."""
    try:
        loaded = x509.load_pem_x509_certificate(certificate.read_bytes())
    except (OSError, ValueError):
        return True
    remaining = loaded.not_valid_after_utc - _now()
    return remaining < datetime.timedelta(days=RENEW_DAYS)


def write_private(path: Path, content: str | bytes) -> None:
    """Write ``content`` to a file only its owner can read (mode 0600, also when it exists)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    data = content.encode() if isinstance(content, str) else content
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
