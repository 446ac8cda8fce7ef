"""Delegated credentials become the notebook's ticket (issue 16, item 2), against a real KDC.

- :func:`kerbauth.core.delegated.delegated_ccache`: a real python-gssapi
  initiator (a ``kinit -f`` TGT) and acceptor (an ``HTTP/localhost`` keytab)
  in this process; what the acceptor got delegated becomes the bytes of a
  FILE cache holding the client's forwarded TGT, and nothing stays behind.
- Which ticket each user gets (kerbauth.hub.password_tickets), decided per
  user from auth_state: the delegated TGT, the keytab, or a refusal saying
  what the browser must allow; the start-up rule of a hub whose tickets come
  only by delegation.
- Real hubs logged into with ``curl --negotiate --delegation always`` and
  requests-gssapi ``delegate=True``: on a hub without keytabs or password
  tickets (a short-ticket realm of its own), the servers' ``klist -f`` shows
  each user's forwarded TGT, a user who does not delegate is refused with
  what to allow, the hub renews the delegated TGT until renew-until and then
  sends the user to a login that brings a new one; on a fetch hub with
  keytabs, a non-delegating user gets the keytab's TGT beside a delegating
  one without a keytab.
"""

import base64
import os
import pwd
import subprocess
import tempfile
from types import SimpleNamespace

import gssapi
import pytest
from jupyterhub.auth import Authenticator
from traitlets.config import Config

from kerbauth import KerberosPAMAuthenticator, KerberosTickets
from kerbauth.core.ccache import parse_ccache, read_ccache
from kerbauth.core.delegated import delegated_ccache
from kerbauth.core.errors import ConfigError, TicketError
from kerbauth.hub.password_tickets import NoLoginTicket
from kerbauth.hub.tickets import AUTH_STATE_KEY
from support.edge import server_environment, wait_for
from support.fetch import default_cache, fetch_config
from support.realm import short_tickets_realm
from support.served import wait_for_ticket
from support.spnego import (
    ClientTicket,
    curl,
    hub_lines,
    local_url,
    negotiate_session,
    service_keytab,
)

USER = "nobody"  # a local account every Debian machine has: it owns the caches here
PASSWORD = "Delegate-Me-4-Tickets"


def tgt_flags(path):
    """The flags ``klist -f`` shows on the TGT of the cache at ``path`` (e.g. ``"FfRT"``)."""
    out = subprocess.run(["klist", "-f", path], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "krbtgt/" in line)
    return next(line.split("Flags:")[1].strip() for line in lines[at:] if "Flags:" in line)


def cache_flags(data):
    """:func:`tgt_flags` of cache bytes."""
    with tempfile.NamedTemporaryFile(prefix="kerbauth-test-cc-") as f:
        f.write(data)
        f.flush()
        return tgt_flags(f.name)


