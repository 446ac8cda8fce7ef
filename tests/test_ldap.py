"""KerberosLDAPAuthenticator against a real slapd: logins, TLS, failover, timeouts, groups.

The authenticator is called as JupyterHub calls it (``get_authenticated_user``);
what reached the directory is read from slapd's own log (``-d stats``).
"""

import asyncio
import copy
import logging
import re
import threading
import time
from types import SimpleNamespace

import pytest
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosLDAPAuthenticator
from kerbauth.auth.ldap import directory as ldap_directory
from kerbauth.auth.ldap.connection import Directory, tls_context
from kerbauth.auth.ldap.groups import group_filter
from kerbauth.auth.ldap.queries import UserQuery, dn_from_template, user_filter
from kerbauth.core.address import Address
from kerbauth.core.errors import TicketError
from support.slapd import STAFF, Person

log = logging.getLogger("test-ldap")

# What users type to break out of a DN or a filter.
HOSTILE_NAMES = [
    "*",
    "*)(uid=*",
    "admin)(|(uid=*",
    "alice)(uid=*",
    'a,b+c"d\\e<f>g;h=i',
    "alice,ou=staff",
    "uid=alice",
]


@pytest.fixture
def config(slapd, krb5_env, tmp_path, ccache_dir):
    c = Config()
    c.KerberosTickets.keytab_template = str(tmp_path / "{username}.keytab")
    c.KerberosTickets.ccache_dir = ccache_dir
    a = c.KerberosLDAPAuthenticator
    a.server_address = [f"127.0.0.1:{slapd.ldap_port}"]
    a.tls_ca_file = slapd.ca_file
    a.bind_dn_template = [
        f"uid={{username}},{slapd.people_dn}",
        f"uid={{username}},{slapd.staff_dn}",
    ]
    a.allow_all = True
    return c


def use_search(c, slapd):
    """Switch ``c`` to search-then-bind with the service account."""
    a = c.KerberosLDAPAuthenticator
    a.bind_dn_template = []
    a.lookup_dn = True
    a.user_search_base = slapd.base_dn
    a.search_bind_dn = slapd.service_dn
    a.search_bind_password = slapd.service_password


@pytest.fixture(params=["bind_dn_template", "lookup_dn"])
def mode_config(request, config, slapd):
    if request.param == "lookup_dn":
        use_search(config, slapd)
    return config


async def login(authenticator, username, password):
    return await authenticator.get_authenticated_user(
        None, {"username": username, "password": password}
    )


def binds(log_text):
    """The DNs slapd saw bind requests for."""
    return re.findall(r'BIND dn="([^"]*)" method=128', log_text)


# --- logging in -----------------------------------------------------------------------


async def test_login_with_the_right_password(slapd, mode_config):
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    alice = slapd.people["alice"]
    mark = slapd.log_mark()
    result = await login(authenticator, "alice", alice.password)
    assert result["name"] == "alice"
    assert result["auth_state"]["ldap_dn"] == alice.dn
    seen = slapd.log_since(mark)
    # The password went over TLS (StartTLS, the default), to alice's own DN.
    assert "STARTTLS" in seen and "TLS established" in seen
    assert f'BIND dn="{alice.dn}" mech=SIMPLE bind_ssf=0 ssf=256' in seen


async def test_a_user_under_another_branch_is_found(slapd, mode_config):
    """dave lives under ou=staff: the second template, or the subtree search, finds him."""
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    dave = slapd.people["dave"]
    result = await login(authenticator, "dave", dave.password)
    assert result["auth_state"]["ldap_dn"] == dave.dn


async def test_a_password_is_passed_exactly_as_typed(slapd, config):
    """Leading and trailing spaces and non-ASCII characters are part of the password."""
    authenticator = KerberosLDAPAuthenticator(config=config)
    erik = slapd.people["erik"]
    assert (await login(authenticator, "erik", erik.password))["name"] == "erik"
    assert await login(authenticator, "erik", erik.password.strip()) is None


async def test_wrong_password_is_refused_and_tried_on_one_server_only(slapd, mode_config):
    mode_config.KerberosLDAPAuthenticator.server_address = [
        f"127.0.0.1:{slapd.ldap_port}",
        f"localhost:{slapd.ldap_port}",
    ]
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    mark = slapd.log_mark()
    assert await login(authenticator, "alice", "not-her-password") is None
    seen = slapd.log_since(mark)
    # One connection: a refused password is an answer, not a reason to ask the next server.
    assert seen.count("ACCEPT from") == 1
    assert "err=49" in seen  # invalidCredentials


