"""The search account without a password (SASL/GSSAPI), and TLS client control, on real slapds.

``sasl_slapd`` (support.slapd): a slapd of its own that accepts SASL/GSSAPI
binds from the session realm, the hub's principal mapped to the service entry.
``client_cert_slapd`` demands a client certificate signed by its CA;
``tls12_slapd`` speaks TLS 1.2 only, with one cipher suite. What reached each
server is read from its own log.
"""

import asyncio
import os
import shutil
import ssl
import tempfile

import ldap3
import pytest
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosLDAPAuthenticator
from kerbauth.core.errors import ConfigError
from support.slapd import (
    SERVICE_DN,
    make_ca,
    make_client_cert,
    running_slapd,
    write_cert,
    write_key,
)


def gssapi_config(server, keytab, principal):
    c = Config()
    a = c.KerberosLDAPAuthenticator
    a.server_address = [f"127.0.0.1:{server.ldap_port}"]
    a.tls_ca_file = server.ca_file
    a.lookup_dn = True
    a.user_search_base = server.base_dn
    a.group_search_base = server.groups_dn
    a.search_bind_mechanism = "gssapi"
    a.search_bind_principal = principal
    a.search_bind_keytab = keytab
    a.allow_all = True
    return c


async def login(authenticator, username, password):
    return await authenticator.get_authenticated_user(
        None, {"username": username, "password": password}
    )


# --- the search account binds with Kerberos ---------------------------------------------


async def test_a_lookup_dn_login_whose_search_bind_is_gssapi(
    sasl_slapd, sasl_keytabs, krb5_env, ccache_dir
):
    _, keytab, principal = sasl_keytabs
    c = gssapi_config(sasl_slapd, keytab, principal)
    c.KerberosTickets.ccache_dir = ccache_dir
    before = os.environ.get("KRB5CCNAME"), os.environ.get("KRB5_CLIENT_KTNAME")
    authenticator = KerberosLDAPAuthenticator(config=c)
    alice = sasl_slapd.people["alice"]
    mark = sasl_slapd.log_mark()
    result = await login(authenticator, "alice", alice.password)
    assert result["name"] == "alice"
    assert result["auth_state"]["ldap_dn"] == alice.dn
    # Groups are read after the user's bind, as the search account again.
    assert "hub-users" in result["auth_state"]["ldap_groups"]
    seen = sasl_slapd.log_since(mark)
    # The search account came as its principal, mapped to its entry, over TLS.
    assert f'BIND authcid="{principal}"' in seen
    assert f'BIND dn="{SERVICE_DN}" mech=GSSAPI bind_ssf=0 ssf=256' in seen
    assert "method=128" not in seen.split(f'BIND dn="{alice.dn}"')[0], "a simple bind first"
    assert f'BIND dn="{alice.dn}" mech=SIMPLE' in seen
    assert seen.count("mech=GSSAPI") == 2
    # Logins at once (on the login threads, sharing the cache) each bind as the service,
    # on a new authenticator too, whose first binds get its first ticket at the same time.
    people = sasl_slapd.people
    names = ["alice", "bob", "lena", "dave"] * 2
    for auth in (authenticator, KerberosLDAPAuthenticator(config=c)):
        mark = sasl_slapd.log_mark()
        results = await asyncio.gather(*(login(auth, n, people[n].password) for n in names))
        assert [r["name"] for r in results] == names
        assert sasl_slapd.log_since(mark).count("mech=GSSAPI") == 2 * len(names)
    # Nothing global changed in the hub's process.
    assert (os.environ.get("KRB5CCNAME"), os.environ.get("KRB5_CLIENT_KTNAME")) == before


def test_whoami_is_the_service_entry(sasl_slapd, sasl_keytabs, krb5_env):
    """The bind kerbauth makes (connection.kerberos_bind) is the service entry to slapd."""
    from kerbauth.auth.ldap.sasl import KerberosBind, kerberos_bind

    _, keytab, principal = sasl_keytabs
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=sasl_slapd.ca_file)
    server = ldap3.Server("127.0.0.1", port=sasl_slapd.ldap_port, tls=tls, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, receive_timeout=5)
    try:
        conn.open()
        conn.start_tls()
        assert kerberos_bind(conn, KerberosBind(principal, keytab))
        assert conn.extend.standard.who_am_i() == f"dn:{SERVICE_DN}"
    finally:
        conn.unbind()


