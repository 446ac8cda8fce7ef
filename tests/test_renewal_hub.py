"""Tickets that outlive their lifetime, in a real hub against a realm whose tickets live 1 minute.

The hub runs the PAM edge-node example (tests/support/edge.py) with renewal
settings scaled to the short realm. Each test keeps a reader running as the
user, ``klist -s`` on the server's cache every 0.2 s: it must never find the
cache missing, partial or expired.
"""

import subprocess
import threading
import time

import pytest

from kerbauth.core.ccache import read_ccache
from support.edge import give_keytab, server_environment, wait_for
from support.realm import short_tickets_realm

LIFE = 60  # seconds: the realm's max_life
RENEWABLE = 150  # seconds: the realm's max_renewable_life
RENEWAL = """
c.KerberosTickets.renew_margin = 20
c.KerberosTickets.renew_interval = 2
c.KerberosTickets.renew_max_backoff = 4
"""


@pytest.fixture
def short_realm():
    with short_tickets_realm(LIFE, RENEWABLE) as k5:
        yield k5


def as_user(user, realm, ccname, *argv):
    return subprocess.run(
        ["runuser", "-u", user.name, "--", *argv],
        # The realm's env carries a KRB5CCNAME of its own: ours comes last.
        env={**realm.env, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KRB5CCNAME": ccname},
        capture_output=True,
        text=True,
        check=False,
    )


class Reader:
    """``klist -s`` as the user on the server's cache, every 0.2 s, on a thread."""

    def __init__(self, user, realm, ccname):
        self.args = (user, realm, ccname, "klist", "-s")
        self.failures, self.reads = [], 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.wait(0.2):
            try:
                result = as_user(*self.args)
            except Exception as e:  # noqa: BLE001 - a reader that cannot read has failed
                self.failures.append((time.strftime("%T"), repr(e)))
                continue
            self.reads += 1
            if result.returncode != 0:
                self.failures.append((time.strftime("%T"), result.stderr))

    def stop(self):
        self.stopped.set()
        self.thread.join()


@pytest.fixture
def running_server(edge_hub, make_user, short_realm, ccache_dir):
    """A logged-in user of the short realm with a running server; ``(hub, user, ccname)``."""
    user = make_user(groups=("hub-users",))
    give_keytab(short_realm, user)
    hub = edge_hub(RENEWAL, realm=short_realm)
    assert hub.login(user.name, user.password).status_code == 302
    hub.start_server(user.name)
    return hub, user, server_environment(hub, user.name)["KRB5CCNAME"]


def test_a_running_server_holds_a_valid_ticket_at_three_lifetimes(running_server, short_realm):
    hub, user, ccname = running_server
    path = ccname.removeprefix("FILE:")
    first = read_ccache(path)
    assert first.end - first.start <= LIFE + 1
    short_realm.addprinc(f"HTTP/spark.kerbauth.test@{short_realm.realm}")
    reader = Reader(user, short_realm, ccname)
    try:
        end = time.monotonic() + 3 * LIFE + 5
        while time.monotonic() < end:
            assert hub.server(user.name)["ready"]
            time.sleep(1)
    finally:
        reader.stop()
    assert reader.reads > 3 * LIFE and reader.failures == []
    now = read_ccache(path)
    assert now.end > first.end + 2 * LIFE - 30 and now.end > time.time()
    # The notebook can still get a service ticket with the cache it was given.
    kvno = as_user(user, short_realm, ccname, "kvno", "HTTP/spark.kerbauth.test")
    assert kvno.returncode == 0, kvno.stderr
    assert "kvno = " in kvno.stdout


def test_renewal_recovers_after_the_kdc_was_down_a_minute(running_server, short_realm):
    hub, user, ccname = running_server
    path = ccname.removeprefix("FILE:")
    short_realm.stop_kdc()
    try:
        # The ticket runs out while the KDC is down; renewal keeps trying.
        wait_for(lambda: read_ccache(path).end < time.time(), LIFE + 10, "the ticket expired")
        assert as_user(user, short_realm, ccname, "klist", "-s").returncode != 0
        down_until = time.monotonic() + 10
        while time.monotonic() < down_until:
            assert hub.health().status_code == 200
            time.sleep(0.5)
    finally:
        short_realm.start_kdc()
    # Back within the capped backoff (4 s) plus a sweep interval, and readable throughout.
    wait_for(
        lambda: as_user(user, short_realm, ccname, "klist", "-s").returncode == 0,
        20,
        "the ticket came back after the KDC did",
    )
    assert read_ccache(path).end > time.time() + LIFE / 2
    log = hub.log_text()
    failures = [
        line for line in log.splitlines() if f"ticket renewal for {user.name} failed" in line
    ]
    assert len(failures) == 1, failures
    assert "kdc_unreachable" in failures[0]
    assert f"ticket renewal for {user.name} works again" in log


def test_password_tickets_are_renewed_then_the_user_must_log_in_again(
    edge_hub, make_user, short_realm, ccache_dir
):
    user = make_user(groups=("hub-users",))
    # The Kerberos password is the login password: the ticket comes from what the user typed.
    short_realm.addprinc(f"{user.name}@{short_realm.realm}", user.password)
    hub = edge_hub(
        RENEWAL
        + 'c.KerberosTickets.principal_template = "{username}@{realm}"\n'
        + "c.KerberosTickets.password_tickets = True\n"
        + f"c.KerberosTickets.renew_lifetime = {RENEWABLE}\n"
        + "c.Authenticator.enable_auth_state = True\n"
        + "c.Authenticator.auth_refresh_age = 1\n",
        realm=short_realm,
        env={"JUPYTERHUB_CRYPT_KEY": "ab" * 32},
    )
    session, response = hub.login_session(user.name, user.password)
    assert response.status_code == 302
    hub.start_server(user.name)
    ccname = server_environment(hub, user.name)["KRB5CCNAME"]
    path = ccname.removeprefix("FILE:")
    first = read_ccache(path)
    assert first.renew_till > first.end
    reader = Reader(user, short_realm, ccname)
    try:
        # Renewed (same ticket, later end) while renew-until allows.
        wait_for(lambda: read_ccache(path).end > first.end, LIFE, "the ticket was renewed")
        assert read_ccache(path).renew_till == first.renew_till
        home = f"{hub.url}/hub/home"
        assert session.get(home, allow_redirects=False, timeout=30).status_code == 200
        # Past what renew-until allows, the hub asks the user to log in again ...
        wait_for(
            lambda: session.get(home, allow_redirects=False, timeout=30).status_code == 302,
            RENEWABLE + 10,
            "the user was sent to the login page",
        )
    finally:
        reader.stop()
    redirect = session.get(home, allow_redirects=False, timeout=30)
    assert "/hub/login" in redirect.headers["Location"]
    assert reader.failures == []
    # ... and the server keeps running.
    server = hub.server(user.name)
    assert server is not None and server["ready"]
    # A new login brings a fresh ticket to the running server's cache.
    assert hub.login(user.name, user.password).status_code == 302
    assert read_ccache(path).renew_till > first.renew_till


def test_renewal_resumes_after_a_hub_restart(edge_hub, make_user, short_realm, ccache_dir):
    user = make_user(groups=("hub-users",))
    give_keytab(short_realm, user)
    # Servers outlive the hub process, as in an upgrade of the hub.
    hub = edge_hub(RENEWAL + "c.JupyterHub.cleanup_servers = False\n", realm=short_realm)
    assert hub.login(user.name, user.password).status_code == 302
    hub.start_server(user.name)
    ccname = server_environment(hub, user.name)["KRB5CCNAME"]
    path = ccname.removeprefix("FILE:")
    pid = hub.server(user.name)["state"]["pid"]
    before = len(hub.log_text())
    hub.restart()
    assert hub.server(user.name)["state"]["pid"] == pid  # the same server, still running
    first = read_ccache(path)
    reader = Reader(user, short_realm, ccname)
    try:
        # The new hub process renews it: valid past the end it had at the restart.
        wait_for(lambda: read_ccache(path).end > first.end, LIFE, "the ticket was renewed")
        wait_for(lambda: time.time() > first.end + 5, LIFE, "the old ticket's end passed")
    finally:
        reader.stop()
    assert reader.failures == []
    assert as_user(user, short_realm, ccname, "klist", "-s").returncode == 0
    # The renewer starts while the hub is still loading its users: its first
    # sweep waits for the hub's start instead of failing on them.
    assert "renewal sweep failed" not in hub.log_text()[before:]
