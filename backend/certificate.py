"""The server's TLS certificate: the one given (--tls-cert/--tls-key), or one it makes
for itself on first start and keeps in the data directory. Clients pin a self-made one
by its fingerprint (`workdeck login`), as SSH pins a host key."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from wire.certs import fingerprint
from wire.datadir import DataDir

VALID_DAYS = 825  # what browsers and most TLS clients accept for a leaf certificate


class CertificateError(Exception):
    """The certificate or key cannot be used; the message says why in one sentence."""


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path
    fingerprint: str
    made_here: bool


def server_certificate(data_dir: DataDir, host: str, cert_file: str | None,
                       key_file: str | None) -> Certificate:
    if bool(cert_file) != bool(key_file):
        raise CertificateError("Give both --tls-cert and --tls-key, or neither (a "
                               "certificate is then made for this server).")
    if cert_file and key_file:
        cert, key = Path(cert_file).absolute(), Path(key_file).absolute()
        for path, what in ((cert, "certificate"), (key, "key")):
            if not path.is_file():
                raise CertificateError(f"The TLS {what} file {path} does not exist.")
        try:
            return Certificate(cert, key, fingerprint(cert.read_text()), made_here=False)
        except (ValueError, OSError) as exc:
            raise CertificateError(f"{cert} is not a PEM certificate: {exc}.") from None
    cert, key = data_dir.root / "tls-cert.pem", data_dir.root / "tls-key.pem"
    if not (cert.exists() and key.exists()):
        _make(cert, key, host)
    return Certificate(cert, key, fingerprint(cert.read_text()), made_here=True)


def _make(cert_path: Path, key_path: Path, host: str) -> None:
    """A self-signed certificate for this machine's names and the address it listens on."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1"))]
    hostname = socket.gethostname()
    if hostname:
        names.append(x509.DNSName(hostname))
    try:
        address = ipaddress.ip_address(host)
        if not address.is_unspecified and x509.IPAddress(address) not in names:
            names.append(x509.IPAddress(address))
    except ValueError:
        if host and x509.DNSName(host) not in names:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Workdeck on {hostname}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # Its own anchor: a client that pins it trusts exactly this certificate.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
