"""The ``fetch`` delivery end to end: a real hub, real servers that fetch their own tickets.

The hub (tests/support/hub.py) runs with ``KerberosTickets.delivery = "fetch"``
and the custom scope of docs/kubernetes.md; the keytabs live in a directory
only the hub can read. Each user's ``jupyterhub-singleuser`` runs as a real
local account that can read neither that directory nor any hub file; kerbauth's
server extension (enabled by the installed jupyter_server_config.d file)
fetches the ticket with the server's own API token and writes it to the
container-local path named by ``KRB5CCNAME``.
"""

import base64
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest
import requests
import yaml
from traitlets.config import Config

import support.hub
from kerbauth.core.ccache import read_ccache, read_ccache_bytes
from kerbauth.core.errors import KeytabError
from kerbauth.core.keytab import open_keytab
from kerbauth.hub.api import SCOPE
from support.edge import server_environment
from support.fetch import default_cache, docs_roles_snippet, fetch_config
from support.realm import add_principal, start_realm
from support.served import wait_for_ticket

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
TICKET = "/hub/api/kerbauth/ticket"


def add_user(hub, realm, keytab_dir, make_user, fetched_caches):
    """A local account, its principal and keytab (root's, in the hub's directory), a hub user."""
    user = make_user()
    principal = add_principal(
        realm, user.name, keytab=os.path.join(keytab_dir, f"{user.name}.keytab")
    )
    response = hub.api("POST", f"/users/{user.name}")
    assert response.status_code == 201, response.text
    fetched_caches.append(default_cache(user.name))
    return user, principal


def as_user(name, env, *argv):
    return subprocess.run(
        ["runuser", "-u", name, "--", *argv],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )


def wait_for(condition, deadline, what):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {deadline} s: {what}")


def get_ticket(hub, token=None, **kwargs):
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(f"{hub.url}{TICKET}", headers=headers, timeout=30, **kwargs)


def test_the_server_fetches_its_users_ticket_it_cannot_otherwise_reach(
    fetch_hub, krb5_env, keytab_dir, make_user, fetched_caches
):
    hub = fetch_hub()
    user, principal = add_user(hub, krb5_env, keytab_dir, make_user, fetched_caches)
    hub.start_server(user.name)

    env = server_environment(hub, user.name)
    path = default_cache(user.name)
    assert env["KRB5CCNAME"] == f"FILE:{path}"
    assert env["KERBAUTH_TICKET_URL"].endswith(TICKET)
    ticket = wait_for_ticket(path, principal)
    assert ticket.end > time.time()

    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o600)
    out = as_user(user.name, {**krb5_env.env, "KRB5CCNAME": env["KRB5CCNAME"]}, "klist")
    assert out.returncode == 0, out.stderr
    assert f"Default principal: {principal}" in out.stdout
    assert f"krbtgt/{krb5_env.realm}@{krb5_env.realm}" in out.stdout
    # In a directory of the user's own, made by the server: nothing else in it.
    st = os.lstat(os.path.dirname(path))
    assert stat.S_ISDIR(st.st_mode)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o700)
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]

    # The user can reach neither the keytabs nor anything of the hub's.
    keytab = os.path.join(keytab_dir, f"{user.name}.keytab")
    assert as_user(user.name, {}, "cat", keytab).returncode != 0
    assert as_user(user.name, {}, "ls", keytab_dir).returncode != 0
    assert as_user(user.name, {}, "ls", hub.workdir).returncode != 0

    # The handler's answers and the server's token never reach the log.
    data = read_ccache_bytes(path)
    log = hub.log_text()
    assert "ticket fetched by the server of" in log
    assert base64.b64encode(data).decode() not in log
    assert repr(data)[2:60] not in log and data.hex()[:64] not in log
    assert env["JUPYTERHUB_API_TOKEN"] not in log

    # When the server stops, its ticket and the directory it made go with it.
    hub.stop_server(user.name)
    assert not os.path.lexists(path) and not os.path.lexists(os.path.dirname(path))


