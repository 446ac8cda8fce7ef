"""``kerbauth-fetch``: the ``fetch`` delivery's command for a server without the extension.

An image whose server is not a Jupyter server (or that wants the ticket
before the server starts) runs ``kerbauth-fetch`` once, or ``kerbauth-fetch
--keep &`` in its entrypoint, in the environment the hub gives the server
(``KRB5CCNAME``, ``KERBAUTH_TICKET_URL``, ``KERBAUTH_RENEW_MARGIN``,
``KERBAUTH_RENEW_INTERVAL``, ``JUPYTERHUB_API_TOKEN``). It is the same keeper
as the server extension's (:class:`kerbauth.server.keeper.TicketKeeper`); the
exit status says what happened (see ``kerbauth-fetch --help``).
"""

import argparse
import logging
import os
import signal

from kerbauth.server.errors import FetchError, UnsafeCacheTarget
from kerbauth.server.hub_client import ENV_URL
from kerbauth.server.keeper import keeper_from_environ

__all__ = ["main"]


def main(argv=None):
    """``kerbauth-fetch``: fetch the server's ticket once, or keep it fresh (``--keep``)."""
    parser = argparse.ArgumentParser(
        prog="kerbauth-fetch",
        description="Fetch this server's Kerberos ticket from the hub into $KRB5CCNAME"
        " (KerberosTickets.delivery = 'fetch'). Reads KRB5CCNAME, KERBAUTH_TICKET_URL,"
        " KERBAUTH_RENEW_MARGIN, KERBAUTH_RENEW_INTERVAL and JUPYTERHUB_API_TOKEN from the"
        " environment the hub gives"
        " the server. Exit status 0 when a ticket was written, 1 when none could be fetched,"
        " 2 for a wrong environment, 3 when KRB5CCNAME names a place that is not yours"
        " (another user's file or directory: nothing is written there).",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep running: fetch again before the ticket ends, retry with backoff on"
        " failure; on SIGTERM or SIGINT remove the ticket (and the directory made for it)"
        " and exit (for an entrypoint: kerbauth-fetch --keep & exec jupyterhub-singleuser)",
    )
    parser.add_argument(
        "--max-backoff",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="longest wait between two failed attempts with --keep (default: 60)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s] %(message)s")
    log = logging.getLogger("kerbauth-fetch")
    try:
        keeper = keeper_from_environ(os.environ, log, max_backoff=args.max_backoff)
    except FetchError as e:
        return _failed(log, e, status=2)
    if keeper is None:
        log.error("kerbauth: %s is not set: the hub does not deliver tickets by fetch", ENV_URL)
        return 2
    if args.keep:
        return _keep(keeper, log)
    try:
        times = keeper.fetch_once()
    except FetchError as e:
        return _failed(log, e, status=1, prefix="no ticket: ")
    finally:
        keeper.target.release()
    log.info("kerbauth: ticket of %s written to %s", times.principal, keeper.path)
    return 0


def _failed(log, error, status, prefix=""):
    """Log ``error``; the exit status: 3 when the place is someone else's, else ``status``."""
    if isinstance(error, UnsafeCacheTarget):
        log.error("kerbauth: %s", error)
        return 3
    log.error("kerbauth: %s%s", prefix, error)
    return status


def _keep(keeper, log):
    """``--keep``: fetch until SIGTERM or SIGINT, then remove the ticket."""

    unsafe = []

    def stop(signum, frame):
        keeper.stopped.set()

    def give_up(error):
        # Someone else's file took the name: the server's KRB5CCNAME cannot be changed from here.
        unsafe.append(error)
        keeper.stopped.set()

    keeper.on_unsafe = give_up
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        keeper.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        keeper.target.remove()
    if unsafe:
        log.error("kerbauth: stopped: %s", unsafe[0])
        return 3
    log.info("kerbauth: stopped; the ticket in %s is removed", keeper.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
