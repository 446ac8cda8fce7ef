"""Tickets from the login password (KerberosTickets.password_tickets) against a real KDC."""

import base64
import os
import pwd
import stat
from types import SimpleNamespace

import pytest
from jupyterhub.auth import Authenticator, DummyAuthenticator
from traitlets.config import Config

from kerbauth import KerberosTickets
from kerbauth.core import tickets
from kerbauth.core.ccache import parse_ccache, read_ccache
from kerbauth.core.errors import ConfigError, TicketError
from kerbauth.hub.tickets import AUTH_STATE_KEY

UID, GID = 54321, 54322
PASSWORD = "Correct-Horse-7-Battery"


class PasswordTicketsAuthenticator(KerberosTickets, DummyAuthenticator):
    """Any name and password log in (DummyAuthenticator); tickets come from the password."""


@pytest.fixture
def backend(krb5_env):
    made = tickets.make_backend("krb5")
    yield made
    made.close()


def add_password_principal(realm, name):
    """``name`` with the test password, whether an earlier test made it (randkey) or not."""
    principal = f"{name}@{realm.realm}"
    realm.run_kadminl(f"delprinc -force {principal}")  # kadmin.local -q exits 0 either way
    realm.addprinc(principal, PASSWORD)
    return principal


def test_password_ticket_is_renewable(krb5_env, backend):
    principal = add_password_principal(krb5_env, "pw1")
    data = tickets.password_ticket(
        backend, principal=principal, password=PASSWORD, renew_life=2 * 86400, timeout=10
    )
    ticket = parse_ccache(data)
    assert ticket.principal == principal
    assert ticket.renew_till > ticket.end


def test_wrong_password_says_so(krb5_env, backend):
    principal = add_password_principal(krb5_env, "pw2")
    with pytest.raises(TicketError) as info:
        tickets.password_ticket(
            backend, principal=principal, password="wrong", renew_life=2 * 86400, timeout=10
        )
    assert info.value.cause == "password"


@pytest.mark.parametrize("password", ["", "   ", None])
def test_empty_password_never_reaches_the_kdc(backend, password):
    with pytest.raises(TicketError, match="empty password"):
        tickets.password_ticket(
            backend, principal="x@KERBAUTH.TEST", password=password, renew_life=0, timeout=1
        )


def test_renewal_from_the_hubs_copy_and_refusal_of_a_foreign_ticket(krb5_env, backend):
    principal = add_password_principal(krb5_env, "pw3")
    data = tickets.password_ticket(
        backend, principal=principal, password=PASSWORD, renew_life=2 * 86400, timeout=10
    )
    before = parse_ccache(data)
    renewed = tickets.renew_ticket_bytes(backend, data=data, principal=principal, timeout=10)
    after = parse_ccache(renewed)
    assert renewed != data, "a renewed ticket came back"
    assert after.principal == principal and after.end >= before.end
    assert after.renew_till == before.renew_till
    with pytest.raises(TicketError, match=f"holds {principal}, not other@"):
        tickets.renew_ticket_bytes(
            backend, data=data, principal=f"other@{krb5_env.realm}", timeout=10
        )


@pytest.fixture
def authenticator(krb5_env, ccache_dir):
    c = Config()
    c.KerberosTickets.password_tickets = True
    c.KerberosTickets.ccache_dir = ccache_dir
    c.Authenticator.enable_auth_state = True
    made = PasswordTicketsAuthenticator(config=c)
    yield made
    made.ticket_backend.close()


class User(SimpleNamespace):
    async def get_auth_state(self):
        return self.auth_state


