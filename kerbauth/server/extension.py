"""A Jupyter server extension that keeps the server's Kerberos ticket (``fetch`` delivery).

Installed with kerbauth, it is enabled by
``etc/jupyter/jupyter_server_config.d/kerbauth.json`` (or by hand:
``--ServerApp.jpserver_extensions='{"kerbauth.server": True}'``).
Under a hub with ``KerberosTickets.delivery = "fetch"`` it starts a
:class:`~kerbauth.server.keeper.TicketKeeper` on a daemon thread when the
server starts: the ticket is fetched into ``$KRB5CCNAME`` and again before it
ends. Without ``KERBAUTH_TICKET_URL`` in the environment it does nothing.
Nothing it does can block or stop the server: failures are logged, with their
cause, to the server's log.

``KRB5CCNAME`` never names a file that is not the server's own: the place
is checked when the extension loads, before any kernel or terminal starts
(they inherit this process's ``os.environ``). When it is someone else's (on
a shared host, another user may have planted a file, directory or link
there first, holding their own ticket), or cannot be used at all, the
extension points ``os.environ["KRB5CCNAME"]`` at a new private directory
(``mkdtemp``, mode 0700) and says so in the log. Removing the variable
instead would leave libkrb5 with its default ``/tmp/krb5cc_<uid>``, which
can be planted the same way (if no private directory can be made, it
becomes an empty ``MEMORY:`` cache). When the server stops (at the
interpreter's exit: jupyter_server 2 has no stop hook for module
extensions), the ticket is removed, and the directory too if this server
made it.
"""

import atexit
import os

from kerbauth.server.cache_target import ccache_target, open_cache, private_cache
from kerbauth.server.hub_client import ENV_URL
from kerbauth.server.keeper import keeper_from_environ

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points():
    return [{"module": "kerbauth.server"}]


def _use_private_cache(log, error):
    """Point this process's KRB5CCNAME at a new private cache; the target, or None."""
    try:
        target = private_cache()
    except Exception as e:  # noqa: BLE001 - never stop the server
        # An empty cache of this process's own, rather than libkrb5's plantable default.
        os.environ["KRB5CCNAME"] = "MEMORY:kerbauth-no-ticket"
        log.error("kerbauth: %s; and no private cache either (%s): no ticket", error, e)
        return None
    os.environ["KRB5CCNAME"] = f"FILE:{target.path}"
    log.error("kerbauth: %s; this server uses %s instead", error, os.environ["KRB5CCNAME"])
    return target


def _load_jupyter_server_extension(serverapp):
    log = serverapp.log
    if not os.environ.get(ENV_URL):
        log.debug("kerbauth: %s is not set; no ticket to fetch", ENV_URL)
        return
    # First the place, so that KRB5CCNAME names only a cache this server holds
    # (or a private one) whatever fails after.
    try:
        target = open_cache(ccache_target(os.environ.get("KRB5CCNAME", "")))
    except Exception as e:  # noqa: BLE001 - FetchError, or anything else: never stop the server
        target = _use_private_cache(log, e)
        if target is None:
            return
    try:
        keeper = keeper_from_environ(os.environ, log, target=target)
    except Exception as e:  # noqa: BLE001 - never stop the server
        log.error("kerbauth: cannot fetch the Kerberos ticket: %s", e)
        atexit.register(target.remove)
        return
    keeper.on_unsafe = lambda e: _use_private_cache(log, e)
    atexit.register(keeper.close)
    keeper.start()
    log.info("kerbauth: fetching the Kerberos ticket into %s", keeper.path)
