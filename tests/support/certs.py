"""A throwaway PKI for TLS tests, made with `cryptography`: a CA, a server and a client certificate, and a second,
untrusted CA with a client certificate of its own. Every file is PEM, written to one folder."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = timedelta(days=1)


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path

    @property
    def cert_file(self) -> str:
        return str(self.cert)

    @property
    def key_file(self) -> str:
        return str(self.key)


@dataclass(frozen=True)
class Pki:
    """`ca` signed `server` (for localhost and 127.0.0.1) and `client`; `rogue_ca` signed `rogue_client`."""

    ca: Identity
    server: Identity
    client: Identity
    rogue_ca: Identity
    rogue_client: Identity


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALID_FOR)
    )


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Identity:
    identity = Identity(folder / f"{stem}.pem", folder / f"{stem}.key")
    identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    identity.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return identity


def _ca(folder: Path, stem: str) -> tuple[Identity, _Issuer]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"Pacer test {stem}")
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return _write(folder, stem, cert, key), _Issuer(name, key)


def _leaf(folder: Path, stem: str, issuer: _Issuer, *, server: bool) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(stem), issuer.name, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(folder, stem, builder.sign(issuer.key, hashes.SHA256()), key)


def make_pki(folder: Path) -> Pki:
    """Write a fresh test PKI into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, issuer = _ca(folder, "ca")
    rogue_ca, rogue_issuer = _ca(folder, "rogue-ca")
    return Pki(
        ca=ca,
        server=_leaf(folder, "server", issuer, server=True),
        client=_leaf(folder, "client", issuer, server=False),
        rogue_ca=rogue_ca,
        rogue_client=_leaf(folder, "rogue-client", rogue_issuer, server=False),
    )
