"""The hub's systemd unit (examples/systemd): systemd's own check of it, and its settings
started by hand.

systemd does not run here (nor in CI), but ``systemd-analyze verify`` works
without it: it loads the unit as the manager would and warns about unknown
keys, bad values and a missing ExecStart program.

The second test does what systemd does for the unit, from the unit file
itself: the state, runtime and credentials directories with the unit's modes,
the crypt key copied into the credentials directory (0400), the environment
made of the unit's ``Environment=`` lines, its ``EnvironmentFile=`` and the
variables systemd adds, the working directory, and ``ExecStart`` run as it
is. Only paths (under a private root) and the hub's ports are the test's own.
A user logs in with their password and spawns; their cache is in the runtime
directory, auth_state is encrypted with the key of the credentials file, and
the key is in no environment and no command line. A restart as systemd makes
one with the unit's ``KillMode`` and ``RuntimeDirectoryPreserve`` leaves the
server running with its ticket, and the restarted hub writes it again from
auth_state.
"""

import base64
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import time

import pytest
import requests
from cryptography.fernet import Fernet

from kerbauth.core.cache_directory import CacheDirectory
from kerbauth.core.ccache import parse_ccache, read_ccache
from kerbauth.hub.tickets import AUTH_STATE_KEY, KerberosTickets
from support.edge import EXAMPLE, server_environment, wait_for
from support.hub import BIN, SERVICE, Hub
from support.ports import free_port
from support.served import wait_for_ticket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT = os.path.join(REPO, "examples", "systemd", "jupyterhub.service")
CONFIG_LINES = os.path.join(REPO, "examples", "systemd", "jupyterhub_config_systemd.py")
UNIT_NAME = os.path.basename(UNIT)
# Where the unit expects JupyterHub and kerbauth (a venv); the test's venv stands in.
INSTALL = "/opt/jupyterhub/bin"
# systemd's PATH when a unit sets none (used only if the unit set no PATH).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def parse_unit(text):
    """``{section: [(key, value), ...]}`` of a unit file, as systemd reads one (no
    line continuations: the example has none, and one would be refused here)."""
    sections, current = {}, None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line {number}: a continuation line"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"line {number}: not key=value: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit, key, section="Service"):
    return [v for k, v in unit[section] if k == key]


def value(unit, key, section="Service"):
    found = values(unit, key, section)
    assert len(found) == 1, f"{key}= is set {len(found)} times in {UNIT}"
    return found[0]


@pytest.fixture(scope="module")
def unit():
    with open(UNIT) as f:
        return parse_unit(f.read())


def verify(path):
    """``systemd-analyze verify`` of the unit at ``path``: (exit status, its messages)."""
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", path],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], "SYSTEMD_LOG_LEVEL": "warning"},
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def test_systemd_verifies_the_unit(unit, tmp_path):
    """systemd-analyze verify accepts the unit without a warning (ExecStart's program
    is the test's venv's jupyterhub: its path is the one thing changed), and the unit
    says what kerbauth needs: root, the cache directory kerbauth expects with its
    mode, the crypt key from a credential and not from the unit's text."""
    with open(UNIT) as f:
        text = f.read()
    assert text.count(f"{INSTALL}/jupyterhub ") == 1
    local = tmp_path / UNIT_NAME
    local.write_text(text.replace(f"{INSTALL}/jupyterhub ", f"{BIN}/jupyterhub "))
    status, messages = verify(str(local))
    assert (status, messages) == (0, "")
    # The check sees mistakes: an unknown key is reported (systemd would ignore it).
    local.write_text(local.read_text().replace("[Service]\n", "[Service]\nKillMod=process\n"))
    status, messages = verify(str(local))
    assert "Unknown key 'KillMod'" in messages, messages

    assert values(unit, "User") in ([], ["root"])
    ccache_dir = KerberosTickets.class_traits()["ccache_dir"].default_value
    assert "/run/" + value(unit, "RuntimeDirectory") == ccache_dir
    default_mode = CacheDirectory("/nowhere").mode
    assert int(value(unit, "RuntimeDirectoryMode"), 8) == default_mode == 0o711
    # The credential, read by the config lines by its name; without systemd, the same
    # lines read the file itself, in /etc/jupyterhub under that name.
    name, _, source = value(unit, "LoadCredential").partition(":")
    assert source == f"/etc/jupyterhub/{name}"
    with open(CONFIG_LINES) as f:
        assert f'"{name}"' in f.read()
    assert "JUPYTERHUB_CRYPT_KEY=" not in text
    assert value(unit, "KillMode") == "process"
    assert value(unit, "Restart") == "on-failure"
    assert "network-online.target" in value(unit, "After", "Unit").split()


