"""A delegated TGT (SPNEGO with delegation) as the bytes of a FILE cache.

When a client delegates (a forwardable TGT, ``curl --delegation always``,
requests-gssapi's ``delegate=True``, a browser's delegation policy), the
acceptor's security context holds the client's forwarded TGT as GSSAPI
credentials (python-gssapi: ``SecurityContext.delegated_creds``), inside the
hub process. :func:`delegated_ccache` turns them into what the hub keeps for
a login ticket: the bytes of a FILE cache (the format
:func:`kerbauth.core.ccache.parse_ccache` reads), checked to hold a TGT of
exactly the principal that was accepted.

The credentials are stored (``gss_store_cred_into``) into a cache file in a
new private scratch directory of the hub (root's, mode 0700, see
:mod:`kerbauth.core.backends.scratch`), read back without following links,
and the directory removed, also on any error. No module of python-gssapi is
imported here: the credentials object brings its own ``store`` method, so the
core stays free of libraries it does not need.
"""

from kerbauth.core import ccache
from kerbauth.core.backends.scratch import HubScratch, scratch_errors
from kerbauth.core.errors import TicketError

__all__ = ["delegated_ccache"]

_CACHE = "ccache"


def delegated_ccache(creds, principal):
    """The FILE-cache bytes of the delegated credentials ``creds``, a TGT of ``principal``.

    ``creds`` is a python-gssapi ``Credentials`` (the acceptor's
    ``delegated_creds``); ``principal`` the accepted client principal
    (``alice@REALM``). Raises :class:`~kerbauth.core.errors.TicketError` when
    there are no credentials, they cannot be stored, or the cache holds no TGT
    of that principal (a ticket of another principal, a service ticket only).
    Blocking (a file written and read): call it off the event loop, as the
    accept itself is.
    """
    what = f"the delegated credentials of {principal}"
    if creds is None:
        raise TicketError("other", f"{what}: the client delegated no credentials")
    with scratch_errors(what), HubScratch(None) as scratch:
        try:
            # usage "initiate": what the client forwarded is a TGT to act as it.
            creds.store(
                store={"ccache": f"FILE:{scratch.path}/{_CACHE}"},
                usage="initiate",
                overwrite=True,
                set_default=False,
            )
        except Exception as e:  # noqa: BLE001 - gssapi's GSSError and its kin, not imported
            raise TicketError("other", f"{what} cannot be stored in a cache: {e}") from None
        data = scratch.read_cache(_CACHE, what)
    ticket = ccache.parse_ccache(data, what)
    if ticket.principal != principal:
        raise TicketError(
            "other", f"{what}: the cache holds a ticket of {ticket.principal}, not of {principal}"
        )
    return data