@pytest.fixture
def gss(krb5_env, spnego_keytab, tmp_path, monkeypatch):
    """A client with a forwardable TGT and the hub's HTTP/localhost acceptor, in-process.

    ``gss.exchange(delegate)``: one SPNEGO-style context (krb5 mech), the
    accepted ``(principal, delegated creds)``.
    """
    monkeypatch.setenv("KRB5RCACHEDIR", str(tmp_path))  # the acceptor's replay cache
    principal = f"{USER}@{krb5_env.realm}"
    krb5_env.run_kadminl(f"delprinc -force {principal}")
    krb5_env.addprinc(principal, PASSWORD)
    client_cache = tmp_path / "client.cc"
    subprocess.run(
        ["kinit", "-f", "-l", "1h", "-r", "2h", "-c", f"FILE:{client_cache}", principal],
        input=PASSWORD + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    initiator = gssapi.Credentials(usage="initiate", store={"ccache": f"FILE:{client_cache}"})
    acceptor = gssapi.Credentials(usage="accept", store={"keytab": spnego_keytab})
    service = gssapi.Name("HTTP@localhost", gssapi.NameType.hostbased_service)

    def exchange(delegate=True):
        flags = [gssapi.RequirementFlag.mutual_authentication]
        if delegate:
            flags.append(gssapi.RequirementFlag.delegate_to_peer)
        client = gssapi.SecurityContext(
            name=service, creds=initiator, usage="initiate", flags=flags
        )
        server = gssapi.SecurityContext(creds=acceptor, usage="accept")
        server.step(client.step())
        assert server.complete
        return str(server.initiator_name), server.delegated_creds

    return SimpleNamespace(exchange=exchange, principal=principal, realm=krb5_env)


def scratch_left():
    mine = f"kerbauth-{os.getpid()}-"
    return [name for name in os.listdir(tempfile.gettempdir()) if name.startswith(mine)]


def test_a_delegated_tgt_becomes_a_cache_of_the_accepted_principal(gss):
    principal, creds = gss.exchange(delegate=True)
    assert principal == gss.principal
    data = delegated_ccache(creds, principal)
    ticket = parse_ccache(data)
    assert ticket.principal == gss.principal  # its TGT, krbtgt/REALM@REALM
    assert ticket.renew_till > ticket.end, "renewable, as the client's TGT"
    assert "f" in cache_flags(data), "the forwarded TGT, not the client's own"
    assert scratch_left() == []  # the scratch directory went with the file


def test_no_delegation_or_another_principal_is_a_clear_error(gss):
    principal, creds = gss.exchange(delegate=False)
    assert creds is None
    with pytest.raises(TicketError, match="the client delegated no credentials"):
        delegated_ccache(creds, principal)
    _, creds = gss.exchange(delegate=True)
    other = f"someone-else@{gss.realm.realm}"
    with pytest.raises(TicketError, match=f"holds a ticket of {principal}, not of {other}"):
        delegated_ccache(creds, other)
    assert scratch_left() == []  # removed on the error too


# --- which ticket a user gets, per user ------------------------------------------------


class DelegatingAuthenticator(KerberosTickets, Authenticator):
    """Stands in for a SPNEGO login mode: the login brings the TGT it was given, if any."""

    def delegation_option(self):
        return "KerberosSPNEGO.keytab"

    async def authenticate(self, handler, data):
        model = {"name": data["username"], "auth_state": {}}
        if data.get("delegated"):
            model["auth_state"][AUTH_STATE_KEY] = base64.b64encode(data["delegated"]).decode()
        return model


class User(SimpleNamespace):
    async def get_auth_state(self):
        return self.auth_state

    async def save_auth_state(self, auth_state):
        self.auth_state = auth_state


def delegation_config(ccache_dir, **tickets):
    c = Config()
    c.KerberosTickets.ccache_dir = ccache_dir
    c.Authenticator.enable_auth_state = True
    c.Authenticator.allow_all = True
    for name, value in tickets.items():
        setattr(c.KerberosTickets, name, value)
    return c


async def log_in(authenticator, delegated=None):
    data = {"username": USER, **({"delegated": delegated} if delegated else {})}
    authenticated = await authenticator.get_authenticated_user(None, data)
    return User(name=USER, auth_state=authenticated["auth_state"], spawners={})


async def test_the_delegated_tgt_is_the_users_ticket_and_without_one_the_spawn_says_why(
    gss, ccache_dir
):
    authenticator = DelegatingAuthenticator(config=delegation_config(ccache_dir))
    authenticator.start()  # no keytab_template, no password_tickets: a valid config
    try:
        principal, creds = gss.exchange(delegate=True)
        delegated = delegated_ccache(creds, principal)
        user = await log_in(authenticator, delegated)
        spawner = SimpleNamespace(environment={})
        await authenticator.pre_spawn_start(user, spawner)
        cache = spawner.environment["KRB5CCNAME"].removeprefix("FILE:")
        assert open(cache, "rb").read() == delegated  # the delegated TGT itself
        assert os.lstat(cache).st_uid == pwd.getpwnam(USER).pw_uid
        assert await authenticator.refresh_user(user) is True
        # Renewed from the hub's copy (what a sweep runs when it is due), into their cache.
        authenticator._renew_password_ticket_sync(user)
        renewed, before = read_ccache(cache), parse_ccache(delegated)
        assert open(cache, "rb").read() != delegated
        assert (renewed.principal, renewed.renew_till) == (gss.principal, before.renew_till)
        assert authenticator._hub_tickets[USER] == open(cache, "rb").read()
        await authenticator.post_spawn_stop(user, spawner)

        # The same user logs in again without delegating: auth_state has no ticket now,
        # and the hub's copy of the old one is dropped, so the spawn is refused, saying
        # what the browser must allow.
        user = await log_in(authenticator)
        assert USER not in authenticator._hub_tickets
        with pytest.raises(TicketError) as info:
            await authenticator.pre_spawn_start(user, SimpleNamespace(environment={}))
        message = info.value.jupyterhub_message
        assert "AuthNegotiateDelegateAllowlist" in message
        assert "network.negotiate-auth.delegation-uris" in message
        assert "password" not in message  # no password tickets on this hub
        assert not os.path.exists(cache)
        # Not asked to log in again for it: the browser would only negotiate the same way.
        assert await authenticator.refresh_user(user) is True
    finally:
        authenticator.close()


async def test_with_a_keytab_a_login_without_delegation_gets_the_keytab_ticket(
    gss, ccache_dir, tmp_path
):
    keytabs = tmp_path / "keytabs"
    keytabs.mkdir()
    config = delegation_config(ccache_dir, keytab_template=str(keytabs / "{username}.keytab"))
    authenticator = DelegatingAuthenticator(config=config)
    try:
        principal, creds = gss.exchange(delegate=True)
        delegated = delegated_ccache(creds, principal)
        # A keytab of the same principal (a new key: the password above stops working,
        # the delegated TGT stays valid).
        gss.realm.extract_keytab(gss.principal, str(keytabs / f"{USER}.keytab"))
        os.chmod(keytabs / f"{USER}.keytab", 0o600)
        user = await log_in(authenticator)
        spawner = SimpleNamespace(environment={})
        await authenticator.pre_spawn_start(user, spawner)
        cache = spawner.environment["KRB5CCNAME"].removeprefix("FILE:")
        assert read_ccache(cache).principal == gss.principal
        assert "f" not in tgt_flags(cache), "the keytab's own TGT, not a forwarded one"
        # A delegating login on the same hub: that user's ticket is the delegated one,
        # written at once to the cache of their running server.
        user = await log_in(authenticator, delegated)
        assert open(cache, "rb").read() == delegated
        await authenticator.pre_spawn_start(user, spawner)
        assert "f" in tgt_flags(cache)
        await authenticator.post_spawn_stop(user, spawner)
    finally:
        authenticator.close()


def test_tickets_only_by_delegation_need_auth_state(ccache_dir, krb5_env, spnego_keytab):
    mode = KerberosPAMAuthenticator
    config = delegation_config(ccache_dir)
    config.KerberosSPNEGO.keytab = spnego_keytab
    mode(config=config).check_config()  # SPNEGO, no keytab_template, no password_tickets
    config.Authenticator.enable_auth_state = False
    with pytest.raises(ConfigError) as info:
        mode(config=config).check_config()
    assert "KerberosSPNEGO.keytab without KerberosTickets.keytab_template" in str(info.value)
    assert "requires Authenticator.enable_auth_state = True" in str(info.value)
    # SPNEGO off: the same options are the refusal of a hub that cannot get tickets.
    config.KerberosSPNEGO.keytab = ""
    with pytest.raises(ConfigError, match="keytab_template is not set"):
        mode(config=config).check_config()


def test_the_refusal_names_the_host_and_the_password_form_when_there_is_one():
    error = NoLoginTicket("no ticket", delegation=True, password_form=True, host="hub.example")
    message = error.jupyterhub_message
    assert "delegate your Kerberos credentials to hub.example" in message
    assert "log in again with your password" in message
    assert error.cause == "expired"


# --- a real hub: SPNEGO with delegation, curl and requests-gssapi ------------------------

LIFE, RENEWABLE = 10, 24  # seconds: the short realm's max_life and max_renewable_life
HUB = (
    'c.KerberosTickets.principal_template = "{username}@{realm}"\n'
    "c.Authenticator.enable_auth_state = True\n"
)
DELEGATION_ONLY = (
    HUB + 'c.KerberosTickets.keytab_template = ""\n'
    # Renewal as the short tickets need it; refresh_user at every request.
    "c.KerberosTickets.renew_margin = 20\n"
    "c.KerberosTickets.renew_interval = 2\n"
    "c.KerberosTickets.renew_max_backoff = 2\n"
    "c.Authenticator.auth_refresh_age = 1\n"
)
CRYPT_KEY = {"JUPYTERHUB_CRYPT_KEY": "cd" * 32}
HOME = "?next=%2Fhub%2Fhome"


def desktop_ticket(k5, account, directory, life="1h", renewable="2h"):
    """The TGT ``account``'s desktop holds (``kinit -f``: forwardable, and renewable);
    its principal, cache and the client's environment."""
    principal = f"{account.name}@{k5.realm}"
    if "Principal:" not in k5.run_kadminl(f"getprinc {principal}").decode():
        k5.addprinc(principal, PASSWORD)
    cache = os.path.join(directory, f"krb5cc_{account.name}")
    env = {"PATH": os.environ["PATH"], "KRB5_CONFIG": k5.env["KRB5_CONFIG"]}
    subprocess.run(
        ["kinit", "-f", "-l", life, "-r", renewable, "-c", f"FILE:{cache}", principal],
        input=PASSWORD + "\n",
        env=env,
        text=True,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return ClientTicket(principal, cache, {**env, "KRB5CCNAME": f"FILE:{cache}"})


def server_klist(hub, account):
    """``klist -f`` in the user's running server: as the user, with its environment."""
    env = server_environment(hub, account.name)
    done = subprocess.run(
        ["klist", "-f"],
        env=env,
        user=account.uid,
        group=account.gid,
        cwd=account.home,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return env["KRB5CCNAME"].removeprefix("FILE:"), done.stdout


def klist_flags(out):
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "krbtgt/" in line)
    return next(line.split("Flags:")[1].strip() for line in lines[at:] if "Flags:" in line)


def spnego_login(hub, ticket, jar, delegation="always"):
    """``curl --negotiate`` of the login page (``--delegation``), redirects not followed."""
    url = local_url(hub, f"/hub/login{HOME}")
    done = curl(url, ticket.env, delegation=delegation, follow=False, cookies=jar)
    assert done.status == 302 and done.header("Location") == ["/hub/home"], done
    return done


def requests_login(hub, ticket, delegate):
    with negotiate_session(ticket, mutual="REQUIRED", delegate=delegate) as session:
        response = session.get(local_url(hub, f"/hub/login{HOME}"), allow_redirects=False)
    assert response.status_code == 302, (response.status_code, response.text[-2000:])


def test_the_delegated_tgt_is_the_servers_ticket_renewed_until_a_new_login(
    edge_hub, make_user, spnego_rcache, tmp_path, monkeypatch
):
    with short_tickets_realm(LIFE, RENEWABLE) as k5:
        monkeypatch.setenv("KRB5_CONFIG", k5.env["KRB5_CONFIG"])  # requests-gssapi, in here
        keytab = service_keytab(k5, str(tmp_path))
        hub = edge_hub(
            DELEGATION_ONLY + hub_lines(keytab), realm=k5, env={**CRYPT_KEY, **spnego_rcache}
        )
        accounts = [make_user(groups=("hub-users",)) for _ in range(3)]
        by_curl, by_requests, not_delegating = accounts
        short = {"life": f"{LIFE}s", "renewable": f"{RENEWABLE}s"}
        tickets = {a.name: desktop_ticket(k5, a, str(tmp_path), **short) for a in accounts}
        jar = str(tmp_path / "cookies")
        spnego_login(hub, tickets[by_curl.name], jar)
        requests_login(hub, tickets[by_requests.name], delegate=True)
        spnego_login(hub, tickets[not_delegating.name], str(tmp_path / "jar3"), delegation=None)
        for account in (by_curl, by_requests):
            assert hub.request_server(account.name).status_code in (201, 202)

        # Without delegation, on a hub without keytabs or password tickets: refused,
        # saying what the browser must allow.
        refused = hub.request_server(not_delegating.name)
        if refused.status_code == 202:  # a slow hub: the refusal comes after the answer
            wait_for(lambda: hub.server(not_delegating.name) is None, 30, "the refusal")
            message = hub.log_text().split("spawn refused")[-1]
        else:
            assert refused.status_code == 500, refused.text
            message = refused.json()["message"]
        assert message.startswith("Your login brought no Kerberos ticket"), message
        assert "AuthNegotiateDelegateAllowlist" in message
        assert "network.negotiate-auth.delegation-uris" in message

        # Each delegating client's server holds that user's forwarded TGT (klist -f: f).
        for account in (by_curl, by_requests):
            name = account.name
            wait_for(lambda n=name: (hub.server(n) or {}).get("ready"), 90, f"{name}'s server")
            cache, out = server_klist(hub, account)
            assert f"Default principal: {tickets[account.name].principal}" in out, out
            assert "f" in klist_flags(out), out

        # Renewed by the hub while it can be (past the end of the TGT it was given)...
        cache, _ = server_klist(hub, by_curl)
        given = read_ccache(tickets[by_curl.name].ccache)  # the desktop's: what it forwarded
        wait_for(lambda: read_ccache(cache).end > given.end, 2 * LIFE, "a renewal")
        assert read_ccache(cache).renew_till == given.renew_till
        # ... and once it cannot, the next request asks for a new login.
        home = local_url(hub, "/hub/home")
        plain = {"PATH": os.environ["PATH"]}

        def asks_for_login():
            done = curl(home, plain, follow=False, cookies=jar)
            return done.status == 302 and done.header("Location")[0].startswith("/hub/login")

        wait_for(asks_for_login, RENEWABLE + 10, "a request that asks for a new login")
        # The browser negotiates again: the running server gets the new delegated TGT.
        renewed_until = read_ccache(cache).renew_till
        spnego_login(hub, desktop_ticket(k5, by_curl, str(tmp_path), **short), jar)
        assert read_ccache(cache).renew_till > renewed_until
        assert curl(home, plain, follow=False, cookies=jar).status == 200


def test_with_a_keytab_a_login_without_delegation_gets_the_keytab_ticket_on_a_fetch_hub(
    hub_factory,
    scoped_hubs,
    keytab_dir,
    krb5_env,
    pam_service,
    make_user,
    spnego_keytab,
    spnego_rcache,
    fetched_caches,
    tmp_path,
):
    """The same choice with the fetch delivery: each server fetches its user's ticket."""
    site = {"KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"]}  # a container's own krb5.conf
    extra = HUB + hub_lines(spnego_keytab) + f"c.Spawner.environment.update({site!r})\n"
    env = {**site, "JUPYTERHUB_PAM_SERVICE": pam_service(), **CRYPT_KEY, **spnego_rcache}
    hub = hub_factory(fetch_config(keytab_dir, extra), env=env)
    with_keytab, delegating = accounts = [make_user() for _ in range(2)]
    tickets = {a.name: desktop_ticket(krb5_env, a, str(tmp_path)) for a in accounts}
    # One user has a keytab (root's, in the hub's keytab directory; the key of their
    # password: -norandkey); the other has none, so only their delegated TGT can give
    # their server a ticket.
    keytab = os.path.join(keytab_dir, f"{with_keytab.name}.keytab")
    krb5_env.run_kadminl(f"ktadd -norandkey -k {keytab} {tickets[with_keytab.name].principal}")
    os.chmod(keytab, 0o600)
    spnego_login(hub, tickets[with_keytab.name], str(tmp_path / "cookies"), delegation=None)
    requests_login(hub, tickets[delegating.name], delegate=True)
    for account in accounts:
        fetched_caches.append(default_cache(account.name))
        assert hub.request_server(account.name).status_code in (201, 202)
    for account, forwarded in ((with_keytab, False), (delegating, True)):
        name, principal = account.name, tickets[account.name].principal
        wait_for(lambda n=name: (hub.server(n) or {}).get("ready"), 90, f"{name}'s server")
        path = server_environment(hub, name)["KRB5CCNAME"].removeprefix("FILE:")
        wait_for_ticket(path, principal)  # fetched by the server itself
        _, out = server_klist(hub, account)
        assert f"Default principal: {principal}" in out, out
        assert ("f" in klist_flags(out)) is forwarded, out  # the keytab's TGT is not forwarded
