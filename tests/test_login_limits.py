"""The login limiter (kerbauth/auth/limiter.py) on a fake clock, and its options (auth/limits.py).

The hub-level proof (a real flood against a real PAM fail delay) is in
tests/test_pam_flood.py; these pin down each rule: turns per name and per
address, throttling by decaying failures, what a success clears, bounded
tables, and that a refusal is immediate.
"""

import asyncio
from types import SimpleNamespace

import pytest
from traitlets.config import Config

from kerbauth import KerberosLDAPAuthenticator, KerberosPAMAuthenticator
from kerbauth.auth.limiter import MAX_WAITING, LoginLimiter, LoginRefused
from kerbauth.auth.limits import LoginLimits, login_source
from kerbauth.core.errors import ConfigError


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def limiter(**kwargs):
    clock = Clock()
    kwargs.setdefault("wait", 0.2)
    return LoginLimiter(clock=clock, **kwargs), clock


def run(coro):
    return asyncio.run(coro)


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def fail(lim, name, source, times=1):
    for _ in range(times):
        (await lim.acquire(name, source)).release(success=False)


def test_a_second_login_for_a_name_waits_for_the_first_without_a_thread():
    async def main():
        lim, _ = limiter()
        first = await lim.acquire("alice", "10.0.0.1")
        # Another address, the same name (any case): it waits.
        second = asyncio.ensure_future(lim.acquire("ALICE", "10.0.0.2"))
        await settle()
        assert not second.done()
        # Another name from the first address is not held up (source allows 2).
        other = await lim.acquire("bob", "10.0.0.1")
        first.release(success=True)
        await settle()
        assert second.done()
        (await second).release(success=True)
        other.release(success=True)
        assert lim.size("name") == 0 and lim.size("source") == 0  # nothing left behind

    run(main())


def test_waiting_is_bounded_in_time_and_in_number():
    async def main():
        lim, _ = limiter(wait=0.1)
        held = await lim.acquire("alice", "10.0.0.1")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LoginRefused) as refused:
            await lim.acquire("alice", "10.0.0.2")
        assert refused.value.reason == "busy" and refused.value.kind == "name"
        assert 0.09 < loop.time() - started < 0.5
        # MAX_WAITING waiters at most; the next is refused at once.
        lim.wait = 30
        waiters = [
            asyncio.ensure_future(lim.acquire("alice", f"10.1.0.{i}")) for i in range(MAX_WAITING)
        ]
        await settle()
        started = loop.time()
        with pytest.raises(LoginRefused) as refused:
            await lim.acquire("alice", "10.2.0.1")
        assert refused.value.reason == "busy" and loop.time() - started < 0.05
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        held.release()

    run(main())


def test_a_source_gets_source_concurrency_turns_then_waits():
    async def main():
        lim, _ = limiter(source_concurrency=2)
        a = await lim.acquire("u1", "10.0.0.1")
        b = await lim.acquire("u2", "10.0.0.1")
        third = asyncio.ensure_future(lim.acquire("u3", "10.0.0.1"))
        elsewhere = await lim.acquire("u4", "10.0.0.2")
        await settle()
        assert not third.done()
        a.release(success=True)
        await settle()
        (await third).release(success=True)
        for attempt in (b, elsewhere):
            attempt.release(success=True)

    run(main())


# (max_failures, failures, seconds later, throttled?): a count decays by
# max_failures per window (60 s / 5 = one failure every 12 s); the source is
# throttled while it is at max_failures or above.
THROTTLE_CASES = [
    ("below the count", 5, 4, 0, False),
    ("at the count", 5, 5, 0, True),
    ("one over, 11 s later: still at the count", 5, 6, 11, True),
    ("one over, 12.5 s later: below it", 5, 6, 12.5, False),
    ("ten, 59 s later: still at the count", 5, 10, 59, True),
    ("ten, 61 s later: below it", 5, 10, 61, False),
    ("off", 0, 50, 0, False),
]


@pytest.mark.parametrize(
    "max_failures,failures,later,throttled",
    [c[1:] for c in THROTTLE_CASES],
    ids=[c[0] for c in THROTTLE_CASES],
)
def test_a_source_is_throttled_by_its_decaying_failures(max_failures, failures, later, throttled):
    async def main():
        lim, clock = limiter(max_failures=max_failures, window=60)
        for i in range(failures):
            await fail(lim, f"user{i}", "10.0.0.9")  # different names: the source counts
        clock.now += later
        first = await lim.acquire("x", "10.0.0.9")  # one turn always
        try:
            if throttled:
                with pytest.raises(LoginRefused) as refused:
                    await lim.acquire("y", "10.0.0.9")
                assert refused.value.kind == "source" and refused.value.reason == "failures"
                assert (
                    refused.value.message == "Too many failed logins; wait a minute and try again."
                )
            else:
                (await lim.acquire("y", "10.0.0.9")).release(success=True)
            # Another address is never affected.
            (await lim.acquire("z", "10.0.0.10")).release(success=True)
        finally:
            first.release(success=True)

    run(main())


