"""pre_spawn_start / post_spawn_stop with a real realm and a real local account (nobody)."""

import logging
import os
import pwd
import stat
import subprocess
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosPAMAuthenticator
from kerbauth.core.errors import TicketError
from kerbauth.hub.refusal import SpawnException
from support.dirs import small_tmpfs
from support.realm import add_principal, klist

USER = "nobody"  # a local account every Debian machine has


@pytest.fixture
def account():
    return pwd.getpwnam(USER)


@pytest.fixture
def setup(tmp_path, krb5_env, account, ccache_dir):
    keytabs = tmp_path / "keytabs"
    keytabs.mkdir()
    c = Config()
    c.KerberosTickets.keytab_template = str(keytabs / "{username}.keytab")
    c.KerberosTickets.ccache_dir = ccache_dir
    return SimpleNamespace(realm=krb5_env, config=c, keytabs=keytabs)


def spawner():
    return SimpleNamespace(environment={"KEEP": "me"})


def make_keytab(setup, account):
    keytab = setup.keytabs / f"{USER}.keytab"
    if not keytab.exists():
        add_principal(setup.realm, USER, str(keytab), uid=account.pw_uid, gid=account.pw_gid)
    return keytab


async def test_spawn_gets_a_ticket_and_stop_removes_it(setup, account):
    make_keytab(setup, account)
    authenticator = KerberosPAMAuthenticator(config=setup.config)
    user, server = SimpleNamespace(name=USER), spawner()
    await authenticator.pre_spawn_start(user, server)
    ccname = server.environment["KRB5CCNAME"]
    path = ccname.removeprefix("FILE:")
    assert path == os.path.join(setup.config.KerberosTickets.ccache_dir, f"krb5cc_{USER}")
    assert server.environment["KEEP"] == "me"
    assert server.environment["KRB5_CONFIG"] == os.environ["KRB5_CONFIG"]
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid) == (account.pw_uid, account.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o600
    out = klist(ccname, setup.realm.env, user=USER)
    assert f"Default principal: {USER}@{setup.realm.realm}" in out.stdout
    await authenticator.post_spawn_stop(user, server)
    assert not os.path.exists(path)


async def test_missing_keytab_refuses_the_spawn_and_logs_the_file(setup, caplog):
    authenticator = KerberosPAMAuthenticator(config=setup.config)
    server = spawner()
    with pytest.raises(TicketError) as info:
        await authenticator.pre_spawn_start(SimpleNamespace(name=USER), server)
    keytab = str(setup.keytabs / f"{USER}.keytab")
    assert "KRB5CCNAME" not in server.environment
    # Also an HTTPError, so that JupyterHub's spawn page shows its message to the user.
    assert isinstance(info.value, web.HTTPError) and info.value.status_code == 500
    assert info.value.cause == "keytab"
    message = info.value.jupyterhub_message
    # The user's message; JupyterHub 6 logs a SpawnException's log_message, the cause.
    logged = message if SpawnException is None else f"keytab: {info.value.detail}"
    assert info.value.log_message == logged
    assert message.startswith("No Kerberos ticket could be obtained for you")
    assert "no usable keytab" in message
    assert keytab not in message, "the user is not shown server paths"
    assert keytab in caplog.text and "does not exist" in caplog.text


async def test_not_required_starts_without_a_ticket_and_warns(setup, caplog):
    setup.config.KerberosTickets.required = False
    authenticator = KerberosPAMAuthenticator(config=setup.config)
    server = spawner()
    with caplog.at_level(logging.WARNING):
        await authenticator.pre_spawn_start(SimpleNamespace(name=USER), server)
    assert "KRB5CCNAME" not in server.environment
    assert "without a Kerberos ticket" in caplog.text


async def test_hostile_username_never_reaches_a_path(setup):
    authenticator = KerberosPAMAuthenticator(config=setup.config)
    with pytest.raises(TicketError) as info:
        await authenticator.pre_spawn_start(SimpleNamespace(name="../../etc"), spawner())
    assert info.value.cause == "config"
    assert os.listdir(setup.config.KerberosTickets.ccache_dir) == []


async def test_user_without_local_account_is_refused(setup):
    authenticator = KerberosPAMAuthenticator(config=setup.config)
    with pytest.raises(TicketError, match="no local account"):
        await authenticator.pre_spawn_start(SimpleNamespace(name="no-such-user-kbt"), spawner())


class Spawner(SimpleNamespace):
    pass


async def test_one_users_second_server_keeps_the_cache_until_the_last_stops(setup, account):
    make_keytab(setup, account)
    authenticator = KerberosPAMAuthenticator(config=setup.config)
    first, second = Spawner(environment={}, active=True), Spawner(environment={}, active=True)
    user = SimpleNamespace(name=USER, spawners={"": first, "gpu": second})
    await authenticator.pre_spawn_start(user, first)
    await authenticator.pre_spawn_start(user, second)
    path = first.environment["KRB5CCNAME"].removeprefix("FILE:")
    first.active = False
    await authenticator.post_spawn_stop(user, first)
    assert os.path.exists(path), "the other server still uses the cache"
    second.active = False
    await authenticator.post_spawn_stop(user, second)
    assert not os.path.exists(path)


async def test_renewal_sweeps_the_running_servers_caches(setup, account):
    make_keytab(setup, account)
    authenticator = KerberosPAMAuthenticator(config=setup.config)
    server = Spawner(environment={}, active=True)
    user = SimpleNamespace(name=USER, spawners={"": server})
    stopped = SimpleNamespace(name="stopped-user", spawners={"": Spawner(active=False)})
    authenticator._running_users = lambda: [u for u in (user, stopped) if u.spawners[""].active]
    await authenticator.pre_spawn_start(user, server)
    path = server.environment["KRB5CCNAME"].removeprefix("FILE:")
    before = open(path, "rb").read()
    (target,) = await authenticator._renewal_targets()
    issued = authenticator._issued[USER]
    assert (target.key, target.times) == (USER, (issued.start, issued.end))
    assert target.inspect() == "ok"
    # Pretend the ticket is about to end: a margin longer than its life.
    authenticator.renewer.margin = 10**9
    authenticator.renewer.clock = lambda: 2**31
    assert await authenticator.renewer.sweep() == 1
    after = open(path, "rb").read()
    assert after != before
    st = os.lstat(path)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.pw_uid, 0o600)
    await authenticator.renewer.stop()


