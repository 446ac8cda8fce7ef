"""A user with a running notebook server holding their ticket, in each way kerbauth gives one.

``served(mode, realm=None, extra="")`` starts a real hub, makes a local
account with the principal ``<name>@<realm>``, starts the user's server and
waits until its cache holds the ticket. ``mode`` is one of :data:`MODES`:

- ``"keytab"``: the PAM edge-node example (examples/pam), keytab in the
  user's home, the hub writes the cache (``delivery = "file"``);
- ``"password"``: the same example with ``password_tickets``: the user logs
  in through the form and the ticket comes from that password;
- ``"fetch"``: ``delivery = "fetch"`` as docs/kubernetes.md sets it up: the
  keytab is in a directory only root can read, and the server fetches its
  ticket over the hub API and writes its own cache; its environment names the
  realm's krb5.conf, as a container image's own would be.

The returned :class:`Served` runs a client as the user with exactly the
environment of the user's server process (read from /proc), so a test sees
what a notebook, a terminal or a kernel of that server would see.
"""

import os
import subprocess
import time
from dataclasses import dataclass

import pytest

from kerbauth.core.ccache import read_ccache

from .edge import server_environment
from .fetch import default_cache
from .realm import add_principal

MODES = ("keytab", "password", "fetch")
PRINCIPAL = 'c.KerberosTickets.principal_template = "{username}@{realm}"\n'
PASSWORD = (
    PRINCIPAL + "c.KerberosTickets.password_tickets = True\n"
    "c.Authenticator.enable_auth_state = True\n"
)


@dataclass
class Served:
    mode: str
    hub: object
    account: object
    principal: str
    realm: object
    env: dict

    @property
    def name(self):
        return self.account.name

    @property
    def ccache(self):
        """The path of the server's cache (``KRB5CCNAME`` without ``FILE:``)."""
        return self.env["KRB5CCNAME"].removeprefix("FILE:")

    def run(self, argv, timeout=120, env=None, **kwargs):
        """Run ``argv`` as the user, in their home, with only the server's environment
        (plus ``env``); the CompletedProcess, text output, never raising on exit status."""
        return subprocess.run(argv, timeout=timeout, **self.popen_args(env), **kwargs)

    def popen(self, argv, env=None, **kwargs):
        """Start ``argv`` as :meth:`run` does, without waiting (a long-lived client);
        its output in pipes (Popen has no ``capture_output``)."""
        args = self.popen_args(env)
        del args["capture_output"]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        return subprocess.Popen(argv, **{**args, **pipes, **kwargs})

    def popen_args(self, env=None):
        a = self.account
        return {
            "env": {**self.env, **(env or {})},
            "user": a.uid,
            "group": a.gid,
            "extra_groups": os.getgrouplist(a.name, a.gid),
            "cwd": a.home,
            "capture_output": True,
            "text": True,
        }

    def ticket(self):
        """The ticket now in the server's cache (read as root, for assertions)."""
        return read_ccache(self.ccache)


def wait_for_ticket(path, principal, deadline=60, newer_than=0):
    """The ticket of ``principal`` in ``path`` once it is there (ending after ``newer_than``)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            ticket = read_ccache(path)
        except Exception:  # noqa: BLE001 - not written yet
            ticket = None
        if ticket and ticket.principal == principal and ticket.end > newer_than:
            return ticket
        time.sleep(0.2)
    raise AssertionError(f"not within {deadline} s: a ticket of {principal} in {path}")


@pytest.fixture
def served(edge_hub, fetch_hub, krb5_env, keytab_dir, make_user, fetched_caches):
    def start(mode, realm=None, extra=""):
        assert mode in MODES, mode
        realm = realm or krb5_env
        account = make_user(groups=("hub-users",))
        principal = f"{account.name}@{realm.realm}"
        if mode == "fetch":
            # A container brings its own krb5.conf; here the realm's stands in for
            # it, given to the server as docs/kubernetes.md does (singleuser.extraEnv).
            site = {"KRB5_CONFIG": realm.env["KRB5_CONFIG"]}
            hub = fetch_hub(extra=f"{extra}\nc.Spawner.environment.update({site!r})\n", realm=realm)
            add_principal(
                realm, principal, keytab=os.path.join(keytab_dir, f"{account.name}.keytab")
            )
            response = hub.api("POST", f"/users/{account.name}")
            assert response.status_code == 201, response.text
            fetched_caches.append(default_cache(account.name))
        elif mode == "keytab":
            hub = edge_hub(PRINCIPAL + extra, realm=realm)
            keytab = os.path.join(account.home, f"{account.name}.wb1.keytab")  # the example's
            add_principal(realm, principal, keytab=keytab, uid=account.uid, gid=account.gid)
        else:
            hub = edge_hub(PASSWORD + extra, realm=realm, env={"JUPYTERHUB_CRYPT_KEY": "ab" * 32})
            realm.addprinc(principal, account.password)
        if mode != "fetch":  # a login through the form, as the user does
            response = hub.login(account.name, account.password)
            assert response.status_code == 302, response.text
        hub.start_server(account.name)
        env = server_environment(hub, account.name)
        wait_for_ticket(env["KRB5CCNAME"].removeprefix("FILE:"), principal)
        return Served(mode, hub, account, principal, realm, env)

    return start
