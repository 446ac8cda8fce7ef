"""The kerberos-kdc login mode: passwords checked by the KDC, its answer verified.

Real hubs logged into over HTTP, the session realm with a real ``host/``
service keytab, a second KDC of the same realm name standing in for a spoofed
one, real local accounts and spawned servers whose ``klist`` shows the login's
TGT.
"""

import asyncio
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from types import SimpleNamespace

import pytest
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosKDCAuthenticator
from kerbauth.core.errors import ConfigError
from support.edge import server_environment
from support.fetch import default_cache
from support.realm import add_principal, start_realm
from support.served import wait_for_ticket

CRYPT_KEY = "cd" * 32


@pytest.fixture
def private_dir():
    """A directory only root can enter (keytabs, the hub's replay cache), removed after."""
    path = tempfile.mkdtemp(prefix="kerbauth-kdc-")
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def service_keytab(krb5_env, private_dir):
    """``(principal, keytab)``: a host principal of the session realm and the hub's keytab."""
    name = f"host/kdc-{secrets.token_hex(4)}.kerbauth.test"
    keytab = os.path.join(private_dir, "hub.keytab")
    principal = add_principal(krb5_env, name, keytab=keytab)
    try:
        yield principal, keytab
    finally:
        krb5_env.run_kadminl(f"delprinc -force {principal}")


DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def docs_config():
    """The working configuration of docs/kerberos.md, as it is written there."""
    with open(os.path.join(DOCS, "kerberos.md")) as f:
        text = f.read()
    match = re.search(r"## A working configuration\n.*?```python\n(.*?)```", text, re.DOTALL)
    assert match, "docs/kerberos.md lost its working configuration"
    return match.group(1)


def kdc_config(ccache_dir, principal, keytab, extra=""):
    """docs/kerberos.md's configuration, with the test's paths, realm and principal."""
    return f"""{docs_config()}
# --- the test's own (tests/test_kdc_mode.py) ---
c.KerberosTickets.realm = {principal.rpartition("@")[2]!r}
c.KerberosTickets.ccache_dir = {ccache_dir!r}
c.KerberosKDCAuthenticator.verify_keytab = {keytab!r}
c.KerberosKDCAuthenticator.verify_principal = {principal!r}
{extra}
"""


def hub_env(realm, private_dir):
    return {
        "KRB5_CONFIG": realm.env["KRB5_CONFIG"],
        "JUPYTERHUB_CRYPT_KEY": CRYPT_KEY,
        "KRB5RCACHEDIR": private_dir,
    }


def as_requests(realm, principal):
    """The AS requests for ``principal`` in the KDC's log so far."""
    with open(os.path.join(realm.tmpdir, "kdc.log"), errors="replace") as f:
        return [line for line in f if "AS_REQ" in line and f" {principal} for krbtgt/" in line]


def issued(realm, principal):
    """The TGTs the KDC issued to ``principal`` so far (its log's AS_REQ ... ISSUE lines)."""
    return [line for line in as_requests(realm, principal) if ": ISSUE: " in line]