def test_with_internal_ssl_the_server_verifies_the_hub_and_shows_its_certificate(
    fetch_hub, krb5_env, keytab_dir, make_user, fetched_caches, monkeypatch
):
    # With internal_ssl the proxy's API speaks https too.
    infrastructure = support.hub._infrastructure
    monkeypatch.setattr(
        support.hub,
        "_infrastructure",
        lambda *a: infrastructure(*a).replace(
            'ConfigurableHTTPProxy.api_url = "http://', 'ConfigurableHTTPProxy.api_url = "https://'
        ),
    )
    hub = fetch_hub("c.JupyterHub.internal_ssl = True\n")
    user, principal = add_user(hub, krb5_env, keytab_dir, make_user, fetched_caches)
    hub.start_server(user.name)
    env = server_environment(hub, user.name)
    assert env["KERBAUTH_TICKET_URL"].startswith("https://")
    assert env["JUPYTERHUB_SSL_CLIENT_CA"]
    wait_for_ticket(default_cache(user.name), principal)
    # Without the server's client certificate, the hub's API does not answer at all.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(
            env["KERBAUTH_TICKET_URL"],
            headers={"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"},
            verify=env["JUPYTERHUB_SSL_CLIENT_CA"],
            timeout=30,
        )
    hub.stop_server(user.name)


def test_refusals_and_each_token_only_ever_gets_its_owners_ticket(
    fetch_hub, krb5_env, keytab_dir, make_user, fetched_caches
):
    hub = fetch_hub()
    alice, alice_principal = add_user(hub, krb5_env, keytab_dir, make_user, fetched_caches)
    bob, bob_principal = add_user(hub, krb5_env, keytab_dir, make_user, fetched_caches)
    hub.start_server(alice.name)
    hub.start_server(bob.name)
    alice_token = server_environment(hub, alice.name)["JUPYTERHUB_API_TOKEN"]
    bob_token = server_environment(hub, bob.name)["JUPYTERHUB_API_TOKEN"]

    # Each server's token gets its own user's ticket, whatever the request says.
    for token, principal in ((alice_token, alice_principal), (bob_token, bob_principal)):
        for params in ({}, {"user": alice.name}, {"user": bob.name}, {"name": "root"}):
            response = get_ticket(hub, token, params=params)
            assert response.status_code == 200, response.text
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["Content-Type"] == "application/octet-stream"
            from kerbauth.core.ccache import parse_ccache

            assert parse_ccache(response.content).principal == principal

    # No token, a wrong token, a token without the scope, a service's token: 403.
    assert get_ticket(hub).status_code == 403
    assert get_ticket(hub, secrets.token_hex(16)).status_code == 403
    unscoped = hub.api(
        "POST", f"/users/{alice.name}/tokens", json={"scopes": ["read:users:name!user"]}
    )
    assert unscoped.status_code == 201, unscoped.text
    assert get_ticket(hub, unscoped.json()["token"]).status_code == 403
    assert get_ticket(hub, hub.token).status_code == 403  # the admin service: not a user
    # A logged-in browser (cookie, no token) gets nothing either.
    session, response = hub.login_session(alice.name, alice.password)
    assert response.status_code == 302
    assert session.get(f"{hub.url}{TICKET}", timeout=30).status_code == 403

    # A stopped server's token is revoked: 403 from then on.
    hub.stop_server(alice.name)
    assert get_ticket(hub, alice_token).status_code == 403
    assert get_ticket(hub, bob_token).status_code == 200

    log = hub.log_text()
    assert "kerbauth: ticket request refused" in log
    assert alice_token not in log and bob_token not in log
    hub.stop_server(bob.name)