async def test_login_keeps_the_ticket_in_auth_state_and_spawn_writes_it(
    authenticator, krb5_env, monkeypatch
):
    add_password_principal(krb5_env, "nobody")
    authenticated = await authenticator.get_authenticated_user(
        None, {"username": "nobody", "password": PASSWORD}
    )
    blob = authenticated["auth_state"][AUTH_STATE_KEY]
    assert PASSWORD not in str(authenticated)
    ticket = parse_ccache(base64.b64decode(blob))
    assert ticket.principal == f"nobody@{krb5_env.realm}"
    user = User(name="nobody", auth_state=authenticated["auth_state"], spawners={})
    spawner = SimpleNamespace(environment={})
    await authenticator.pre_spawn_start(user, spawner)
    cache = spawner.environment["KRB5CCNAME"].removeprefix("FILE:")
    account = pwd.getpwnam("nobody")
    st = os.lstat(cache)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
        account.pw_uid,
        account.pw_gid,
        0o600,
    )
    assert read_ccache(cache).principal == ticket.principal
    # auth_state holds the hub's current ticket: the login is kept as it is.
    assert await authenticator.refresh_user(user) is True

    # What the authenticator's own refresh says (its groups, its auth_state keys)
    # comes back, with the hub's ticket in auth_state.
    async def own_refresh(self, user, handler=None):
        return {"name": user.name, "groups": ["staff"], "auth_state": {"dn": "uid=nobody"}}

    monkeypatch.setattr(Authenticator, "refresh_user", own_refresh)
    refreshed = await authenticator.refresh_user(user)
    assert refreshed["groups"] == ["staff"]
    assert refreshed["auth_state"]["dn"] == "uid=nobody"
    assert refreshed["auth_state"][AUTH_STATE_KEY] == blob
    monkeypatch.undo()
    await authenticator.post_spawn_stop(user, spawner)
    assert not os.path.exists(cache)


async def test_login_with_a_password_the_kdc_refuses_is_refused(authenticator, krb5_env):
    krb5_env.addprinc(f"pw5@{krb5_env.realm}", "Another-Password-9")
    with pytest.raises(TicketError) as info:
        await authenticator.get_authenticated_user(None, {"username": "pw5", "password": PASSWORD})
    assert info.value.cause == "password"
    assert PASSWORD not in str(info.value)


async def test_spawn_without_a_login_ticket_asks_for_a_new_login(authenticator):
    user = User(name="nobody", auth_state={}, spawners={})
    with pytest.raises(TicketError) as info:
        await authenticator.pre_spawn_start(user, SimpleNamespace(environment={}))
    assert info.value.cause == "expired"


def test_password_tickets_need_auth_state(krb5_env, ccache_dir):
    c = Config()
    c.KerberosTickets.password_tickets = True
    c.KerberosTickets.ccache_dir = ccache_dir
    authenticator = PasswordTicketsAuthenticator(config=c)
    with pytest.raises(ConfigError, match="requires Authenticator.enable_auth_state"):
        authenticator.start()


async def test_password_tickets_with_the_kinit_backend(krb5_env, ccache_dir):
    """No pykrb5 needed: kinit gets the password on stdin and renews with ``kinit -R``."""
    c = Config()
    c.KerberosTickets.password_tickets = True
    c.KerberosTickets.backend = "kinit"
    c.KerberosTickets.ccache_dir = ccache_dir
    c.Authenticator.enable_auth_state = True
    authenticator = PasswordTicketsAuthenticator(config=c)
    authenticator.start()
    assert authenticator.ticket_backend.name == "kinit"
    add_password_principal(krb5_env, "nobody")
    authenticated = await authenticator.get_authenticated_user(
        None, {"username": "nobody", "password": PASSWORD}
    )
    login = parse_ccache(base64.b64decode(authenticated["auth_state"][AUTH_STATE_KEY]))
    assert login.renew_till > login.end, "a renewable ticket"
    user = User(name="nobody", auth_state=authenticated["auth_state"], spawners={})
    spawner = SimpleNamespace(environment={})
    await authenticator.pre_spawn_start(user, spawner)
    cache = spawner.environment["KRB5CCNAME"].removeprefix("FILE:")
    assert read_ccache(cache).principal == login.principal
    before = open(cache, "rb").read()
    times = authenticator._renew_password_ticket_sync(user)  # what a renewal sweep runs
    renewed = read_ccache(cache)
    assert open(cache, "rb").read() != before, "kinit -R wrote a renewed ticket"
    assert (renewed.principal, renewed.renew_till) == (login.principal, login.renew_till)
    assert (times.start, times.end) == (renewed.start, renewed.end) and renewed.end >= login.end
    assert pwd.getpwnam("nobody").pw_uid == os.lstat(cache).st_uid
    await authenticator.post_spawn_stop(user, spawner)
    await authenticator.renewer.stop()
    assert not os.path.exists(cache)
