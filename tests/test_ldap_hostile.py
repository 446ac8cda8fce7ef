"""No LDAP server (or anything on the path before TLS) can hold a login hostage.

The hostile servers are the attack itself: :mod:`support.hostile_ldap` proxies
the real test slapd and misbehaves on chosen connections (answers trickled
one byte at a time, a 24 MB entry, a message ldap3 cannot decode, answers
that each come in time but never end). Each login must end within its
deadline, read a bounded number of bytes, and treat whatever a server makes
ldap3 raise as that server failing: the next server is asked, and when none
is left the user gets the 503 "could not be reached" message.
"""

import logging
import statistics
import time

import pytest
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosLDAPAuthenticator
from kerbauth.auth.ldap.authenticator import UNAVAILABLE_MESSAGE
from support.clients import logins_during_flood, unloaded_login_time
from support.hostile_ldap import binds_as

RECEIVE_TIMEOUT = 2


@pytest.fixture
def config(slapd, krb5_env, tmp_path, ccache_dir):
    c = Config()
    c.KerberosTickets.keytab_template = str(tmp_path / "{username}.keytab")
    c.KerberosTickets.ccache_dir = ccache_dir
    a = c.KerberosLDAPAuthenticator
    # Plain LDAP: the proxy reads the requests (the bind DN) to pick its victims.
    a.tls_strategy = "insecure"
    a.bind_dn_template = [f"uid={{username}},{slapd.people_dn}"]
    a.connect_timeout = 1
    a.receive_timeout = RECEIVE_TIMEOUT
    a.allow_all = True
    return c


def servers(c, *addresses):
    c.KerberosLDAPAuthenticator.server_address = [f"{host}:{port}" for host, port in addresses]


def slapd_address(slapd):
    return slapd.host, slapd.ldap_port


async def login(authenticator, username, password):
    """``(result or HTTPError, seconds)``."""
    started = time.monotonic()
    try:
        result = await authenticator.get_authenticated_user(
            None, {"username": username, "password": password}
        )
    except web.HTTPError as e:
        result = e
    return result, time.monotonic() - started


# --- one byte at a time ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["insecure", "starttls", "ldaps"])
async def test_a_trickling_server_costs_one_receive_timeout_then_the_next_answers(
    slapd, config, hostile_ldap, caplog, strategy
):
    """Each byte comes well within receive_timeout, so a per-recv timeout never
    fires; the answer as a whole must come within it: the first answer in plain
    LDAP, the StartTLS answer, the LDAPS handshake."""
    a = config.KerberosLDAPAuthenticator
    a.tls_strategy = strategy
    if strategy != "insecure":
        a.tls_ca_file = slapd.ca_file
    ldaps = strategy == "ldaps"
    proxy = hostile_ldap(mode="trickle", byte_delay=0.5, tls=ldaps)
    servers(config, proxy.address, (slapd.host, slapd.ldaps_port if ldaps else slapd.ldap_port))
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, seconds = await login(authenticator, "alice", slapd.people["alice"].password)
    assert result["name"] == "alice"
    assert seconds < RECEIVE_TIMEOUT + 1.5, seconds
    assert proxy.stats.hostile_connections == 1
    host, port = proxy.address
    assert f"LDAP server {host}:{port} " in caplog.text
    assert "no answer in time" in caplog.text


async def test_answers_that_each_come_in_time_end_at_the_login_timeout(
    slapd, config, hostile_ldap, caplog
):
    """Every answer arrives within receive_timeout, yet the login would never end:
    login_timeout bounds the whole conversation, and the user gets the 503."""
    proxy = hostile_ldap(mode="slow", answer_delay=1.5)
    servers(config, proxy.address)
    a = config.KerberosLDAPAuthenticator
    a.login_timeout = 3.5
    a.auth_state_attributes = ["mail"]  # one more round trip after the bind
    a.group_search_base = slapd.groups_dn  # and another
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, seconds = await login(authenticator, "alice", slapd.people["alice"].password)
    assert isinstance(result, web.HTTPError) and result.status_code == 503
    assert result.log_message == UNAVAILABLE_MESSAGE
    assert 3.0 < seconds < 4.5, seconds
    assert "no answer before the login's time (login_timeout) ran out" in caplog.text


async def test_a_slow_first_server_leaves_the_next_one_its_share(
    slapd, config, hostile_ldap, caplog
):
    """Two servers: the first may take half of login_timeout, then the second is asked."""
    caplog.set_level(logging.INFO)
    proxy = hostile_ldap(mode="slow", answer_delay=1.5)
    servers(config, proxy.address, slapd_address(slapd))
    a = config.KerberosLDAPAuthenticator
    a.login_timeout = 6
    a.auth_state_attributes = ["mail"]
    a.group_search_base = slapd.groups_dn
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, seconds = await login(authenticator, "alice", slapd.people["alice"].password)
    assert result["name"] == "alice"
    assert 2.9 < seconds < 4.5, seconds
    assert proxy.stats.hostile_connections == 1
    # The second server answered, after the first had used its half (3 s).
    host, port = proxy.address
    assert f"LDAP server {host}:{port} failed: no answer before the login's time" in caplog.text
    assert f"(LDAP server {slapd.host}:{slapd.ldap_port})" in caplog.text


# --- a huge answer --------------------------------------------------------------------


