"""A real, private PostgreSQL 15 cluster that logs users in with Kerberos (GSSAPI).

``gss_postgres(realm)`` (a module-scoped factory) starts, once per realm and
test module, a cluster made by Debian's ``initdb`` in a fresh temporary
directory, run as the ``postgres`` account (PostgreSQL refuses to run as
root). It listens on 127.0.0.1 on a free port; its unix socket is in a
directory of its own that only ``postgres`` can enter, used only by the
fixture's own setup (peer login as ``postgres``). Over TCP the only way in is
``gss``, with and without GSSAPI encryption (``hostgssenc`` and
``hostnogssenc``): the server's key is a keytab of ``postgres/localhost`` in
``realm`` (``krb_server_keyfile``), and a client principal ``NAME@REALM``
(one component, this realm) is mapped by ``pg_ident.conf`` to the role
``NAME``, so a user's role is their account name (:meth:`GssPostgres.add_role`).

The cluster is stopped with ``pg_ctl stop -m fast`` (its processes killed if
that does not end them) and its directory removed at the module's end, even
when a test fails; the host's own clusters and /var/run/postgresql are never
touched.
"""

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest

from .ports import free_port

BIN = "/usr/lib/postgresql/15/bin"
ACCOUNT = "postgres"  # Debian's postgresql-common makes it
SERVICE = "postgres/localhost"  # libpq's default krbsrvname, and the host clients name
DEADLINE = 60


def _account():
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        pytest.fail(f"no {ACCOUNT!r} account: install postgresql-15 (scripts/install-deps)")


def _stat(pid):
    """``(parent pid, state, start time)`` of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], fields[19]


def _processes(postmaster):
    """The postmaster and its children (backends, workers), each as ``(pid, start time)``:
    a pid alone may be another process's by the time it is killed."""
    found = []
    for entry in os.listdir("/proc"):
        stat = _stat(entry) if entry.isdigit() else None
        if stat and (int(entry) == postmaster or stat[0] == postmaster):
            found.append((int(entry), stat[2]))
    return found


def _running(process):
    stat = _stat(process[0])
    return stat is not None and stat[2] == process[1] and stat[1] != "Z"


