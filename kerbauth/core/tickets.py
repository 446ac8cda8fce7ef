"""The ticket core: from a username to a ticket cache the user owns.

Plain functions, no traitlets: :class:`kerbauth.KerberosTickets` reads the
configuration and calls these off the event loop.
"""

import os

from kerbauth.core.backends.kinit import KinitBackend
from kerbauth.core.backends.libkrb5 import Krb5Backend, krb5_available
from kerbauth.core.ccache import parse_ccache
from kerbauth.core.errors import TicketError, keytab_refused
from kerbauth.core.keytab import open_keytab
from kerbauth.core.names import check_username
from kerbauth.core.verify import open_service_keytab

__all__ = [
    "build_principal",
    "keytab_path",
    "ccache_name",
    "ccache_path",
    "make_backend",
    "password_ticket",
    "verified_password_ticket",
    "check_service_keytab",
    "keytab_ticket_bytes",
    "renew_ticket_bytes",
]


def build_principal(template, username, realm):
    """The principal for ``username``: ``template`` filled in after the name is checked.

    The principal is never read from the keytab: a keytab that holds another
    principal's keys must not give this user that principal's ticket.
    """
    return template.format(username=check_username(username), realm=realm)


def keytab_path(template, username):
    """The keytab path for ``username``."""
    return template.format(username=check_username(username))


def ccache_name(username):
    """The file name of ``username``'s cache in the cache directory."""
    return f"krb5cc_{check_username(username)}"


def ccache_path(directory, username):
    """Where the cache of ``username`` lives inside the cache directory."""
    return os.path.join(directory, ccache_name(username))


def make_backend(name, kinit_path="kinit", max_workers=4):
    """The backend called ``name`` ("krb5" or "kinit"); "" picks krb5 when installed."""
    if not name:
        name = "krb5" if krb5_available() else "kinit"
    if name == "krb5":
        if not krb5_available():
            raise TicketError(
                "config",
                'KerberosTickets.backend is "krb5" but the krb5 bindings are not installed;'
                ' install kerbauth[krb5] or set KerberosTickets.backend = "kinit"',
            )
        return Krb5Backend(max_workers=max_workers)
    if name == "kinit":
        return KinitBackend(kinit_path)
    raise TicketError("config", f'KerberosTickets.backend must be "krb5" or "kinit", not {name!r}')


def _check_holds(data, principal, name):
    """``data`` parsed, after checking it holds ``principal``'s TGT (TicketError if not)."""
    found = parse_ccache(data, name).principal
    if found != principal:
        raise TicketError("other", f"{name} holds {found}, not {principal}")
    return data


def password_ticket(backend, *, principal, password, renew_life, timeout, run_as=None):
    """A TGT for ``principal`` from ``password``, as the bytes of a FILE cache.

    The password is used for this one request and not kept. The bytes are
    what kerbauth keeps (encrypted, in JupyterHub's auth_state) to write the
    user's cache at spawn. ``run_as``: the ``(uid, gid)`` the backend's
    process runs as (None: the hub's own).
    """
    if not password or not password.strip():
        raise TicketError("password", "empty password")
    data = backend.password_ticket(principal, password, renew_life, timeout, run_as=run_as)
    return _check_holds(data, principal, "the new ticket")


def verified_password_ticket(backend, *, principal, password, renew_life, keytab, server, timeout):
    """A TGT for ``principal`` from ``password``, verified against the service keytab.

    The kerberos-kdc login (see :mod:`kerbauth.core.verify`): the AS exchange,
    then a ticket for ``server`` read with its key from ``keytab`` (the hub's
    own, opened by :func:`~kerbauth.core.verify.open_service_keytab`), so a
    spoofed KDC cannot log anyone in. An empty password is refused before any
    KDC is asked. Needs the krb5 backend. Raises :class:`TicketError`
    (:class:`~kerbauth.core.verify.KDCNotVerified` when the answer is not
    verified).
    """
    if not password or not password.strip():
        raise TicketError("password", "empty password")
    fd = open_service_keytab(keytab)
    try:
        data = backend.verified_password_ticket(
            principal, password, renew_life, fd, server, timeout
        )
    finally:
        os.close(fd)
    return _check_holds(data, principal, "the new ticket")


def check_service_keytab(backend, *, keytab, server, timeout):
    """Raise :class:`TicketError` unless ``keytab`` is a usable service keytab holding a
    key of ``server`` (the kerberos-kdc mode's start-up check)."""
    fd = open_service_keytab(keytab)
    try:
        backend.check_service_key(fd, server, timeout)
    finally:
        os.close(fd)


def keytab_ticket_bytes(backend, *, principal, keytab, keytab_owner, timeout, run_as=None):
    """A TGT for ``principal`` from ``keytab``, as the bytes of a FILE cache.

    The keytab is checked (see :func:`kerbauth.core.keytab.open_keytab`: owned by
    root or ``keytab_owner``, no access for others, a sane size) and read
    through the checked descriptor only. Nothing is written where a user could
    see it; the caller stores the bytes. Raises :class:`TicketError`.
    """
    fd = open_keytab(keytab, keytab_owner)
    try:
        try:
            data = backend.keytab_ticket(principal, fd, timeout, run_as=run_as)
        except TicketError as e:
            raise keytab_refused(keytab, e) from None
    finally:
        os.close(fd)
    return _check_holds(data, principal, "the new ticket")


def renew_ticket_bytes(backend, *, data, principal, timeout, run_as=None, name="the ticket"):
    """Renew the TGT of ``principal`` in the cache bytes ``data``; the new cache's bytes.

    ``data`` is the hub's own copy (never a file a user can write); it is
    checked to hold ``principal``'s TGT all the same.
    """
    _check_holds(data, principal, name)
    renewed = backend.renew_ticket(data, timeout, run_as=run_as)
    return _check_holds(renewed, principal, "the renewed ticket")