async def test_unknown_user_is_refused(slapd, mode_config):
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    assert await login(authenticator, "nosuchuser", slapd.people["alice"].password) is None


@pytest.mark.parametrize("password", ["", " ", "\t \n", None])
async def test_empty_password_is_refused_before_any_connection(slapd, mode_config, password):
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    mark = slapd.log_mark()
    assert await login(authenticator, "alice", password) is None
    seen = slapd.log_since(mark)
    assert "ACCEPT" not in seen and "BIND" not in seen


@pytest.mark.parametrize("username", HOSTILE_NAMES)
async def test_injection_attempts_are_refused_before_any_connection(slapd, mode_config, username):
    """Names that would change a DN or a filter never reach the directory,
    even with a real user's password."""
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    mark = slapd.log_mark()
    assert await login(authenticator, username, slapd.people["alice"].password) is None
    seen = slapd.log_since(mark)
    assert "ACCEPT" not in seen and "BIND" not in seen


# --- escaping, below the username check -----------------------------------------------


@pytest.fixture
def directory(slapd):
    return Directory(
        servers=[Address("127.0.0.1", slapd.ldap_port)],
        tls_strategy="starttls",
        context=tls_context(slapd.ca_file),
        connect_timeout=2,
        receive_timeout=2,
    )


@pytest.mark.parametrize("username", HOSTILE_NAMES)
def test_hostile_names_are_escaped_in_the_search_filter(slapd, directory, username):
    """Called with the raw name (as if the username check were gone): the search
    matches nothing, so no entry is bound to, although alice's password is given."""
    query = UserQuery(
        search_base=slapd.base_dn,
        search_bind_dn=slapd.service_dn,
        search_bind_password=slapd.service_password,
    )
    mark = slapd.log_mark()
    assert (
        ldap_directory.check_login(directory, query, username, slapd.people["alice"].password, log)
        is None
    )
    seen = slapd.log_since(mark)
    searches = re.findall(r'SRCH base="[^"]*" scope=2 deref=3 filter="(.*)"', seen)
    assert len(searches) == 1
    # One equality test on uid: no parenthesis or wildcard of the input survived.
    assert re.fullmatch(r"\(uid=[^()*]*\)", searches[0]), searches[0]
    assert "nentries=0" in seen
    assert binds(seen) == [slapd.service_dn]


@pytest.mark.parametrize("username", HOSTILE_NAMES)
def test_hostile_names_are_escaped_in_the_bind_dn(slapd, directory, username):
    """The name stays one RDN value: no other entry is bound to with alice's password."""
    query = UserQuery(bind_dn_templates=[f"uid={{username}},{slapd.people_dn}"])
    mark = slapd.log_mark()
    assert (
        ldap_directory.check_login(directory, query, username, slapd.people["alice"].password, log)
        is None
    )
    (dn,) = binds(slapd.log_since(mark))
    assert dn.endswith(f",{slapd.people_dn}")
    value = dn[len("uid=") : -len(f",{slapd.people_dn}")]
    # Every DN special is escaped (slapd shows them as \XX).
    assert not re.search(r'(?<!\\)[,+"<>;=]', value), dn


def test_escaping_helpers():
    assert user_filter("({user_attribute}={username})", "uid", "*)(uid=*") == (
        r"(uid=\2a\29\28uid=\2a)"
    )
    assert dn_from_template("uid={username},dc=x", "a,b") == r"uid=a\,b,dc=x"
    assert group_filter("(member={user_dn})", "cn=a*,dc=x", "a") == (r"(member=cn=a\2a,dc=x)")


# --- usernames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["alice", "Alice", " alice ", "ALICE", "alice@corp.example", "CORP\\alice", "corp\\Alice"],
)
async def test_names_are_normalised_before_they_are_checked(slapd, config, typed):
    config.KerberosLDAPAuthenticator.login_domains = ["corp.example", "CORP"]
    authenticator = KerberosLDAPAuthenticator(config=config)
    result = await login(authenticator, typed, slapd.people["alice"].password)
    assert result["name"] == "alice"