def test_a_refusal_is_immediate_and_changes_no_count():
    async def main():
        lim, _ = limiter(max_failures=3, wait=30)
        await fail(lim, "a", "10.0.0.9", times=3)
        held = await lim.acquire("b", "10.0.0.9")
        loop = asyncio.get_running_loop()
        started = loop.time()
        streaks = []
        for _ in range(20):
            with pytest.raises(LoginRefused) as refused:
                await lim.acquire("c", "10.0.0.9")
            streaks.append(refused.value.streak)
        assert loop.time() - started < 0.05  # wait=30 s: none of them waited
        assert streaks == list(range(1, 21))  # the log warns for the first only
        assert lim.failures("source", "10.0.0.9") == 3
        assert lim.failures("name", "c") == 0
        held.release(success=False)
        assert lim.failures("source", "10.0.0.9") == 4
        # An admitted attempt starts a new streak.
        held = await lim.acquire("d", "10.0.0.9")
        with pytest.raises(LoginRefused) as refused:
            await lim.acquire("e", "10.0.0.9")
        assert refused.value.streak == 1
        held.release(success=False)

    run(main())


def test_a_success_clears_the_names_count_not_the_sources():
    async def main():
        lim, _ = limiter(max_failures=5)
        await fail(lim, "alice", "10.0.0.1", times=4)
        assert lim.failures("name", "alice") == 4
        attempt = await lim.acquire("alice", "10.0.0.1")
        attempt.succeeded()
        attempt.release()
        assert lim.failures("name", "alice") == 0
        assert lim.failures("source", "10.0.0.1") == 4

    run(main())


def test_a_throttled_name_waits_rather_than_being_refused():
    """Wrong passwords for alice from many addresses must not lock alice out."""

    async def main():
        lim, _ = limiter(max_failures=3, name_concurrency=3)
        for i in range(3):
            await fail(lim, "alice", f"10.9.0.{i}")
        attacker = await lim.acquire("alice", "10.9.0.50")
        mine = asyncio.ensure_future(lim.acquire("alice", "10.0.0.1"))
        await settle()
        assert not mine.done()  # throttled: one at a time (not 3), but waiting
        attacker.release(success=False)
        await settle()
        (await mine).release(success=True)
        assert lim.failures("name", "alice") == 0

    run(main())


def test_the_context_manager_counts_an_exception_or_no_success_as_a_failure():
    async def main():
        lim, _ = limiter()
        attempt = await lim.acquire("alice", "10.0.0.1")
        async with attempt:
            pass
        with pytest.raises(RuntimeError):
            async with await lim.acquire("alice", "10.0.0.1"):
                raise RuntimeError("PAM blew up")
        async with await lim.acquire("alice", "10.0.0.1") as attempt:
            attempt.succeeded()
        assert lim.failures("source", "10.0.0.1") == 2
        attempt.release()  # a second release is a no-op
        assert lim.failures("source", "10.0.0.1") == 2

    run(main())


def test_tables_stay_bounded_under_random_names_and_addresses():
    async def main():
        lim, clock = limiter(max_entries=100, max_failures=5)
        await fail(lim, "victim", "10.0.0.9", times=6)
        for i in range(5000):
            await fail(lim, f"random{i}", f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}")
            clock.now += 0.001
            if i % 50 == 0:
                # The attacker's own address is in use all along: never the oldest.
                with pytest.raises(LoginRefused):
                    held = await lim.acquire("x", "10.0.0.9")
                    try:
                        await lim.acquire("y", "10.0.0.9")
                    finally:
                        held.release(success=False)
        assert lim.size("name") <= 100 and lim.size("source") <= 100
        assert lim.failures("source", "10.0.0.9") >= 5

    run(main())


def request(peer, headers=None, trusted=()):
    context = SimpleNamespace(_orig_remote_ip=peer, trusted_downstream=set(trusted))
    return SimpleNamespace(
        connection=SimpleNamespace(context=context), remote_ip=peer, headers=headers or {}
    )


