"""The PAM edge-node example (examples/pam) as a running hub, for end-to-end tests.

``edge_hub(extra="", service=None, env=None, realm=None)`` runs
examples/pam/jupyterhub_config.py as it is in a real hub, adding only the
test's cache directory and ``extra`` config lines, with
``JUPYTERHUB_PAM_SERVICE`` pointing at a PAM service of the test's own
(pam_unix) and ``KRB5_CONFIG`` at the test realm (``realm``, default the
session realm).
"""

import os
import time

import pytest

from .realm import add_principal

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "pam", "jupyterhub_config.py")
SERVICE_PRINCIPAL = "{name}/pg-dmp-workbench2"


def example_config(ccache_dir, extra=""):
    with open(EXAMPLE) as f:
        text = f.read()
    return f"{text}\nc.KerberosTickets.ccache_dir = {ccache_dir!r}\n{extra}"


def give_keytab(realm, account):
    """The user's principal and their keytab where the example looks for it."""
    keytab = os.path.join(account.home, f"{account.name}.wb1.keytab")
    principal = add_principal(
        realm,
        SERVICE_PRINCIPAL.format(name=account.name),
        keytab=keytab,
        uid=account.uid,
        gid=account.gid,
    )
    return principal, keytab


@pytest.fixture
def edge_hub(hub_factory, krb5_env, ccache_dir, pam_service, make_user):
    """``edge_hub(extra="", service=None, env=None, realm=None)``: the example's hub."""
    # The example's groups (JupyterHub refuses every login if admin_groups names
    # a group the host does not know).
    make_user.ensure_group("hub-users")
    make_user.ensure_group("hub-admins")

    def start(extra="", service=None, env=None, realm=None):
        return hub_factory(
            example_config(ccache_dir, extra),
            env={
                "JUPYTERHUB_PAM_SERVICE": service or pam_service(),
                "KRB5_CONFIG": (realm or krb5_env).env["KRB5_CONFIG"],
                **(env or {}),
            },
        )

    return start


def server_environment(hub, name):
    """The environment of the user's running server process, read from /proc."""
    pid = hub.server(name)["state"]["pid"]
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = f.read().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def wait_for(condition, deadline, what, every=0.5):
    """Poll ``condition()`` every ``every`` seconds until it is true; fail after ``deadline``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"not within {deadline} s: {what}")