@pytest.mark.parametrize("typed", ["alice@evil.example", "EVIL\\alice", "alice@"])
async def test_a_name_with_an_unlisted_domain_is_refused(slapd, config, typed):
    config.KerberosLDAPAuthenticator.login_domains = ["corp.example", "CORP"]
    authenticator = KerberosLDAPAuthenticator(config=config)
    mark = slapd.log_mark()
    assert await login(authenticator, typed, slapd.people["alice"].password) is None
    assert "ACCEPT" not in slapd.log_since(mark)


async def test_without_login_domains_a_domain_is_refused(slapd, config):
    authenticator = KerberosLDAPAuthenticator(config=config)
    assert await login(authenticator, "alice@corp.example", slapd.people["alice"].password) is None


# --- one entry, one name --------------------------------------------------------------


@pytest.fixture
def staff_bob(slapd):
    """A second, distinct person called Bob, under ou=staff, with a password of his own.

    The people branch has bob already; the second bind_dn_template reaches
    ou=staff."""
    person = Person("Bob", "pw-staff-bob-" + slapd.admin_password[-6:], 46090, 46090, ou=STAFF)
    with slapd.temporary_person(person):
        yield person


def test_bob_and_Bob_cannot_be_two_entries_of_one_branch(slapd):
    """uid compares without case (caseIgnoreMatch, core schema): uid=Bob and uid=bob
    under one parent are one DN, so the directory refuses a second entry."""
    person = Person("Bob", "pw-Bob-x", 46091, 46091)
    with pytest.raises(RuntimeError, match="entryAlreadyExists"):
        with slapd.temporary_person(person):
            pass
    assert person.dn.lower() == slapd.people["bob"].dn.lower()


async def test_Bob_of_another_branch_never_becomes_hub_user_bob(
    slapd, mode_config, staff_bob, caplog
):
    """uid=Bob,ou=staff is another person than uid=bob,ou=people; both are "bob" to
    the hub. Bob's own password opens only his own entry, which the name bob does
    not lead to first (templates) or not alone (search): refused either way.
    With templates, the name leads to uid=bob,ou=people first: bob logs in as
    bob. A search finds two entries for the name: nobody logs in as bob."""
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    bob = slapd.people["bob"]
    for typed in ["Bob", "bob", "BOB"]:
        assert await login(authenticator, typed, staff_bob.password) is None, typed
    result = await login(authenticator, "Bob", bob.password)
    if authenticator.lookup_dn:
        assert result is None
        assert "found more than one entry; login refused" in caplog.text
    else:
        assert result["name"] == "bob"
        assert result["auth_state"]["ldap_dn"] == bob.dn
        assert (
            f"the password is that of uid=bob,{slapd.staff_dn}, but the name belongs to"
            f" uid=bob,{slapd.people_dn} (an earlier bind_dn_template)" in caplog.text
        )


async def test_username_map_is_applied_once_after_binding_as_the_typed_name(slapd, mode_config):
    """username_map {"alice": "bob"}: alice logs in with her own password and is hub
    user bob; bob's entry is never bound to. bob's password typed as alice opens
    nothing (the bind is alice's)."""
    mode_config.KerberosLDAPAuthenticator.username_map = {"alice": "bob"}
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    alice, bob = slapd.people["alice"], slapd.people["bob"]
    mark = slapd.log_mark()
    result = await login(authenticator, "Alice", alice.password)
    assert result["name"] == "bob"
    assert result["auth_state"]["ldap_dn"] == alice.dn
    assert authenticator.normalize_username(result["name"]) == "bob"
    seen = binds(slapd.log_since(mark))
    assert alice.dn in seen and bob.dn not in seen, seen
    assert await login(authenticator, "alice", bob.password) is None
    # bob himself is still bob.
    assert (await login(authenticator, "bob", bob.password))["auth_state"]["ldap_dn"] == bob.dn


async def test_a_username_map_that_chains_after_startup_refuses_the_login(slapd, config, caplog):
    """The startup check refuses chains; a map changed later is caught at login:
    the name returned must be one JupyterHub's normalisation leaves alone."""
    authenticator = KerberosLDAPAuthenticator(config=config)
    authenticator.username_map = {"alice": "bob", "bob": "carol"}
    mark = slapd.log_mark()
    assert await login(authenticator, "alice", slapd.people["alice"].password) is None
    assert "maps it to bob, which it maps again to carol" in caplog.text
    assert "BIND" not in slapd.log_since(mark)


