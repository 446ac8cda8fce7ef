"""Group membership that stays true: ``refresh_user`` asks the directory again.

A real hub (the OpenLDAP example with a search account, ``manage_groups`` and a
2 s ``auth_refresh_age``) against a slapd of this file's own, changed with
ldap3 as the directory's root while users are logged in; then that slapd is
stopped. And the authenticator as JupyterHub calls it: concurrent refreshes of
one user make one lookup; without a search account, none.
"""

import asyncio
import contextlib
import logging
import os
import subprocess
import time
from types import SimpleNamespace

import ldap3
import pytest
from traitlets.config import Config

from kerbauth import KerberosLDAPAuthenticator
from support.processes import stop
from support.slapd import default_groups, default_people, running_slapd

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "examples",
    "ldap",
    "jupyterhub_config.py",
)


@pytest.fixture
def directory():
    """A slapd of the test's own: it is changed and stopped. carol is in hub-admins
    too (a groupOfUniqueNames cannot lose its last member)."""
    people = default_people()
    groups = default_groups(people)
    groups["hub-admins"].members.append(people["carol"])
    with running_slapd(people, groups) as server:
        yield server


def hub_config(slapd, ccache_dir):
    with open(EXAMPLE) as f:
        example = f.read()
    return example + (
        f"\nc.KerberosTickets.ccache_dir = {ccache_dir!r}\n"
        f"ldap.search_bind_dn = {slapd.service_dn!r}\n"
        "ldap.search_bind_password = os.environ['LDAP_SEARCH_PASSWORD']\n"
        "ldap.manage_groups = True\n"
        "c.Authenticator.auth_refresh_age = 2\n"
    )


def hub_env(slapd, realm, tmp_path):
    return {
        "LDAP_SERVERS": f"127.0.0.1:{slapd.ldap_port}",
        "LDAP_CA_FILE": slapd.ca_file,
        "LDAP_BASE_DN": slapd.base_dn,
        "LDAP_SEARCH_PASSWORD": slapd.service_password,
        "KEYTAB_DIR": str(tmp_path),
        "KERBEROS_REALM": realm.realm,
        "KRB5_CONFIG": realm.env["KRB5_CONFIG"],
    }


def modify(slapd, group, operation, attribute, person):
    conn = slapd.admin_connection()
    try:
        ok = conn.modify(slapd.groups[group].dn, {attribute: [(operation, [person.dn])]})
        assert ok, conn.result
    finally:
        conn.unbind()


