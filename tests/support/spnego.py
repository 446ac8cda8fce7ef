"""SPNEGO (Negotiate) for the tests: the hub's HTTP service keytab, clients' tickets, clients.

- :func:`service_keytab` makes ``HTTP/<host>@REALM`` in a realm and exports it
  to a keytab only root can read; the ``spnego_keytab`` fixture is the session
  realm's ``HTTP/localhost`` (made once per run).
- :func:`client_ticket` makes (or reuses) a principal with a password and
  kinits it into a FILE cache of its own, as a user's desktop holds one; the
  ``client_tickets`` fixture removes the caches afterwards.
- :func:`hub_lines` and ``spnego_rcache``: the config lines that turn SPNEGO
  on, and the hub's environment with a replay cache directory of the test's
  own (``KRB5RCACHEDIR``; MIT's default is /var/tmp), removed afterwards.
- clients: :func:`curl` (``curl --negotiate -u :``, optionally
  ``--delegation always``), :func:`negotiate_session` (requests-gssapi with
  the client's cache and a mutual-authentication mode), :func:`token` (one
  SPNEGO token, made in-process with python-gssapi, to send by hand: replays),
  :func:`form_login` (the password form as a browser without Negotiate
  uses it, after its 401).
"""

import base64
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import pytest
import requests

from .realm import add_principal

HOST = "localhost"  # rdns=false, dns_canonicalize_hostname=false: HTTP/localhost works


def service_keytab(k5, directory, host=HOST):
    """``HTTP/<host>@<realm>`` with a random key, in ``<directory>/http-<host>.keytab`` (0600)."""
    path = os.path.join(directory, f"http-{host}.keytab")
    add_principal(k5, f"HTTP/{host}", keytab=path)
    return path


