"""SPNEGO (Negotiate) login against a real hub, a real realm and real clients.

The hub's realm (``SPNEGO.TEST``, this module's own) has ``HTTP/localhost`` in
the hub's keytab; a second realm (``FOREIGN.TEST``) trusts it, so that a
principal of a realm not in ``KerberosSPNEGO.realms`` can really present a
ticket for the hub. Clients: curl ``--negotiate -u :``, requests-gssapi, and
tokens made by hand with python-gssapi (replays, mutual authentication).
"""

import asyncio
import base64
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

import gssapi
import pytest
import requests
from traitlets.config import Config

from kerbauth.auth import spnego
from kerbauth.auth.spnego import SpnegoRefused, decode_token, username_of
from kerbauth.core.ccache import parse_ccache
from kerbauth.core.errors import ConfigError
from support.realm import start_realm
from support.spnego import (
    HOST,
    curl,
    form_login,
    hub_lines,
    local_url,
    negotiate,
    negotiate_session,
    service_keytab,
)

HOME, FOREIGN = "SPNEGO.TEST", "FOREIGN.TEST"
PRINCIPAL = 'c.KerberosTickets.principal_template = "{username}@{realm}"\n'


@dataclass
class Realms:
    home: object
    foreign: object
    keytab: str
    foreign_conf: str  # a krb5.conf for FOREIGN.TEST's clients that reaches the hub's realm


def _cross_realm_conf(path, home, foreign):
    with open(path, "w") as f:
        f.write(
            f"""[libdefaults]
    default_realm = {FOREIGN}
    dns_lookup_realm = false
    dns_lookup_kdc = false
    rdns = false
    dns_canonicalize_hostname = false
[realms]
    {FOREIGN} = {{
        kdc = 127.0.0.1:{foreign.portbase}
    }}
    {HOME} = {{
        kdc = 127.0.0.1:{home.portbase}
    }}
[domain_realm]
    {HOST} = {HOME}
"""
        )
    os.chmod(path, 0o644)
    return path


@pytest.fixture(scope="module")
def realms():
    directory = tempfile.mkdtemp(prefix="kerbauth-spnego-realms-")
    started = []
    try:
        home = start_realm(HOME)
        started.append(home)
        foreign = start_realm(FOREIGN)
        started.append(foreign)
        # FOREIGN.TEST's users may get tickets for HOME's services: one key, both KDCs.
        trust, password = f"krbtgt/{HOME}@{FOREIGN}", secrets.token_urlsafe(24)
        home.addprinc(trust, password)
        foreign.addprinc(trust, password)
        keytab = service_keytab(home, directory)
        conf = _cross_realm_conf(os.path.join(directory, "foreign-krb5.conf"), home, foreign)
        yield Realms(home, foreign, keytab, conf)
    finally:
        for k5 in started:
            k5.stop()
        shutil.rmtree(directory, ignore_errors=True)


def refused(response, status, words):
    """``response`` is the login form with status ``status`` and a message with ``words``."""
    assert response.status_code == status, (response.status_code, response.text[-2000:])
    assert 'name="password"' in response.text
    assert words in response.text, response.text[-3000:]
    assert "WWW-Authenticate" not in response.headers


def log_says(hub, *words):
    log = hub.log_text()
    for line in log.splitlines():
        if "SPNEGO" in line and all(w in line for w in words):
            return line
    raise AssertionError(f"no SPNEGO log line with {words}:\n{log[-4000:]}")


def accept_reply(context, response):
    """Step the client's ``context`` with the hub's mutual-authentication token."""
    scheme, _, value = response.headers["WWW-Authenticate"].partition(" ")
    assert scheme == "Negotiate" and value, response.headers
    context.step(base64.b64decode(value))
    return context.complete


def hand_made_token(ticket):
    """A client context and its first token (base64), as a browser makes them."""
    context = gssapi.SecurityContext(
        name=gssapi.Name(f"HTTP@{HOST}", gssapi.NameType.hostbased_service),
        usage="initiate",
        creds=ticket.credentials(),
        mech=gssapi.Mechanism.from_sasl_name("SPNEGO"),
        flags=gssapi.RequirementFlag.mutual_authentication,
    )
    return context, base64.b64encode(context.step()).decode("ascii")


# --- the rule, and the token's first checks (no hub) -----------------------------------------