def until(condition, what, deadline=30):
    """Poll ``condition()`` every 0.2 s until true; fail naming ``what`` after ``deadline``."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline} s: {what}")
        time.sleep(0.2)


def home(session, hub):
    return session.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=60)


@contextlib.contextmanager
def started_again(slapd):
    """slapd on its plain LDAP port again, same database; stopped at the end."""
    conf = os.path.join(slapd.directory, "slapd.conf")
    process = subprocess.Popen(
        ["slapd", "-d", "0", "-f", conf, "-h", f"ldap://127.0.0.1:{slapd.ldap_port}/"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        stop(process)


def test_access_admin_and_groups_follow_the_directory(
    hub_factory, directory, krb5_env, tmp_path, ccache_dir
):
    slapd, people = directory, directory.people
    hub = hub_factory(hub_config(slapd, ccache_dir), env=hub_env(slapd, krb5_env, tmp_path))

    def model(name):
        return hub.api("GET", f"/users/{name}").json()

    alice, response = hub.login_session("alice", people["alice"].password)
    assert response.status_code == 302
    bob, response = hub.login_session("bob", people["bob"].password)
    assert response.status_code == 302
    try:
        assert model("alice")["admin"] is True
        assert sorted(model("alice")["groups"]) == ["hub-admins", "hub-users"]
        assert sorted(model("bob")["groups"]) == ["data-science", "hub-users"]
        assert home(bob, hub).status_code == 200

        # alice leaves hub-admins and joins staff; bob leaves hub-users (his only way in).
        modify(slapd, "hub-admins", ldap3.MODIFY_DELETE, "uniqueMember", people["alice"])
        modify(slapd, "staff", ldap3.MODIFY_ADD, "member", people["alice"])
        modify(slapd, "hub-users", ldap3.MODIFY_DELETE, "member", people["bob"])

        # Within a refresh age, each one's next request sees it.
        until(
            lambda: home(alice, hub).status_code == 200 and model("alice")["admin"] is False,
            "alice's admin taken away",
        )
        assert sorted(model("alice")["groups"]) == ["hub-users", "staff"]

        def bob_sent_to_login():
            response = home(bob, hub)
            return response.status_code == 302 and "/hub/login" in response.headers["Location"]

        until(bob_sent_to_login, "bob asked to log in again")
        assert hub.login("bob", people["bob"].password).status_code == 403
        log = hub.log_text()
        assert "alice is no longer admin (admin_groups)" in log
        assert "bob is no longer allowed by the directory" in log

        # The directory goes away: alice keeps what was last found, one line says so.
        slapd.process.terminate()
        slapd.process.wait(10)
        mark = len(hub.log_text())

        def refreshed_three_times_since_outage():
            assert home(alice, hub).status_code == 200
            return hub.log_text()[mark:].count("Refreshing auth for alice") >= 3

        until(refreshed_three_times_since_outage, "three refreshes of alice in the outage")
        during = hub.log_text()[mark:]
        assert during.count("group refresh cannot ask the LDAP directory") == 1, during
        warnings = [line for line in during.splitlines() if line.startswith("[W ")]
        assert not [line for line in warnings if "kerbauth: LDAP server" in line], warnings
        assert model("alice")["admin"] is False
        assert sorted(model("alice")["groups"]) == ["hub-users", "staff"]

        # Back again: the next refresh says so, and reads the directory again.
        with started_again(slapd):
            until(
                lambda: (
                    home(alice, hub).status_code == 200
                    and "the LDAP directory answers again" in hub.log_text()[mark:]
                ),
                "the refresh seeing the directory back",
            )
        assert sorted(model("alice")["groups"]) == ["hub-users", "staff"]
    finally:
        alice.close()
        bob.close()


# --- the authenticator as JupyterHub calls it ----------------------------------------------


def authenticator_config(slapd, tmp_path, ccache_dir, search_account=True):
    c = Config()
    c.KerberosTickets.keytab_template = str(tmp_path / "{username}.keytab")
    c.KerberosTickets.ccache_dir = ccache_dir
    a = c.KerberosLDAPAuthenticator
    a.server_address = [f"127.0.0.1:{slapd.ldap_port}"]
    a.tls_ca_file = slapd.ca_file
    a.bind_dn_template = [f"uid={{username}},{slapd.people_dn}"]
    a.group_search_base = slapd.groups_dn
    a.allowed_groups = {"hub-users"}
    a.admin_groups = {"hub-admins"}
    if search_account:
        a.search_bind_dn = slapd.service_dn
        a.search_bind_password = slapd.service_password
    return c


def hub_user(name, admin):
    async def get_auth_state():
        return None

    return SimpleNamespace(name=name, admin=admin, groups=[], get_auth_state=get_auth_state)


def test_one_lookup_per_user_at_a_time(slapd, krb5_env, tmp_path, ccache_dir):
    authenticator = KerberosLDAPAuthenticator(
        config=authenticator_config(slapd, tmp_path, ccache_dir)
    )
    mark = slapd.log_mark()

    async def refresh_many():
        alice, bob = hub_user("alice", admin=False), hub_user("bob", admin=True)
        return await asyncio.gather(
            *[authenticator.refresh_user(alice) for _ in range(6)],
            *[authenticator.refresh_user(bob) for _ in range(6)],
        )

    results = asyncio.run(refresh_many())
    # alice is in hub-admins (admin given), bob is not (admin taken away).
    assert [r["admin"] for r in results[:6]] == [True] * 6
    assert [r["admin"] for r in results[6:]] == [False] * 6
    log = slapd.log_since(mark)
    binds = log.count(f'BIND dn="{slapd.service_dn}" method=')
    assert binds == 2, log
    assert log.count("ACCEPT") == 2, log


def test_without_a_search_account_refresh_asks_nothing(
    slapd, krb5_env, tmp_path, ccache_dir, caplog
):
    config = authenticator_config(slapd, tmp_path, ccache_dir, search_account=False)
    authenticator = KerberosLDAPAuthenticator(config=config)

    async def start_as_jupyterhub_does():
        with caplog.at_level(logging.WARNING):
            authenticator.check_allow_config()
        authenticator.close()

    asyncio.run(start_as_jupyterhub_does())
    said = [r.getMessage() for r in caplog.records if "no search account" in r.getMessage()]
    assert len(said) == 1 and "checked at login only" in said[0], said
    mark = slapd.log_mark()
    assert asyncio.run(authenticator.refresh_user(hub_user("carol", admin=True))) is True
    assert "ACCEPT" not in slapd.log_since(mark)
