"""Real external databases for the hub: a private MariaDB and a private PostgreSQL.

``hub_database(kind)`` (a module-scoped factory; ``kind`` in :data:`KINDS`)
starts, once per kind and test module, a database server of the test's own
in a fresh temporary directory, run as the system account the server wants
(``mysql``, ``postgres``: both refuse to run as root), listening on 127.0.0.1
on a free port. In it, a database ``jupyterhub`` and a user ``jupyterhub``
with a random password, as an administrator sets them up for a hub:

- MariaDB (Debian's ``mariadb-server``): ``mariadb-install-db`` and
  ``mariadbd`` with ``--no-defaults`` (the host's /etc/mysql is never read),
  so the server's own default character set is latin1 (10.11's built-in
  one); the database is made ``utf8mb4`` explicitly, as docs/database.md
  says to. The
  fixture's own setup logs in as MariaDB's root over the unix socket (no
  password, in a directory only ``mysql`` and root can enter); the hub's user
  may come from 127.0.0.1 only, with its password.
- PostgreSQL 15: a cluster of :class:`support.postgres.GssPostgres`'s making
  (``initdb``, ``pg_ctl``), but with password login (``scram-sha-256``) over
  TCP for the hub's user and no Kerberos at all.

The password reaches each server inside SQL on a connection or a pipe,
never in a command line or an environment. Each server is stopped (its
processes killed if need be) and its directory removed at the module's end,
even when a test fails.
"""

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from .ports import free_port
from .postgres import GssPostgres

KINDS = ("mariadb", "postgresql")
NAME = "jupyterhub"  # the database and its user
DEADLINE = 60
MARIADBD = "/usr/sbin/mariadbd"
# The administrator's statements, as docs/database.md gives them (its example
# client address and password are replaced by the test's own when run).
CLIENT = "10.0.0.5"
PASSWORD = "'the-password'"
MARIADB_SETUP = f"""\
CREATE DATABASE {NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER '{NAME}'@'{CLIENT}' IDENTIFIED BY {PASSWORD};
GRANT ALL PRIVILEGES ON {NAME}.* TO '{NAME}'@'{CLIENT}';
"""
POSTGRES_SETUP = f"""\
CREATE ROLE {NAME} LOGIN;
\\password {NAME}
CREATE DATABASE {NAME} OWNER {NAME} ENCODING 'UTF8' TEMPLATE template0;
"""
POSTGRES_HBA = f"host  {NAME}  {NAME}  {CLIENT}/32  scram-sha-256\n"
# Small and quick: a test database, not a tuned one.
MARIADB_OPTIONS = [
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=8M",
    "--innodb-flush-log-at-trx-commit=2",
    "--skip-innodb-doublewrite",
    "--skip-log-bin",
    "--max-connections=40",
]


@dataclass
class HubDatabase:
    """Where the hub's database is, and how the hub logs in to it."""

    kind: str
    driver: str  # the SQLAlchemy dialect+driver of the URL
    port: int
    password: str
    server: object  # the running server (MariaDB or PasswordPostgres)

    @property
    def url(self):
        """``c.JupyterHub.db_url`` (the password percent-encoded, as a URL needs it)."""
        password = quote(self.password, safe="")
        return f"{self.driver}://{NAME}:{password}@127.0.0.1:{self.port}/{NAME}"

    def engine(self):
        """A SQLAlchemy engine on the hub's database, through the hub's own driver."""
        import sqlalchemy

        return sqlalchemy.create_engine(self.url)

    def log_text(self):
        return self.server.log_text()


def _account(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"no {name!r} account: install the database server (scripts/install-deps)")