@dataclass
class GssPostgres:
    realm: object
    directory: str
    port: int = 0
    pid: int = 0

    host = "localhost"

    @property
    def data(self):
        return os.path.join(self.directory, "data")

    @property
    def sockets(self):
        return os.path.join(self.directory, "sockets")

    @property
    def keytab(self):
        return os.path.join(self.directory, "postgres.keytab")

    @property
    def log(self):
        return os.path.join(self.directory, "postgres.log")

    def conninfo(self, user, gssencmode):
        """A libpq connection string for ``user`` over TCP with this ``gssencmode``."""
        return (
            f"host={self.host} port={self.port} dbname=postgres user={user} "
            f"gssencmode={gssencmode} connect_timeout=20"
        )

    def log_text(self):
        with contextlib.suppress(OSError), open(self.log, errors="replace") as f:
            return f.read()
        return ""

    def _as_postgres(self, argv, stdin=None, check=True):
        account = _account()
        result = subprocess.run(
            argv,
            input=stdin,
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            cwd=self.directory,
            env={
                "PATH": f"{BIN}:/usr/bin:/bin",
                "LC_ALL": "C",
                "KRB5_CONFIG": self.realm.env["KRB5_CONFIG"],
                # The server's replay cache goes with the cluster, not into /var/tmp.
                "KRB5RCACHEDIR": self.directory,
            },
            capture_output=True,
            text=True,
            timeout=DEADLINE + 30,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{argv[0]} failed ({result.returncode}): {result.stdout}{result.stderr}"
                f"\n--- server log ---\n{self.log_text()[-4000:]}"
            )
        return result

    def sql(self, text, **variables):
        """Run ``text`` as the superuser over the unix socket; psql ``:"var"`` are quoted."""
        argv = [f"{BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        for key, value in variables.items():
            argv += ["-v", f"{key}={value}"]
        argv += ["-h", self.sockets, "-p", str(self.port), "-U", ACCOUNT, "-d", "postgres"]
        return self._as_postgres(argv, stdin=text).stdout

    def add_role(self, name):
        """A login role ``name`` (a user's account name), with no password."""
        self.sql('CREATE ROLE :"name" LOGIN;\n', name=name)

    # --- life cycle ------------------------------------------------------------------

    def create(self):
        account = _account()
        realm = self.realm.realm
        # The keytab is written while the directory is still root's (nothing in it
        # can be a link planted by another account), then handed to postgres.
        principal = f"{SERVICE}@{realm}"
        # kadmin.local -q exits 0 either way: its output says whether it is there.
        known = self.realm.run_kadminl(["getprinc", principal]).decode()
        if f"Principal: {principal}" not in known:
            self.realm.addprinc(principal)
        add_principal_keytab(self.realm, principal, self.keytab, account)
        options = f"include_realm=1 krb_realm={realm} map=kerberos"
        self.init_cluster(
            {
                "krb_server_keyfile": f"'{self.keytab}'",
                "max_connections": "20",
                "log_connections": "on",
            },
            "# users: Kerberos only, with and without GSSAPI encryption\n"
            f"hostgssenc all all 127.0.0.1/32 gss {options}\n"
            f"hostnogssenc all all 127.0.0.1/32 gss {options}\n",
        )
        # NAME@REALM (one component, this realm) may log in as the role NAME, only.
        self._write("pg_ident.conf", f"kerberos /^([^@/]+)@{realm.replace('.', '[.]')}$ \\1\n")

    def init_cluster(self, settings, hba):
        """initdb as postgres, then ``settings`` (postgresql.conf, over a quick test
        cluster's own on loopback) and ``hba`` (the pg_hba.conf lines of the clients,
        after the fixture's own peer login as postgres)."""
        account = _account()
        os.mkdir(self.sockets, 0o700)
        os.chown(self.sockets, account.pw_uid, account.pw_gid)
        os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._as_postgres(
            [
                f"{BIN}/initdb",
                "--pgdata",
                self.data,
                "--username",
                ACCOUNT,
                "--auth-local",
                "peer",
                "--auth-host",
                "reject",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockets}'",
            "unix_socket_permissions": "0700",
            "ssl": "off",
            "shared_buffers": "16MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **settings,
        }
        self._write("postgresql.conf", "".join(f"{k} = {v}\n" for k, v in settings.items()), "a")
        self._write(
            "pg_hba.conf",
            "# kerbauth tests: the fixture's own setup, as postgres over the socket\n"
            "local all postgres peer\n" + hba,
        )

    def _write(self, name, text, how="w"):
        # As postgres: the data directory is its own, and root follows no link there.
        self._as_postgres(
            ["sh", "-c", f'cat >{">" if how == "a" else ""} "$0"', os.path.join(self.data, name)],
            stdin=text,
        )

    def start(self, attempts=3):
        for _ in range(attempts):
            self.port = free_port()
            result = self._as_postgres(
                [
                    f"{BIN}/pg_ctl",
                    "start",
                    "--pgdata",
                    self.data,
                    "--log",
                    self.log,
                    "--wait",
                    "--timeout",
                    str(DEADLINE),
                    "--options",
                    f"-p {self.port}",
                ],
                check=False,
            )
            self.pid = self._postmaster_pid()
            if result.returncode == 0:
                return
            if "could not bind" not in self.log_text():  # a port taken since: another try
                break
            self.stop()
        raise AssertionError(
            f"PostgreSQL did not start: {result.stdout}{result.stderr}\n{self.log_text()[-4000:]}"
        )

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return self.pid

    def stop(self):
        """Stop the server (fast shutdown, then SIGKILL) and wait until its processes are gone."""
        if not self.pid:
            return
        processes = _processes(self.pid)
        stopped = self._as_postgres(
            [f"{BIN}/pg_ctl", "stop", "--pgdata", self.data, "--mode", "fast", "--wait"],
            check=False,
        )
        if stopped.returncode != 0:
            for process in filter(_running, processes):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process[0], signal.SIGKILL)
        end = time.monotonic() + DEADLINE
        while any(map(_running, processes)) and time.monotonic() < end:
            time.sleep(0.1)
        left = [pid for pid, _ in filter(_running, processes)]
        assert not left, f"PostgreSQL processes left: {left}"
        self.pid = 0


def add_principal_keytab(realm, principal, path, account):
    """Export ``principal``'s key to ``path`` (no new key), owned by ``account``, 0600."""
    realm.extract_keytab(principal, path)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, account.pw_uid, account.pw_gid)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def gss_postgres():
    """``gss_postgres(realm)``: the module's running :class:`GssPostgres` for ``realm``."""
    clusters = {}

    def get(realm):
        key = realm.env["KRB5_CONFIG"]  # two realms may share a name, never a krb5.conf
        if key not in clusters:
            server = GssPostgres(realm, tempfile.mkdtemp(prefix="kerbauth-pg-"))
            clusters[key] = server
            server.create()
            server.start()
        return clusters[key]

    try:
        yield get
    finally:
        for server in clusters.values():
            try:
                server.stop()
            finally:
                shutil.rmtree(server.directory, ignore_errors=True)