def test_login_spawn_and_refusals(
    hub_factory, krb5_env, ccache_dir, service_keytab, private_dir, make_user
):
    principal_svc, keytab = service_keytab
    account = make_user()
    principal = f"{account.name}@{krb5_env.realm}"
    kerberos_password = secrets.token_urlsafe(12)  # the KDC's, not the local account's
    krb5_env.addprinc(principal, kerberos_password)
    try:
        hub = hub_factory(
            kdc_config(ccache_dir, principal_svc, keytab), env=hub_env(krb5_env, private_dir)
        )
        assert f"kerberos-kdc logins verified with the key of {principal_svc}" in hub.log_text()

        # An empty password never reaches the KDC; a wrong one does, and both are refused.
        before = len(as_requests(krb5_env, principal))
        for password in ("", "   "):
            response = hub.login(account.name, password)
            assert response.status_code == 403, response.text
            assert "Invalid username or password" in response.text
        assert len(as_requests(krb5_env, principal)) == before
        assert "empty password (the KDC was not asked)" in hub.log_text()
        response = hub.login(account.name, "not-" + kerberos_password)
        assert response.status_code == 403
        assert "Invalid username or password" in response.text
        assert len(as_requests(krb5_env, principal)) > before, "the KDC checked it"
        assert f"{account.name}@127.0.0.1 refused (wrong password)" in hub.log_text()
        # The local password is not the Kerberos one: PAM is not asked.
        assert hub.login(account.name, account.password).status_code == 403

        # A name the KDC does not know: the same refusal, the cause in the log.
        stranger = f"kbt-{secrets.token_hex(4)}"
        response = hub.login(stranger, "Whatever-1")
        assert response.status_code == 403
        assert "Invalid username or password" in response.text
        assert f"{stranger}@127.0.0.1 refused (unknown principal)" in hub.log_text()

        # The right password: logged in, and the server's ticket is the login's TGT
        # (there is no keytab anywhere for this user). The KDC needs no preauth here,
        # so it answered the wrong passwords too (the client could not decrypt them).
        before = len(issued(krb5_env, principal))
        response = hub.login(account.name, kerberos_password)
        assert response.status_code == 302, response.text
        assert f"{account.name} logged in with the KDC (verified)" in hub.log_text()
        tgts = issued(krb5_env, principal)[before:]
        assert len(tgts) == 1, f"one AS exchange: the login's TGT is kept: {tgts}"
        hub.start_server(account.name)
        env = server_environment(hub, account.name)
        cache = env["KRB5CCNAME"].removeprefix("FILE:")
        ticket = wait_for_ticket(cache, principal)
        assert ticket.renew_till > ticket.end, "a renewable TGT (renew_lifetime)"
        assert not [n for n in os.listdir(account.home) if n.endswith(".keytab")]
        st = os.lstat(cache)
        assert (st.st_uid, st.st_mode & 0o777) == (account.uid, 0o600)
        klist = shutil.which("klist")
        shown = _run_as(account, env, [klist])
        assert shown.returncode == 0, shown.stderr
        assert f"Default principal: {principal}" in shown.stdout
        assert f"krbtgt/{krb5_env.realm}@{krb5_env.realm}" in shown.stdout
        assert "renew until" in shown.stdout
        state = hub.api("GET", f"/users/{account.name}").json()["auth_state"]
        assert state["kerberos_ccache"], "the login's TGT is in auth_state"
        assert kerberos_password not in hub.log_text()

        # The keytab is read at every login: one that lost the service key (replaced
        # after the start-up check) refuses the login, it never skips the check.
        stray = os.path.join(private_dir, "stray.keytab")
        add_principal(krb5_env, f"host/stray-{secrets.token_hex(4)}.kerbauth.test", keytab=stray)
        os.replace(stray, keytab)
        response = hub.login(account.name, kerberos_password)
        assert response.status_code == 503, response.text
        assert "No key table entry found" in hub.log_text()
    finally:
        krb5_env.run_kadminl(f"delprinc -force {principal}")


def test_the_fetch_delivery_gets_the_logins_ticket(
    hub_factory,
    scoped_hubs,
    fetched_caches,
    krb5_env,
    ccache_dir,
    service_keytab,
    private_dir,
    make_user,
):
    principal_svc, keytab = service_keytab
    account = make_user()
    principal = f"{account.name}@{krb5_env.realm}"
    kerberos_password = secrets.token_urlsafe(12)
    krb5_env.addprinc(principal, kerberos_password)
    try:
        site = {"KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"]}  # the image's own, in a container
        extra = f'c.KerberosTickets.delivery = "fetch"\nc.Spawner.environment.update({site!r})'
        hub = hub_factory(
            kdc_config("/nonexistent/kerbauth", principal_svc, keytab, extra),
            env=hub_env(krb5_env, private_dir),
        )
        response = hub.login(account.name, kerberos_password)
        assert response.status_code == 302, response.text
        assert len(issued(krb5_env, principal)) == 1, "one AS exchange: the login's TGT is kept"
        fetched_caches.append(default_cache(account.name))
        hub.start_server(account.name)
        env = server_environment(hub, account.name)
        assert env["KERBAUTH_TICKET_URL"]
        ticket = wait_for_ticket(env["KRB5CCNAME"].removeprefix("FILE:"), principal)
        assert ticket.renew_till > ticket.end
        shown = _run_as(account, env, [shutil.which("klist")])
        assert f"Default principal: {principal}" in shown.stdout, shown.stderr
        assert not os.path.exists(os.path.join(ccache_dir, f"krb5cc_{account.name}"))
    finally:
        krb5_env.run_kadminl(f"delprinc -force {principal}")


