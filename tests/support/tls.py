"""A throwaway certificate authority and one server certificate for several DNS names.

``tls_site(names)`` makes, in a fresh directory (removed at teardown), a CA
(``ca.pem``) and a certificate for all of ``names`` as subject alternative
names (``server.pem``, its key ``server.key``, mode 0600), signed by that CA
(made by support.slapd's makers, valid for two days). Clients verify against
``ca.pem``, as they would against a company's own CA; nothing is ever trusted
blindly. ``spki_sha256`` is the
base64 SHA-256 of the certificate's public key (what Chromium's
``--ignore-certificate-errors-spki-list`` takes).
"""

import base64
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization

from .slapd import make_ca, make_server_cert, write_cert, write_key


@dataclass
class Site:
    directory: str
    names: tuple
    ca: str  # the CA's certificate (PEM)
    cert: str  # the server's certificate (PEM)
    key: str  # its private key (PEM, 0600)
    spki_sha256: str


def make_site(directory, names):
    """A CA and a certificate for ``names`` written into ``directory``; the :class:`Site`."""
    ca_key, ca_cert = make_ca("kerbauth tests throwaway CA")
    key, cert = make_server_cert(ca_key, ca_cert, names=tuple(names), ips=())
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
    write_cert(site.ca, ca_cert)
    write_cert(site.cert, cert)
    write_key(site.key, key)
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
