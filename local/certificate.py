"""The emulator's TLS certificate, made here because MiniStack's own does not name the API's host.

MiniStack serves an HTTP API at https://{apiId}.execute-api.localhost:4566 (the shape of AWS's
https://{apiId}.execute-api.{region}.amazonaws.com), but the certificate it generates names
localhost, 127.0.0.1 and a few other hosts, not *.execute-api.localhost, so curl and every SDK
refuse the API's real URL. It accepts a certificate of one's own (MINISTACK_SSL_CERT/KEY), and then
hands its Lambda workers a bundle that trusts that one. tests/e2e/test_emulator_gaps.py tells when
MiniStack's own certificate covers the API's host and this module can go.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

NAMES = ("localhost", "*.execute-api.localhost")
ADDRESSES = ("127.0.0.1", "0:0:0:0:0:0:0:1")


def subject_alternative_names() -> str:
    return ",".join([f"DNS:{name}" for name in NAMES] + [f"IP:{address}" for address in ADDRESSES])


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) in `directory`, made once (openssl, as MiniStack itself uses) and then kept."""
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = directory / "server.crt", directory / "server.key"
    if certificate.exists() and key.exists():
        return certificate, key
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825",
            "-keyout", str(key), "-out", str(certificate),
            "-subj", "/CN=segments-local-emulator",
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
            "-addext", "extendedKeyUsage=serverAuth",
            "-addext", f"subjectAltName={subject_alternative_names()}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return certificate, key


def names_in(certificate: Path) -> set[str]:
    """The DNS names a certificate carries (its subjectAltName)."""
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certificate), "-noout", "-ext", "subjectAltName"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        part.strip()[4:] for part in text.replace("\n", ",").split(",") if part.strip().startswith("DNS:")
    }
