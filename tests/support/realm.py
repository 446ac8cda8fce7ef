"""A real, throwaway MIT Kerberos realm (k5test) for the tests.

``realm`` is session-scoped: one KDC for the whole run, on a random free port
block, stopped (and its directory removed) in ``finally``. Tests that stop or
break the KDC use ``private_realm``, a realm of their own.
"""

import contextlib
import os
import subprocess

import pytest
from k5test import K5Realm

from .ports import free_port_block

REALM = "KERBAUTH.TEST"


def start_realm(realm=REALM, kdc_conf=None):
    """A started K5Realm whose krb5.conf any local user can read."""
    k5 = K5Realm(
        realm=realm,
        portbase=free_port_block(10),
        krb5_conf={
            "libdefaults": {
                "dns_lookup_realm": "false",
                "rdns": "false",
                "dns_canonicalize_hostname": "false",
            },
            "realms": {"$realm": {"kdc": "127.0.0.1:$port0"}},
        },
        kdc_conf=kdc_conf,
        get_creds=False,
        create_host=False,
    )
    # k5test makes its directory 0700; a spawned server runs as the user and
    # must read krb5.conf. 0711 lets it reach the file without listing the
    # directory (the KDC database files stay 0600).
    os.chmod(k5.tmpdir, 0o711)
    os.chmod(k5.env["KRB5_CONFIG"], 0o644)
    return k5


@contextlib.contextmanager
def short_tickets_realm(life, renewable):
    """A realm of its own whose tickets live ``life`` seconds, renewable for ``renewable``
    seconds (the KDC's max_life and max_renewable_life), stopped afterwards."""
    lives = {"max_life": f"{life}s", "max_renewable_life": f"{renewable}s"}
    k5 = start_realm(kdc_conf={"realms": {"$realm": lives}})
    try:
        yield k5
    finally:
        k5.stop()


@pytest.fixture(scope="session")
def realm():
    k5 = start_realm()
    try:
        yield k5
    finally:
        k5.stop()


@pytest.fixture
def private_realm():
    k5 = start_realm()
    try:
        yield k5
    finally:
        k5.stop()


@pytest.fixture
def krb5_env(realm, monkeypatch):
    """The test process (and what it starts) uses the test realm's krb5.conf."""
    monkeypatch.setenv("KRB5_CONFIG", realm.env["KRB5_CONFIG"])
    monkeypatch.delenv("KRB5CCNAME", raising=False)
    return realm


def add_principal(k5, principal, keytab=None, uid=0, gid=0, mode=0o600):
    """Create ``principal`` with a random key; optionally export it to ``keytab``."""
    if "@" not in principal:
        principal = f"{principal}@{k5.realm}"
    k5.addprinc(principal)
    if keytab:
        k5.extract_keytab(principal, keytab)
        os.chown(keytab, uid, gid)
        os.chmod(keytab, mode)
    return principal


def klist(ccache, env, user=None):
    """klist's output for ``ccache`` (run as ``user`` when given)."""
    argv = ["klist", ccache]
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    return subprocess.run(
        argv, env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, check=False
    )