SOURCE_CASES = [
    ("no proxy", request("10.0.0.1"), "10.0.0.1"),
    (
        "the proxy's X-Forwarded-For",
        request("127.0.0.1", {"X-Forwarded-For": "10.0.0.2"}),
        "10.0.0.2",
    ),
    (
        "what the client claimed before the proxy appended the real address",
        request("127.0.0.1", {"X-Forwarded-For": "1.2.3.4, 10.0.0.2"}),
        "10.0.0.2",
    ),
    (
        "X-Real-Ip is not trusted (tornado would take it)",
        request("127.0.0.1", {"X-Forwarded-For": "10.0.0.2", "X-Real-Ip": "1.2.3.4"}),
        "10.0.0.2",
    ),
    (
        "a trusted nginx in front of the proxy is skipped",
        request("127.0.0.1", {"X-Forwarded-For": "10.0.0.2,192.168.1.5"}, trusted={"192.168.1.5"}),
        "10.0.0.2",
    ),
    ("garbage falls back to the peer", request("127.0.0.1", {"X-Forwarded-For": "x"}), "127.0.0.1"),
]


@pytest.mark.parametrize(
    "req,expected", [c[1:] for c in SOURCE_CASES], ids=[c[0] for c in SOURCE_CASES]
)
def test_login_source(req, expected):
    assert login_source(req) == expected


def base_config():
    c = Config()
    c.KerberosTickets.keytab_template = "/nonexistent/{username}.keytab"
    return c


PAM = "KerberosPAMAuthenticator"

# (label, option, bad value, the exact refusal)
CONFIG_CASES = [
    (
        "negative failures",
        "login_max_failures",
        -1,
        f"{PAM}.login_max_failures must be at least 0, not -1",
    ),
    (
        "negative name concurrency",
        "login_name_concurrency",
        -1,
        f"{PAM}.login_name_concurrency must be at least 0, not -1",
    ),
    (
        "negative source concurrency",
        "login_source_concurrency",
        -2,
        f"{PAM}.login_source_concurrency must be at least 0, not -2",
    ),
    (
        "zero window",
        "login_failure_window",
        0,
        f"{PAM}.login_failure_window must be a positive number of seconds, not 0.0",
    ),
    (
        "negative wait",
        "login_wait",
        -1.0,
        f"{PAM}.login_wait must be a positive number of seconds, not -1.0",
    ),
    ("wait as text", "login_wait", "10", f"{PAM}.login_wait must be a number of seconds, not '10'"),
    (
        "negative entries",
        "login_limit_entries",
        -5,
        f"{PAM}.login_limit_entries must be at least 0, not -5",
    ),
    (
        "fractional failures",
        "login_max_failures",
        2.5,
        f"{PAM}.login_max_failures must be a whole number, not 2.5",
    ),
]


@pytest.mark.parametrize(
    "option,value,message", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_a_bad_limit_is_refused_at_config_load_naming_the_option(option, value, message):
    c = base_config()
    c.KerberosPAMAuthenticator[option] = value
    with pytest.raises(ConfigError) as refused:
        KerberosPAMAuthenticator(config=c)
    assert str(refused.value) == message


def test_a_bad_limit_of_the_ldap_login_is_named_after_the_ldap_authenticator():
    """The limits are one mixin of both authenticators: a refusal names the one configured."""
    c = base_config()
    c.KerberosLDAPAuthenticator.server_address = ["ldap.corp.example"]
    c.KerberosLDAPAuthenticator.bind_dn_template = ["uid={username},dc=corp"]
    c.KerberosLDAPAuthenticator.login_wait = 0
    with pytest.raises(ConfigError) as refused:
        KerberosLDAPAuthenticator(config=c)
    assert str(refused.value) == (
        "KerberosLDAPAuthenticator.login_wait must be a positive number of seconds, not 0.0"
    )


def test_the_options_reach_the_limiter_and_have_full_help():
    c = base_config()
    c.KerberosPAMAuthenticator.login_max_failures = 7
    c.KerberosPAMAuthenticator.login_source_concurrency = 3
    c.KerberosPAMAuthenticator.login_failure_window = 120.0
    lim = KerberosPAMAuthenticator(config=c).login_limiter
    assert (lim.max_failures, lim.tables["source"].concurrency, lim.window) == (7, 3, 120.0)
    assert lim.tables["name"].concurrency == 1
    own = LoginLimits.class_own_traits(config=True)
    assert set(own) == {name for name in own if name.startswith("login_")} and len(own) == 6
    for name, trait in own.items():
        # The default is printed by autodoc-traits and --help-all, not repeated in the help.
        assert "Default" not in trait.help and "(the default)" not in trait.help, name
        assert "Example" in trait.help, name
        assert "versionadded:: 0.2" in trait.help, name