async def test_a_mapped_login_takes_the_owner_from_the_hub_users_entry(slapd, config):
    """With owner_from_ldap, hub user bob's cache belongs to bob's entry, whoever of
    alice and bob logged in (the same after a restart)."""
    config.KerberosLDAPAuthenticator.username_map = {"alice": "bob"}
    config.KerberosLDAPAuthenticator.owner_from_ldap = True
    use_search(config, slapd)
    authenticator = KerberosLDAPAuthenticator(config=config)
    assert (await login(authenticator, "alice", slapd.people["alice"].password))["name"] == "bob"
    bob = slapd.people["bob"]
    owner = await asyncio.to_thread(authenticator.ticket_owner, SimpleNamespace(name="bob"))
    assert owner == (bob.uid_number, bob.gid_number)


# --- TLS ------------------------------------------------------------------------------


async def test_ldaps_is_verified_against_the_test_ca(slapd, config):
    config.KerberosLDAPAuthenticator.tls_strategy = "ldaps"
    config.KerberosLDAPAuthenticator.server_address = [f"127.0.0.1:{slapd.ldaps_port}"]
    authenticator = KerberosLDAPAuthenticator(config=config)
    mark = slapd.log_mark()
    assert (await login(authenticator, "alice", slapd.people["alice"].password))["name"] == "alice"
    seen = slapd.log_since(mark)
    assert "STARTTLS" not in seen and "TLS established" in seen
    assert f'BIND dn="{slapd.people["alice"].dn}" mech=SIMPLE bind_ssf=0 ssf=256' in seen


async def test_ldaps_default_port_is_636(config):
    config.KerberosLDAPAuthenticator.tls_strategy = "ldaps"
    config.KerberosLDAPAuthenticator.server_address = ["ldap.corp.example"]
    directory, _ = KerberosLDAPAuthenticator(config=config)._ldap_settings()
    assert directory.servers == [Address("ldap.corp.example", 636)]


def tls_cases(slapd):
    return {
        "starttls, unknown CA": ("starttls", slapd.ldap_port, slapd.other_ca_file, "127.0.0.1"),
        "ldaps, unknown CA": ("ldaps", slapd.ldaps_port, slapd.other_ca_file, "127.0.0.1"),
        "starttls, system CAs": ("starttls", slapd.ldap_port, "", "127.0.0.1"),
        "ldaps, system CAs": ("ldaps", slapd.ldaps_port, "", "127.0.0.1"),
        "ldaps, name not in the certificate": (
            "ldaps",
            slapd.ldaps_port,
            slapd.ca_file,
            "127.0.0.2",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "starttls, unknown CA",
        "ldaps, unknown CA",
        "starttls, system CAs",
        "ldaps, system CAs",
        "ldaps, name not in the certificate",
    ],
)
async def test_a_server_failing_the_tls_check_never_sees_the_password(slapd, config, case, caplog):
    strategy, port, ca_file, host = tls_cases(slapd)[case]
    a = config.KerberosLDAPAuthenticator
    a.tls_strategy = strategy
    a.tls_ca_file = ca_file
    a.server_address = [f"{host}:{port}"]
    authenticator = KerberosLDAPAuthenticator(config=config)
    mark = slapd.log_mark()
    with pytest.raises(web.HTTPError) as info:
        await login(authenticator, "alice", slapd.people["alice"].password)
    assert info.value.status_code == 503
    assert "BIND" not in slapd.log_since(mark)
    assert "TLS certificate refused" in caplog.text


async def test_insecure_works_and_warns(slapd, config, caplog):
    config.KerberosLDAPAuthenticator.tls_strategy = "insecure"
    config.KerberosLDAPAuthenticator.tls_ca_file = ""
    authenticator = KerberosLDAPAuthenticator(config=config)
    assert "passwords are sent to the LDAP server unencrypted" in caplog.text
    mark = slapd.log_mark()
    assert (await login(authenticator, "alice", slapd.people["alice"].password))["name"] == "alice"
    assert "ssf=0" in slapd.log_since(mark) and "TLS established" not in slapd.log_since(mark)


# --- failover and timeouts ------------------------------------------------------------


