"""Certificates and keys of the local control plane (CA, apiserver, admin, service accounts).

Made with the ``cryptography`` package when it is installed, else with the ``openssl`` command
(Debian has it), so the platform needs no extra Python dependency for this.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

SERVER_DNS = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
SERVER_IPS = ("127.0.0.1", "10.0.0.1")


def generate(pki: Path, *, now: dt.datetime | None = None) -> None:
    """Write ca.{crt,key}, apiserver.{crt,key}, admin.{crt,key} and sa.{key,pub} into ``pki``."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _generate_openssl(pki)
    else:
        _generate_cryptography(pki, now=now)


def _openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {out.stderr.strip()}")


def _generate_openssl(pki: Path) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError("neither the cryptography package nor the openssl command is available")
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=aumos-testenv-ca", "-days", "365",
        "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign", cwd=pki,
    )  # fmt: skip
    sans = ",".join([*(f"DNS:{d}" for d in SERVER_DNS), *(f"IP:{i}" for i in SERVER_IPS)])
    leaves = {
        "apiserver": ("/CN=kube-apiserver", f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}"),
        "admin": ("/CN=admin/O=system:masters", "extendedKeyUsage=clientAuth"),
    }
    for stem, (subject, ext) in leaves.items():
        (pki / f"{stem}.ext").write_text(f"basicConstraints=critical,CA:FALSE\n{ext}\n")
        _openssl(
            "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{stem}.key", cwd=pki
        )
        _openssl(
            "req", "-new", "-key", f"{stem}.key", "-subj", subject, "-out", f"{stem}.csr", cwd=pki
        )
        _openssl(
            "x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "365", "-extfile", f"{stem}.ext", "-out", f"{stem}.crt",
            cwd=pki,
        )  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _generate_cryptography(pki: Path, *, now: dt.datetime | None = None) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def _name(cn: str, org: str | None = None) -> Any:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def _key() -> Any:
        return ec.generate_private_key(ec.SECP256R1())

    def _pem_key(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    pki.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=365)

    ca_key = _key()
    ca_name = _name("aumos-testenv-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(pki / "ca.key", _pem_key(ca_key))
    (pki / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def leaf(
        stem: str, subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> None:
        key = _key()
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        _write(pki / f"{stem}.key", _pem_key(key))
        (pki / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    leaf(
        "apiserver",
        _name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            *(x509.DNSName(d) for d in SERVER_DNS),
            *(x509.IPAddress(ipaddress.ip_address(i)) for i in SERVER_IPS),
        ],
    )
    leaf("admin", _name("admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, [])

    # Service-account tokens are signed with RSA (RS256 is what every client expects).
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(
        pki / "sa.key",
        sa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    (pki / "sa.pub").write_bytes(
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
