"""A throwaway certificate authority and one server certificate for several DNS names.

``tls_site(names)`` makes, in a fresh directory (removed at teardown), a CA
(``ca.pem``) and a certificate for all of ``names`` as subject alternative
names (``server.pem``, its key ``server.key``, mode 0600), signed by that CA
and valid for a day. Clients verify against ``ca.pem``, as they would against
a company's own CA; nothing is ever trusted blindly. ``spki_sha256`` is the
base64 SHA-256 of the certificate's public key (what Chromium's
``--ignore-certificate-errors-spki-list`` takes).
"""

import base64
import datetime
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Site:
    directory: str
    names: tuple
    ca: str  # the CA's certificate (PEM)
    cert: str  # the server's certificate (PEM)
    key: str  # its private key (PEM, 0600)
    spki_sha256: str


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_site(directory, names):
    """A CA and a certificate for ``names`` written into ``directory``; the :class:`Site`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kerbauth tests throwaway CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    site = Site(
        directory=directory,
        names=tuple(names),
        ca=os.path.join(directory, "ca.pem"),
        cert=os.path.join(directory, "server.pem"),
        key=os.path.join(directory, "server.key"),
        spki_sha256=base64.b64encode(
            hashlib.sha256(
                key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).digest()
        ).decode(),
    )
    _pem(site.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    _pem(site.cert, cert.public_bytes(serialization.Encoding.PEM))
    _pem(
        site.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        mode=0o600,
    )
    return site


@pytest.fixture
def tls_site():
    """``tls_site(names)``: a :class:`Site` for ``names``; its directory removed at teardown."""
    made = []

    def make(names):
        directory = tempfile.mkdtemp(prefix="kerbauth-tls-")
        made.append(directory)
        return make_site(directory, names)

    try:
        yield make
    finally:
        for directory in made:
            shutil.rmtree(directory, ignore_errors=True)