async def test_failover_from_a_dead_first_server(slapd, config, dead_server, caplog):
    host, port = dead_server
    config.KerberosLDAPAuthenticator.server_address = [
        f"{host}:{port}",
        f"127.0.0.1:{slapd.ldap_port}",
    ]
    authenticator = KerberosLDAPAuthenticator(config=config)
    started = time.monotonic()
    result = await login(authenticator, "alice", slapd.people["alice"].password)
    assert result["name"] == "alice"
    assert time.monotonic() - started < 1
    assert f"LDAP server 127.0.0.1:{port} unusable" in caplog.text
    assert "Connection refused" in caplog.text


async def ticking(stop, gaps):
    """Record how late a 20 ms sleep wakes up on the event loop, until ``stop``."""
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.02)
        gaps.append(time.monotonic() - before - 0.02)


async def timed_login(authenticator, username, password):
    """``(result or exception, seconds, worst event-loop lag while it ran)``."""
    stop, gaps = asyncio.Event(), []
    ticker = asyncio.create_task(ticking(stop, gaps))
    started = time.monotonic()
    try:
        result = await login(authenticator, username, password)
    except web.HTTPError as e:
        result = e
    elapsed = time.monotonic() - started
    stop.set()
    await ticker
    return result, elapsed, max(gaps)


async def test_a_silent_server_costs_one_timeout_then_the_next_answers(
    slapd, config, blackhole_server, caplog
):
    host, port = blackhole_server
    a = config.KerberosLDAPAuthenticator
    a.server_address = [f"{host}:{port}", f"127.0.0.1:{slapd.ldap_port}"]
    a.receive_timeout = 2
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, elapsed, lag = await timed_login(authenticator, "alice", slapd.people["alice"].password)
    assert result["name"] == "alice"
    assert 1.9 < elapsed < 3.5
    assert lag < 0.25, "the event loop was blocked while the LDAP server was silent"
    assert f"LDAP server {host}:{port} unusable: no answer in time" in caplog.text


@pytest.mark.parametrize("strategy", ["starttls", "ldaps", "insecure"])
async def test_only_a_silent_server_fails_within_the_timeout(
    slapd, config, blackhole_server, strategy
):
    """Whatever waits for the answer (StartTLS, the LDAPS handshake, the bind)."""
    host, port = blackhole_server
    a = config.KerberosLDAPAuthenticator
    a.server_address = [f"{host}:{port}"]
    a.tls_strategy = strategy
    if strategy == "insecure":
        a.tls_ca_file = ""
    a.receive_timeout = 2
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, elapsed, lag = await timed_login(authenticator, "alice", slapd.people["alice"].password)
    assert isinstance(result, web.HTTPError) and result.status_code == 503
    assert elapsed < 3.5
    assert lag < 0.25


async def test_a_connect_that_hangs_costs_the_connect_timeout(
    slapd, config, hanging_server, caplog
):
    host, port = hanging_server
    a = config.KerberosLDAPAuthenticator
    a.server_address = [f"{host}:{port}", f"127.0.0.1:{slapd.ldap_port}"]
    a.connect_timeout = 1
    authenticator = KerberosLDAPAuthenticator(config=config)
    result, elapsed, lag = await timed_login(authenticator, "alice", slapd.people["alice"].password)
    assert result["name"] == "alice"
    assert 0.9 < elapsed < 2.5
    assert lag < 0.25
    assert f"LDAP server {host}:{port} unusable" in caplog.text