async def test_an_oserror_renewing_is_a_ccache_error_and_the_old_ticket_stays(
    setup, account, caplog
):
    """A raw OSError on the way (the cache directory's file system gone read-only) is a
    TicketError("ccache"): logged with its cause, counted, retried; nothing is lost."""
    make_keytab(setup, account)
    directory = setup.config.KerberosTickets.ccache_dir
    with small_tmpfs(directory):
        authenticator = KerberosPAMAuthenticator(config=setup.config)
        server = Spawner(environment={}, active=True)
        user = SimpleNamespace(name=USER, spawners={"": server})
        authenticator._running_users = lambda: [user]
        await authenticator.pre_spawn_start(user, server)
        await authenticator.renewer.stop()  # the test sweeps by hand
        path = server.environment["KRB5CCNAME"].removeprefix("FILE:")
        before, issued = open(path, "rb").read(), authenticator._issued[USER]
        failures = ("kerbauth_ticket_failures_total", {"cause": "ccache", "purpose": "renewal"})
        counted = REGISTRY.get_sample_value(*failures) or 0
        authenticator.renewer.clock = lambda: 2**31  # long after its half life: due
        subprocess.run(["mount", "-o", "remount,ro", directory], check=True)
        try:
            assert await authenticator.renewer.sweep() == 1
        finally:
            subprocess.run(["mount", "-o", "remount,rw", directory], check=True)
        assert open(path, "rb").read() == before, "the old ticket is kept"
        assert authenticator._issued[USER] is issued, "the record still says what the cache holds"
        assert authenticator.renewer._streaks[USER].failures == 1, "retried with backoff"
        assert REGISTRY.get_sample_value(*failures) == counted + 1
        assert f"renewal for {USER} failed (ccache)" in caplog.text
        assert "Read-only file system" in caplog.text
        assert sorted(os.listdir(directory)) == [f"krb5cc_{USER}"], "no temporary file left"
        server.active = False
        await authenticator.post_spawn_stop(user, server)
        assert os.listdir(directory) == []
        authenticator.ticket_backend.close()