@pytest.mark.parametrize(
    "case",
    [
        "no keytab",
        "principal not in the keytab",
        "with a search_bind_dn",
        "no principal",
        "principal with simple",
    ],
)
def test_a_gssapi_search_bind_that_cannot_work_stops_the_start(
    case, sasl_slapd, sasl_keytabs, krb5_env, ccache_dir, tmp_path
):
    _, keytab, principal = sasl_keytabs
    c = gssapi_config(sasl_slapd, keytab, principal)
    c.KerberosTickets.ccache_dir = ccache_dir
    a = c.KerberosLDAPAuthenticator
    expected = {
        "no keytab": "search_bind_keytab",
        "principal not in the keytab": "gives no ticket for KerberosLDAPAuthenticator"
        ".search_bind_principal 'nobody",
        "with a search_bind_dn": "search_bind_dn is set but"
        ' KerberosLDAPAuthenticator.search_bind_mechanism is "gssapi"',
        "no principal": 'search_bind_mechanism = "gssapi" requires'
        " KerberosLDAPAuthenticator.search_bind_principal",
        "principal with simple": "search_bind_principal is set but"
        ' KerberosLDAPAuthenticator.search_bind_mechanism is "simple"',
    }[case]
    if case == "no keytab":
        a.search_bind_keytab = str(tmp_path / "missing.keytab")
    elif case == "principal not in the keytab":
        a.search_bind_principal = f"nobody@{krb5_env.realm}"
    elif case == "with a search_bind_dn":
        a.search_bind_dn, a.search_bind_password = sasl_slapd.service_dn, "secret"
    elif case == "no principal":
        a.search_bind_principal = ""
    else:
        a.search_bind_mechanism = "simple"
    with pytest.raises(ConfigError) as e:
        KerberosLDAPAuthenticator(config=c)
    assert expected in str(e.value)


async def test_a_server_without_gssapi_refuses_the_login_with_the_reason_logged(
    slapd, sasl_keytabs, krb5_env, ccache_dir, caplog
):
    """The session slapd has no Kerberos key: the bind fails, the 503 is logged with why."""
    _, keytab, principal = sasl_keytabs
    c = gssapi_config(slapd, keytab, principal)
    c.KerberosTickets.ccache_dir = ccache_dir
    authenticator = KerberosLDAPAuthenticator(config=c)
    mark = slapd.log_mark()
    with pytest.raises(web.HTTPError) as e:
        await login(authenticator, "alice", slapd.people["alice"].password)
    assert e.value.status_code == 503
    seen = slapd.log_since(mark)
    assert "mech=GSSAPI" not in seen and "mech=SIMPLE" not in seen
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"no LDAP server could be used: 127.0.0.1:{slapd.ldap_port}: the Kerberos" in logged
    assert f"(GSSAPI) bind as {principal} failed: " in logged, logged


# --- TLS: client certificates, versions, ciphers ----------------------------------------


@pytest.fixture(scope="module")
def client_cert_slapd():
    with running_slapd(extra_conf=["TLSVerifyClient demand"]) as server:
        yield server


@pytest.fixture(scope="module")
def tls12_slapd():
    # GnuTLS priority string (Debian's slapd is built with GnuTLS): TLS 1.2, AES-256-GCM only.
    priority = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM"
    with running_slapd(extra_conf=[f"TLSCipherSuite {priority}"]) as server:
        yield server


@pytest.fixture(scope="module")
def client_files(client_cert_slapd):
    """PEM files: a client certificate of the slapd's CA, its key, one of another CA."""
    directory = tempfile.mkdtemp(prefix="kerbauth-tls-client-")
    try:
        s = client_cert_slapd
        key, cert = make_client_cert(s.ca_key, s.ca_cert)
        other_key, other_cert = make_client_cert(*make_ca("a CA slapd does not trust"))
        files = {
            "cert": os.path.join(directory, "client.pem"),
            "key": os.path.join(directory, "client.key"),
            "other_cert": os.path.join(directory, "other.pem"),
            "other_key": os.path.join(directory, "other.key"),
        }
        write_cert(files["cert"], cert)
        write_key(files["key"], key)
        write_cert(files["other_cert"], other_cert)
        write_key(files["other_key"], other_key)
        yield files
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def tls_config(server, ccache_dir, strategy="starttls", **options):
    c = Config()
    c.KerberosTickets.ccache_dir = ccache_dir
    a = c.KerberosLDAPAuthenticator
    port = server.ldaps_port if strategy == "ldaps" else server.ldap_port
    a.server_address = [f"127.0.0.1:{port}"]
    a.tls_strategy = strategy
    a.tls_ca_file = server.ca_file
    a.bind_dn_template = [f"uid={{username}},{server.people_dn}"]
    a.allow_all = True
    for name, value in options.items():
        setattr(a, name, value)
    return c


async def outcome(server, config, caplog):
    """``"ok"`` when alice logs in; else the reason the hub logged for the server."""
    caplog.clear()
    authenticator = KerberosLDAPAuthenticator(config=config)
    try:
        result = await login(authenticator, "alice", server.people["alice"].password)
    except Exception as e:  # noqa: BLE001 - the 503 of an unusable directory
        assert getattr(e, "status_code", None) == 503, e
        return " | ".join(r.getMessage() for r in caplog.records if "LDAP server" in r.getMessage())
    assert result["name"] == "alice"
    return "ok"


