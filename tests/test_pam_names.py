"""PAM logins, below the hub: the name rule and the login limits, with real PAM and accounts.

The authenticator is called directly (no hub), with a real PAM service
(pam_unix) and real local accounts: which names may log in as which account
(``username_map`` and normalisation), and that a PAM call past
``pam_timeout`` keeps its turn until its thread is done.
"""

import asyncio
import threading
import time

import pytest
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosPAMAuthenticator
from kerbauth.auth.pam import OtherAccount


@pytest.fixture
def authenticator(pam_service):
    def make(**options):
        c = Config()
        c.KerberosTickets.keytab_template = "/nonexistent/{username}.keytab"
        c.KerberosPAMAuthenticator.service = pam_service()
        for name, value in options.items():
            c.KerberosPAMAuthenticator[name] = value
        return KerberosPAMAuthenticator(config=c)

    return make


def login(authenticator, username, password):
    data = {"username": username, "password": password}
    return asyncio.run(authenticator.authenticate(None, data))


# (case, username_map from the names of accounts a and b, who logs in, expected)
MAP_CASES = [
    ("no map: a as a", {}, "a", "a"),
    ("mapped to another account: refused", {"a": "b"}, "a", OtherAccount),
    ("mapped to a name with no account: refused", {"a": "ghost"}, "a", OtherAccount),
    ("the other account, unmapped, as itself", {"a": "b"}, "b", "b"),
]


@pytest.mark.parametrize(
    "mapping,who,expected", [c[1:] for c in MAP_CASES], ids=[c[0] for c in MAP_CASES]
)
def test_username_map_may_not_turn_a_login_into_another_account(
    authenticator, make_user, mapping, who, expected
):
    accounts = {"a": make_user(), "b": make_user()}
    names = {key: account.name for key, account in accounts.items()}
    names["ghost"] = f"{accounts['a'].name}-ghost"
    auth = authenticator(username_map={names[k]: names[v] for k, v in mapping.items()})
    account = accounts[who]
    if expected is OtherAccount:
        # Refused before PAM: a wrong password gets the same answer (no password oracle).
        for password in (account.password, "wrong"):
            with pytest.raises(OtherAccount):
                auth._pam_login_sync(account.name, password)
            with pytest.raises(web.HTTPError) as refused:
                login(auth, account.name, password)
            assert refused.value.status_code == 403
            assert "which is a different account" in refused.value.log_message
    else:
        assert login(auth, account.name, account.password) == names[expected]
        assert auth.normalize_username(account.name) == names[expected]
        assert login(auth, account.name, "wrong") is None


def test_a_pam_call_past_pam_timeout_keeps_its_turn_until_its_thread_ends(
    authenticator, make_user, monkeypatch
):
    """The user gets 503 at pam_timeout, but the thread still holds a PAM slot: the
    same name gets no second PAM call (429 after login_wait) until that thread ends."""
    user = make_user()
    auth = authenticator(pam_timeout=0.3, login_wait=0.3)
    release = threading.Event()
    calls = []
    real = auth._pam_login_sync

    def stuck_then_real(username, password):
        calls.append(username)
        if len(calls) == 1:
            release.wait(30)
        return real(username, password)

    monkeypatch.setattr(auth, "_pam_login_sync", stuck_then_real)

    async def main():
        with pytest.raises(web.HTTPError) as timed_out:
            await auth.authenticate(None, {"username": user.name, "password": user.password})
        assert timed_out.value.status_code == 503
        with pytest.raises(web.HTTPError) as busy:
            await auth.authenticate(None, {"username": user.name, "password": user.password})
        assert busy.value.status_code == 429
        assert calls == [user.name]  # no second PAM call while the first thread runs
        release.set()
        deadline = time.monotonic() + 10
        entries = auth.login_limiter.tables["name"].entries
        while entries[user.name].in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # polled: the stuck thread ends, its turn comes back
        assert entries[user.name].in_flight == 0
        # The turn is back: a real PAM call now, given the time a busy host needs
        # (0.3 s was for the stuck call above, not for pam_unix's hashing).
        auth.pam_timeout = 30
        data = {"username": user.name, "password": user.password}
        assert await auth.authenticate(None, data) == user.name

    asyncio.run(main())


FAIL_DELAY_SERVICE = """\
auth     required  pam_faildelay.so delay=2000000
auth     required  pam_unix.so
account  required  pam_unix.so
"""


def test_the_fail_delay_slows_the_failed_client_not_the_pam_thread(
    authenticator, make_user, pam_service
):
    """One PAM thread: a wrong password (2 s fail delay) and, queued behind it on that
    thread, another user's correct password. The wrong one still takes the delay; the
    correct one does not wait for it."""
    mallory, alice = make_user(), make_user()
    c = Config()
    c.KerberosTickets.keytab_template = "/nonexistent/{username}.keytab"
    c.KerberosPAMAuthenticator.service = pam_service(FAIL_DELAY_SERVICE)
    c.KerberosPAMAuthenticator.executor_threads = 1
    auth = KerberosPAMAuthenticator(config=c)

    async def timed(username, password):
        started = time.monotonic()
        data = {"username": username, "password": password}
        result = await auth.authenticate(None, data)
        return result, time.monotonic() - started

    async def main():
        # Submitted in this order to the one thread (a FIFO queue).
        wrong = asyncio.ensure_future(timed(mallory.name, "wrong"))
        right = asyncio.ensure_future(timed(alice.name, alice.password))
        return await wrong, await right

    (wrong, wrong_seconds), (right, right_seconds) = asyncio.run(main())
    assert wrong is None and wrong_seconds >= 0.9  # 2 s, randomised by PAM by up to 50 %
    # The right one did not wait for the wrong one's delay: it was done before it.
    # (It queued behind the wrong one's hashing on the one thread, not behind its
    # delay: with the delay on the thread it would end after the wrong one.) Not a
    # fixed 0.8 s: on a busy host pam_unix's hashing alone can take that long.
    assert right == alice.name and right_seconds < wrong_seconds, (
        wrong_seconds,
        right_seconds,
    )
