"""The clients a Hadoop site runs take the ticket of the user's server, in every delivery.

In a real hub, with the user's real spawned server, in each way kerbauth
gives a ticket (:data:`support.served.MODES`: a keytab with the file
delivery, the login password, the fetch delivery), each client runs as the
user with only the server's environment, as a notebook, a terminal or a
kernel of that server would (tests/support/consumers.py):

- SPNEGO HTTP, what WebHDFS, YARN's REST API, Livy and Knox want: a real
  Apache with mod_auth_gssapi (support.httpd) whose ``/whoami`` needs
  Kerberos and answers ``REMOTE_USER``, reached by ``curl --negotiate``,
  requests-gssapi and Hadoop's own ``KerberosAuthenticator``;
- the JVM, what pyspark's driver is: Hadoop's ``UserGroupInformation`` from
  pyspark's jars with a ``HADOOP_CONF_DIR`` asking for Kerberos, and a plain
  JAAS/GSS login;
- SQL over GSSAPI: a real PostgreSQL 15 (support.postgres) whose only way in
  over TCP is ``gss``, reached by ``psql`` and psycopg with GSSAPI encryption
  off and required; the server's own ``pg_stat_gssapi`` says who came in.

Each is the user's principal. The same clients pointed at a cache without a
ticket are refused: the services really ask for Kerberos, and what passes is
the ticket in the server's cache. One server per mode serves all three
families (a hub and a spawn cost more than all the clients together).
"""

import os
import re
import time

import pytest

from support.consumers import (
    curl,
    empty_cache,
    hadoop_spnego,
    jvm_options,
    last_line,
    psql,
    psycopg_rows,
    requests_gssapi,
)
from support.served import MODES, Served


@pytest.mark.parametrize("mode", MODES)
def test_every_consumer_is_the_user_with_the_servers_ticket(
    mode, served, spnego_httpd, gss_postgres, java_client, hadoop_conf_dir
):
    user = served(mode)
    no_ticket = {"KRB5CCNAME": empty_cache(user)}
    spnego_clients(user, spnego_httpd(user.realm), java_client, no_ticket)
    jvm_clients(user, java_client, hadoop_conf_dir, no_ticket)
    sql_clients(user, gss_postgres(user.realm), no_ticket)


def spnego_clients(user, httpd, java_client, no_ticket):
    url = httpd.url
    assert curl(user, url) == (200, user.principal), httpd.log_text()
    assert requests_gssapi(user, url) == (200, user.principal), httpd.log_text()
    done, report = hadoop_spnego(user, java_client, url)
    assert done.returncode == 0, done.stdout + done.stderr + httpd.log_text()
    # Hadoop's authenticator did the exchange (HadoopSpnego.java says why not the
    # JDK), and the hadoop.auth cookie it got carried the request.
    assert (report["status"], report["body"], report["token"]) == (
        "200",
        user.principal,
        "true",
    ), done.stdout + httpd.log_text()
    assert curl(user, url, env=no_ticket)[0] == 401
    assert requests_gssapi(user, url, env=no_ticket)[0] == 401


def jvm_clients(user, java_client, hadoop_conf_dir, no_ticket):
    ugi_argv = java_client("Ugi", jvm_options=jvm_options(user))
    jaas_argv = java_client("JvmLogin", jvm_options=jvm_options(user), hadoop=False)
    hadoop = {"HADOOP_CONF_DIR": hadoop_conf_dir}

    ugi = user.run(ugi_argv, env=hadoop)
    assert last_line(ugi) == f"ok principal={user.principal} auth=KERBEROS credentials=true", (
        ugi.stdout + ugi.stderr
    )
    assert ugi.returncode == 0

    jaas = user.run(jaas_argv)
    left = user.ticket().end - time.time()
    match = re.fullmatch(
        rf"ok principal={re.escape(user.principal)} lifetime=(\d+) realm={user.realm.realm}",
        last_line(jaas),
    )
    assert match, jaas.stdout + jaas.stderr
    assert jaas.returncode == 0
    # The credential's remaining life is the ticket's in the server's cache (read as root).
    assert left - 120 < int(match[1]) <= left + 5

    if user.mode == "keytab":
        # Pointed at a cache without a ticket, both report failure (once: they read
        # only KRB5CCNAME, in every mode). Hadoop falls back to the OS user name,
        # unauthenticated.
        ugi = user.run(ugi_argv, env={**hadoop, **no_ticket})
        assert ugi.returncode == 1, ugi.stdout + ugi.stderr
        assert last_line(ugi) == f"failed principal={user.name} auth=SIMPLE credentials=false"
        jaas = user.run(jaas_argv, env=no_ticket)
        assert jaas.returncode == 1, jaas.stdout + jaas.stderr
        assert last_line(jaas) == (
            "failed LoginException: Unable to obtain Principal Name for authentication"
        )


def sql_clients(user, postgres, no_ticket):
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

    # The ticket, not the account or the address, is what lets them in.
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


def test_hadoop_client_without_a_ticket_is_refused(make_user, krb5_env, spnego_httpd, java_client):
    """Hadoop's authenticator, with the server's challenge and an empty cache, gives up
    (exit 3: refused, not a connection error). One JVM for all modes: what it lacks (a
    ticket) is the same in each, and a local account with the realm's krb5.conf is all
    it needs."""
    account = make_user()
    env = {"PATH": os.environ["PATH"], "KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"]}
    user = Served("none", None, account, f"{account.name}@{krb5_env.realm}", krb5_env, env)
    httpd = spnego_httpd(krb5_env)
    done, report = hadoop_spnego(
        user, java_client, httpd.url, env={"KRB5CCNAME": empty_cache(user)}
    )
    assert done.returncode == 3, done.stdout + done.stderr + httpd.log_text()
    assert "refused" in report and "status" not in report, done.stdout
