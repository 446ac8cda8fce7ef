"""Two surfaces of JupyterHub 6, each in a real hub (and what 5.x does instead, in tox jh5).

- A ticket that stops a spawn is a ``SpawnException``: JupyterHub logs it
  without a traceback, the spawn's progress and the REST API show the user's
  message, and ``jupyterhub_server_spawn_duration_seconds`` counts it with
  ``status="failure"`` and kerbauth's reason label. On 5.x it is the
  HTTPError it always was (checked here in a fresh interpreter whose
  JupyterHub lacks SpawnException, and for real by ``tox -e jh5``).
- An LDAP login sends the entry's ``displayName`` and ``mail`` as
  ``user_info``, which ``GET /hub/api/users/<name>`` shows; on 5.x nothing is
  sent.

The hubs run the OpenLDAP example (examples/ldap) against the test slapd,
with a directory entry of the test's own; no local account is needed
(``owner_from_ldap``), and the entry has no keytab.
"""

import contextlib
import json
import os
import secrets
import subprocess
import sys
from types import SimpleNamespace

import pytest
from jupyterhub import version_info
from prometheus_client.parser import text_string_to_metric_families
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosLDAPAuthenticator
from kerbauth.core.errors import ConfigError, TicketError
from kerbauth.hub.refusal import SpawnException, SpawnRefused, reason_label
from support.slapd import PEOPLE, ssha

JUPYTERHUB_6 = version_info >= (6,)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "ldap", "jupyterhub_config.py")
DISPLAY_NAME = "Zoë Ångström"  # non-ASCII, as directories hold names


@contextlib.contextmanager
def directory_entry(slapd, **extra):
    """A person of the test's own under ou=people (``extra``: more attributes); deleted after."""
    person = SimpleNamespace(uid=f"kbt-{secrets.token_hex(3)}", password=secrets.token_urlsafe(12))
    person.dn = f"uid={person.uid},{PEOPLE}"
    attributes = {
        "objectClass": ["inetOrgPerson", "posixAccount"],
        "uid": person.uid,
        "cn": f"{person.uid} Test",
        "sn": "Test",
        "uidNumber": 46900,
        "gidNumber": 46900,
        "homeDirectory": f"/home/{person.uid}",
        "userPassword": ssha(person.password),
        **extra,
    }
    conn = slapd.admin_connection()
    try:
        assert conn.add(person.dn, attributes=attributes), conn.result
        try:
            yield person, conn
        finally:
            assert conn.delete(person.dn), conn.result
    finally:
        conn.unbind()


@pytest.fixture
def ldap_hub(hub_factory, slapd, krb5_env, ccache_dir, tmp_path):
    """``ldap_hub(name)``: the OpenLDAP example's hub, letting ``name`` in too."""
    keytabs = tmp_path / "keytabs"
    keytabs.mkdir()

    def start(name):
        with open(EXAMPLE) as f:
            config = f.read()
        config += (
            f"\nc.KerberosTickets.ccache_dir = {str(ccache_dir)!r}\n"
            f"c.KerberosLDAPAuthenticator.allowed_users = {{{name!r}}}\n"
        )
        return hub_factory(
            config,
            env={
                "LDAP_SERVERS": f"127.0.0.1:{slapd.ldap_port}",
                "LDAP_CA_FILE": slapd.ca_file,
                "LDAP_BASE_DN": slapd.base_dn,
                "KEYTAB_DIR": str(keytabs),
                "KERBEROS_REALM": krb5_env.realm,
                "KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"],
            },
        )

    start.keytabs = keytabs
    return start


def spawn_metrics(hub):
    """``{labels (sorted pairs): count}`` of jupyterhub_server_spawn_duration_seconds."""
    response = hub.api("GET", "/../metrics")
    assert response.status_code == 200, response.text
    counts = {}
    for family in text_string_to_metric_families(response.text):
        if family.name == "jupyterhub_server_spawn_duration_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    counts[tuple(sorted(sample.labels.items()))] = sample.value
    return counts


def progress_events(hub, name):
    """The events of ``GET /hub/api/users/<name>/server/progress`` (an event stream)."""
    response = hub.api("GET", f"/users/{name}/server/progress")
    assert response.status_code == 200, response.text
    return [
        json.loads(line.removeprefix("data:"))
        for line in response.text.splitlines()
        if line.startswith("data:")
    ]