def _run_as(account, env, argv):
    return subprocess.run(
        argv,
        env=env,
        user=account.uid,
        group=account.gid,
        extra_groups=[],
        cwd=account.home,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_spoofed_kdc_cannot_log_anyone_in_and_a_kdc_down_is_told(
    hub_factory, ccache_dir, service_keytab, private_dir
):
    principal_svc, keytab = service_keytab
    # The attacker's KDC: the same realm name, keys of its own, the user with a
    # password of its choosing, and even the hub's service principal (another key).
    spoof = start_realm()
    try:
        name = f"kbt-{secrets.token_hex(4)}"
        principal = f"{name}@{spoof.realm}"
        spoof.addprinc(principal, "Attackers-Choice-1")
        spoof.addprinc(principal_svc)
        hub = hub_factory(
            kdc_config(ccache_dir, principal_svc, keytab), env=hub_env(spoof, private_dir)
        )
        response = hub.login(name, "Attackers-Choice-1")
        assert response.status_code == 503, response.text
        assert "answer could not be verified" in response.text
        log = hub.log_text()
        assert (
            f"kerberos-kdc login of {name}@127.0.0.1 refused: the KDC could not be verified" in log
        )
        assert "logged in with the KDC" not in log
        assert hub.api("GET", f"/users/{name}").status_code == 404, "no such hub user"
        # The AS exchange itself went through (the TGT was good enough to ask the
        # spoofed KDC for the service ticket): only the verification stopped it.
        with open(os.path.join(spoof.tmpdir, "kdc.log"), errors="replace") as f:
            asked = [
                line
                for line in f
                if "TGS_REQ" in line and ": ISSUE: " in line and f"for {principal_svc}" in line
            ]
        assert asked, "the spoofed KDC issued the service ticket"

        # A KDC that is down: refused at once, saying so.
        spoof.stop_kdc()
        response = hub.login(name, "Attackers-Choice-1")
        assert response.status_code == 503, response.text
        assert "could not be reached" in response.text
        assert f"{name}@127.0.0.1 failed (kdc_unreachable)" in hub.log_text()
    finally:
        spoof.stop()


def test_a_kdc_that_does_not_answer_costs_the_timeout(
    hub_factory, krb5_env, ccache_dir, service_keytab, private_dir
):
    principal_svc, keytab = service_keytab
    # krb5.conf naming a KDC that never answers: a UDP and a TCP socket that read nothing.
    silent_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        silent_udp.bind(("127.0.0.1", 0))
        port = silent_udp.getsockname()[1]
        silent_tcp.bind(("127.0.0.1", port))
        silent_tcp.listen()
        with open(krb5_env.env["KRB5_CONFIG"]) as f:
            text = f.read()
        conf = os.path.join(private_dir, "krb5.conf")
        with open(conf, "w") as f:
            f.write(text.replace(f"127.0.0.1:{krb5_env.portbase}", f"127.0.0.1:{port}"))
        assert f"127.0.0.1:{krb5_env.portbase}" in text
        env = {**hub_env(krb5_env, private_dir), "KRB5_CONFIG": conf}
        extra = "c.KerberosTickets.timeout = 2"
        hub = hub_factory(kdc_config(ccache_dir, principal_svc, keytab, extra), env=env)
        started = time.monotonic()
        response = hub.login(f"kbt-{secrets.token_hex(4)}", "Some-Password-1")
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert "did not answer in time" in response.text
        assert 2 <= took < 10, took
        assert "failed (timeout): " in hub.log_text()
        assert hub.health().status_code == 200
    finally:
        silent_udp.close()
        silent_tcp.close()


def test_a_keytab_without_the_service_key_stops_the_hub(
    hub_factory, krb5_env, ccache_dir, service_keytab, private_dir
):
    _, keytab = service_keytab
    other = f"host/not-in-keytab-{secrets.token_hex(4)}.kerbauth.test@{krb5_env.realm}"
    with pytest.raises(AssertionError, match="the hub exited") as info:
        hub_factory(kdc_config(ccache_dir, other, keytab), env=hub_env(krb5_env, private_dir))
    assert "KerberosKDCAuthenticator.verify_keytab" in str(info.value)
    assert f"cannot verify the KDC's answers as {other}" in str(info.value)
    assert "No key table entry found" in str(info.value)


def _config(ccache_dir, **options):
    c = Config()
    c.KerberosTickets.ccache_dir = ccache_dir
    for key, value in options.items():
        section, _, name = key.partition("__")
        setattr(getattr(c, section), name, value)
    return c


@pytest.mark.parametrize(
    ("label", "options", "message"),
    [
        (
            "password tickets off",
            {"KerberosTickets__password_tickets": False},
            "KerberosKDCAuthenticator.password_tickets cannot be False",
        ),
        (
            "a keytab template",
            {"KerberosTickets__keytab_template": "/home/{username}/k.keytab"},
            "KerberosTickets.keytab_template is set, but the kerberos-kdc mode",
        ),
        (
            "the kinit backend",
            {"KerberosTickets__backend": "kinit"},
            r"needs the krb5 backend .* pip install kerbauth\[krb5\]",
        ),
        (
            "no auth_state",
            {"Authenticator__enable_auth_state": False},
            "requires Authenticator.enable_auth_state = True",
        ),
        ("a missing keytab", {"verify_keytab": "missing"}, "missing.keytab: does not exist"),
        ("a keytab others read", {"verify_keytab": "0644"}, "is mode 0644"),
        ("a symlink to the keytab", {"verify_keytab": "link"}, "is a symbolic link"),
        ("another group reads it", {"verify_keytab": "group"}, "is mode 0640, group 65533"),
        ("another principal", {"verify_principal": "other"}, "No key table entry found"),
    ],
)
def test_start_up_refusals(label, options, message, ccache_dir, service_keytab, private_dir):
    principal, keytab = service_keytab
    shown = {
        "missing": os.path.join(private_dir, "missing.keytab"),
        "0644": os.path.join(private_dir, "open.keytab"),
        "link": os.path.join(private_dir, "link.keytab"),
        "group": os.path.join(private_dir, "group.keytab"),
        "other": principal.replace("host/", "host/other-"),
    }
    shutil.copy(keytab, shown["0644"])
    os.chmod(shown["0644"], 0o644)
    os.symlink(keytab, shown["link"])
    shutil.copy(keytab, shown["group"])
    os.chown(shown["group"], 0, 65533)  # a group the hub (root, gid 0) is not in
    os.chmod(shown["group"], 0o640)
    settings = {"KerberosKDCAuthenticator__verify_keytab": keytab}
    settings["KerberosKDCAuthenticator__verify_principal"] = principal
    for key, value in options.items():
        settings[key if "__" in key else f"KerberosKDCAuthenticator__{key}"] = shown.get(
            value, value
        )
    authenticator = KerberosKDCAuthenticator(config=_config(ccache_dir, **settings))
    try:
        with pytest.raises(ConfigError, match=message):
            authenticator.start()
    finally:
        authenticator.close()


def test_a_keytab_its_group_reads_is_taken_for_the_hubs_own_group(
    ccache_dir, service_keytab, private_dir
):
    principal, keytab = service_keytab
    readable = os.path.join(private_dir, "fsgroup.keytab")
    shutil.copy(keytab, readable)
    os.chown(readable, 0, os.getegid())  # as a Kubernetes secret with an fsGroup
    os.chmod(readable, 0o440)
    settings = {
        "KerberosKDCAuthenticator__verify_keytab": readable,
        "KerberosKDCAuthenticator__verify_principal": principal,
    }
    authenticator = KerberosKDCAuthenticator(config=_config(ccache_dir, **settings))
    try:
        authenticator.start()
    finally:
        authenticator.close()


def test_the_default_service_principal_is_this_hosts(krb5_env, ccache_dir):
    authenticator = KerberosKDCAuthenticator(config=_config(ccache_dir))
    assert authenticator.password_tickets and authenticator.enable_auth_state
    assert authenticator.verify_keytab == "/etc/krb5.keytab"
    fqdn = socket.getfqdn()
    assert authenticator.verify_principal_name == f"host/{fqdn}@{krb5_env.realm}"
    authenticator.verify_principal = "HTTP/hub.example.org"
    assert authenticator.verify_principal_name == f"HTTP/hub.example.org@{krb5_env.realm}"


async def test_the_login_limits_hold_for_kdc_logins(krb5_env, ccache_dir, service_keytab):
    principal_svc, keytab = service_keytab
    name = f"kbt-{secrets.token_hex(4)}"
    principal = f"{name}@{krb5_env.realm}"
    krb5_env.addprinc(principal, "Right-Password-1")
    settings = {
        "KerberosKDCAuthenticator__verify_keytab": keytab,
        "KerberosKDCAuthenticator__verify_principal": principal_svc,
        "KerberosKDCAuthenticator__login_max_failures": 2,
    }
    authenticator = KerberosKDCAuthenticator(config=_config(ccache_dir, **settings))
    try:
        authenticator.start()
        # Logins from one client address (as the hub's handler sees it).
        request = SimpleNamespace(remote_ip="192.0.2.7", headers={}, connection=None)
        handler = SimpleNamespace(request=request)
        wrong = {"username": name, "password": "Wrong-Password-1"}
        for _ in range(3):  # past login_max_failures (the count decays meanwhile)
            assert await authenticator.authenticate(handler, wrong) is None
        # The address is throttled: one attempt at a time; a second one at once is a
        # 429 that costs no KDC request.
        asked = len(as_requests(krb5_env, principal))
        first, second = await asyncio.gather(
            authenticator.authenticate(handler, {"username": name, "password": "Right-Password-1"}),
            authenticator.authenticate(handler, wrong),
            return_exceptions=True,
        )
        assert isinstance(second, web.HTTPError) and second.status_code == 429, second
        assert first["name"] == name and first["auth_state"]["kerberos_ccache"]
        assert len(as_requests(krb5_env, principal)) == asked + 1, "only the admitted one"
    finally:
        authenticator.close()
        krb5_env.run_kadminl(f"delprinc -force {principal}")


def test_the_modes_own_options_have_help_with_an_example_and_version():
    for name in ("verify_keytab", "verify_principal", "password_tickets"):
        help_text = KerberosKDCAuthenticator.class_traits()[name].help
        assert "Example" in help_text and "versionadded" in help_text, name
