"""A throwaway serving certificate for 127.0.0.1. kubectl (client-go clientcmd) reads the
kubeconfig's user credentials only when the server URL is https ("only try to read the auth
information if we are secure"), so a token-authenticated kubectl needs a TLS listener."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed cert (its own CA) + key for 127.0.0.1/localhost; return their paths.
    Uses the `cryptography` package, else the `openssl` command."""
    cert, key = directory / "server.crt", directory / "server.key"
    try:
        _with_cryptography(cert, key)
    except ImportError:
        if shutil.which("openssl") is None:
            raise RuntimeError("kubefixture needs the 'cryptography' package or the openssl command for its TLS port") from None
        _with_openssl(cert, key)
    key.chmod(0o600)
    return cert, key


def _with_cryptography(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubefixture")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def _with_openssl(cert_path: Path, key_path: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".cnf") as cnf:
        cnf.write("[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=kubefixture\n[ext]\n"
                  "basicConstraints=critical,CA:TRUE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                  "extendedKeyUsage=serverAuth\n")
        cnf.flush()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "7", "-keyout", str(key_path), "-out", str(cert_path),
                        "-config", cnf.name, "-extensions", "ext"], check=True, capture_output=True)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx
