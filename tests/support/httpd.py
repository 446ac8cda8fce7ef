"""A real Apache httpd with mod_auth_gssapi: the SPNEGO HTTP service a Hadoop site runs.

``spnego_httpd(realm)`` (a session-scoped factory, one server per realm)
starts Debian's apache2 from a configuration of its own in a fresh temporary
directory (ServerRoot, PidFile, DefaultRuntimeDir, ErrorLog, the keytab, the
replay cache): the system's /etc/apache2 is never read. It listens on
127.0.0.1 at a free port and protects ``/whoami``, a tiny CGI that answers
``REMOTE_USER``, with SPNEGO (``AuthType GSSAPI``) accepting tickets for
``HTTP/localhost@REALM`` from a keytab made for it. Reach it as
``http://localhost:PORT/whoami``: the client builds the service principal from
the host name in the URL.

mod_auth_gssapi also keeps a session in a cookie named ``hadoop.auth``, the
cookie Hadoop's AuthenticationFilter sets: Hadoop's ``AuthenticatedURL`` does
the SPNEGO exchange once (an OPTIONS request) and sends that cookie with the
requests that follow, as it does against WebHDFS or YARN.

Started as root, httpd's workers drop to www-data, which owns the keytab and
the replay cache directory. The server is stopped with SIGTERM (SIGKILL after
a deadline) and its directory removed at the end of the session, even when a
test fails. Its logs (in ``logs/`` of that directory: stderr, error log with
mod_auth_gssapi's debug lines, access log with the authenticated user) are
what :meth:`Httpd.log_text` gives a failing test's message.
"""

import base64
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest

from .ports import free_port
from .realm import add_principal

APACHE = "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"
RUN_AS = "www-data"
SERVICE = "HTTP/localhost"
# What each module gives: the prefork MPM (one process per request, so a CGI
# needs no cgid daemon), Require, AuthType/AuthName, valid-user,
# ScriptAlias, CGI, the session cookie, unquoting it (below), SPNEGO.
LOAD = (
    ("mpm_prefork_module", "mod_mpm_prefork.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("alias_module", "mod_alias.so"),
    ("cgi_module", "mod_cgi.so"),
    ("session_module", "mod_session.so"),
    ("session_cookie_module", "mod_session_cookie.so"),
    ("headers_module", "mod_headers.so"),
    ("auth_gssapi_module", "mod_auth_gssapi.so"),
)
WHOAMI = '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%s\\n" "$REMOTE_USER"\n'


@dataclass
class Httpd:
    port: int
    root: str
    process: subprocess.Popen
    principal: str

    @property
    def url(self):
        """The protected URL, on the service principal's host name."""
        return f"http://localhost:{self.port}/whoami"

    def log_text(self):
        """httpd's output, error log and access log (for a failing test's message)."""
        texts = []
        for name in ("stderr.log", "error.log", "access.log"):
            try:
                with open(os.path.join(self.root, "logs", name), errors="replace") as f:
                    texts.append(f"--- {name}\n{f.read()}")
            except OSError as e:
                texts.append(f"--- {name}: {e}")
        return "\n".join(texts)


def _config(root, port, keytab, session_key):
    loads = "".join(f"LoadModule {name} {MODULES}/{so}\n" for name, so in LOAD)
    return f"""\
ServerRoot "{root}"
ServerName localhost
Listen 127.0.0.1:{port}
PidFile "{root}/run/httpd.pid"
DefaultRuntimeDir "{root}/run"
ErrorLog "{root}/logs/error.log"
LogLevel info auth_gssapi:debug
CustomLog "{root}/logs/access.log" "%h %u \\"%r\\" %>s"
User {RUN_AS}
Group {RUN_AS}
{loads}
StartServers 1
MinSpareServers 1
MaxSpareServers 2
MaxRequestWorkers 8
DocumentRoot "{root}/htdocs"
# Hadoop's client sends the cookie back quoted (hadoop.auth="..."), as its
# server side accepts; mod_session_cookie takes the value as it is, so the
# quotes come off before authentication runs.
RequestHeader edit Cookie 'hadoop\\.auth="([^"]*)"' 'hadoop.auth=$1' early
ScriptAlias /whoami "{root}/cgi-bin/whoami"
<Location /whoami>
    AuthType GSSAPI
    AuthName "kerbauth SPNEGO test"
    GssapiCredStore keytab:{keytab}
    GssapiAllowedMech krb5
    GssapiUseSessions On
    GssapiSessionKey key:{session_key}
    Session On
    SessionCookieName hadoop.auth path=/;httponly
    Require valid-user
</Location>
"""


def _answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop(process, deadline=10):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(deadline)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(deadline)
    # Workers are in httpd's process group (start_new_session): none may outlive it.
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)


def start_httpd(realm, deadline=30):
    """A started :class:`Httpd` for ``realm``; stop it with :func:`stop_httpd`."""
    run_as = pwd.getpwnam(RUN_AS)
    root = tempfile.mkdtemp(prefix="kerbauth-httpd-")
    process = None
    try:
        # Root owns everything but what www-data must read or write; it can reach
        # the files by name through 0711 directories without listing them.
        os.chmod(root, 0o711)
        for sub in ("conf", "logs", "run", "htdocs", "cgi-bin"):
            os.mkdir(os.path.join(root, sub), 0o711)
        rcache = os.path.join(root, "rcache")
        os.mkdir(rcache, 0o700)
        os.chown(rcache, run_as.pw_uid, run_as.pw_gid)
        keytab = os.path.join(root, "http.keytab")
        principal = add_principal(
            realm, SERVICE, keytab=keytab, uid=run_as.pw_uid, gid=run_as.pw_gid
        )
        whoami = os.path.join(root, "cgi-bin", "whoami")
        with open(whoami, "w") as f:
            f.write(WHOAMI)
        os.chmod(whoami, 0o755)
        port = free_port()
        conf = os.path.join(root, "conf", "httpd.conf")
        session_key = base64.b64encode(secrets.token_bytes(32)).decode()
        with open(conf, "w") as f:
            f.write(_config(root, port, keytab, session_key))
        os.chmod(conf, 0o600)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "KRB5_CONFIG": realm.env["KRB5_CONFIG"],
            # Replay cache in the private directory (MIT's default is /var/tmp).
            "KRB5RCACHEDIR": rcache,
        }
        with open(os.path.join(root, "logs", "stderr.log"), "w") as stderr:
            process = subprocess.Popen(
                [APACHE, "-d", root, "-f", conf, "-DFOREGROUND"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        httpd = Httpd(port, root, process, principal)
        end = time.monotonic() + deadline
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > end:
                raise AssertionError(
                    f"httpd did not answer on 127.0.0.1:{port} within {deadline} s "
                    f"(exit {process.poll()}):\n{httpd.log_text()}"
                )
            time.sleep(0.05)
        return httpd
    except BaseException:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)
        raise


def stop_httpd(httpd):
    try:
        _stop(httpd.process)
    finally:
        shutil.rmtree(httpd.root, ignore_errors=True)


@pytest.fixture(scope="session")
def spnego_httpd():
    """``start(realm)``: the :class:`Httpd` for ``realm`` (one per realm, per session)."""
    started = {}

    def start(realm):
        key = realm.env["KRB5_CONFIG"]
        if key not in started:
            started[key] = start_httpd(realm)
        return started[key]

    try:
        yield start
    finally:
        for httpd in started.values():
            stop_httpd(httpd)
