"""The TLS context of the LDAP connections: what the hub verifies, and what it offers.

The server's certificate is always verified (chain and host name); the options
choose the oldest TLS version, the TLS 1.2 cipher suites and a client
certificate. :mod:`kerbauth.auth.ldap.settings` builds the context once at
start-up (refusing options that cannot work) and
:mod:`kerbauth.auth.ldap.connection` wraps each connection with it.
"""

import ssl

__all__ = ["KeyNeedsPassphrase", "TLS_VERSIONS", "tls_context"]

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


class KeyNeedsPassphrase(ValueError):
    """A client key protected by a passphrase: the hub has nobody to ask for it."""


def _no_passphrase():
    raise KeyNeedsPassphrase("the key is protected by a passphrase")


def tls_context(ca_file=None, minimum_version="1.2", ciphers="", client_cert="", client_key=""):
    """An SSL context that checks the server's certificate and its host name.

    ``ca_file``: PEM file of the CAs to trust; the system's CAs when empty.
    ``minimum_version``: ``"1.2"`` or ``"1.3"``. ``ciphers``: an OpenSSL
    cipher string for TLS 1.2 (``ssl.SSLError`` when it selects none).
    ``client_cert`` / ``client_key``: PEM files of the certificate shown to
    a server that asks for one (the key in the certificate file when
    ``client_key`` is empty); a key with a passphrase raises
    :class:`KeyNeedsPassphrase`, never a prompt.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    context.minimum_version = TLS_VERSIONS[minimum_version]
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if ciphers:
        context.set_ciphers(ciphers)
    if client_cert:
        context.load_cert_chain(client_cert, client_key or None, password=_no_passphrase)
    return context