async def test_a_24_mb_search_answer_is_refused_at_its_header(slapd, config, hostile_ldap, caplog):
    proxy = hostile_ldap(mode="huge_search", huge_bytes=24 * 1024 * 1024)
    servers(config, proxy.address, slapd_address(slapd))
    config.KerberosLDAPAuthenticator.auth_state_attributes = ["mail"]  # a search after the bind
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, seconds = await login(authenticator, "alice", slapd.people["alice"].password)
    assert result["name"] == "alice"
    assert result["auth_state"]["ldap_attributes"] == {"mail": ["alice@corp.example"]}
    assert seconds < 3, seconds
    host, port = proxy.address
    assert f"LDAP server {host}:{port} failed: an answer of" in caplog.text
    assert "more than max_response_bytes (4194304)" in caplog.text
    # The client stopped reading at the first chunk: what the proxy got rid of
    # is at most what the kernel's socket buffers hold, far from the 24 MB.
    proxy.close()
    assert proxy.stats.bytes_to_clients < 16 * 1024 * 1024, proxy.stats


async def test_max_response_bytes_counts_all_answers_of_a_connection(
    slapd, config, hostile_ldap, caplog
):
    """An entry smaller than the cap, but over it with what came before."""
    proxy = hostile_ldap(mode="huge_search", huge_bytes=65536 - 200)
    servers(config, proxy.address)
    a = config.KerberosLDAPAuthenticator
    a.max_response_bytes = 65536
    a.auth_state_attributes = ["mail"]
    a.group_search_base = slapd.groups_dn  # a second huge answer: over the cap together
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, _ = await login(authenticator, "alice", slapd.people["alice"].password)
    assert isinstance(result, web.HTTPError) and result.status_code == 503
    assert "more than max_response_bytes (65536)" in caplog.text


# --- an answer ldap3 cannot decode ----------------------------------------------------


@pytest.mark.parametrize("strategy", ["insecure", "starttls"])
async def test_an_answer_that_makes_ldap3_raise_fails_over(
    slapd, config, hostile_ldap, caplog, strategy
):
    """ldap3's decoder raises KeyError on it (not an LDAP error): the server failed,
    the next one is asked; with no other server, a 503, not a 500."""
    proxy = hostile_ldap(mode="malformed")
    a = config.KerberosLDAPAuthenticator
    a.tls_strategy = strategy
    if strategy != "insecure":
        a.tls_ca_file = slapd.ca_file
    servers(config, proxy.address, slapd_address(slapd))
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, _ = await login(authenticator, "alice", slapd.people["alice"].password)
    assert result["name"] == "alice"
    host, port = proxy.address
    assert f"LDAP server {host}:{port}" in caplog.text
    assert "unexpected KeyError" in caplog.text

    servers(config, proxy.address)
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, _ = await login(authenticator, "alice", slapd.people["alice"].password)
    assert isinstance(result, web.HTTPError) and result.status_code == 503


# --- a real hub -----------------------------------------------------------------------


HUB_CONFIG = """
c.JupyterHub.authenticator_class = "kerberos-ldap"
c.KerberosTickets.keytab_template = {keytabs!r} + "/{{username}}.keytab"
c.KerberosTickets.ccache_dir = {ccache_dir!r}
a = c.KerberosLDAPAuthenticator
a.server_address = [{server!r}]
a.tls_strategy = "insecure"
a.bind_dn_template = [{template!r}]
a.receive_timeout = {receive_timeout}
a.allow_all = True
"""


def trickling_hub(hub_factory, slapd, hostile_ldap, tmp_path, ccache_dir, extra=""):
    """A hub whose only LDAP server is a path that passes everyone's traffic but
    trickles the answers on connections that bind as carol's DN (the attacker's);
    ``(hub, proxy, attacker)``."""
    attacker = slapd.people["carol"]
    proxy = hostile_ldap(mode="trickle", byte_delay=0.5, hostile=binds_as(attacker.dn))
    host, port = proxy.address
    config = HUB_CONFIG.format(
        keytabs=str(tmp_path),
        ccache_dir=ccache_dir,
        server=f"{host}:{port}",
        template=f"uid={{username}},{slapd.people_dn}",
        receive_timeout=RECEIVE_TIMEOUT,
    )
    return hub_factory(config + extra), proxy, attacker


def test_a_path_that_trickles_one_users_logins_gives_them_a_503_in_time(
    hub_factory, slapd, hostile_ldap, tmp_path, ccache_dir
):
    """The attacker's login ends with the 503 message after about receive_timeout
    (not after the whole trickled answer); other users log in through the same
    path as usual."""
    hub, proxy, attacker = trickling_hub(hub_factory, slapd, hostile_ldap, tmp_path, ccache_dir)
    host, port = proxy.address
    started = time.monotonic()
    response = hub.login("carol", attacker.password)
    seconds = time.monotonic() - started
    assert response.status_code == 503, response.status_code
    assert "The directory server could not be reached" in response.text
    assert seconds < RECEIVE_TIMEOUT + 2, seconds
    assert proxy.stats.hostile_connections == 1
    # Through the same path, another user is not held up.
    started = time.monotonic()
    assert hub.login("alice", slapd.people["alice"].password).status_code == 302
    assert time.monotonic() - started < 1.5
    assert proxy.stats.hostile_connections == 1
    log = hub.log_text()
    assert f"LDAP server {host}:{port} failed: no answer in time" in log
    assert attacker.password not in log


FLOOD_RATE = 6  # logins a second
FLOOD_SECONDS = 5


def test_a_flood_of_trickled_logins_leaves_another_users_login_at_its_unloaded_time(
    hub_factory, slapd, hostile_ldap, tmp_path, ccache_dir
):
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
    hub, proxy, attacker = trickling_hub(
        hub_factory, slapd, hostile_ldap, tmp_path, ccache_dir, extra="a.executor_threads = 2\n"
    )
    victim = slapd.people["alice"]
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