# --- a refused spawn ---------------------------------------------------------------------


def test_a_spawn_without_a_keytab_is_a_spawn_failure_with_the_users_message(slapd, ldap_hub):
    with directory_entry(slapd) as (person, _):
        hub = ldap_hub(person.uid)
        before = spawn_metrics(hub)
        assert hub.login(person.uid, person.password).status_code == 302
        mark = len(hub.log_text())

        refused = hub.request_server(person.uid)
        keytab = str(ldap_hub.keytabs / f"{person.uid}.keytab")
        # The REST API answers with the user's message, never the cause (a path).
        assert refused.status_code == 500, refused.text
        message = refused.json()["message"]
        assert message.startswith("No Kerberos ticket could be obtained for you")
        assert "no usable keytab for your account" in message
        assert keytab not in message
        # So does the spawn's progress, which the spawn page shows.
        events = progress_events(hub, person.uid)
        assert events[-1]["failed"] is True
        assert events[-1]["message"] == f"Spawn failed: {message}"
        assert hub.server(person.uid) is None

        log = hub.log_text()[mark:]
        assert "Traceback" not in log and "Unhandled error" not in log, log
        after = spawn_metrics(hub)
        if JUPYTERHUB_6:
            # Logged as a refusal, with its reason and its cause (the keytab's path).
            lines = [line for line in log.splitlines() if "Not starting" in line]
            assert len(lines) == 1, log
            line = lines[0]
            assert "SpawnRefused(reason=kerberos-keytab)" in line, line
            assert f"keytab {keytab}: " in line, line
            failed = (("reason", "kerberos-keytab"), ("status", "failure"))
            assert after[failed] == before.get(failed, 0) + 1, after
            errors = {k: v for k, v in after.items() if ("status", "error") in k}
            assert errors == {k: v for k, v in before.items() if ("status", "error") in k}
        else:
            # JupyterHub 5: the HTTPError, logged without a traceback; counted as a failure.
            lines = [line for line in log.splitlines() if "Error starting" in line]
            assert len(lines) == 1, log
            line = lines[0]
            assert f"keytab: keytab {keytab}: " in line, line
            failed = (("status", "failure"),)
            assert after[failed] == before.get(failed, 0) + 1, after


def test_the_refusal_is_a_spawn_exception_on_6_and_an_http_error_on_5():
    error = TicketError("kdc_unreachable", "alice@EXAMPLE.ORG: Cannot contact any KDC")
    refusal = SpawnRefused(error)
    assert isinstance(refusal, web.HTTPError) and isinstance(refusal, TicketError)
    assert (refusal.cause, refusal.detail, refusal.status_code) == (
        "kdc_unreachable",
        error.detail,
        503,
    )
    assert refusal.jupyterhub_message == error.jupyterhub_message
    assert reason_label("kdc_unreachable") == "kerberos-kdc-unreachable"
    if JUPYTERHUB_6:
        assert isinstance(refusal, SpawnException)
        assert refusal.reason == "kerberos-kdc-unreachable"
        assert refusal.message == error.jupyterhub_message  # what the user is shown
        assert refusal.log_message == str(error)  # what the log gets
        assert str(refusal) == f"503 SpawnRefused(reason=kerberos-kdc-unreachable): {error}"
    else:
        assert SpawnException is None
        assert refusal.log_message == error.jupyterhub_message
        assert str(refusal) == str(error)


# A JupyterHub without SpawnException (5.x), made in a fresh interpreter: the refusal
# is the plain HTTPError of before, with the user's message and the cause in str().
WITHOUT_SPAWN_EXCEPTION = """
import json
import jupyterhub.spawner
vars(jupyterhub.spawner).pop("SpawnException", None)
from tornado import web
from kerbauth.core.errors import TicketError
from kerbauth.hub.refusal import SpawnException, SpawnRefused
error = TicketError("keytab", "keytab /srv/keytabs/alice.keytab: does not exist")
refusal = SpawnRefused(error)
print(json.dumps({
    "spawn_exception": SpawnException,
    "classes": [c.__name__ for c in type(refusal).__mro__],
    "status": refusal.status_code,
    "log_message": refusal.log_message,
    "str": str(refusal),
    "user": error.jupyterhub_message,
    "has_message": hasattr(refusal, "message"),
}))
"""