def most_at_once(intervals):
    """The largest number of ``(start, end)`` intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:  # at equal times an end (-1) sorts first: touching is not overlapping
        running += step
        peak = max(peak, running)
    return peak


async def test_concurrent_logins_run_on_the_pool(slapd, config, hostile_ldap, monkeypatch):
    """Six users log in at once through a directory that answers each request 0.3 s
    late. On a pool of three threads, three checks run at the same time (never more),
    each on a pool thread, the event loop stays free, and the six take about two
    logins' time, not six."""
    slow = hostile_ldap(mode="slow", answer_delay=0.3)
    a = config.KerberosLDAPAuthenticator
    a.server_address = [f"127.0.0.1:{slow.address[1]}"]
    a.executor_threads = 3
    authenticator = KerberosLDAPAuthenticator(config=config)
    # A spy around the real check: when it ran, and on which thread.
    ran, real_check = [], ldap_directory.check_login

    def check_login(*args, **kwargs):
        started = time.monotonic()
        try:
            return real_check(*args, **kwargs)
        finally:
            ran.append((threading.current_thread().name, started, time.monotonic()))

    monkeypatch.setattr(ldap_directory, "check_login", check_login)
    names = ["alice", "bob", "carol", "lena", "erik", "dave"]
    stop, gaps = asyncio.Event(), []
    ticker = asyncio.create_task(ticking(stop, gaps))
    started = time.monotonic()
    results = await asyncio.gather(
        *(login(authenticator, n, slapd.people[n].password) for n in names)
    )
    elapsed = time.monotonic() - started
    stop.set()
    await ticker
    assert [r["name"] for r in results] == names
    assert len(ran) == len(names)
    assert {thread.rpartition("_")[0] for thread, _, _ in ran} == {"kerbauth-ldap"}
    durations = [end - start for _, start, end in ran]
    assert min(durations) > 0.3, "the directory was not slow: this proves nothing"
    # Overlapping, and bounded by the pool.
    assert most_at_once([(start, end) for _, start, end in ran]) == 3
    assert elapsed < sum(durations) / 2, (elapsed, durations)
    assert max(gaps) < 0.25, "the event loop waited for the directory"


async def test_connections_are_closed_after_each_login(slapd, config):
    """Successes, refusals and errors alike: slapd sees every connection closed."""
    authenticator = KerberosLDAPAuthenticator(config=config)
    searching = copy.deepcopy(config)
    use_search(searching, slapd)
    searching.KerberosLDAPAuthenticator.group_search_base = slapd.groups_dn
    searching.KerberosLDAPAuthenticator.auth_state_attributes = ["mail"]
    searcher = KerberosLDAPAuthenticator(config=searching)
    mark = slapd.log_mark()
    alice = slapd.people["alice"].password
    for who, name, password in [
        (authenticator, "alice", alice),
        (authenticator, "alice", "wrong"),
        (authenticator, "nobody-here", alice),
        (searcher, "alice", alice),
        (searcher, "alice", "wrong"),
        (searcher, "nobody-here", alice),
    ]:
        await login(who, name, password)
    deadline = time.monotonic() + 5
    while True:
        seen = slapd.log_since(mark)
        opened = set(re.findall(r"conn=(\d+) fd=\d+ ACCEPT", seen))
        closed = set(re.findall(r"conn=(\d+) fd=\d+ closed", seen))
        if opened == closed or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(opened) == 6
    assert opened == closed


async def test_a_refused_service_account_refuses_the_login_and_says_why(slapd, config, caplog):
    use_search(config, slapd)
    config.KerberosLDAPAuthenticator.search_bind_password = "not-the-service-password"
    authenticator = KerberosLDAPAuthenticator(config=config)
    assert await login(authenticator, "alice", slapd.people["alice"].password) is None
    assert f"the directory refused the search account '{slapd.service_dn}'" in caplog.text
    assert "not-the-service-password" not in caplog.text


async def test_passwords_never_reach_the_log(slapd, mode_config, caplog, dead_server):
    caplog.set_level(logging.DEBUG)
    host, port = dead_server
    mode_config.KerberosLDAPAuthenticator.server_address = [
        f"{host}:{port}",
        f"127.0.0.1:{slapd.ldap_port}",
    ]
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    alice = slapd.people["alice"]
    await login(authenticator, "alice", alice.password)
    await login(authenticator, "alice", alice.password + "x")
    await login(authenticator, "a" * 300, alice.password)
    assert alice.password not in caplog.text
    assert slapd.service_password not in caplog.text
    assert "a" * 17 not in caplog.text, "a hostile name is truncated in the log"


# --- groups ---------------------------------------------------------------------------


@pytest.fixture
def group_config(mode_config, slapd):
    a = mode_config.KerberosLDAPAuthenticator
    a.group_search_base = slapd.groups_dn
    a.allow_all = False
    return mode_config


