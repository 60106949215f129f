"""A throw-away signing key for tests that turn Celery message signing on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["signing_env"]


def signing_env(directory: Path, common_name: str = "taskapp-test") -> dict[str, str]:
    """A fresh self-signed key and certificate under ``directory``; the environment that turns
    signing on with them (TASKAPP_SIGNING_KEY, _CERT, _CERT_STORE)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    store = directory / "store"
    store.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "key.pem", store / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {
        "TASKAPP_SIGNING_KEY": str(key_path),
        "TASKAPP_SIGNING_CERT": str(cert_path),
        "TASKAPP_SIGNING_CERT_STORE": str(store / "*.pem"),
    }
