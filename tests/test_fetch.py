"""The ``fetch`` delivery's parts: the options, the hub's pieces, the server's writer and keeper.

End to end (a real hub, real servers as real users) is tests/test_fetch_hub.py.
Here the server side runs against a small real HTTP server standing in for the
hub, serving real tickets of the test realm, and a real ``jupyter server``
shows that a hub that cannot be reached neither blocks nor stops the server.
"""

import base64
import http.server
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import requests
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosPAMAuthenticator
from kerbauth.core.ccache import parse_ccache, read_ccache_bytes
from kerbauth.core.errors import KeytabError, TicketError
from kerbauth.hub.api import TICKET_PATH, TicketHandler
from kerbauth.server.cache_target import ccache_target, open_cache, write_ticket
from kerbauth.server.errors import FetchError, UnsafeCacheTarget
from kerbauth.server.hub_client import fetch_ticket
from kerbauth.server.keeper import TicketKeeper, keeper_from_environ, next_fetch_delay
from support.dirs import fill_up, small_tmpfs
from support.realm import add_principal

BIN = os.path.dirname(sys.executable)


# --- the hub's side -----------------------------------------------------------------------


@pytest.fixture
def fetch_config(tmp_path, krb5_env):
    keytabs = tmp_path / "keytabs"
    keytabs.mkdir(mode=0o700)
    c = Config()
    c.KerberosTickets.keytab_template = str(keytabs / "{username}.keytab")
    c.KerberosTickets.ccache_dir = str(tmp_path / "never-made")
    c.KerberosTickets.delivery = "fetch"
    return c, keytabs


def test_fetch_mode_makes_no_cache_directory_and_registers_the_handler(fetch_config, tmp_path):
    c, _ = fetch_config
    authenticator = KerberosPAMAuthenticator(config=c)
    assert not (tmp_path / "never-made").exists()
    handlers = authenticator.get_handlers(None)
    assert (f"/api/{TICKET_PATH}", TicketHandler) in handlers
    assert any(path == "/login" for path, *_ in handlers)  # the login page is kept

    c.KerberosTickets.delivery = "file"
    c.KerberosTickets.ccache_dir = str(tmp_path / "cc")
    file_mode = KerberosPAMAuthenticator(config=c)
    assert all(handler is not TicketHandler for _, handler, *_ in file_mode.get_handlers(None))


BAD_PATHS = [
    ("relative", "krb5cc_{username}"),
    ("a directory", "/tmp/"),
    ("unknown field", "/tmp/krb5cc_{user}"),
    ("positional field", "/tmp/krb5cc_{}"),
    ("dot-dot", "/tmp/kerbauth/../etc/krb5cc_{username}"),
]


@pytest.mark.parametrize("label,path", BAD_PATHS, ids=[p[0] for p in BAD_PATHS])
def test_bad_fetch_ccache_path_is_refused_naming_the_option(fetch_config, label, path):
    c, _ = fetch_config
    c.KerberosTickets.fetch_ccache_path = path
    with pytest.raises(Exception, match="KerberosTickets.fetch_ccache_path"):
        KerberosPAMAuthenticator(config=c)


def test_delivery_is_file_or_fetch(fetch_config):
    c, _ = fetch_config
    c.KerberosTickets.delivery = "FETCH"
    assert KerberosPAMAuthenticator(config=c).delivery == "fetch"
    c.KerberosTickets.delivery = "secret"
    with pytest.raises(Exception, match="delivery"):
        KerberosPAMAuthenticator(config=c)


def fake_spawner(name, api_url="http://10.0.0.5:8081/hub/api", connect_url=None):
    return SimpleNamespace(
        environment={"KEEP": "1"},
        hub=SimpleNamespace(api_url=api_url),
        hub_connect_url=connect_url,
        user=SimpleNamespace(name=name),
    )


