"""The hub's metrics, read from the Prometheus registry JupyterHub's /hub/metrics serves."""

import errno
import os
import pwd
import time
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY
from tornado import web
from traitlets.config import Config

from kerbauth import KerberosPAMAuthenticator
from kerbauth.core.ccache import read_ccache
from kerbauth.core.errors import TicketError
from support.realm import add_principal

USER = "nobody"
REQUESTS = "kerbauth_ticket_request_duration_seconds_count"


@pytest.fixture
def config(tmp_path, krb5_env, ccache_dir):
    keytabs = tmp_path / "keytabs"
    keytabs.mkdir()
    account = pwd.getpwnam(USER)
    keytab = keytabs / f"{USER}.keytab"
    krb5_env.run_kadminl(f"delprinc -force {USER}@{krb5_env.realm}")
    add_principal(krb5_env, USER, str(keytab), uid=account.pw_uid, gid=account.pw_gid)
    c = Config()
    c.KerberosTickets.keytab_template = str(keytabs / "{username}.keytab")
    c.KerberosTickets.ccache_dir = ccache_dir
    return c


def expiring():
    return REGISTRY.get_sample_value("kerbauth_tickets_expiring")


def requests(backend, purpose, outcome):
    labels = {"backend": backend, "purpose": purpose, "outcome": outcome}
    return REGISTRY.get_sample_value(REQUESTS, labels) or 0


@pytest.mark.parametrize("margin", [1800, 10**8], ids=["fresh", "within the margin"])
async def test_expiring_tickets_are_counted_from_the_hubs_records_at_once(config, margin):
    """Current at every read, not only after a renewal ran: here none runs at all."""
    config.KerberosTickets.renew_margin = margin
    authenticator = KerberosPAMAuthenticator(config=config)
    server = SimpleNamespace(environment={}, active=True)
    user = SimpleNamespace(name=USER, spawners={"": server})
    await authenticator.pre_spawn_start(user, server)
    await authenticator.renewer.stop()
    ticket = read_ccache(server.environment["KRB5CCNAME"].removeprefix("FILE:"))
    ends_within = ticket.end - time.time() <= margin
    assert ends_within == (margin == 10**8), "the realm's tickets live longer than 30 min"
    assert expiring() == (1 if ends_within else 0)
    server.active = False
    await authenticator.post_spawn_stop(user, server)
    assert expiring() == 0, "a stopped server's ticket is not counted"
    authenticator.ticket_backend.close()


async def test_ticket_requests_are_timed_by_outcome(config, tmp_path):
    authenticator = KerberosPAMAuthenticator(config=config)
    backend = authenticator.ticket_backend.name
    ok, keytab = requests(backend, "spawn", "ok"), requests(backend, "spawn", "keytab")
    user = SimpleNamespace(name=USER, spawners={})
    await authenticator.pre_spawn_start(user, SimpleNamespace(environment={}))
    assert (requests(backend, "spawn", "ok"), requests(backend, "spawn", "keytab")) == (
        ok + 1,
        keytab,
    )
    os.unlink(tmp_path / "keytabs" / f"{USER}.keytab")
    with pytest.raises(web.HTTPError):
        await authenticator.pre_spawn_start(user, SimpleNamespace(environment={}))
    assert (requests(backend, "spawn", "ok"), requests(backend, "spawn", "keytab")) == (
        ok + 1,
        keytab + 1,
    )
    await authenticator.post_spawn_stop(user, SimpleNamespace(environment={}))
    await authenticator.renewer.stop()
    authenticator.ticket_backend.close()


def test_a_raw_oserror_is_a_ccache_error_counted_with_its_cause(config):
    """Whatever layer an OSError comes from, the hub sees a TicketError("ccache")."""
    authenticator = KerberosPAMAuthenticator(config=config)
    backend = authenticator.ticket_backend.name
    failures = ("kerbauth_ticket_failures_total", {"cause": "ccache", "purpose": "renewal"})
    counted = REGISTRY.get_sample_value(*failures) or 0
    timed = requests(backend, "renewal", "ccache")

    def write():
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(TicketError) as info:
        authenticator._timed("renewal", write)
    assert (info.value.cause, info.value.detail) == (
        "ccache",
        "renewal: [Errno 5] Input/output error",
    )
    assert REGISTRY.get_sample_value(*failures) == counted + 1
    assert requests(backend, "renewal", "ccache") == timed + 1
    authenticator.ticket_backend.close()