@pytest.fixture(scope="session")
def spnego_keytab(realm):
    """The session realm's ``HTTP/localhost`` keytab (root's, 0600), made once per run."""
    directory = tempfile.mkdtemp(prefix="kerbauth-spnego-")
    try:
        yield service_keytab(realm, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class ClientTicket:
    """A client's TGT in a FILE cache: ``env`` is what a client program needs to use it."""

    principal: str
    ccache: str
    env: dict

    def credentials(self):
        """python-gssapi initiator credentials from this cache (no environment needed)."""
        import gssapi

        return gssapi.Credentials(usage="initiate", store={"ccache": f"FILE:{self.ccache}"})


def client_ticket(k5, principal, directory, password=None, forwardable=True):
    """A TGT of ``principal`` in a cache under ``directory``; the principal is made (or its
    password set) with ``password`` (default: a random one).

    ``forwardable``: whether the TGT may be delegated (``kinit -f`` or ``-F``).
    """
    if "@" not in principal:
        principal = f"{principal}@{k5.realm}"
    password = password or secrets.token_urlsafe(18)
    listed = k5.run_kadminl(f"getprinc {principal}").decode()
    if "Principal:" not in listed:
        k5.addprinc(principal, password)
    else:
        k5.run_kadminl(f"cpw -pw {password} {principal}")
    ccache = os.path.join(directory, f"krb5cc_{principal.replace('/', '_')}")
    env = {"PATH": os.environ["PATH"], "KRB5_CONFIG": k5.env["KRB5_CONFIG"]}
    subprocess.run(
        ["kinit", "-f" if forwardable else "-F", "-c", f"FILE:{ccache}", principal],
        input=password + "\n",
        env=env,
        text=True,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return ClientTicket(principal, ccache, {**env, "KRB5CCNAME": f"FILE:{ccache}"})


@pytest.fixture
def client_tickets():
    """``client_tickets(k5, principal, password=..., forwardable=True)``: a ClientTicket;
    the caches are removed at teardown."""
    directory = tempfile.mkdtemp(prefix="kerbauth-clients-")

    def factory(k5, principal, **kwargs):
        return client_ticket(k5, principal, directory, **kwargs)

    try:
        yield factory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def spnego_rcache():
    """The hub's environment for SPNEGO: a replay cache directory of its own (removed after)."""
    directory = tempfile.mkdtemp(prefix="kerbauth-rcache-")
    try:
        yield {"KRB5RCACHEDIR": directory}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def hub_lines(keytab, **options):
    """Config lines turning SPNEGO on with ``keytab`` (and ``KerberosSPNEGO`` ``options``)."""
    lines = [f"c.KerberosSPNEGO.keytab = {keytab!r}"]
    lines += [f"c.KerberosSPNEGO.{name} = {value!r}" for name, value in options.items()]
    return "\n".join(lines) + "\n"


def local_url(hub, path="/hub/login"):
    """``hub``'s URL under the name ``localhost`` (the name of the HTTP principal)."""
    return f"http://{HOST}:{hub.port}{path}"


@dataclass
class CurlResult:
    status: int  # of the last response
    headers: list  # header blocks, one list of lines per response, in order
    body: str
    stderr: str

    def header(self, name, block=-1):
        """The values of header ``name`` in response ``block`` (default: the last)."""
        prefix = name.lower() + ":"
        return [
            line.split(":", 1)[1].strip()
            for line in self.headers[block]
            if line.lower().startswith(prefix)
        ]


def curl(url, env, delegation=None, follow=True, cookies=None, extra=(), timeout=60):
    """``curl --negotiate -u :`` of ``url`` with the client's ``env`` (its KRB5CCNAME).

    ``delegation``: None, ``"always"`` or ``"policy"`` (curl's ``--delegation``);
    ``cookies``: a cookie jar file read and written (a browser's session; default:
    one of this call's own).
    """
    with tempfile.TemporaryDirectory(prefix="kerbauth-curl-") as work:
        headers, body = os.path.join(work, "headers"), os.path.join(work, "body")
        argv = ["curl", "-sS", "--negotiate", "-u", ":", "-D", headers, "-o", body]
        argv += ["-w", "%{http_code}", "--max-time", str(timeout)]
        if follow:
            argv.append("-L")
        if delegation:
            argv += ["--delegation", delegation]
        # A browser's cookies (without them a login's redirect comes back to the login).
        cookies = cookies or os.path.join(work, "cookies")
        argv += ["-b", cookies, "-c", cookies]
        done = subprocess.run(
            [*argv, *extra, url], env=env, capture_output=True, text=True, timeout=timeout + 10
        )
        assert done.returncode == 0, done.stderr
        with open(headers, errors="replace") as f:
            blocks = [b.splitlines() for b in f.read().replace("\r", "").split("\n\n") if b]
        with open(body, errors="replace") as f:
            text = f.read()
    return CurlResult(int(done.stdout.strip()[-3:]), blocks, text, done.stderr)


def negotiate_session(ticket, mutual="REQUIRED", delegate=False):
    """A requests.Session authenticating with requests-gssapi from ``ticket``'s cache."""
    import requests_gssapi

    session = requests.Session()
    session.auth = requests_gssapi.HTTPSPNEGOAuth(
        mutual_authentication=getattr(requests_gssapi, mutual),
        delegate=delegate,
        creds=ticket.credentials(),
    )
    return session


def token(ticket, host=HOST, delegate=False):
    """One SPNEGO token of ``ticket``'s principal for ``HTTP/<host>``, base64 (to send by
    hand: ``Authorization: Negotiate <token>``)."""
    import gssapi

    flags = gssapi.RequirementFlag.mutual_authentication
    if delegate:
        flags |= gssapi.RequirementFlag.delegate_to_peer
    context = gssapi.SecurityContext(
        name=gssapi.Name(f"HTTP@{host}", gssapi.NameType.hostbased_service),
        usage="initiate",
        creds=ticket.credentials(),
        mech=gssapi.Mechanism.from_sasl_name("SPNEGO"),
        flags=flags,
    )
    return base64.b64encode(context.step()).decode("ascii")


def negotiate(url, value, session=None, **kwargs):
    """GET ``url`` with ``Authorization: Negotiate <value>``, redirects not followed."""
    getter = session.get if session is not None else requests.get
    headers = {"Authorization": f"Negotiate {value}"}
    return getter(url, headers=headers, allow_redirects=False, timeout=60, **kwargs)


def form_login(url, username, password):
    """The password form, as a browser without Negotiate uses it: GET (401 and the form,
    with its ``_xsrf`` cookie), then POST. The session and the POST's response (not
    followed: 302 is a login)."""
    session = requests.Session()
    page = session.get(url, timeout=60)
    assert page.status_code in (200, 401), page.status_code
    response = session.post(
        url,
        data={"username": username, "password": password, "_xsrf": session.cookies["_xsrf"]},
        allow_redirects=False,
        timeout=60,
    )
    return session, response