async def test_spawn_sets_only_where_to_fetch_and_where_to_write(
    fetch_config, krb5_env, monkeypatch
):
    c, keytabs = fetch_config
    authenticator = KerberosPAMAuthenticator(config=c)
    name = f"kbt-{secrets.token_hex(3)}"  # no local account: none is needed in this mode
    principal = add_principal(krb5_env, name, keytab=str(keytabs / f"{name}.keytab"))
    user = SimpleNamespace(name=name)
    spawner = fake_spawner(name)
    await authenticator.pre_spawn_start(user, spawner)
    assert spawner.environment == {
        "KEEP": "1",
        "KRB5CCNAME": f"FILE:/tmp/kerbauth-fetch-{name}/krb5cc",
        "KERBAUTH_TICKET_URL": "http://10.0.0.5:8081/hub/api/kerbauth/ticket",
        "KERBAUTH_RENEW_MARGIN": "1800",
        "KERBAUTH_RENEW_INTERVAL": "60",
    }
    # The server makes the directory and writes the ticket, not the hub.
    assert not os.path.exists(f"/tmp/kerbauth-fetch-{name}")
    data = await authenticator.fetch_ticket(user)
    assert parse_ccache(data).principal == principal

    # Asked again at once: the same ticket, no new KDC request; later, a new one.
    assert await authenticator.fetch_ticket(user) == data
    clock = time.monotonic() + 11
    monkeypatch.setattr("kerbauth.hub.delivery.time.monotonic", lambda: clock)
    fresh = await authenticator.fetch_ticket(user)
    assert fresh != data and parse_ccache(fresh).principal == principal

    spawner = fake_spawner(name, connect_url="http://jupyterhub:8081")
    await authenticator.pre_spawn_start(user, spawner)
    assert spawner.environment["KERBAUTH_TICKET_URL"] == (
        "http://jupyterhub:8081/hub/api/kerbauth/ticket"
    )


async def test_spawn_without_a_usable_keytab_is_refused(fetch_config, krb5_env, caplog):
    c, keytabs = fetch_config
    authenticator = KerberosPAMAuthenticator(config=c)
    name = f"kbt-{secrets.token_hex(3)}"
    keytab = keytabs / f"{name}.keytab"
    add_principal(krb5_env, name, keytab=str(keytab), mode=0o640)
    spawner = fake_spawner(name)
    with pytest.raises(web.HTTPError) as info:
        await authenticator.pre_spawn_start(SimpleNamespace(name=name), spawner)
    assert "no usable keytab" in info.value.jupyterhub_message
    assert isinstance(info.value.__cause__, KeytabError)
    assert str(keytab) not in info.value.jupyterhub_message  # the path is for the log
    assert f"keytab {keytab}" in caplog.text and "mode 0640" in caplog.text
    assert "KRB5CCNAME" not in spawner.environment
    with pytest.raises(web.HTTPError) as info:
        await authenticator.pre_spawn_start(SimpleNamespace(name="../root"), fake_spawner("x"))
    assert isinstance(info.value.__cause__, TicketError)


# --- the server's side --------------------------------------------------------------------


@pytest.fixture
def ticket_bytes(krb5_env, tmp_path):
    """The bytes of a real cache with a TGT of a new principal of the test realm."""
    keytab = tmp_path / "t.keytab"
    principal = add_principal(krb5_env, f"kbt-{secrets.token_hex(3)}", keytab=str(keytab))
    cache = tmp_path / "made"
    subprocess.run(
        ["kinit", "-k", "-t", str(keytab), "-c", f"FILE:{cache}", principal],
        env={**os.environ, **krb5_env.env},
        check=True,
    )
    return principal, cache.read_bytes()


