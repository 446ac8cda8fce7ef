"""SPNEGO HTTP clients accept the ticket a user's server holds, in every delivery.

A Hadoop site's HTTP services (WebHDFS, YARN's REST API, Livy, Knox) want
SPNEGO. Here a real Apache httpd with mod_auth_gssapi (support.httpd) stands
in for them: ``/whoami`` needs Kerberos and answers ``REMOTE_USER``. Each
client runs as the user with only the environment of the user's running
server (support.served), as a notebook or terminal of that server would:

- ``curl --negotiate``;
- requests-gssapi's ``HTTPSPNEGOAuth``, what sparkmagic uses to reach Livy;
- Hadoop's own ``AuthenticatedURL`` with its ``KerberosAuthenticator`` (from
  pyspark's hadoop-client-api jar), doing the SPNEGO exchange itself
  (support/java/HadoopSpnego.java).

Each gets 200 and the user's principal. The same clients with
``KRB5CCNAME`` naming a cache without a ticket get 401 (curl, requests) or a
refused login (Hadoop, one JVM for all modes): the server really asks for
Kerberos, and what passes is the ticket in the server's cache.
"""

import os
import sys

import pytest

from support.jvm import krb5_conf_option
from support.served import MODES, Served

REQUESTS_GSSAPI = """\
import sys
import requests
from requests_gssapi import HTTPSPNEGOAuth

response = requests.get(sys.argv[1], auth=HTTPSPNEGOAuth(), timeout=60)
print(response.status_code)
print(response.text.strip())
"""

# A cache that names the user and holds no ticket, made by the user.
EMPTY_CACHE = """\
import sys
import krb5

ctx = krb5.init_context()
cache = krb5.cc_resolve(ctx, sys.argv[1].encode())
krb5.cc_initialize(ctx, cache, krb5.parse_name_flags(ctx, sys.argv[2].encode()))
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


def hadoop(user, java_client, url, env=None):
    """The completed HadoopSpnego run as the user, and its ``key value`` lines."""
    argv = java_client("HadoopSpnego", url, jvm_options=(krb5_conf_option(user.env),))
    done = user.run(argv, env=env)
    report = dict(line.partition(" ")[::2] for line in done.stdout.splitlines())
    return done, report


@pytest.mark.parametrize("mode", MODES)
def test_spnego_clients_are_the_user_with_the_servers_ticket(
    mode, served, spnego_httpd, java_client, krb5_env
):
    # A fetching server (a container) brings its own krb5.conf: docs/kubernetes.md
    # gives it with singleuser.extraEnv, which is Spawner.environment.
    site = {"KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"]}
    user = served(mode, extra=f"c.Spawner.environment = {site!r}\n" if mode == "fetch" else "")
    httpd = spnego_httpd(user.realm)
    url = httpd.url

    assert curl(user, url) == (200, user.principal), httpd.log_text()
    assert requests_gssapi(user, url) == (200, user.principal), httpd.log_text()
    done, report = hadoop(user, java_client, url)
    assert done.returncode == 0, done.stdout + done.stderr + httpd.log_text()
    # Hadoop's authenticator did the exchange (HadoopSpnego.java says why not the
    # JDK), and the hadoop.auth cookie it got carried the request.
    assert (report["status"], report["body"], report["token"]) == (
        "200",
        user.principal,
        "true",
    ), done.stdout + httpd.log_text()

    # Without a ticket (the same environment, KRB5CCNAME naming an empty cache),
    # the same requests get 401.
    no_ticket = {"KRB5CCNAME": empty_cache(user)}
    assert curl(user, url, env=no_ticket)[0] == 401
    assert requests_gssapi(user, url, env=no_ticket)[0] == 401


def test_hadoop_client_without_a_ticket_is_refused(make_user, krb5_env, spnego_httpd, java_client):
    """Hadoop's authenticator, with the server's challenge and an empty cache, gives up.

    One JVM for all modes: what it lacks (a ticket) is the same in each, and a
    local account with the realm's krb5.conf is all it needs.
    """
    account = make_user()
    env = {"PATH": os.environ["PATH"], "KRB5_CONFIG": krb5_env.env["KRB5_CONFIG"]}
    user = Served("none", None, account, f"{account.name}@{krb5_env.realm}", krb5_env, env)
    httpd = spnego_httpd(krb5_env)
    done, report = hadoop(user, java_client, httpd.url, env={"KRB5CCNAME": empty_cache(user)})
    assert done.returncode == 3, done.stdout + done.stderr + httpd.log_text()
    assert "refused" in report and "status" not in report, done.stdout
