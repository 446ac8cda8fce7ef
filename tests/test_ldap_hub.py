"""LDAP mode end to end: a real JupyterHub (with its proxy) running the OpenLDAP example
against the test slapd and the test KDC; logins over HTTP, a real server, klist as the user."""

import fcntl
import os
import pwd
import subprocess
import threading
import time

import pytest
import requests

from support.realm import add_principal, klist
from support.slapd import STAFF, Person

EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "examples",
    "ldap",
    "jupyterhub_config.py",
)
USER = "lena"  # in hub-users; a local account with her LDAP uidNumber is made for the spawn
LENA_LOCK = "/run/lock/kerbauth-tests-lena"


@pytest.fixture
def lena_account(slapd):
    """A local account with the name, uid and gid of lena's LDAP entry; removed after.

    Her name and ids are fixed (those of the directory's entry), and make test runs
    this file in two streams at once (JupyterHub 6 and 5): a host-wide lock makes
    the second wait for the first's teardown.
    """
    person = slapd.people[USER]
    lock = os.open(LENA_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _lena(person)
    finally:
        os.close(lock)


def _lena(person):
    try:
        pwd.getpwnam(USER)
    except KeyError:
        pass
    else:
        pytest.fail(f"a local account {USER!r} exists already; this test makes its own")
    subprocess.run(["groupadd", "-g", str(person.gid_number), USER], check=True)
    try:
        subprocess.run(
            [
                "useradd",
                "-u",
                str(person.uid_number),
                "-g",
                str(person.gid_number),
                "-m",
                "-s",
                "/bin/sh",
                USER,
            ],
            check=True,
        )
        yield pwd.getpwnam(USER)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", USER], check=False)
        # --force: a process of hers not reaped yet must not keep the account.
        subprocess.run(["userdel", "--remove", "--force", USER], check=False, capture_output=True)
        subprocess.run(["groupdel", USER], check=False, capture_output=True)


@pytest.fixture
def keytab_dir(tmp_path):
    path = tmp_path / "keytabs"
    path.mkdir()
    return path


def example_config(extra=""):
    with open(EXAMPLE) as f:
        return f.read() + "\n" + extra


def example_env(slapd, realm, keytab_dir, servers=None):
    return {
        "LDAP_SERVERS": servers or f"127.0.0.1:{slapd.ldap_port}",
        "LDAP_CA_FILE": slapd.ca_file,
        "LDAP_BASE_DN": slapd.base_dn,
        "KEYTAB_DIR": str(keytab_dir),
        "KERBEROS_REALM": realm.realm,
        "KRB5_CONFIG": realm.env["KRB5_CONFIG"],
    }


def ccache_config(ccache_dir):
    return f"c.KerberosTickets.ccache_dir = {ccache_dir!r}\n"


# --- the example, end to end ---------------------------------------------------------------


def test_login_spawn_and_klist_as_the_user(
    hub_factory, slapd, krb5_env, keytab_dir, ccache_dir, lena_account
):
    add_principal(
        krb5_env,
        USER,
        keytab=str(keytab_dir / f"{USER}.keytab"),
        uid=lena_account.pw_uid,
        gid=lena_account.pw_gid,
    )
    hub = hub_factory(
        example_config(ccache_config(ccache_dir)),
        env=example_env(slapd, krb5_env, keytab_dir),
    )
    assert hub.login(USER, slapd.people[USER].password).status_code == 302
    hub.start_server(USER)
    cache = os.path.join(ccache_dir, f"krb5cc_{USER}")
    st = os.lstat(cache)
    assert (st.st_uid, st.st_gid) == (lena_account.pw_uid, lena_account.pw_gid)
    out = klist(f"FILE:{cache}", krb5_env.env, user=USER)
    assert out.returncode == 0, out.stderr
    assert f"Default principal: {USER}@{krb5_env.realm}" in out.stdout
    hub.stop_server(USER)
    assert not os.path.exists(cache)


def test_refusals_and_admin_by_group(hub_factory, slapd, krb5_env, keytab_dir, ccache_dir):
    hub = hub_factory(
        example_config(ccache_config(ccache_dir)),
        env=example_env(slapd, krb5_env, keytab_dir),
    )
    people = slapd.people
    alice = people["alice"].password
    # Members of hub-users get in; hub-admins (alice) are admins, the others not.
    assert hub.login("alice", alice).status_code == 302
    assert hub.login("bob", people["bob"].password).status_code == 302
    assert hub.api("GET", "/users/alice").json()["admin"] is True
    assert hub.api("GET", "/users/bob").json()["admin"] is False
    # Not in an allowed group; wrong, empty and blank passwords; injection attempts.
    assert hub.login("carol", people["carol"].password).status_code == 403
    assert hub.login("alice", "not-her-password").status_code == 403
    assert hub.login("alice", "").status_code == 403
    assert hub.login("alice", "   ").status_code == 403
    for name in ["*", "*)(uid=*", "admin)(|(uid=*", 'a,b+c"d\\e<f>g;h=i', "alice)(uid=*"]:
        assert hub.login(name, alice).status_code == 403, name
    users = {u["name"] for u in hub.api("GET", "/users").json()}
    assert users == {"alice", "bob"} | (users & {"admin"}), users
    log = hub.log_text()
    assert alice not in log and people["bob"].password not in log


# --- a silent directory server --------------------------------------------------------------


def health_while(hub, busy):
    """GET /hub/health every 50 ms until ``busy`` is set; return each answer's seconds."""
    answers = []
    with requests.Session() as session:
        while not busy.is_set():
            started = time.monotonic()
            response = session.get(f"{hub.url}/hub/health", timeout=10)
            answers.append((time.monotonic() - started, response.status_code))
            time.sleep(0.05)
    return answers


def login_in_background(hub, username, password):
    """Log in on a thread; return (done event, result dict with status and seconds)."""
    done, result = threading.Event(), {}

    def run():
        started = time.monotonic()
        try:
            result["status"] = hub.login(username, password).status_code
        finally:
            result["seconds"] = time.monotonic() - started
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, result


@pytest.mark.parametrize("then_a_good_one", [True, False], ids=["fails over", "fails"])
def test_a_silent_server_does_not_freeze_the_hub(
    hub_factory, slapd, krb5_env, keytab_dir, ccache_dir, blackhole_server, then_a_good_one
):
    host, port = blackhole_server
    servers = f"{host}:{port}" + (f" 127.0.0.1:{slapd.ldap_port}" if then_a_good_one else "")
    hub = hub_factory(
        example_config(
            ccache_config(ccache_dir) + "c.KerberosLDAPAuthenticator.receive_timeout = 2\n"
        ),
        env=example_env(slapd, krb5_env, keytab_dir, servers=servers),
    )
    done, result = login_in_background(hub, "alice", slapd.people["alice"].password)
    answers = health_while(hub, done)
    assert done.wait(10)
    assert result["status"] == (302 if then_a_good_one else 503)
    assert 1.9 < result["seconds"] < 4
    # The hub kept answering while the login waited for the silent server.
    assert len(answers) >= 10
    assert all(status == 200 for _, status in answers)
    assert max(seconds for seconds, _ in answers) < 0.5


# --- one entry, one name --------------------------------------------------------------------

IDENTITY_CONFIG = """
c.KerberosLDAPAuthenticator.username_map = {"alice": "bob"}
c.KerberosLDAPAuthenticator.allowed_groups = set()
c.KerberosLDAPAuthenticator.admin_groups = set()
c.KerberosLDAPAuthenticator.allow_all = True
"""


@pytest.fixture
def staff_bob(slapd):
    """Another person called Bob, under ou=staff (the example's second template)."""
    person = Person("Bob", "pw-staff-bob-" + slapd.admin_password[-6:], 46092, 46092, ou=STAFF)
    with slapd.temporary_person(person):
        yield person


def test_the_hub_user_is_the_entry_whose_password_was_checked(
    hub_factory, slapd, krb5_env, keytab_dir, ccache_dir, staff_bob
):
    """Over HTTP: alice with her password is hub user bob (username_map), having
    bound as alice only; bob's password typed as alice, and the staff Bob's
    password typed as Bob, open nothing."""
    hub = hub_factory(
        example_config(ccache_config(ccache_dir) + IDENTITY_CONFIG),
        env=example_env(slapd, krb5_env, keytab_dir),
    )
    people = slapd.people
    mark = slapd.log_mark()
    assert hub.login("alice", people["alice"].password).status_code == 302
    seen = slapd.log_since(mark)
    assert f'BIND dn="{people["alice"].dn}"' in seen
    assert f'BIND dn="{people["bob"].dn}"' not in seen
    assert {u["name"] for u in hub.api("GET", "/users").json()} == {"bob"}
    assert hub.login("alice", people["bob"].password).status_code == 403
    assert hub.login("Bob", staff_bob.password).status_code == 403
    assert hub.login("bob", staff_bob.password).status_code == 403
    log = hub.log_text()
    assert "the name belongs to uid=bob,ou=people" in log
    assert staff_bob.password not in log and people["alice"].password not in log
    assert {u["name"] for u in hub.api("GET", "/users").json()} == {"bob"}


def test_a_username_map_chain_stops_the_hub_at_startup(
    hub_factory, slapd, krb5_env, keytab_dir, ccache_dir
):
    chain = 'c.KerberosLDAPAuthenticator.username_map = {"a": "b", "b": "c"}\n'
    with pytest.raises(AssertionError, match="the hub exited") as info:
        hub_factory(
            example_config(ccache_config(ccache_dir) + chain),
            env=example_env(slapd, krb5_env, keytab_dir),
        )
    assert "Authenticator.username_map maps 'a' to 'b', which it maps to 'c'" in str(info.value)