class FakeHub:
    """A real HTTP server answering GET with queued (status, body) pairs; records requests."""

    def __init__(self):
        self.answers = []
        self.seen = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.seen.append((self.path, self.headers.get("Authorization")))
                status, body, *headers = outer.answers.pop(0) if outer.answers else (503, b"{}")
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hub/api/{TICKET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub():
    hub = FakeHub()
    try:
        yield hub
    finally:
        hub.close()


def test_ccache_target_takes_file_caches_only():
    assert ccache_target("FILE:/tmp/krb5cc_x") == "/tmp/krb5cc_x"
    assert ccache_target("/tmp/krb5cc_x") == "/tmp/krb5cc_x"
    for bad in ("", "KEYRING:persistent:1000", "KCM:", "DIR:/tmp/cc", "FILE:krb5cc", "FILE:/tmp/"):
        with pytest.raises(FetchError):
            ccache_target(bad)


def test_write_is_atomic_private_and_replaces_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "krb5cc"
    target.symlink_to(victim)
    write_ticket(str(target), b"ticket-1")
    st = os.lstat(target)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and stat.S_IMODE(st.st_mode) == 0o600
    assert target.read_bytes() == b"ticket-1"
    assert victim.read_bytes() == b"precious"
    write_ticket(str(target), b"ticket-2")
    assert target.read_bytes() == b"ticket-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["krb5cc", "victim"]


def test_a_failed_write_leaves_the_old_ticket_and_no_temporary_file(tmp_path):
    target = tmp_path / "krb5cc"
    target.write_bytes(b"old")
    (tmp_path / "sub").mkdir()
    with pytest.raises(FetchError, match="missing does not exist"):
        write_ticket(str(tmp_path / "missing" / "krb5cc"), b"new")
    with pytest.raises(FetchError, match="is a directory"):
        write_ticket(str(tmp_path / "sub"), b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["krb5cc", "sub"]


def test_the_cache_directory_is_made_private_and_removed_with_the_ticket(tmp_path):
    path = tmp_path / "kerbauth-fetch-u" / "krb5cc"
    cache = open_cache(str(path))
    st = os.lstat(path.parent)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == os.geteuid() and cache.created
    cache.write(b"ticket")
    st = os.lstat(path)
    assert (stat.S_IMODE(st.st_mode), st.st_nlink, path.read_bytes()) == (0o600, 1, b"ticket")
    assert os.listdir(path.parent) == ["krb5cc"]
    cache.remove()
    assert not path.parent.exists()
    with pytest.raises(FetchError, match="closed"):
        cache.write(b"late")  # a fetch finishing after the server's stop writes nothing
    assert not path.parent.exists()
    # A directory of one's own that is already there is used, and stays.
    path.parent.mkdir(mode=0o755)
    cache = open_cache(str(path))
    cache.write(b"ticket")
    cache.remove()
    assert path.parent.is_dir() and not path.exists()


# --- another local user plants the server's cache path ---------------------------------


def run_as(account, *argv, env=None):
    return subprocess.run(
        argv,
        user=account.uid,
        group=account.gid,
        extra_groups=[],
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def planted(make_user):
    """A victim, an attacker, and the attacker's ticket file to plant; removes what was planted."""
    victim, attacker = make_user(), make_user()
    made = []
    try:
        yield victim, attacker, made
    finally:
        for path in made:
            subprocess.run(["rm", "-rf", "--one-file-system", path], check=False)


PLANTS = ["file", "directory", "symlink"]


def plant(kind, attacker, path, made):
    """As ``attacker``: a file of theirs at ``path``, a directory of theirs for it, or a link.

    ``path`` is ``/tmp/<dir>/krb5cc``. "file": the attacker makes ``<dir>``
    and their own ticket in it; "directory": ``<dir>`` is theirs, empty;
    "symlink": ``<dir>`` is a link to a directory of theirs holding their ticket.
    """
    top = os.path.dirname(path)
    made.append(top)
    if kind == "symlink":
        theirs = f"/tmp/kbt-plant-{secrets.token_hex(4)}"
        made.append(theirs)
        script = (
            f"mkdir -m 0755 {theirs} && echo attacker > {theirs}/krb5cc && ln -s {theirs} {top}"
        )
    elif kind == "directory":
        script = f"mkdir -m 0777 {top}"
    else:
        script = f"mkdir -m 0755 {top} && echo attacker > {path} && chmod 0644 {path}"
    result = run_as(attacker, "sh", "-c", script)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kind", PLANTS)
def test_kerbauth_fetch_refuses_a_planted_cache_naming_its_owner(
    planted, fake_hub, ticket_bytes, kind
):
    victim, attacker, made = planted
    _, data = ticket_bytes
    fake_hub.answers = [(200, data)]
    path = f"/tmp/kerbauth-fetch-{victim.name}/krb5cc"
    plant(kind, attacker, path, made)
    before = [p for p in made if os.path.lexists(p)]
    result = run_as(
        victim,
        os.path.join(BIN, "kerbauth-fetch"),
        env={
            "KERBAUTH_TICKET_URL": fake_hub.url,
            "KRB5CCNAME": f"FILE:{path}",
            "JUPYTERHUB_API_TOKEN": "tok",
        },
    )
    assert result.returncode == 3, result.stderr
    assert f"cannot use /tmp/kerbauth-fetch-{victim.name}" in result.stderr
    assert f"({attacker.name})" in result.stderr and "fetch_ccache_path" in result.stderr
    assert fake_hub.seen == []  # not even asked: nowhere safe to put it
    # Nothing of the victim's went into the attacker's places.
    for p in before:
        assert os.lstat(p).st_uid == attacker.uid
    for p in made:
        for root, dirs, files in os.walk(p):
            for name in dirs + files:
                assert os.lstat(os.path.join(root, name)).st_uid == attacker.uid


def test_a_cache_name_planted_in_sticky_tmp_is_refused_never_written_through(planted, ticket_bytes):
    """The 0.1 default, ``/tmp/krb5cc_kerbauth_{username}``, right in /tmp."""
    victim, attacker, made = planted
    _, data = ticket_bytes
    path = f"/tmp/krb5cc_kerbauth_{victim.name}"
    made.append(path)
    assert run_as(attacker, "sh", "-c", f"echo attacker > {path}").returncode == 0
    owner = rf"a file of uid {attacker.uid} \({attacker.name}\) is already there"
    with pytest.raises(UnsafeCacheTarget, match=owner):
        open_cache(path, uid=victim.uid)
    # Not planted yet: the name is claimed at once (here by root), so planting it later fails.
    os.unlink(path)
    cache = open_cache(path)
    try:
        assert os.lstat(path).st_uid == os.geteuid()
        replant = run_as(attacker, "sh", "-c", f"rm -f {path} || echo attacker > {path}")
        assert replant.returncode != 0
        cache.write(data)
        assert read_ccache_bytes(path) == data and os.lstat(path).st_uid == os.geteuid()
    finally:
        cache.remove()
    assert not os.path.lexists(path)


def test_fetch_sends_the_token_in_a_header_and_checks_the_answer(fake_hub, ticket_bytes):
    principal, data = ticket_bytes
    fake_hub.answers = [(200, data), (200, b"<html>not a ticket</html>"), (403, b"{}")]
    got, times = fetch_ticket(fake_hub.url, "tok123")
    assert got == data and times.principal == principal
    assert fake_hub.seen[0] == (f"/hub/api/{TICKET_PATH}", "token tok123")
    with pytest.raises(FetchError, match="not a readable credential cache"):
        fetch_ticket(fake_hub.url, "tok123")
    with pytest.raises(FetchError, match="403.*scope custom:kerbauth:ticket"):
        fetch_ticket(fake_hub.url, "tok123")
    with pytest.raises(FetchError, match="JUPYTERHUB_API_TOKEN"):
        fetch_ticket(fake_hub.url, "")
    with pytest.raises(FetchError, match="not an http"):
        fetch_ticket("file:///etc/shadow", "tok123")


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(fake_hub, ticket_bytes):
    elsewhere = FakeHub()
    try:
        _, data = ticket_bytes
        elsewhere.answers = [(200, data)]
        fake_hub.answers = [(302, b"", ("Location", elsewhere.url))]
        with pytest.raises(FetchError, match="302"):
            fetch_ticket(fake_hub.url, "tok123")
        assert elsewhere.seen == []
    finally:
        elsewhere.close()


def test_next_fetch_follows_the_hubs_renewal_rule():
    ticket = SimpleNamespace(start=1000, end=1000 + 36000)
    assert next_fetch_delay(ticket, 1000, margin=1800) == 36000 - 1800
    short = SimpleNamespace(start=1000, end=1060)
    assert next_fetch_delay(short, 1000, margin=1800) == 30
    assert next_fetch_delay(short, 1059, margin=1800) == 5  # never a busy loop


def test_keeper_backs_off_logs_a_failure_streak_once_and_recovers(
    fake_hub, ticket_bytes, tmp_path, caplog
):
    principal, data = ticket_bytes
    log = logging.getLogger("test-keeper")
    caplog.set_level(logging.DEBUG, "test-keeper")
    target = tmp_path / "krb5cc"
    environ = {
        "KERBAUTH_TICKET_URL": fake_hub.url,
        "KRB5CCNAME": f"FILE:{target}",
        "JUPYTERHUB_API_TOKEN": "tok",
        "KERBAUTH_RENEW_MARGIN": "60",
    }
    keeper = keeper_from_environ(environ, log, max_backoff=4, rng=lambda: 0.0)  # no jitter
    fake_hub.answers = [(503, b'{"message": "KDC down"}')] * 4 + [(200, data)]
    delays = [keeper.step() for _ in range(5)]
    assert delays[:4] == [1, 2, 4, 4]
    end = parse_ccache(data).end
    assert abs(delays[4] - (end - 60 - time.time())) < 5
    assert read_ccache_bytes(str(target)) == data
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "503" in warnings[0].getMessage() and "KDC down" in warnings[0].getMessage()
    assert "works again after 4 failure(s)" in caplog.text
    assert principal in caplog.text
    assert "tok" not in caplog.text.replace("token", "")


def test_keepers_that_failed_together_come_back_spread_out(tmp_path):
    """The hub's backoff (core.policy): jittered, so a hub restart is not met by every server
    at the same moment."""
    url = f"http://127.0.0.1:{_free_port()}/hub/api/{TICKET_PATH}"  # nobody listens
    target = open_cache(str(tmp_path / "krb5cc"))
    log = logging.getLogger("test-keeper")
    try:
        keepers = [
            TicketKeeper(url=url, token="tok", target=target, max_backoff=4, timeout=5, log=log)
            for _ in range(20)
        ]
        third = [[keeper.step() for _ in range(3)][-1] for keeper in keepers]
    finally:
        target.remove()
    assert all(4 * 0.9 <= delay <= 4 for delay in third), third
    assert len({round(delay, 3) for delay in third}) > 10, third


def test_a_full_file_system_keeps_the_servers_old_ticket_and_says_why(tmp_path):
    """The server writes as the hub does (core.atomic_write): nothing partial, nothing left."""
    directory = tmp_path / "small"
    directory.mkdir(mode=0o700)
    with small_tmpfs(directory, mode=0o700):
        cache = open_cache(str(directory / "krb5cc"))
        try:
            cache.write(b"old-ticket")
            fill_up(directory)
            with pytest.raises(FetchError, match=r"cache .*/krb5cc: No space left on device"):
                cache.write(b"new-ticket" * 1000)
            assert (directory / "krb5cc").read_bytes() == b"old-ticket"
            assert sorted(os.listdir(directory)) == ["filler", "krb5cc"]
        finally:
            cache.remove()


def test_no_url_means_no_keeper():
    assert keeper_from_environ({"KRB5CCNAME": "FILE:/tmp/x"}, logging.getLogger()) is None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_jupyter_server(tmp_path, port, token, env, log_path):
    """A real ``jupyter server`` (kerbauth's extension enabled as installed), logging to
    ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [
                os.path.join(BIN, "jupyter-server"),
                "--allow-root",
                "--no-browser",
                f"--port={port}",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={tmp_path}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_jupyter_server(server):
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def test_an_unreachable_hub_neither_blocks_nor_stops_the_server(tmp_path):
    """The installed server extension in a real ``jupyter server``, its hub port closed."""
    port, dead = _free_port(), _free_port()
    token = secrets.token_hex(8)
    log_path = tmp_path / "server.log"
    env = {
        **os.environ,
        "KERBAUTH_TICKET_URL": f"http://127.0.0.1:{dead}/hub/api/{TICKET_PATH}",
        "KRB5CCNAME": f"FILE:{tmp_path}/krb5cc",
        "JUPYTERHUB_API_TOKEN": secrets.token_hex(8),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    server = start_jupyter_server(tmp_path, port, token, env, log_path)
    try:
        end = time.monotonic() + 60
        status = None
        while time.monotonic() < end and server.poll() is None:
            try:
                status = requests.get(
                    f"http://127.0.0.1:{port}/api/status",
                    headers={"Authorization": f"token {token}"},
                    timeout=2,
                ).status_code
            except requests.RequestException:
                status = None
            if status == 200 and "no Kerberos ticket from" in log_path.read_text():
                break
            time.sleep(0.2)
        text = log_path.read_text()
        assert server.poll() is None, text
        assert status == 200, text
        assert "fetching the Kerberos ticket into" in text
        assert f"no Kerberos ticket from http://127.0.0.1:{dead}" in text
        assert "Connection refused" in text
        assert env["JUPYTERHUB_API_TOKEN"] not in text
        assert not (tmp_path / "krb5cc").exists()
    finally:
        stop_jupyter_server(server)


def test_a_cache_place_that_cannot_be_used_is_never_left_in_krb5ccname(tmp_path):
    """A real ``jupyter server``: its kernels get a private cache, removed when it stops."""
    import re

    port = _free_port()
    token = secrets.token_hex(8)
    log_path = tmp_path / "server.log"
    unusable = tmp_path / "missing" / "sub" / "krb5cc"  # anyone who could make it would own it
    env = {
        **os.environ,
        "KERBAUTH_TICKET_URL": f"http://127.0.0.1:{_free_port()}/hub/api/{TICKET_PATH}",
        "KRB5CCNAME": f"FILE:{unusable}",
        "JUPYTERHUB_API_TOKEN": secrets.token_hex(8),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    server = start_jupyter_server(tmp_path, port, token, env, log_path)
    private = None
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and server.poll() is None and private is None:
            found = re.search(r"this server uses FILE:(\S+) instead", log_path.read_text())
            private = found and found.group(1)
            time.sleep(0.2)
        text = log_path.read_text()
        assert private, text
        assert f"cannot use {unusable}" in text and "missing does not exist" in text
        st = os.lstat(os.path.dirname(private))
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o700)
        # A kernel started now inherits the private cache, not the unusable place.
        end = time.monotonic() + 60
        while True:
            try:
                started = requests.post(
                    f"http://127.0.0.1:{port}/api/kernels",
                    headers={"Authorization": f"token {token}"},
                    json={},
                    timeout=30,
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < end and server.poll() is None, log_path.read_text()
                time.sleep(0.2)
        assert started.status_code == 201, started.text
        kernel_id = started.json()["id"]
        environ = None
        end = time.monotonic() + 60
        while environ is None and time.monotonic() < end:
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if kernel_id.encode() not in f.read():
                            continue
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        environ = dict(
                            p.decode().split("=", 1) for p in f.read().split(b"\0") if b"=" in p
                        )
                except OSError:
                    continue
            time.sleep(0.2)
        assert environ is not None, "no kernel process"
        assert environ["KRB5CCNAME"] == f"FILE:{private}"
        assert not (tmp_path / "missing").exists()
    finally:
        stop_jupyter_server(server)
    # Stopped: the private directory it made is gone.
    assert private and not os.path.lexists(os.path.dirname(private))


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_kerbauth_fetch_keep_fetches_until_stopped_then_removes_the_ticket(
    fake_hub, ticket_bytes, tmp_path, stop
):
    principal, data = ticket_bytes
    fake_hub.answers = [(503, b"{}"), (200, data)]
    target = tmp_path / "kerbauth-fetch-u" / "krb5cc"
    token = secrets.token_hex(8)
    keeper = subprocess.Popen(
        [os.path.join(BIN, "kerbauth-fetch"), "--keep", "--max-backoff", "1"],
        env={
            "PATH": os.environ["PATH"],
            "KERBAUTH_TICKET_URL": fake_hub.url,
            "KRB5CCNAME": f"FILE:{target}",
            "JUPYTERHUB_API_TOKEN": token,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not target.exists() and keeper.poll() is None:
            time.sleep(0.1)
        assert target.read_bytes() == data
        assert keeper.poll() is None  # it goes on, to fetch again before the end
    finally:
        keeper.send_signal(stop)
        output, _ = keeper.communicate(timeout=20)
    # Stopped: the ticket and the directory it made are gone, and it says so.
    assert keeper.returncode == 0, output
    assert not target.parent.exists()
    assert f"the ticket in {target} is removed" in output
    assert "refused the ticket request: 503" in output
    assert f"Kerberos ticket of {principal} written to {target}" in output
    assert token not in output
    assert all(seen == (f"/hub/api/{TICKET_PATH}", f"token {token}") for seen in fake_hub.seen)


class FakeUser:
    """What the authenticator uses of a JupyterHub user: its name and auth_state."""

    def __init__(self, name, auth_state):
        self.name = name
        self.auth_state = auth_state
        self.saved = []

    async def get_auth_state(self):
        return self.auth_state

    async def save_auth_state(self, auth_state):
        self.saved.append(auth_state)
        self.auth_state = auth_state


PASSWORD = "Correct-Horse-7-Battery"


async def test_password_tickets_are_fetched_from_auth_state_and_renewed_when_due(
    krb5_env, tmp_path, monkeypatch
):
    from jupyterhub.auth import DummyAuthenticator

    from kerbauth import KerberosTickets
    from kerbauth.hub.tickets import AUTH_STATE_KEY

    class PasswordFetch(KerberosTickets, DummyAuthenticator):
        pass

    name = f"kbt-{secrets.token_hex(3)}"
    principal = f"{name}@{krb5_env.realm}"
    krb5_env.addprinc(principal, PASSWORD)
    c = Config()
    c.KerberosTickets.password_tickets = True
    c.KerberosTickets.delivery = "fetch"
    c.KerberosTickets.ccache_dir = str(tmp_path / "never-made")
    c.Authenticator.enable_auth_state = True
    authenticator = PasswordFetch(config=c)
    logged_in = await authenticator.get_authenticated_user(
        None, {"username": name, "password": PASSWORD}
    )
    user = FakeUser(name, logged_in["auth_state"])
    blob = user.auth_state[AUTH_STATE_KEY]
    assert PASSWORD not in str(user.auth_state)

    # Not due: auth_state's own ticket, nothing saved.
    data = await authenticator.fetch_ticket(user)
    assert data == base64.b64decode(blob) and not user.saved
    # Due (within renew_margin of its end): renewed by the KDC and saved back.
    ticket = parse_ccache(data)
    assert ticket.renew_till > ticket.end
    later = ticket.end - authenticator.renew_margin / 2
    monkeypatch.setattr(authenticator.renewer, "clock", lambda: later)
    renewed = await authenticator.fetch_ticket(user)
    assert renewed != data and parse_ccache(renewed).principal == principal
    assert user.saved and user.saved[-1][AUTH_STATE_KEY] == base64.b64encode(renewed).decode()
    assert not (tmp_path / "never-made").exists()
    # Logged out of auth_state: the user must log in again.
    with pytest.raises(TicketError) as info:
        await authenticator.fetch_ticket(FakeUser(name, {}))
    assert info.value.cause == "expired"


def test_the_wheel_enables_the_extension_and_installs_kerbauth_fetch(tmp_path):
    """What a user image gets from ``pip install kerbauth``."""
    import json
    import zipfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), root],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("kerbauth-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (config,) = [n for n in names if n.endswith("/jupyter_server_config.d/kerbauth.json")]
        assert ".data/data/etc/jupyter/" in config
        enabled = json.loads(z.read(config))["ServerApp"]["jpserver_extensions"]
        assert enabled == {"kerbauth.server": True}
        entry_points = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "kerbauth-fetch = kerbauth.server.fetch:main" in entry_points
    import kerbauth.server

    assert kerbauth.server._jupyter_server_extension_points() == [{"module": "kerbauth.server"}]