def test_without_spawn_exception_the_refusal_is_the_plain_http_error():
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_SPAWN_EXCEPTION],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(out.stdout)
    assert seen["spawn_exception"] is None
    assert seen["classes"] == ["SpawnRefused", "TicketError", "HTTPError", "Exception"] + [
        "BaseException",
        "object",
    ]
    assert seen["status"] == 500
    assert seen["log_message"] == seen["user"]  # tornado logs the user's text, as before
    assert seen["str"] == "keytab: keytab /srv/keytabs/alice.keytab: does not exist"
    assert seen["has_message"] is False  # SpawnException's attribute


# --- user_info from the directory --------------------------------------------------------


def test_display_name_and_mail_are_the_users_user_info(slapd, ldap_hub):
    extra = {"displayName": DISPLAY_NAME, "mail": ["zoe@corp.example", "z@corp.example"]}
    with directory_entry(slapd, **extra) as (person, conn):
        hub = ldap_hub(person.uid)
        assert hub.login(person.uid, person.password).status_code == 302
        model = hub.api("GET", f"/users/{person.uid}").json()
        if not JUPYTERHUB_6:
            assert "user_info" not in model, model  # 5.x has none, and none was sent
            return
        # The first mail; the name exactly as the directory holds it.
        assert model["user_info"] == {"display_name": DISPLAY_NAME, "email": "zoe@corp.example"}
        assert "ldap" not in json.dumps(model["user_info"])  # nothing of auth_state

        # Sent at every login: what the directory holds now, a value it lost gone.
        changes = {"displayName": [("MODIFY_REPLACE", ["Zoë Å."])], "mail": [("MODIFY_DELETE", [])]}
        assert conn.modify(person.dn, changes), conn.result
        assert hub.login(person.uid, person.password).status_code == 302
        model = hub.api("GET", f"/users/{person.uid}").json()
        assert model["user_info"] == {"display_name": "Zoë Å."}


async def test_user_info_as_configured_and_never_on_jupyterhub_5(
    slapd, krb5_env, tmp_path, ccache_dir, monkeypatch
):
    """The authenticator's answer as JupyterHub asks for it, from the directory (no hub)."""
    c = Config()
    c.KerberosTickets.ccache_dir = ccache_dir
    ldap = c.KerberosLDAPAuthenticator
    ldap.server_address = [f"127.0.0.1:{slapd.ldap_port}"]
    ldap.tls_ca_file = slapd.ca_file
    ldap.bind_dn_template = [f"uid={{username}},{PEOPLE}"]
    ldap.allow_all = True
    c.KerberosTickets.keytab_template = str(tmp_path / "{username}.keytab")
    with directory_entry(slapd, displayName=DISPLAY_NAME, mail="zoe@corp.example") as (p, _):

        async def login():
            authenticator = KerberosLDAPAuthenticator(config=c)
            login = {"username": p.uid, "password": p.password}
            model = await authenticator.get_authenticated_user(None, login)
            assert model["name"] == p.uid, model
            return model.get("user_info")  # JupyterHub 6 defaults it to None

        ldap.user_info_attributes = {"name": "cn", "display_name": "DISPLAYNAME", "x": "title"}
        monkeypatch.setattr(KerberosLDAPAuthenticator, "sends_user_info", True)
        # Attribute names compare without case; a key without a value is left out.
        assert await login() == {"name": f"{p.uid} Test", "display_name": DISPLAY_NAME}
        ldap.user_info_attributes = {}
        assert await login() is None  # turned off: none sent, JupyterHub keeps what it has
        ldap.user_info_attributes = {"display_name": "displayName"}
        monkeypatch.setattr(KerberosLDAPAuthenticator, "sends_user_info", False)  # JupyterHub 5
        assert await login() is None

    ldap.user_info_attributes = {"display_name": "display name"}
    with pytest.raises(ConfigError, match=r"user_info_attributes: 'display_name': 'display name'"):
        KerberosLDAPAuthenticator(config=c)