@pytest.mark.parametrize(
    ("principal", "username", "why"),
    [
        ("alice@SPNEGO.TEST", "alice", None),
        ("Alice.B-2@AD.TEST", "Alice.B-2", None),  # normalised later, as every username
        ("alice/admin@SPNEGO.TEST", None, "has an instance"),
        ("HTTP/localhost@SPNEGO.TEST", None, "has an instance"),
        ("alice@FOREIGN.TEST", None, "is not in KerberosSPNEGO.realms"),
        ("alice@spnego.test", None, "is not in KerberosSPNEGO.realms"),  # case-sensitive
        ("alice", None, "unusable principal"),
        ("al\\@ice@SPNEGO.TEST", None, "unusable principal"),
        ("-alice@SPNEGO.TEST", None, "username"),
        ("@SPNEGO.TEST", None, "empty username"),
    ],
)
def test_principal_to_username(principal, username, why):
    realms = ["SPNEGO.TEST", "AD.TEST"]
    if username is not None:
        assert username_of(principal, realms) == username
        return
    with pytest.raises(SpnegoRefused) as refusal:
        username_of(principal, realms)
    assert refusal.value.status == 403 and why in refusal.value.reason
    assert "cannot log in here" in refusal.value.message


@pytest.mark.parametrize("value", ["", "   ", "!!not base64!!", "YWJj=ZGVm", "A" * 70000])
def test_a_malformed_token_is_refused_before_any_gssapi(value):
    with pytest.raises(SpnegoRefused) as refusal:
        decode_token(value)
    assert refusal.value.status == 400


def test_the_accept_in_process(realms, client_tickets, monkeypatch, tmp_path):
    # accept_token against the real keytab, as the SPNEGO threads call it.
    home = realms.home
    monkeypatch.setenv("KRB5_CONFIG", home.env["KRB5_CONFIG"])
    monkeypatch.setenv("KRB5RCACHEDIR", str(tmp_path))
    log = logging.getLogger("test-spnego")
    name = f"carla{secrets.token_hex(3)}"
    ticket = client_tickets(home, name)

    def accept(principal="", host=HOST, delegate=False):
        context = gssapi.SecurityContext(
            name=gssapi.Name(f"HTTP@{HOST}", gssapi.NameType.hostbased_service),
            usage="initiate",
            creds=ticket.credentials(),
            mech=gssapi.Mechanism.from_sasl_name("SPNEGO"),
            flags=gssapi.RequirementFlag.mutual_authentication
            | (gssapi.RequirementFlag.delegate_to_peer if delegate else 0),
        )
        first = context.step()
        done = spnego.accept_token(first, realms.keytab, principal, host, [HOME], log)
        return context, done

    # Default: HTTP/<the request's host>; the reply completes the client's context.
    context, done = accept()
    assert (done.principal, done.username) == (f"{name}@{HOME}", name)
    assert done.delegated is None
    context.step(done.token)
    assert context.complete
    # Pinned: the named principal, whatever the host; another principal is refused.
    assert accept(principal=f"HTTP/{HOST}@{HOME}", host="elsewhere")[1].username == name
    with pytest.raises(SpnegoRefused) as refusal:
        accept(principal=f"HTTP/other@{HOME}")
    assert refusal.value.status == 401 and "no key for HTTP/other" in refusal.value.reason
    # A Host the keytab has no key for, and one that is not a host name.
    with pytest.raises(SpnegoRefused) as refusal:
        accept(host="other.example")
    assert refusal.value.status == 401 and "no key for HTTP@other.example" in refusal.value.reason
    with pytest.raises(SpnegoRefused) as refusal:
        accept(host="bad host")
    assert refusal.value.status == 400
    # Delegation asked by the client: the TGT comes back as a FILE cache of its principal.
    _, done = accept(delegate=True)
    assert parse_ccache(done.delegated).principal == f"{name}@{HOME}"


