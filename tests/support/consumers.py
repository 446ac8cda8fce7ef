"""The clients a Hadoop site runs, run as a user with their server's environment.

Each takes a :class:`support.served.Served` (``user``) and runs as that user
with only the environment of their running server, plus ``env`` where given
(a test's ``KRB5CCNAME`` of a cache without a ticket, say):

- SPNEGO HTTP (against support.httpd): :func:`curl` (``curl --negotiate``),
  :func:`requests_gssapi` (requests-gssapi's ``HTTPSPNEGOAuth``, what
  sparkmagic uses for Livy), :func:`hadoop_spnego` (Hadoop's own
  ``AuthenticatedURL`` and ``KerberosAuthenticator``,
  support/java/HadoopSpnego.java);
- the JVM: ``Ugi`` (support/java/Ugi.java, Hadoop's login user, from
  pyspark's jars) and ``JvmLogin`` (the doctor's program: a JAAS login from
  the cache, then GSS credentials), through :func:`jvm_options` and
  ``hadoop_conf_dir``;
- SQL over GSSAPI (against support.postgres): :func:`psql` and
  :func:`psycopg_rows` (the venv's psycopg on Debian's libpq), both printing
  :data:`QUERY`'s row.

:func:`empty_cache` makes, as the user, a cache that names them and holds
no ticket: what each client does with it shows that what passes is the
ticket in the server's cache.
"""

import json
import os
import shutil
import sys
import tempfile

import pytest

from .jvm import krb5_conf_option

REQUESTS_GSSAPI = """\
import sys
import requests
from requests_gssapi import HTTPSPNEGOAuth

response = requests.get(sys.argv[1], auth=HTTPSPNEGOAuth(), timeout=60)
print(response.status_code)
print(response.text.strip())
"""

EMPTY_CACHE = """\
import sys
import krb5

ctx = krb5.init_context()
cache = krb5.cc_resolve(ctx, sys.argv[1].encode())
krb5.cc_initialize(ctx, cache, krb5.parse_name_flags(ctx, sys.argv[2].encode()))
"""

CORE_SITE = """<?xml version="1.0"?>
<configuration>
  <property><name>hadoop.security.authentication</name><value>kerberos</value></property>
</configuration>
"""

# The session's own view of itself: who it is, and how it came in.
QUERY = (
    "select current_user, gss_authenticated, principal, encrypted"
    " from pg_stat_gssapi where pid = pg_backend_pid()"
)

# One psycopg process per run: each argument is a connection string; prints
# which libpq binding it runs on and, for each, the row of QUERY or the error
# that refused the connection.
PSYCOPG = f"""
import json, sys
import psycopg
out = []
for conninfo in sys.argv[1:]:
    try:
        with psycopg.connect(conninfo) as conn:
            out.append(list(conn.execute({QUERY!r}).fetchone()))
    except psycopg.OperationalError as e:
        out.append({{"refused": str(e)}})
print(json.dumps({{"impl": psycopg.pq.__impl__, "results": out}}))
"""


def empty_cache(user):
    """``FILE:`` and a cache in the user's home that names them and holds no ticket."""
    path = os.path.join(user.account.home, "no-ticket.ccache")
    made = user.run([sys.executable, "-c", EMPTY_CACHE, f"FILE:{path}", user.principal])
    assert made.returncode == 0, made.stderr
    return f"FILE:{path}"


def curl(user, url, env=None):
    """(status, body) of ``curl --negotiate`` run as the user."""
    done = user.run(["curl", "-sS", "--negotiate", "-u", ":", "-w", "\n%{http_code}", url], env=env)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body.strip()


def requests_gssapi(user, url, env=None):
    """(status, body) of requests with HTTPSPNEGOAuth run as the user."""
    done = user.run([sys.executable, "-c", REQUESTS_GSSAPI, url], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    status, _, body = done.stdout.partition("\n")
    return int(status), body.strip()


def hadoop_spnego(user, java_client, url, env=None):
    """The completed HadoopSpnego run as the user, and its ``key value`` lines."""
    argv = java_client("HadoopSpnego", url, jvm_options=jvm_options(user))
    done = user.run(argv, env=env)
    report = dict(line.partition(" ")[::2] for line in done.stdout.splitlines())
    return done, report


@pytest.fixture
def hadoop_conf_dir():
    """A Hadoop client configuration that asks for Kerberos, readable by any user."""
    path = tempfile.mkdtemp(prefix="kerbauth-hadoop-conf-")
    try:
        os.chmod(path, 0o755)
        core_site = os.path.join(path, "core-site.xml")
        with open(core_site, "w") as f:
            f.write(CORE_SITE)
        os.chmod(core_site, 0o644)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def jvm_options(user):
    # The realm's krb5.conf (the JDK ignores KRB5_CONFIG); C1 only: short runs
    # start about twice as fast on a busy host.
    return (krb5_conf_option(user.realm.env), "-XX:TieredStopAtLevel=1")


def last_line(result):
    lines = result.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def psql(user, conninfo, env=None):
    """``psql`` as the user, printing QUERY's row as ``a|b|c|d``."""
    # -w: never prompt for a password (there is none to give: refused means refused).
    return user.run(["psql", "-X", "-A", "-t", "-w", "-c", QUERY, conninfo], timeout=60, env=env)


def psycopg_rows(user, *conninfos, env=None):
    result = user.run([sys.executable, "-c", PSYCOPG, *conninfos], timeout=60, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["impl"] == "python", out  # psycopg's own binding: the host's libpq (ctypes)
    return out["results"]
