"""A Jupyter server extension that keeps the server's Kerberos ticket (``fetch`` delivery).

Installed with kerbauth, it is enabled by
``etc/jupyter/jupyter_server_config.d/kerbauth.json`` (or by hand:
``--ServerApp.jpserver_extensions='{"kerbauth.server_extension": True}'``).
Under a hub with ``KerberosTickets.delivery = "fetch"`` it starts a
:class:`~kerbauth.ticket_fetch.TicketKeeper` on a daemon thread when the
server starts: the ticket is fetched into ``$KRB5CCNAME`` and again before it
ends. Without ``KERBAUTH_TICKET_URL`` in the environment it does nothing.
Nothing it does can block or stop the server: failures are logged, with their
cause, to the server's log.
"""

import os

from .ticket_fetch import keeper_from_environ

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points():
    return [{"module": "kerbauth.server_extension"}]


def _load_jupyter_server_extension(serverapp):
    log = serverapp.log
    try:
        keeper = keeper_from_environ(os.environ, log)
    except Exception as e:  # noqa: BLE001 - never stop the server
        log.error("kerbauth: cannot fetch the Kerberos ticket: %s", e)
        return
    if keeper is None:
        log.debug("kerbauth: KERBAUTH_TICKET_URL is not set; no ticket to fetch")
        return
    keeper.start()
    log.info("kerbauth: fetching the Kerberos ticket into %s", keeper.path)