def test_accepts_run_on_a_small_bound_and_within_the_ticket_timeout(monkeypatch):
    # The accept itself replaced by a slow one that counts how many run at once.
    lock, running, peak = threading.Lock(), [0], [0]

    def slow_accept(token, *args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(float(token))
        finally:
            with lock:
                running[0] -= 1
        raise SpnegoRefused(401, "not accepted", "a forged token")

    monkeypatch.setattr(spnego, "accept_token", slow_accept)

    class Hub(spnego.KerberosSPNEGO):
        timeout = 1.0  # KerberosTickets.timeout

    hub = Hub(keytab="/nonexistent", spnego_concurrency=2)

    async def burst(seconds, count):
        calls = [hub.spnego_accept(seconds, "localhost") for _ in range(count)]
        return await asyncio.gather(*calls, return_exceptions=True)

    async def bursts():  # one event loop, as in the hub
        return await burst(b"0.1", 8), await burst(b"0.4", 8)

    quick, slow = asyncio.run(bursts())
    assert [a.status for a in quick] == [401] * 8 and peak[0] == 2
    # Waiting for a turn counts against the timeout: a queue that cannot clear in
    # time gets 503, the cause logged, not a hung request.
    answers = slow
    statuses = sorted(a.status for a in answers)
    assert statuses[0] == 401 and statuses[-1] == 503 and peak[0] == 2
    assert "KerberosTickets.timeout" in next(a.reason for a in answers if a.status == 503)


# --- PAM mode: one hub for the logins and the refusals ---------------------------------------


def test_pam_mode_negotiate_form_and_refusals(
    edge_hub, realms, make_user, client_tickets, spnego_rcache, tmp_path, monkeypatch
):
    home = realms.home
    hub = edge_hub(PRINCIPAL + hub_lines(realms.keytab), realm=home, env=spnego_rcache)
    member = make_user(groups=("hub-users",))
    login = local_url(hub, "/hub/login?next=%2Fhub%2Fhome")

    # No token: 401, the challenge, and the PAM form in the body.
    page = requests.get(login, timeout=60)
    assert page.status_code == 401
    assert page.headers["WWW-Authenticate"] == "Negotiate"
    assert 'name="password"' in page.text and 'name="username"' in page.text

    # curl --negotiate logs in and reaches the user's page, with ?next= kept.
    ticket = client_tickets(home, member.name)
    jar = str(tmp_path / "cookies")
    done = curl(login, ticket.env, cookies=jar)
    assert done.status == 200, (done.headers, done.body[-2000:])
    # (curl leaves out the 401 it answered with its token: the blocks are 302, 200.)
    assert done.header("Location", 0) == ["/hub/home"]
    (mutual,) = done.header("WWW-Authenticate", 0)
    assert mutual.startswith("Negotiate ") and len(mutual) > 40
    assert f'<span class="me-1">{member.name}</span>' in done.body  # the home page, theirs
    log_says(hub, f"{member.name}@{HOME} logged in with SPNEGO as {member.name}")
    # The cookie is a real login: the next page needs no Negotiate.
    again = curl(local_url(hub, "/hub/home"), {"PATH": os.environ["PATH"]}, cookies=jar)
    assert again.status == 200 and member.name in again.body

    # requests-gssapi with mutual authentication REQUIRED verifies the hub's token on
    # the login's answer (it raises MutualAuthenticationError when that answer lacks
    # it or it does not verify); the session's cookie then opens the user's page.
    with negotiate_session(ticket, mutual="REQUIRED") as session:
        response = session.get(login, allow_redirects=False, timeout=60)
        assert response.status_code == 302 and response.headers["Location"] == "/hub/home"
        # The client's context took the hub's token and is complete (mutually authenticated).
        assert session.auth.context[HOST].complete
        session.auth = None  # /hub/home is not a Negotiate page: the cookie is the login
        home_page = session.get(local_url(hub, "/hub/home"), timeout=60)
    assert home_page.status_code == 200 and member.name in home_page.text

    # The password form still logs in (a browser that cannot negotiate).
    _, posted = form_login(local_url(hub), member.name, member.password)
    assert posted.status_code == 302, posted.text[-2000:]

    # A token by hand: accepted once (the mutual token completes the client's
    # context), then refused as a replay.
    monkeypatch.setenv("KRB5_CONFIG", home.env["KRB5_CONFIG"])
    context, value = hand_made_token(ticket)
    first = negotiate(login, value)
    assert first.status_code == 302 and first.headers["Location"] == "/hub/home"
    assert accept_reply(context, first)
    refused(negotiate(login, value), 401, "Your Kerberos ticket was not accepted")
    log_says(hub, "refused (401)", "replay")

    # Random bytes (valid base64) and garbage.
    forged = base64.b64encode(os.urandom(96)).decode()
    refused(negotiate(login, forged), 401, "Your Kerberos ticket was not accepted")
    log_says(hub, "refused (401): token refused")
    refused(negotiate(login, "%%%garbage%%%"), 400, "not valid")
    log_says(hub, "refused (400): not base64")

    # alice/admin@REALM is not alice.
    admin = client_tickets(home, f"{member.name}/admin")
    done = curl(login, admin.env)
    assert done.status == 403 and "has an instance" in done.body
    assert 'name="password"' in done.body
    log_says(hub, "refused (403)", f"{member.name}/admin@{HOME} has an instance")

    # A principal of a realm not in KerberosSPNEGO.realms, with a ticket the hub can read.
    stranger = client_tickets(realms.foreign, member.name)
    done = curl(login, {**stranger.env, "KRB5_CONFIG": realms.foreign_conf})
    assert done.status == 403, (done.headers, done.body[-2000:])
    assert f"realm {FOREIGN} cannot log in here" in done.body
    log_says(hub, "refused (403)", f"realm '{FOREIGN}' is not in KerberosSPNEGO.realms")

    # Accepted principals the mode refuses: no local account; not in allowed_groups.
    nobody = client_tickets(home, f"kbt-nobody{secrets.token_hex(3)}")
    done = curl(login, nobody.env)
    assert done.status == 403 and "There is no account" in done.body
    log_says(hub, "refused (403)", "has no local account")
    outsider = make_user()
    done = curl(login, client_tickets(home, outsider.name).env)
    assert done.status == 403 and "is not allowed on this hub" in done.body
    log_says(hub, outsider.name, "not allowed")

    # PAM's account stack still runs (check_account): an expired account is refused.
    expired = make_user(groups=("hub-users",))
    subprocess.run(["chage", "-E", "0", expired.name], check=True)
    done = curl(login, client_tickets(home, expired.name).env)
    assert done.status == 403 and "its account check failed" in done.body
    log_says(hub, "refused (403)", f"refused the account of {expired.name}")

    users = {u["name"] for u in hub.api("GET", "/users").json()}
    assert member.name in users and outsider.name not in users and expired.name not in users
    assert f"{member.name}/admin" not in users and nobody.principal.split("@")[0] not in users


def test_spnego_off_leaves_the_login_page_as_it_was(edge_hub, realms, spnego_rcache):
    hub = edge_hub(PRINCIPAL, realm=realms.home, env=spnego_rcache)
    page = requests.get(local_url(hub), timeout=60)
    assert page.status_code == 200 and "WWW-Authenticate" not in page.headers
    assert 'name="password"' in page.text
    # A client that negotiates anyway gets the form, nothing else.
    sent = requests.get(local_url(hub), headers={"Authorization": "Negotiate YWJj"}, timeout=60)
    assert sent.status_code == 200 and "WWW-Authenticate" not in sent.headers


# --- LDAP mode --------------------------------------------------------------------------------


def test_start_up_refuses_a_keytab_others_can_read_and_no_replay_cache(tmp_path, monkeypatch):
    keytab = tmp_path / "http.keytab"
    keytab.write_bytes(b"\x05\x02")
    keytab.chmod(0o640)
    monkeypatch.delenv("KRB5RCACHENAME", raising=False)
    monkeypatch.delenv("KRB5RCACHETYPE", raising=False)
    monkeypatch.setenv("KRB5RCACHEDIR", str(tmp_path))
    hub = spnego.KerberosSPNEGO(keytab=str(keytab), realms=[HOME])
    hub.check_spnego_config()  # 0640, a replay cache directory: fine
    keytab.chmod(0o644)
    with pytest.raises(ConfigError, match="KerberosSPNEGO.keytab .* others cannot read"):
        hub.check_spnego_config()
    keytab.chmod(0o600)
    monkeypatch.setenv("KRB5RCACHEDIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="replay cache directory .*KRB5RCACHEDIR"):
        hub.check_spnego_config()
    monkeypatch.setenv("KRB5RCACHEDIR", str(tmp_path))
    with pytest.raises(ConfigError, match="KerberosSPNEGO.realms is empty"):
        spnego.KerberosSPNEGO(keytab=str(keytab)).check_spnego_config()


def test_ldap_mode_refuses_spnego_without_a_search_account(realms, tmp_path):
    from kerbauth import KerberosLDAPAuthenticator

    config = Config()
    config.KerberosLDAPAuthenticator.server_address = ["127.0.0.1"]
    config.KerberosLDAPAuthenticator.bind_dn_template = ["uid={username},ou=people,dc=x"]
    config.KerberosLDAPAuthenticator.tls_strategy = "insecure"
    config.KerberosTickets.realm = HOME
    config.KerberosSPNEGO.keytab = realms.keytab
    with pytest.raises(ConfigError) as refusal:
        KerberosLDAPAuthenticator(config=config).check_spnego_config()
    assert "KerberosSPNEGO.keytab" in str(refusal.value)
    assert "KerberosLDAPAuthenticator.search_bind_dn" in str(refusal.value)


LDAP_EXAMPLE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "examples",
    "ldap",
    "jupyterhub_config.py",
)


def test_ldap_mode_reads_the_entry_with_the_search_account(
    hub_factory, slapd, realms, client_tickets, spnego_rcache, ccache_dir, tmp_path
):
    home = realms.home
    with open(LDAP_EXAMPLE) as f:
        config = f.read()
    config += f"""
c.KerberosTickets.ccache_dir = {ccache_dir!r}
c.KerberosLDAPAuthenticator.search_bind_dn = {slapd.service_dn!r}
c.KerberosLDAPAuthenticator.search_bind_password = {slapd.service_password!r}
c.Authenticator.enable_auth_state = True
# lena is in hub-users, but this filter (which a password login must pass too) refuses her.
c.KerberosLDAPAuthenticator.user_search_base = {slapd.people_dn!r}
c.KerberosLDAPAuthenticator.login_search_filter = "(&(uid={{username}})(!(uid=lena)))"
{hub_lines(realms.keytab)}"""
    env = {
        "LDAP_SERVERS": f"127.0.0.1:{slapd.ldap_port}",
        "LDAP_CA_FILE": slapd.ca_file,
        "LDAP_BASE_DN": slapd.base_dn,
        "KEYTAB_DIR": str(tmp_path),
        "KERBEROS_REALM": home.realm,
        "KRB5_CONFIG": home.env["KRB5_CONFIG"],
        "JUPYTERHUB_CRYPT_KEY": "cd" * 32,
        **spnego_rcache,
    }
    hub = hub_factory(config, env=env)
    login = local_url(hub, "/hub/login?next=%2Fhub%2Fhome")

    page = requests.get(login, timeout=60)
    assert page.status_code == 401 and page.headers["WWW-Authenticate"] == "Negotiate"
    assert 'name="password"' in page.text

    # alice (hub-users, hub-admins) logs in without a password: her entry and groups
    # come from the search account, so admin_groups and auth_state work as for a bind.
    done = curl(login, client_tickets(home, "alice").env)
    assert done.status == 200, (done.headers, done.body[-2000:])
    assert '<span class="me-1">alice</span>' in done.body
    model = hub.api("GET", "/users/alice").json()
    assert model["admin"] is True
    assert model["auth_state"]["ldap_dn"] == f"uid=alice,{slapd.people_dn}"
    assert "kerberos_ccache" not in model["auth_state"]  # no delegation asked
    log_says(hub, f"alice@{home.realm} logged in with SPNEGO as alice")

    # carol's entry exists but she is in no allowed group; nobody has no entry.
    done = curl(login, client_tickets(home, "carol").env)
    assert done.status == 403 and "is not allowed on this hub" in done.body
    done = curl(login, client_tickets(home, f"nobody{secrets.token_hex(3)}").env)
    assert done.status == 403 and "There is no account" in done.body
    log_says(hub, "refused (403)", "the directory has no entry for nobody")
    done = curl(login, client_tickets(home, "lena").env)
    assert done.status == 403 and "There is no account" in done.body
    assert "login_search_filter (&(uid=lena)(!(uid=lena))) found no entry" in hub.log_text()

    # The form still logs in with the directory password.
    _, posted = form_login(local_url(hub), "bob", slapd.people["bob"].password)
    assert posted.status_code == 302, posted.text[-2000:]
    assert {u["name"] for u in hub.api("GET", "/users").json()} >= {"alice", "bob"}
