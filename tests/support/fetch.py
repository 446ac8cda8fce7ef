"""A hub with the ``fetch`` delivery, as docs/kubernetes.md sets it up.

``fetch_hub(extra="", realm=None)`` starts a PAM hub whose servers fetch their
tickets over the hub API with the scope of docs/kubernetes.md, from keytabs in
``keytab_dir``, a directory only root can read. ``fetched_caches`` collects the
servers' cache paths (in /tmp, as in a container) and removes them afterwards.
"""

import os
import re
import shutil
import subprocess
import tempfile

import jupyterhub
import pytest

import support.hub
from kerbauth.hub.api import SCOPE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")


def docs_roles_snippet():
    """The jupyterhub_config.py lines of docs/kubernetes.md that give servers the scope.

    The page has one snippet per JupyterHub major version; this is the installed one's.
    """
    with open(os.path.join(DOCS, "kubernetes.md")) as f:
        text = f.read()
    major = jupyterhub.version_info[0]
    pattern = rf"```python\n(# The scope servers need[^\n]*JupyterHub {major}\.\n.*?)```"
    match = re.search(pattern, text, re.DOTALL)
    assert match, "docs/kubernetes.md lost its scope snippet"
    assert SCOPE in match.group(1)
    return match.group(1)


@pytest.fixture
def scoped_hubs(monkeypatch):
    """The docs' scope lines go after the test hub's own ``load_roles`` (its admin service)."""
    infrastructure = support.hub._infrastructure
    snippet = docs_roles_snippet().replace(
        "c.JupyterHub.load_roles = [", "c.JupyterHub.load_roles = c.JupyterHub.load_roles + ["
    )
    monkeypatch.setattr(
        support.hub, "_infrastructure", lambda *a: infrastructure(*a) + "\n" + snippet
    )


@pytest.fixture
def keytab_dir():
    """Root's own keytab directory (0700): no user can list it or read a keytab in it."""
    path = tempfile.mkdtemp(prefix="kerbauth-kt-")
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def default_cache(name):
    """Where a server of ``name`` keeps its ticket by default (the trait's own default)."""
    from kerbauth import KerberosTickets

    return KerberosTickets.class_traits()["fetch_ccache_path"].default_value.format(username=name)


@pytest.fixture
def fetched_caches():
    """Paths of the servers' caches (in /tmp, as in a container), removed afterwards.

    The directory made for one goes too (it should be gone already: the
    server removes it when it stops).
    """
    paths = []
    try:
        yield paths
    finally:
        for path in paths:
            for leftover in (path, os.path.dirname(path)):
                if leftover != "/tmp" and os.path.lexists(leftover):
                    subprocess.run(["rm", "-rf", "--one-file-system", leftover], check=False)


def fetch_config(keytab_dir, extra=""):
    return f"""
import os
c.JupyterHub.authenticator_class = "kerberos-pam"
c.PAMAuthenticator.service = os.environ.get("JUPYTERHUB_PAM_SERVICE", "login")
c.Authenticator.allow_all = True
c.KerberosTickets.keytab_template = "{keytab_dir}/{{username}}.keytab"
c.KerberosTickets.delivery = "fetch"
c.KerberosTickets.ccache_dir = "/nonexistent/kerbauth"  # the hub keeps no cache in this mode
{extra}
"""


@pytest.fixture
def fetch_hub(hub_factory, scoped_hubs, keytab_dir, krb5_env, pam_service):
    def start(extra="", realm=None):
        return hub_factory(
            fetch_config(keytab_dir, extra),
            env={
                "KRB5_CONFIG": (realm or krb5_env).env["KRB5_CONFIG"],
                "JUPYTERHUB_PAM_SERVICE": pam_service(),
            },
        )

    return start
