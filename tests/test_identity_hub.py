"""Issue 11's ticket attacks in a real hub: real PAM logins over HTTP, real spawned servers
running as real local users, the attacker acting as that local user (``runuser``).

- a user's forged cache (endless times, megabytes) never keeps their password login;
- a ticket swapped into a cache is replaced at the next look;
- a server shared with JupyterHub's sharing loses its ticket, and is not started with one.
"""

import os
import subprocess
import time

import pytest
import requests

from kerbauth.core.ccache import read_ccache
from support.edge import give_keytab, server_environment, wait_for
from support.forge import forge_times
from support.realm import add_principal, start_realm

LOOK = """
c.KerberosTickets.renew_interval = 2
c.Authenticator.auth_refresh_age = 1
"""


def as_user(user, realm, *argv, stdin=None):
    return subprocess.run(
        ["runuser", "-u", user.name, "--", *argv],
        env={**realm.env, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        input=stdin,
        capture_output=True,
        check=False,
    )


@pytest.fixture
def thirty_second_realm():
    k5 = start_realm(
        kdc_conf={"realms": {"$realm": {"max_life": "30s", "max_renewable_life": "0s"}}}
    )
    try:
        yield k5
    finally:
        k5.stop()


def test_a_forged_cache_never_keeps_a_password_login(edge_hub, make_user, thirty_second_realm):
    realm = thirty_second_realm
    user = make_user(groups=("hub-users",))
    realm.addprinc(f"{user.name}@{realm.realm}", user.password)
    hub = edge_hub(
        LOOK
        + 'c.KerberosTickets.principal_template = "{username}@{realm}"\n'
        + "c.KerberosTickets.password_tickets = True\n"
        + "c.KerberosTickets.renew_lifetime = 0\n"  # not renewable: a new login at its end
        + "c.Authenticator.enable_auth_state = True\n",
        realm=realm,
        env={"JUPYTERHUB_CRYPT_KEY": "cd" * 32},
    )
    session, response = hub.login_session(user.name, user.password)
    assert response.status_code == 302
    hub.start_server(user.name)
    path = server_environment(hub, user.name)["KRB5CCNAME"].removeprefix("FILE:")
    ticket = read_ccache(path)
    assert ticket.renew_till <= ticket.end and ticket.end - ticket.start <= 30
    # The user rewrites their own cache: endless times, and 3 MB of it.
    with open(path, "rb") as f:
        forged = forge_times(f.read(), end=2**32 - 2, renew_till=2**32 - 1)
    forged += b"\0" * (3 * 1024 * 1024)
    written = as_user(user, realm, "sh", "-c", f"cat > {path}", stdin=forged)
    assert written.returncode == 0, written.stderr
    assert read_ccache(path).end == 2**32 - 2
    home = f"{hub.url}/hub/home"
    # Half its life on, the hub's own ticket is due and cannot be renewed: log in again.
    wait_for(
        lambda: session.get(home, allow_redirects=False, timeout=30).status_code == 302,
        ticket.end - time.time() + 5,
        "the user was sent to the login page",
    )
    model = hub.api("GET", f"/users/{user.name}").json()
    state = model.get("auth_state") or {}
    assert len(str(state)) < 64 * 1024, "nothing of the user's 3 MB reached auth_state"
    assert "can no longer be renewed; asking for a new login" in hub.log_text()


def test_a_ticket_swapped_into_a_cache_is_replaced_at_the_next_look(edge_hub, make_user, krb5_env):
    user = make_user(groups=("hub-users",))
    principal, _ = give_keytab(krb5_env, user)
    # A principal the user holds a keytab of besides their own (say, a team's).
    other = f"{user.home}/other.keytab"
    add_principal(krb5_env, f"{user.name}-team", other, uid=user.uid, gid=user.gid)
    hub = edge_hub(LOOK)
    assert hub.login(user.name, user.password).status_code == 302
    hub.start_server(user.name)
    ccname = server_environment(hub, user.name)["KRB5CCNAME"]
    path = ccname.removeprefix("FILE:")
    # kinit cannot write in the hub's directory, but the user can rewrite their own file.
    team_cache = f"{user.home}/team.ccache"
    got = as_user(user, krb5_env, "kinit", "-k", "-t", other, "-c", team_cache, f"{user.name}-team")
    assert got.returncode == 0, got.stderr
    swapped = as_user(user, krb5_env, "sh", "-c", f"cat {team_cache} > {path}")
    assert swapped.returncode == 0, swapped.stderr
    assert read_ccache(path).principal.startswith(f"{user.name}-team@")
    wait_for(
        lambda: read_ccache(path).principal == principal,
        10,
        "the hub wrote the user's own ticket back",
    )


def test_a_shared_server_loses_its_ticket_and_is_not_started_with_one(
    edge_hub, make_user, krb5_env
):
    user = make_user(groups=("hub-users",))
    give_keytab(krb5_env, user)
    hub = edge_hub(LOOK)
    assert hub.login(user.name, user.password).status_code == 302
    hub.start_server(user.name)
    path = server_environment(hub, user.name)["KRB5CCNAME"].removeprefix("FILE:")
    assert read_ccache(path).principal.startswith(user.name)
    # The owner shares the server (a share code: anyone with the link gets in).
    shared = hub.api("POST", f"/share-codes/{user.name}/", json={})
    assert shared.status_code in (200, 201), shared.text
    wait_for(lambda: not os.path.lexists(path), 10, "the shared server's cache was removed")
    assert "is shared with other users; its Kerberos ticket is removed" in hub.log_text()
    # Started again while it is shared: no ticket, so no server (required = True).
    hub.stop_server(user.name)
    refused = hub.request_server(user.name)
    if refused.status_code == 202:
        wait_for(lambda: hub.server(user.name) is None, 30, "the spawn failed")
        assert "shared with other users" in hub.log_text().split("spawn refused")[-1]
    else:
        assert refused.status_code in (500, 503), refused.text
        assert "shared with other users" in refused.json()["message"]
    assert not os.path.lexists(path)


def test_a_hub_whose_tickets_cannot_work_refuses_to_start_naming_the_option(edge_hub):
    """The constructor checks nothing; JupyterHub's start-up check (check_allow_config,
    5.x and 6.x) starts kerbauth, and its ConfigError stops the hub."""
    with pytest.raises(AssertionError) as info:
        edge_hub("c.KerberosTickets.renew_interval = 1800\n")
    assert "the hub exited with" in str(info.value)
    assert (
        "ConfigError: KerberosTickets.renew_interval (1800 s) must be shorter than"
        " KerberosTickets.renew_margin (1800 s)"
    ) in str(info.value)


def spawn_ticket_seconds(hub):
    """(count, sum) of the spawns' ticket requests, from the hub's /hub/metrics."""
    text = requests.get(
        f"{hub.url}/hub/metrics", headers={"Authorization": f"token {hub.token}"}, timeout=30
    ).text
    found = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if 'purpose="spawn"' in name and 'outcome="ok"' in name:
            found[name.split("{")[0].rsplit("_", 1)[1]] = float(value)
    return found.get("count", 0), found.get("sum", 0)


def fork_servers_of(pid):
    """The pids of the krb5 fork servers that process ``pid`` started, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if parent == pid and b"--fork-server" in argv:
            found.append(int(entry))
    return found


def test_the_hub_warms_the_backend_at_start_so_the_first_spawn_finds_it_running(
    edge_hub, make_user, krb5_env
):
    """The krb5 fork server (what a first ticket used to wait for, 0.1-2 s) runs
    before anyone spawns, and the first spawn's ticket comes from that one.

    Asserted on the processes, not on a timing: the cost is measured in
    benchmarks/backends.py (a cold first ticket 106-123 ms here, a warm one 14-21 ms).
    """
    user = make_user(groups=("hub-users",))
    give_keytab(krb5_env, user)
    hub = edge_hub()
    wait_for(lambda: "backend warmed up in" in hub.log_text(), 30, "the backend was warmed")
    warmed = fork_servers_of(hub.process.pid)
    assert len(warmed) == 1, "the fork server runs before any spawn"
    assert hub.login(user.name, user.password).status_code == 302
    hub.start_server(user.name)
    count, _ = spawn_ticket_seconds(hub)
    assert count == 1, "the spawn got its ticket"
    assert fork_servers_of(hub.process.pid) == warmed, "from the fork server started at start-up"
