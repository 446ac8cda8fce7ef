"""A path that trickles one user's LDAP answers, flooded with that user's logins, costs
another user's login nothing (issue 11, item 5).

The hub's only LDAP server is a proxy in front of the real slapd that passes
everyone's traffic but trickles the answers on connections that bind as the
attacker's DN: each of the attacker's logins runs into receive_timeout and
ends with a 503. The attacker sends several of them a second from 127.0.0.2;
another user logs in from 127.0.0.1 all through, at about their unloaded time,
because one name's logins are checked one at a time and a client whose logins
keep failing is throttled, so the flood holds at most one LDAP thread.
"""

import statistics

from support.clients import logins_during_flood, unloaded_login_time
from support.hostile_ldap import binds_as

FLOOD_RATE = 6  # logins a second
FLOOD_SECONDS = 5
RECEIVE_TIMEOUT = 2

HUB_CONFIG = """
c.JupyterHub.authenticator_class = "kerberos-ldap"
c.KerberosTickets.keytab_template = {keytabs!r} + "/{{username}}.keytab"
c.KerberosTickets.required = False
c.KerberosTickets.ccache_dir = {ccache_dir!r}
a = c.KerberosLDAPAuthenticator
a.server_address = [{server!r}]
a.tls_strategy = "insecure"
a.bind_dn_template = [{template!r}]
a.receive_timeout = {receive_timeout}
a.executor_threads = 2
a.allow_all = True
"""


def test_a_flood_of_trickled_logins_leaves_another_users_login_at_its_unloaded_time(
    hub_factory, slapd, hostile_ldap, tmp_path, ccache_dir
):
    attacker = slapd.people["carol"]
    victim = slapd.people["alice"]
    proxy = hostile_ldap(mode="trickle", byte_delay=0.5, hostile=binds_as(attacker.dn))
    host, port = proxy.address
    hub = hub_factory(
        HUB_CONFIG.format(
            keytabs=str(tmp_path),
            ccache_dir=ccache_dir,
            server=f"{host}:{port}",
            template=f"uid={{username}},{slapd.people_dn}",
            receive_timeout=RECEIVE_TIMEOUT,
        )
    )
    unloaded = unloaded_login_time(hub, "127.0.0.1", "alice", victim.password)
    flood, during = logins_during_flood(
        hub,
        flood=lambda i: ("carol", attacker.password),
        rate=FLOOD_RATE,
        seconds=FLOOD_SECONDS,
        user=("alice", victim.password),
    )
    print(f"unloaded {unloaded:.3f} s; during {[round(s, 3) for _, s in during]}")
    assert len(during) >= 5
    assert all(status == 302 for status, _ in during), during
    assert statistics.median(s for _, s in during) <= 2 * unloaded, (unloaded, during)
    assert max(s for _, s in during) < RECEIVE_TIMEOUT, (unloaded, during)
    statuses = [status for status, _, _ in flood]
    assert set(statuses) <= {429, 503}, statuses
    assert statuses.count(429) >= len(flood) // 2, statuses
    # The flood's attempts reached the directory one at a time, not one a thread.
    assert proxy.stats.hostile_connections <= statuses.count(503) + 1
    assert "from 127.0.0.2 refused (429)" in hub.log_text()