class UnitByHand:
    """What systemd makes for the unit, under a private root, and the hub it starts."""

    def __init__(self, unit, root, krb5_conf, site_env):
        self.unit = unit
        self.root = root
        self.krb5_conf = krb5_conf
        self.process = None
        self.stopped = []  # hub processes started and stopped, for the teardown
        self.servers = []  # users' servers, which outlive the hub (KillMode=process)
        os.chmod(root, 0o711)  # users reach their cache below it, as below /
        self.state = self.make_dir("/var/lib/" + value(unit, "StateDirectory"), "StateDirectory")
        self.runtime = self.make_dir("/run/" + value(unit, "RuntimeDirectory"), "RuntimeDirectory")
        self.credentials = self.path(f"/run/credentials/{UNIT_NAME}")
        self.working = self.path(value(unit, "WorkingDirectory"))
        assert self.working == self.state, "the database and cookie secret go to the state dir"
        # The crypt key at rest: a root-only file where LoadCredential= looks.
        self.key = secrets.token_hex(32)
        name, _, source = value(unit, "LoadCredential").partition(":")
        self.credential_name, self.key_source = name, self.path(source)
        self.write(self.key_source, self.key + "\n", 0o600)
        # The site's values (optional, "-"): the test's PAM service.
        env_file = value(unit, "EnvironmentFile").removeprefix("-")
        self.write(self.path(env_file), "".join(f"{k}={v}\n" for k, v in site_env.items()), 0o644)
        self.argv = [self.path(a) if a.startswith("/") else a for a in self.exec_start()]
        self.config_path = self.argv[self.argv.index("-f") + 1]
        self.log_path = os.path.join(root, "journal.log")

    def path(self, unit_path):
        """The test's path for one the unit names: the install and krb5.conf are the
        test's own; the host's /etc, /var and /run go under the private root."""
        if unit_path.startswith(INSTALL + "/") or unit_path == INSTALL:
            return BIN + unit_path[len(INSTALL) :]
        if unit_path == "/etc/krb5.conf":
            return self.krb5_conf
        if unit_path.split("/")[1] in ("etc", "var", "run"):
            return os.path.join(self.root, unit_path.lstrip("/"))
        return unit_path  # /usr, /bin, ...: the host's

    def make_dir(self, unit_path, kind):
        path = self.path(unit_path)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        os.mkdir(path)
        mode_key = f"{kind}Mode"
        os.chmod(path, int(value(self.unit, mode_key), 8) if values(self.unit, mode_key) else 0o755)
        return path

    @staticmethod
    def write(path, text, mode):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def exec_start(self):
        argv = shlex.split(value(self.unit, "ExecStart"))
        assert argv[0].startswith("/"), "ExecStart names its program by absolute path"
        return argv

    def load_credentials(self):
        """LoadCredential=: a directory only the service's user reads, the file 0400 in it."""
        os.makedirs(os.path.dirname(self.credentials), mode=0o755, exist_ok=True)
        os.mkdir(self.credentials, 0o700)
        with open(self.key_source, "rb") as f:
            data = f.read()
        target = os.path.join(self.credentials, self.credential_name)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(self.credentials, 0o500)

    def environment(self):
        """The hub's environment as systemd makes it: Environment= lines, then the
        EnvironmentFile's, User='s variables, the directories' variables. Nothing of
        the test's own environment (no JUPYTERHUB_CRYPT_KEY can come from it)."""
        env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8"}
        for line in values(self.unit, "Environment"):
            for assignment in shlex.split(line):
                key, _, val = assignment.partition("=")
                if key == "PATH":
                    val = ":".join(self.path(p) for p in val.split(":"))
                elif val.startswith("/"):
                    val = self.path(val)
                env[key] = val
        env_file = self.path(value(self.unit, "EnvironmentFile").removeprefix("-"))
        with open(env_file) as f:
            env.update(line.strip().split("=", 1) for line in f if "=" in line)
        env.update(HOME="/root", USER="root", LOGNAME="root", SHELL="/bin/sh")
        env.update(RUNTIME_DIRECTORY=self.runtime, STATE_DIRECTORY=self.state)
        env["CREDENTIALS_DIRECTORY"] = self.credentials
        env["INVOCATION_ID"] = secrets.token_hex(16)
        return env

    def start(self, config):
        """Start the hub as ExecStart says (not waiting for it); its process."""
        with open(self.config_path, "w") as f:
            f.write(config)
        os.chmod(self.config_path, 0o600)
        self.load_credentials()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.working,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.process

    def stop(self):
        """A stop as systemd makes it with the unit's KillMode=process: SIGTERM to the
        hub alone; then the credentials go, and the runtime directory unless preserved."""
        assert value(self.unit, "KillMode") == "process"
        process, self.process = self.process, None
        self.stopped.append(process)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        if os.path.isdir(self.credentials):
            shutil.rmtree(self.credentials)
        if value(self.unit, "RuntimeDirectoryPreserve") == "no":
            shutil.rmtree(self.runtime)
        return process

    def proxy_pid(self):
        """The proxy's pid from its pid file (JupyterHub's default, in the working dir)."""
        try:
            with open(os.path.join(self.working, "jupyterhub-proxy.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def close(self):
        """Kill what is left: the hubs' sessions, the proxy and the users' servers."""
        if self.process is not None:
            self.stopped.append(self.process)
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(30)
        for process in self.stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        pid = self.proxy_pid()
        if pid:
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"configurable-http-proxy" in f.read():
                        os.kill(pid, signal.SIGKILL)
        for pid in self.servers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def hub_config(port, token):
    """The PAM example, the lines the unit pairs with, the site's choice of password
    tickets, and the test's ports and API token (nothing about paths)."""
    with open(EXAMPLE) as f:
        example = f.read()
    with open(CONFIG_LINES) as f:
        systemd_lines = f.read()
    return f"""{example}
{systemd_lines}
# --- the site: tickets from the login password, kept in auth_state ---
c.KerberosTickets.principal_template = "{{username}}@{{realm}}"
c.KerberosTickets.password_tickets = True
c.Authenticator.enable_auth_state = True
# Looks every 5 s (default 60): the first look of a hub runs before JupyterHub has
# loaded its users (it fails, logged), so a restarted hub's first real one is the next.
c.KerberosTickets.renew_interval = 5
# --- the test's ports and API token ---
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {free_port()}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
c.JupyterHub.services = [{{"name": {SERVICE!r}, "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": [{SERVICE!r}]}}]
c.Spawner.start_timeout = 60
"""


def wait_ready(hub, by_hand, deadline=60):
    end = time.monotonic() + deadline
    while True:
        if hub.process.poll() is not None:
            raise AssertionError(f"the hub exited:\n{by_hand.log_text()[-6000:]}")
        with contextlib.suppress(requests.RequestException):
            if hub.health(timeout=2).status_code == 200:
                return
        assert time.monotonic() < end, f"the hub never answered:\n{by_hand.log_text()[-6000:]}"
        time.sleep(0.1)


def proc_bytes(pid, name):
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read()


def session_members(sid):
    """The pids of the processes in session ``sid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = proc_bytes(entry, "stat").rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # state ppid pgrp session
            found.append(int(entry))
    return found


def alive(pid):
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        state = proc_bytes(pid, "stat").rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != b"Z"


@pytest.fixture
def by_hand(unit, krb5_env, pam_service, make_user):
    make_user.ensure_group("hub-users")  # the example's groups
    make_user.ensure_group("hub-admins")
    root = tempfile.mkdtemp(prefix="kerbauth-systemd-")
    made = None
    try:
        made = UnitByHand(
            unit, root, krb5_env.env["KRB5_CONFIG"], {"JUPYTERHUB_PAM_SERVICE": pam_service()}
        )
        yield made
    finally:
        if made is not None:
            made.close()
            print(f"--- the end of the hub's log ---\n{made.log_text()[-8000:]}")
        shutil.rmtree(root, ignore_errors=True)


def test_unit_settings_started_by_hand(by_hand, krb5_env, make_user):
    """The hub started as the unit says gets its crypt key from the credential only,
    writes the user's cache into the runtime directory, keeps its database and cookie
    secret in the state directory; the key is in no environment and no command line;
    a restart with the unit's KillMode and RuntimeDirectoryPreserve keeps the server
    and its ticket, and the restarted hub writes the ticket again from auth_state."""
    port, token = free_port(), secrets.token_hex(16)
    config = hub_config(port, token)
    key = by_hand.key.encode()

    process = by_hand.start(config)
    hub = Hub(process, port, by_hand.working, token, by_hand.log_path, by_hand.config_path)
    wait_ready(hub, by_hand)
    for pid in (process.pid, by_hand.proxy_pid()):
        assert key not in proc_bytes(pid, "cmdline")
        assert key not in proc_bytes(pid, "environ")
        assert b"JUPYTERHUB_CRYPT_KEY=" not in proc_bytes(pid, "environ")
    # JupyterHub's defaults, relative to WorkingDirectory=: the state directory.
    assert os.path.isfile(os.path.join(by_hand.state, "jupyterhub.sqlite"))
    secret = os.stat(os.path.join(by_hand.state, "jupyterhub_cookie_secret"))
    assert stat.S_IMODE(secret.st_mode) == 0o600

    account = make_user(groups=("hub-users",))
    principal = f"{account.name}@{krb5_env.realm}"
    krb5_env.addprinc(principal, account.password)
    assert hub.login(account.name, account.password).status_code == 302
    hub.start_server(account.name)  # jupyterhub-singleuser found on the unit's PATH

    env = server_environment(hub, account.name)
    cache = os.path.join(by_hand.runtime, f"krb5cc_{account.name}")
    assert env["KRB5CCNAME"] == f"FILE:{cache}"
    assert env["KRB5_CONFIG"] == by_hand.krb5_conf
    ticket = wait_for_ticket(cache, principal)
    st = os.stat(cache)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (account.uid, 0o600)
    assert stat.S_IMODE(os.stat(by_hand.runtime).st_mode) == 0o711  # kerbauth took it as is
    klist = subprocess.run(
        ["klist", "-s"], env=env, user=account.uid, group=account.gid, cwd=account.home
    )
    assert klist.returncode == 0
    server_pid = hub.server(account.name)["state"]["pid"]
    by_hand.servers.append(server_pid)
    server_env = proc_bytes(server_pid, "environ")
    assert key not in server_env
    for name in (b"JUPYTERHUB_CRYPT_KEY=", b"CREDENTIALS_DIRECTORY="):
        assert name not in server_env

    # auth_state is encrypted with the credential's key (a random one, which the hub's
    # environment does not hold) and holds the ticket.
    database = os.path.join(by_hand.state, "jupyterhub.sqlite")
    with contextlib.closing(sqlite3.connect(database)) as db:
        (blob,) = db.execute(
            "SELECT encrypted_auth_state FROM users WHERE name = ?", (account.name,)
        ).fetchone()
    fernet = Fernet(base64.urlsafe_b64encode(bytes.fromhex(by_hand.key)))
    auth_state = json.loads(fernet.decrypt(blob))
    assert parse_ccache(base64.b64decode(auth_state[AUTH_STATE_KEY])).principal == principal

    # systemctl restart: the hub alone is stopped; nothing of it stays behind but the
    # user's server (its own session), which keeps running with its cache.
    hub_pid, proxy_pid = process.pid, by_hand.proxy_pid()
    by_hand.stop()
    wait_for(lambda: not session_members(hub_pid), 30, "the hub's processes gone")
    wait_for(lambda: not alive(proxy_pid), 30, "the proxy stopped by the hub")
    assert alive(server_pid)
    before = os.stat(cache)
    assert read_ccache(cache).principal == principal

    process = by_hand.start(config)
    hub = Hub(process, port, by_hand.working, token, by_hand.log_path, by_hand.config_path)
    wait_ready(hub, by_hand)
    server = hub.server(account.name)
    assert server and server["ready"] and server["state"]["pid"] == server_pid
    # The restarted hub has no record of its own: it reads the ticket from auth_state
    # (with the key of the credential) and writes the cache again.
    wait_for(lambda: os.stat(cache).st_ino != before.st_ino, 30, "the cache written again")
    assert read_ccache(cache).principal == principal
    assert read_ccache(cache).end >= ticket.end
