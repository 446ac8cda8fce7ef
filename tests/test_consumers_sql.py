"""SQL over GSSAPI: a notebook's ticket logs its user in to a real PostgreSQL 15.

In each way kerbauth gives a server its ticket (keytab and file delivery,
password tickets, fetch delivery), ``psql`` and psycopg (the venv's Python on
Debian's libpq), run as the user with only the server's environment (in the
fetch mode plus KRB5_CONFIG, standing in for a container image's krb5.conf),
reach a private cluster whose only way in over TCP is ``gss``
(support.postgres), with GSSAPI encryption off (``gssencmode=disable``) and
required (``gssencmode=require``). The server's own view, ``pg_stat_gssapi``
of the session, says the session is Kerberos-authenticated as the user's
principal, encrypted or not as asked, and ``current_user`` is the user's
account name. Without a ticket (KRB5CCNAME naming a cache that holds none),
the same clients are refused; with it, the user cannot have another role (the
superuser's is tried).
"""

import json
import os
import sys

import pytest

from support.served import MODES

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


def krb5_conf(user, env=None):
    """What a client gets on top of the server's environment: ``env``, and the realm's
    krb5.conf when the server does not name it (the fetch delivery passes no
    KRB5_CONFIG: it stands in for the /etc/krb5.conf of a container image)."""
    if "KRB5_CONFIG" in user.env:
        return env or {}
    return {"KRB5_CONFIG": user.realm.env["KRB5_CONFIG"], **(env or {})}


def psql(user, conninfo, env=None):
    """``psql`` as the user, printing QUERY's row as ``a|b|c|d``."""
    # -w: never prompt for a password (there is none to give: refused means refused).
    argv = ["psql", "-X", "-A", "-t", "-w", "-c", QUERY, conninfo]
    return user.run(argv, timeout=60, env=krb5_conf(user, env))


def psycopg_rows(user, *conninfos, env=None):
    argv = [sys.executable, "-c", PSYCOPG, *conninfos]
    result = user.run(argv, timeout=60, env=krb5_conf(user, env))
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["impl"] == "python", out  # psycopg's own binding: the host's libpq (ctypes)
    return out["results"]


@pytest.mark.parametrize("mode", MODES)
def test_psql_and_psycopg_log_in_as_the_user_over_gssapi(mode, served, realm, gss_postgres):
    postgres = gss_postgres(realm)
    user = served(mode)
    name, principal = user.name, user.principal
    postgres.add_role(name)
    plain, encrypted = (postgres.conninfo(name, m) for m in ("disable", "require"))

    for conninfo, gss_encrypted in ((plain, "f"), (encrypted, "t")):
        result = psql(user, conninfo)
        assert result.returncode == 0, result.stderr + postgres.log_text()[-2000:]
        assert result.stdout.strip() == f"{name}|t|{principal}|{gss_encrypted}", conninfo

    assert psycopg_rows(user, plain, encrypted) == [
        [name, True, principal, False],
        [name, True, principal, True],
    ]

    # The ticket, not the account or the address, is what lets them in: with a
    # cache that holds no ticket both clients are refused, both ways.
    no_ticket = {"KRB5CCNAME": f"FILE:{os.path.join(user.account.home, 'krb5cc_no_ticket')}"}
    for conninfo in (plain, encrypted):
        result = psql(user, conninfo, env=no_ticket)
        assert result.returncode == 2, result.stdout
        assert "GSSAPI" in result.stderr, result.stderr
    refusals = psycopg_rows(user, plain, encrypted, env=no_ticket)
    assert [sorted(r) for r in refusals] == [["refused"], ["refused"]], refusals
    assert all("GSSAPI" in r["refused"] for r in refusals), refusals

    # The role comes from the principal (pg_ident.conf): the user's ticket is
    # no way in as anyone else, the superuser included.
    result = psql(user, postgres.conninfo("postgres", "require"))
    assert result.returncode == 2, result.stdout
    assert 'GSSAPI authentication failed for user "postgres"' in result.stderr, result.stderr