class MariaDB:
    """A private ``mariadbd`` in ``directory`` (owned by ``mysql``)."""

    def __init__(self, directory):
        self.directory = directory
        self.port = 0
        self.process = None

    data = property(lambda self: os.path.join(self.directory, "data"))
    socket = property(lambda self: os.path.join(self.directory, "mysqld.sock"))
    log = property(lambda self: os.path.join(self.directory, "error.log"))

    def log_text(self):
        with contextlib.suppress(OSError), open(self.log, errors="replace") as f:
            return f.read()
        return ""

    def _as_mysql(self):
        account = _account("mysql")
        return {
            "user": account.pw_uid,
            "group": account.pw_gid,
            "extra_groups": [],
            "cwd": self.directory,
            "env": {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
        }

    def create(self):
        account = _account("mysql")
        os.chown(self.directory, account.pw_uid, account.pw_gid)
        result = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                *MARIADB_OPTIONS,
            ],
            capture_output=True,
            text=True,
            timeout=DEADLINE + 30,
            **self._as_mysql(),
        )
        assert result.returncode == 0, f"mariadb-install-db failed: {result.stdout}{result.stderr}"

    def start(self, attempts=3):
        for _ in range(attempts):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    MARIADBD,
                    "--no-defaults",
                    f"--datadir={self.data}",
                    f"--socket={self.socket}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    f"--pid-file={os.path.join(self.directory, 'mysqld.pid')}",
                    f"--log-error={self.log}",
                    *MARIADB_OPTIONS,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                **self._as_mysql(),
            )
            if self._wait_ready():
                return
            taken = "Address already in use" in self.log_text()
            self.stop()
            if not taken:  # a port taken since it was picked: another try, else give up
                break
        raise AssertionError(f"MariaDB did not start:\n{self.log_text()[-4000:]}")

    def _root(self):
        import pymysql

        return pymysql.connect(unix_socket=self.socket, user="root", connect_timeout=5)

    def _wait_ready(self):
        """True once root can log in over the socket; False when mariadbd exited."""
        import pymysql

        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.process.poll() is not None:
                return False
            try:
                self._root().close()
                return True
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        raise AssertionError(f"MariaDB never answered:\n{self.log_text()[-4000:]}")

    def add_hub_database(self, password):
        connection = self._root()
        try:
            with connection.cursor() as cursor:
                # No anonymous accounts: one could shadow the hub's user.
                cursor.execute("DELETE FROM mysql.global_priv WHERE User = ''")
                cursor.execute("FLUSH PRIVILEGES")
                for statement in filter(None, MARIADB_SETUP.split(";\n")):
                    statement = statement.replace(CLIENT, "127.0.0.1")
                    if PASSWORD in statement:  # sent as a parameter, quoted by the driver
                        cursor.execute(statement.replace(PASSWORD, "%s"), (password,))
                    else:
                        cursor.execute(statement)
            connection.commit()
        finally:
            connection.close()

    def stop(self):
        """SIGTERM (a clean shutdown), SIGKILL to what is left after the deadline."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                # Not reaped yet, so the group is still its own.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


# PostgreSQL here uses no Kerberos: its processes get an empty krb5.conf.
_NO_KERBEROS = SimpleNamespace(env={"KRB5_CONFIG": os.devnull}, realm=None)


class PasswordPostgres(GssPostgres):
    """A :class:`GssPostgres` cluster whose one way in over TCP is the hub's user with its
    password (``scram-sha-256``), to the hub's database only."""

    def create(self):
        self.init_cluster(
            {"password_encryption": "'scram-sha-256'", "max_connections": "40"},
            "# the hub: its user, its database, its password\n"
            + POSTGRES_HBA.replace(CLIENT, "127.0.0.1"),
        )

    def add_hub_database(self, password):
        # On psql's stdin: the password is in no command line. It is hex (no quote in it).
        # \\password asks a terminal; here the password is set as it would send it.
        assert password.isalnum(), "a password that needs no SQL quoting"
        self.sql(
            POSTGRES_SETUP.replace(
                f"\\password {NAME}\n", f"ALTER ROLE {NAME} PASSWORD '{password}';\n"
            )
        )


def _start(kind):
    password = secrets.token_hex(16)
    if kind == "mariadb":
        server = MariaDB(tempfile.mkdtemp(prefix="kerbauth-mariadb-"))
        driver = "mysql+pymysql"
    else:
        server = PasswordPostgres(_NO_KERBEROS, tempfile.mkdtemp(prefix="kerbauth-pgpw-"))
        driver = "postgresql+psycopg"
    try:
        server.create()
        server.start()
        server.add_hub_database(password)
    except BaseException:
        _remove(server)
        raise
    return HubDatabase(kind, driver, server.port, password, server)


def _remove(server):
    try:
        server.stop()
    finally:
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def hub_database():
    """``hub_database(kind)``: the module's running :class:`HubDatabase` of ``kind``."""
    started = {}

    def get(kind):
        assert kind in KINDS, kind
        if kind not in started:
            started[kind] = _start(kind)
        return started[kind]

    try:
        yield get
    finally:
        for database in started.values():
            _remove(database.server)