def test_a_users_own_tokens_are_logged_as_not_the_servers(
    fetch_hub, krb5_env, keytab_dir, make_user, fetched_caches
):
    """Under the page's roles: who fetched is logged for what it is, after a hub restart too."""
    hub = fetch_hub("c.JupyterHub.cleanup_servers = False\n")
    user, principal = add_user(hub, krb5_env, keytab_dir, make_user, fetched_caches)
    hub.start_server(user.name)
    server_token = server_environment(hub, user.name)["JUPYTERHUB_API_TOKEN"]
    assert get_ticket(hub, server_token).status_code == 200

    # The user makes tokens of their own, as on the hub's token page (their browser session).
    session, response = hub.login_session(user.name, user.password)
    assert response.status_code == 302

    def new_token(**body):
        made = session.post(
            f"{hub.url}/hub/api/users/{user.name}/tokens",
            json=body,
            headers={"X-XSRFToken": session.cookies["_xsrf"]},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        return made.json()

    inherited = new_token(note="notebook\nkerbauth: ticket fetched by the server of root")
    narrow = new_token(note="narrow", scopes=["read:users:name!user"])
    assert get_ticket(hub, inherited["token"]).status_code == 200  # what roles cannot prevent
    assert get_ticket(hub, narrow["token"]).status_code == 403  # no scope, no ticket
    server_id = next(
        t["id"]
        for t in hub.api("GET", f"/users/{user.name}/tokens").json()["api_tokens"]
        if t["note"].startswith("Server at ")
    )

    log = hub.log_text()
    assert f"kerbauth: ticket fetched by the server of {user.name} (token id {server_id})" in log
    assert (
        f"kerbauth: ticket fetched with a token of {user.name} that is not a server's"
        f' (token id {inherited["id"]}, note "notebook\\nkerbauth: ticket fetched' in log
    )
    # The note's newline forged no line of its own.
    assert not re.search(r"^kerbauth: ticket fetched by the server of root", log, re.MULTILINE)
    assert f"the token of {user.name} lacks the scope {SCOPE}" in log

    # After a hub restart (the server runs on), its token is still known for what it is.
    hub.restart()
    assert get_ticket(hub, server_token).status_code == 200
    assert get_ticket(hub, inherited["token"]).status_code == 200
    after = hub.log_text()[len(log) :]
    assert f"fetched by the server of {user.name} (token id {server_id})" in after
    assert f"with a token of {user.name} that is not a server's (token id {inherited['id']}" in (
        after
    )
    session.close()
    hub.stop_server(user.name)


def docs_strict_roles():
    """The page's scope definition with its stricter roles, as jupyterhub_config.py lines."""
    with open(os.path.join(DOCS, "kubernetes.md")) as f:
        text = f.read()
    (strict,) = re.findall(r"```python\n(# Users may not make API tokens.*?)```", text, re.DOTALL)
    c = Config()
    for snippet in (docs_roles_snippet(), strict):
        exec(compile(snippet, "docs/kubernetes.md", "exec"), {"c": c})  # noqa: S102
    return (
        f"c.JupyterHub.custom_scopes = {c.JupyterHub.custom_scopes!r}\n"
        f"c.JupyterHub.load_roles = c.JupyterHub.load_roles + {c.JupyterHub.load_roles!r}\n"
    )


def test_under_the_strict_roles_only_tokens_the_hub_makes_fetch(
    hub_factory, keytab_dir, krb5_env, pam_service, make_user, fetched_caches, monkeypatch
):
    infrastructure = support.hub._infrastructure
    monkeypatch.setattr(
        support.hub, "_infrastructure", lambda *a: infrastructure(*a) + "\n" + docs_strict_roles()
    )
    hub = hub_factory(
        fetch_config(keytab_dir),
        env={"KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"], "JUPYTERHUB_PAM_SERVICE": pam_service()},
    )
    user, principal = add_user(hub, krb5_env, keytab_dir, make_user, fetched_caches)
    hub.start_server(user.name)
    wait_for_ticket(default_cache(user.name), principal)  # the server's token has the scope
    server_token = server_environment(hub, user.name)["JUPYTERHUB_API_TOKEN"]
    assert get_ticket(hub, server_token).status_code == 200

    # The user can log in and use their server, but make no token of their own.
    session, response = hub.login_session(user.name, user.password)
    assert response.status_code == 302
    made = session.post(
        f"{hub.url}/hub/api/users/{user.name}/tokens",
        json={"note": "mine"},
        headers={"X-XSRFToken": session.cookies["_xsrf"]},
        timeout=30,
    )
    assert made.status_code == 403, made.text
    session.close()

    # What the roles do not prevent: an admin's token for the user inherits the user's scope.
    admin_made = hub.api("POST", f"/users/{user.name}/tokens", json={"note": "by an admin"})
    assert admin_made.status_code == 201, admin_made.text
    assert get_ticket(hub, admin_made.json()["token"]).status_code == 200
    assert f"with a token of {user.name} that is not a server's" in hub.log_text()
    hub.stop_server(user.name)