@pytest.mark.parametrize(
    "allowed, yes, no",
    [
        ({"hub-users"}, ["alice", "bob", "lena"], ["carol", "dave"]),  # groupOfNames
        ({"data-science"}, ["bob", "dave"], ["alice", "carol"]),  # posixGroup
        ({"cn=Hub-Admins,ou=groups,dc=kerbauth,dc=test"}, ["alice"], ["bob"]),  # a DN
    ],
    ids=["groupOfNames by name", "posixGroup by name", "groupOfUniqueNames by DN"],
)
async def test_allowed_groups(slapd, group_config, allowed, yes, no):
    group_config.KerberosLDAPAuthenticator.allowed_groups = allowed
    authenticator = KerberosLDAPAuthenticator(config=group_config)
    for name in yes:
        assert (await login(authenticator, name, slapd.people[name].password))["name"] == name
    for name in no:
        assert await login(authenticator, name, slapd.people[name].password) is None


async def test_admin_groups(slapd, group_config):
    a = group_config.KerberosLDAPAuthenticator
    a.allowed_groups = {"hub-users"}
    a.admin_groups = {"hub-admins"}
    a.admin_users = {"lena"}
    authenticator = KerberosLDAPAuthenticator(config=group_config)
    people = slapd.people
    assert (await login(authenticator, "alice", people["alice"].password))["admin"] is True
    # With admin_groups set, a non-member is explicitly not admin (a demotion).
    assert (await login(authenticator, "bob", people["bob"].password))["admin"] is False
    assert (await login(authenticator, "lena", people["lena"].password))["admin"] is True


async def test_admin_group_members_may_log_in(slapd, group_config):
    group_config.KerberosLDAPAuthenticator.admin_groups = {"hub-admins"}
    authenticator = KerberosLDAPAuthenticator(config=group_config)
    assert (await login(authenticator, "alice", slapd.people["alice"].password))["admin"] is True
    assert await login(authenticator, "bob", slapd.people["bob"].password) is None


async def test_manage_groups_returns_the_ldap_groups(slapd, group_config):
    group_config.KerberosLDAPAuthenticator.allow_all = True
    group_config.KerberosLDAPAuthenticator.manage_groups = True
    authenticator = KerberosLDAPAuthenticator(config=group_config)
    result = await login(authenticator, "alice", slapd.people["alice"].password)
    assert result["groups"] == ["hub-admins", "hub-users"]
    result = await login(authenticator, "dave", slapd.people["dave"].password)
    assert result["groups"] == ["data-science", "staff"]
    result = await login(authenticator, "carol", slapd.people["carol"].password)
    assert result["groups"] == []


async def test_selected_attributes_are_kept_in_auth_state(slapd, mode_config):
    a = mode_config.KerberosLDAPAuthenticator
    a.auth_state_attributes = ["mail", "cn", "description"]
    a.enable_auth_state = True
    authenticator = KerberosLDAPAuthenticator(config=mode_config)
    result = await login(authenticator, "alice", slapd.people["alice"].password)
    assert result["auth_state"]["ldap_attributes"] == {
        "mail": ["alice@corp.example"],
        "cn": ["Alice Test"],
        "description": [],
    }
    assert "userPassword" not in str(result)


# --- who owns the cache ---------------------------------------------------------------


async def test_owner_from_ldap_is_read_at_login(slapd, config):
    config.KerberosLDAPAuthenticator.owner_from_ldap = True
    authenticator = KerberosLDAPAuthenticator(config=config)
    bob = slapd.people["bob"]
    await login(authenticator, "bob", bob.password)
    assert authenticator.ticket_owner(SimpleNamespace(name="bob")) == (
        bob.uid_number,
        bob.gid_number,
    )


def test_owner_from_ldap_after_a_restart_is_looked_up(slapd, config):
    """No login since the hub started: the service account reads the entry."""
    use_search(config, slapd)
    config.KerberosLDAPAuthenticator.owner_from_ldap = True
    authenticator = KerberosLDAPAuthenticator(config=config)
    dave = slapd.people["dave"]
    assert authenticator.ticket_owner(SimpleNamespace(name="dave")) == (
        dave.uid_number,
        dave.gid_number,
    )
    with pytest.raises(TicketError, match="no LDAP entry for 'ghost'"):
        authenticator.ticket_owner(SimpleNamespace(name="ghost"))


def test_owner_from_the_local_account_by_default(config):
    authenticator = KerberosLDAPAuthenticator(config=config)
    assert authenticator.ticket_owner(SimpleNamespace(name="root")) == (0, 0)