@pytest.mark.parametrize("strategy", ["starttls", "ldaps"])
async def test_a_server_that_demands_a_client_certificate(
    strategy, client_cert_slapd, client_files, ccache_dir, caplog
):
    s, f = client_cert_slapd, client_files
    mark = s.log_mark()
    ok = tls_config(s, ccache_dir, strategy, tls_client_cert=f["cert"], tls_client_key=f["key"])
    assert await outcome(s, ok, caplog) == "ok"
    assert f'BIND dn="{s.people["alice"].dn}" mech=SIMPLE' in s.log_since(mark)
    # Without one, or with one of another CA, the handshake fails and says so.
    none = await outcome(s, tls_config(s, ccache_dir, strategy), caplog)
    assert "TLS failed: the server closed the connection" in none, none
    assert "tls_client_cert" in none
    other = tls_config(
        s, ccache_dir, strategy, tls_client_cert=f["other_cert"], tls_client_key=f["other_key"]
    )
    mark = s.log_mark()
    refused = await outcome(s, other, caplog)
    # Under TLS 1.3 the server checks the certificate after the client's handshake is
    # done: the client sees the connection closed ("TLS failed", or at its first request).
    assert "TLS failed: the server closed the connection" in refused, refused
    seen = s.log_since(mark)
    assert "TLS negotiation failure" in seen and "BIND" not in seen, seen


async def test_tls_version_and_ciphers_against_a_tls12_server(tls12_slapd, ccache_dir, caplog):
    s = tls12_slapd
    assert await outcome(s, tls_config(s, ccache_dir), caplog) == "ok"
    assert await outcome(s, tls_config(s, ccache_dir, tls_minimum_version="1.2"), caplog) == "ok"
    too_new = await outcome(s, tls_config(s, ccache_dir, tls_minimum_version="1.3"), caplog)
    assert "TLS failed" in too_new and "tls_minimum_version" in too_new, too_new
    right = tls_config(s, ccache_dir, tls_ciphers="ECDHE-ECDSA-AES256-GCM-SHA384")
    assert await outcome(s, right, caplog) == "ok"
    wrong = tls_config(s, ccache_dir, tls_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    failed = await outcome(s, wrong, caplog)
    assert "TLS failed" in failed and "tls_ciphers" in failed, failed


@pytest.mark.parametrize(
    "case",
    [
        "unknown version",
        "cipher string",
        "ciphers with 1.3",
        "unreadable cert",
        "key only",
        "key of another cert",
        "passphrase",
        "insecure",
    ],
)
def test_tls_options_that_cannot_work_stop_the_start(
    case, client_cert_slapd, client_files, ccache_dir, tmp_path
):
    s, f = client_cert_slapd, client_files
    options, expected = {
        "unknown version": ({"tls_minimum_version": "1.1"}, "must be one of '1.2', '1.3'"),
        "cipher string": ({"tls_ciphers": "NO-SUCH-CIPHER"}, "OpenSSL selects no cipher"),
        "ciphers with 1.3": (
            {"tls_ciphers": "ECDHE+AESGCM", "tls_minimum_version": "1.3"},
            "tls_ciphers cannot be combined",
        ),
        "unreadable cert": (
            {"tls_client_cert": str(tmp_path / "none.pem")},
            "tls_client_cert",
        ),
        "key only": ({"tls_client_key": f["key"]}, "tls_client_key requires"),
        "key of another cert": (
            {"tls_client_cert": f["cert"], "tls_client_key": f["other_key"]},
            "not a PEM certificate and its matching private key",
        ),
        "passphrase": (
            {"tls_client_cert": f["cert"], "tls_client_key": str(tmp_path / "locked.key")},
            "protected by a passphrase",
        ),
        "insecure": ({"tls_client_cert": f["cert"]}, 'tls_strategy is "insecure"'),
    }[case]
    if case == "passphrase":
        from cryptography.hazmat.primitives import serialization

        with open(f["key"], "rb") as plain:
            key = serialization.load_pem_private_key(plain.read(), None)
        locked = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"a passphrase"),
        )
        (tmp_path / "locked.key").write_bytes(locked)
    config = tls_config(s, ccache_dir, **options)
    if case == "insecure":
        config.KerberosLDAPAuthenticator.tls_strategy = "insecure"
        config.KerberosLDAPAuthenticator.tls_ca_file = ""
    with pytest.raises(ConfigError) as e:
        KerberosLDAPAuthenticator(config=config)
    assert expected in str(e.value)