# --- another local user plants the default cache path first ------------------------------


def attacker_ticket(realm, attacker, tmp_path):
    """The bytes of a real cache holding the attacker's own TGT."""
    keytab = tmp_path / f"{attacker.name}.keytab"
    principal = add_principal(realm, attacker.name, keytab=str(keytab))
    cache = tmp_path / "attacker.ccache"
    subprocess.run(
        ["kinit", "-k", "-t", str(keytab), "-c", f"FILE:{cache}", principal],
        env={**os.environ, **realm.env},
        check=True,
    )
    return principal, cache.read_bytes()


def plant(kind, attacker, path, ticket, made):
    """As ``attacker``, before the victim's server starts: ``path`` made theirs.

    "file": their ticket at ``path`` (in a directory of theirs when ``path``
    is not right in /tmp); "directory": a directory of theirs at ``path``;
    "symlink": ``path``'s directory (or ``path`` itself, right in /tmp) a link
    to a directory of theirs holding their ticket.
    """
    parent = os.path.dirname(path)
    top = path if parent == "/tmp" else parent
    made.append(top)
    theirs = f"/tmp/kbt-plant-{secrets.token_hex(4)}"
    if kind == "file":
        script = f"{'' if top == path else f'mkdir -m 0755 {parent} && '}cat > {path}"
    elif kind == "directory":
        script = f"mkdir -p -m 0777 {path} && cat > /dev/null"
    else:
        made.append(theirs)
        name = os.path.basename(path)
        link_to = f"{theirs}/{name}" if top == path else theirs
        script = f"mkdir -m 0755 {theirs} && cat > {theirs}/{name} && ln -s {link_to} {top}"
    result = subprocess.run(
        ["sh", "-c", script],
        input=ticket,
        user=attacker.uid,
        group=attacker.gid,
        extra_groups=[],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return f"{theirs}/{os.path.basename(path)}" if kind == "symlink" else path


def kernel_environment(hub, name):
    """Start a kernel in the user's server (its REST API, through the proxy); its environment."""
    started = requests.post(
        f"{hub.url}/user/{name}/api/kernels",
        headers={"Authorization": f"token {hub.token}"},
        json={},
        timeout=60,
    )
    assert started.status_code == 201, started.text
    kernel_id = started.json()["id"]

    def find():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if kernel_id.encode() in f.read():
                        with open(f"/proc/{pid}/environ", "rb") as f:
                            pairs = f.read().split(b"\0")
                        return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
            except OSError:
                continue
        return None

    return wait_for(find, 60, f"the process of kernel {kernel_id}")


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_a_planted_default_cache_never_becomes_the_victims(
    fetch_hub, krb5_env, keytab_dir, make_user, fetched_caches, tmp_path, kind
):
    hub = fetch_hub()
    victim, principal = add_user(hub, krb5_env, keytab_dir, make_user, fetched_caches)
    attacker = make_user()
    attacker_principal, ticket = attacker_ticket(krb5_env, attacker, tmp_path)
    default = default_cache(victim.name)
    made = []
    try:
        planted = plant(kind, attacker, default, ticket, made)
        hub.start_server(victim.name)

        # What the victim's kernels (and terminals) get: a cache of the victim's own.
        ccname = kernel_environment(hub, victim.name)["KRB5CCNAME"]
        assert ccname.startswith("FILE:")
        path = ccname[len("FILE:") :]
        assert path != default and not any(path.startswith(m) for m in made)
        st = os.lstat(os.path.dirname(path))
        assert stat.S_ISDIR(st.st_mode)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (victim.uid, 0o700)
        wait_for_ticket(path, principal)
        out = as_user(victim.name, {**krb5_env.env, "KRB5CCNAME": ccname}, "klist")
        assert out.returncode == 0 and f"Default principal: {principal}" in out.stdout, out
        assert attacker_principal not in out.stdout

        # Why, in the server's log; the attacker's plant untouched.
        log = hub.log_text()
        assert f"kerbauth: cannot use {os.path.dirname(default)}" in log or (
            f"kerbauth: cannot use {default}" in log
        )
        assert f"({attacker.name})" in log
        assert f"this server uses {ccname} instead" in log
        if kind != "directory":
            assert read_ccache(planted).principal == attacker_principal
            assert os.lstat(planted).st_uid == attacker.uid

        # Stopped: the ticket and its private directory are gone.
        hub.stop_server(victim.name)
        assert not os.path.lexists(path) and not os.path.lexists(os.path.dirname(path))
    finally:
        for path in made:
            subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


def test_kerbauth_fetch_command_writes_the_ticket_as_the_user(
    fetch_hub, krb5_env, keytab_dir, make_user, fetched_caches, tmp_path
):
    hub = fetch_hub()
    user, principal = add_user(hub, krb5_env, keytab_dir, make_user, fetched_caches)
    hub.start_server(user.name)
    env = server_environment(hub, user.name)
    target = os.path.join(user.home, "krb5cc_cli")
    keys = ("KERBAUTH_TICKET_URL", "KERBAUTH_RENEW_MARGIN", "JUPYTERHUB_API_TOKEN")
    fetch = os.path.join(support.hub.BIN, "kerbauth-fetch")

    def run_fetch():
        """kerbauth-fetch as the user, with the server's environment."""
        return subprocess.run(
            ["runuser", "-u", user.name, "--", fetch],
            env={"PATH": os.environ["PATH"], "KRB5CCNAME": f"FILE:{target}"}
            | {k: env[k] for k in keys},
            capture_output=True,
            text=True,
            check=False,
        )

    result = run_fetch()
    assert result.returncode == 0, result.stderr
    assert read_ccache(target).principal == principal
    assert os.lstat(target).st_uid == user.uid
    assert env["JUPYTERHUB_API_TOKEN"] not in result.stderr + result.stdout

    # With a revoked token it says why and fails, leaving the old ticket in place.
    hub.stop_server(user.name)
    before = read_ccache_bytes(target)
    result = run_fetch()
    assert result.returncode == 1
    assert "403" in result.stderr
    assert read_ccache_bytes(target) == before


def test_without_a_keytab_the_spawn_is_refused_with_a_message(
    fetch_hub, make_user, keytab_dir, fetched_caches
):
    hub = fetch_hub()
    user = make_user()
    assert hub.api("POST", f"/users/{user.name}").status_code == 201
    fetched_caches.append(default_cache(user.name))
    response = hub.request_server(user.name)
    assert response.status_code >= 400
    message = response.json()["message"]
    assert "No Kerberos ticket could be obtained for you" in message
    assert "no usable keytab" in message and keytab_dir not in message
    assert f"keytab {keytab_dir}/{user.name}.keytab" in hub.log_text()
    assert hub.server(user.name) is None


LIFE = 60  # seconds: the short realm's max_life


@pytest.fixture
def short_realm():
    k5 = start_realm(kdc_conf={"realms": {"$realm": {"max_life": f"{LIFE}s"}}})
    try:
        yield k5
    finally:
        k5.stop()


def test_the_server_keeps_a_valid_ticket_across_expiry(
    fetch_hub, short_realm, keytab_dir, make_user, fetched_caches
):
    hub = fetch_hub(realm=short_realm)
    user, principal = add_user(hub, short_realm, keytab_dir, make_user, fetched_caches)
    hub.start_server(user.name)
    path = default_cache(user.name)
    first = wait_for_ticket(path, principal)
    assert first.end - first.start <= LIFE
    # A new ticket before the first one ends (the server fetches at half its life) ...
    second = wait_for_ticket(path, principal, deadline=LIFE + 10, newer_than=first.end)
    assert second.start < first.end
    # ... and past the first one's end the cache still holds a valid ticket.
    wait_for(lambda: time.time() > first.end + 1, LIFE, "the first ticket's end")
    env = {**short_realm.env, "KRB5CCNAME": f"FILE:{path}"}
    out = as_user(user.name, env, "klist", "-s")
    assert out.returncode == 0, out.stderr
    assert read_ccache(path).end > time.time()
    hub.stop_server(user.name)


# --- a hub without root ------------------------------------------------------------------


def start_hub_as(account, config, env, after=""):
    """A hub run by ``account`` (not root); ``after``: config lines after the test hub's own."""
    workdir = tempfile.mkdtemp(prefix="kerbauth-hub-")
    os.chown(workdir, account.uid, account.gid)
    port = support.hub._free_port()
    token = secrets.token_hex(16)
    path = os.path.join(workdir, "jupyterhub_config.py")
    with open(path, "w") as f:
        f.write(config + "\n" + support.hub._infrastructure(workdir, port, token) + "\n" + after)
    log_path = os.path.join(workdir, "jupyterhub.log")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.fchown(log, account.uid, account.gid)
    hub_env = {
        "PATH": f"{support.hub.BIN}:/usr/bin:/bin",
        "HOME": account.home,
        "USER": account.name,
        "LANG": "C.UTF-8",
        **env,
    }
    process = subprocess.Popen(
        [os.path.join(support.hub.BIN, "jupyterhub"), "-f", path],
        cwd=workdir,
        env=hub_env,
        user=account.uid,
        group=account.gid,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    os.close(log)
    hub = support.hub.Hub(process, port, workdir, token, log_path)
    try:
        wait_for(
            lambda: process.poll() is not None or _healthy(hub), 60, "the non-root hub's health"
        )
        assert process.poll() is None, hub.log_text()[-6000:]
    except BaseException:
        support.hub._stop(process, workdir)
        raise
    return hub


def _healthy(hub):
    try:
        return hub.health(timeout=2).status_code == 200
    except requests.RequestException:
        return False


def chart_values():
    """The page's ``config.yaml`` (its other ``yaml`` blocks are values files that go after it)."""
    with open(os.path.join(DOCS, "kubernetes.md")) as f:
        blocks = re.findall(r"^```yaml\n(.*?)^```", f.read(), re.DOTALL | re.MULTILINE)
    (text,) = [block for block in blocks if block.startswith("# config.yaml:")]
    return yaml.safe_load(text)


def chart_hub_config(values, overrides):
    """``hub.config`` and ``hub.loadRoles`` of the chart's values as jupyterhub_config.py lines."""
    sections = {name: dict(options) for name, options in values["hub"]["config"].items()}
    for name, options in overrides.items():
        sections.setdefault(name, {}).update(options)
    config = "\n".join(
        f"c.{name}.{key} = {value!r}"
        for name, options in sections.items()
        for key, value in options.items()
    )
    roles = [{"name": name, **role} for name, role in values["hub"]["loadRoles"].items()]
    return config, f"c.JupyterHub.load_roles = c.JupyterHub.load_roles + {roles!r}\n"


def fake_secret_volume(root, gid, keytabs):
    """A directory laid out as the kubelet mounts a Secret with ``fsGroup``.

    Each key is a symlink into ``..data``, itself a symlink to a timestamped
    directory; the files there are root's, group ``gid``, mode 0440
    (``defaultMode: 0400`` plus the group read that ``fsGroup`` adds).
    """
    os.chmod(root, 0o750)
    os.chown(root, 0, gid)
    timestamped = os.path.join(root, "..2026_11_24_09_00_00.000000001")
    os.mkdir(timestamped, 0o750)
    os.chown(timestamped, 0, gid)
    for name, data in keytabs.items():
        with open(os.path.join(timestamped, name), "wb") as f:
            f.write(data)
        os.chown(os.path.join(timestamped, name), 0, gid)
        os.chmod(os.path.join(timestamped, name), 0o440)
        os.symlink(f"..data/{name}", os.path.join(root, name))
    os.symlink(os.path.basename(timestamped), os.path.join(root, "..data"))


def test_the_charts_hub_config_without_root_serves_users_without_accounts(
    krb5_env, make_user, fetched_caches, tmp_path
):
    """The Kubernetes page's ``config.yaml``: hub.config, hub.loadRoles, the keytab init container.

    The hub runs as an unprivileged account (uid 1000 in the chart's hub pod)
    and spawns servers as itself; the user has no local account. Only the
    site's values are replaced: the LDAP server (never contacted: users come
    from the API), the realm and the directories.
    """
    values = chart_values()
    runner = make_user()
    name = f"kbt-pod-{secrets.token_hex(3)}"
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    made = tmp_path / "made.keytab"
    principal = add_principal(krb5_env, name, keytab=str(made))
    secret = tempfile.mkdtemp(prefix="kerbauth-secret-")
    keytabs = tempfile.mkdtemp(prefix="kerbauth-kt-")  # the emptyDir: group fsGroup, setgid
    os.chown(keytabs, 0, runner.gid)
    os.chmod(keytabs, 0o2770)
    path = values["hub"]["config"]["KerberosTickets"]["fetch_ccache_path"].format(username=name)
    fetched_caches.append(path)
    hub = None
    try:
        fake_secret_volume(secret, runner.gid, {f"{name}.keytab": made.read_bytes()})
        # kerbauth refuses the Secret's files as mounted: a symlink, then group-readable.
        with pytest.raises(KeytabError, match="symbolic link"):
            open_keytab(os.path.join(secret, f"{name}.keytab"), runner.uid)
        with pytest.raises(KeytabError, match="group or others"):
            open_keytab(os.path.join(secret, "..data", f"{name}.keytab"), runner.uid)

        # The init container's command, as the hub's user, with the test's directories.
        (init,) = values["hub"]["initContainers"]
        command = init["command"][-1]
        mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
        volumes = {v["name"]: v for v in values["hub"]["extraVolumes"]}
        for mount_name, mount_path in mounts.items():
            here = secret if "secret" in volumes[mount_name] else keytabs
            command = command.replace(mount_path, here)
        copied = as_user(runner.name, {}, *init["command"][:-1], command)
        assert copied.returncode == 0, copied.stderr
        keytab = os.path.join(keytabs, f"{name}.keytab")
        st = os.lstat(keytab)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (runner.uid, 0o400)

        config, roles = chart_hub_config(
            values,
            {
                "KerberosLDAPAuthenticator": {"server_address": ["127.0.0.1"]},
                "KerberosTickets": {
                    "realm": krb5_env.realm,
                    "keytab_template": os.path.join(keytabs, "{username}.keytab"),
                },
                "JupyterHub": {"spawner_class": "simple"},
            },
        )
        hub = start_hub_as(
            runner, config, {"KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"]}, after=roles
        )
        assert hub.api("POST", f"/users/{name}").status_code == 201
        hub.start_server(name)
        ticket = wait_for_ticket(path, principal)
        assert ticket.end > time.time()
        assert os.lstat(path).st_uid == runner.uid
        out = as_user(runner.name, {**krb5_env.env, "KRB5CCNAME": f"FILE:{path}"}, "klist")
        assert out.returncode == 0 and f"Default principal: {principal}" in out.stdout
        # Every process of the hub runs as the runner, none as root.
        for pid in (hub.process.pid, hub.server(name)["state"]["pid"]):
            with open(f"/proc/{pid}/status") as f:
                uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            assert set(uids) == {str(runner.uid)}
        hub.stop_server(name)
    finally:
        if hub is not None:
            print(f"--- the end of {hub.log_path} ---\n{hub.log_text()[-8000:]}")
            support.hub._stop(hub.process, hub.workdir)
            shutil.rmtree(hub.workdir, ignore_errors=True)
            try:
                os.killpg(hub.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(secret, ignore_errors=True)
        shutil.rmtree(keytabs, ignore_errors=True)
        # The simple spawner's home for the user.
        shutil.rmtree(f"/tmp/{name}", ignore_errors=True)
