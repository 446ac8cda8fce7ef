"""The ticket core: from a username to a ticket cache the user owns.

Plain functions, no traitlets: :class:`kerbauth.KerberosTickets` reads the
configuration and calls these off the event loop.
"""

import os
import re
import tempfile

from .ccache import parse_ccache, read_ccache_bytes, write_ccache
from .errors import TicketError
from .keytab import open_keytab
from .kinit_backend import KinitBackend
from .krb5_backend import Krb5Backend, krb5_available
from .usernames import check_username

__all__ = [
    "build_principal",
    "keytab_path",
    "ccache_path",
    "default_realm",
    "make_backend",
    "keytab_ticket",
    "password_ticket",
    "store_ccache",
    "renew_ccache",
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


def ccache_path(directory, username):
    """Where the cache of ``username`` lives inside the cache directory."""
    return os.path.join(directory, f"krb5cc_{check_username(username)}")


_DEFAULT_REALM = re.compile(r"^\s*default_realm\s*=\s*(\S+)", re.MULTILINE)
_SECTION = re.compile(r"^\s*\[([^\]]+)\]", re.MULTILINE)


def default_realm(environ=os.environ):
    """The ``default_realm`` of krb5.conf (``KRB5_CONFIG`` or /etc/krb5.conf), or None."""
    for path in environ.get("KRB5_CONFIG", "/etc/krb5.conf").split(":"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        sections = list(_SECTION.finditer(text))
        for i, section in enumerate(sections):
            if section.group(1).strip() != "libdefaults":
                continue
            end = sections[i + 1].start() if i + 1 < len(sections) else len(text)
            match = _DEFAULT_REALM.search(text, section.end(), end)
            if match:
                return match.group(1)
    return None


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


def password_ticket(backend, *, principal, password, renew_life, timeout):
    """A TGT for ``principal`` from ``password``, as the bytes of a FILE cache.

    The password is used for this one request and not kept. The bytes are
    what kerbauth keeps (encrypted, in JupyterHub's auth_state) to write the
    user's cache at spawn.
    """
    if not password or not password.strip():
        raise TicketError("password", "empty password")
    with tempfile.TemporaryDirectory(prefix="kerbauth-pw-") as private:
        tmp = os.path.join(private, "ccache")
        backend.password_ticket(principal, password, tmp, renew_life, timeout)
        with open(tmp, "rb") as f:
            return f.read()


def store_ccache(ccache, data, *, uid, gid):
    """Write the cache bytes ``data`` to ``ccache`` atomically, owned by ``uid``/``gid``."""

    def fill(tmp):
        with open(tmp, "xb") as f:
            f.write(data)

    write_ccache(ccache, fill, uid, gid)


def renew_ccache(backend, *, ccache, principal, uid, gid, timeout):
    """Renew the TGT of ``principal`` in ``ccache`` in place; the old cache stays on failure.

    The user owns the cache file and can change what is in it, so it is read
    without following links, checked to hold ``principal``'s TGT, and renewed
    from a private copy.
    """
    data = read_ccache_bytes(ccache)
    renewed = renew_ticket_bytes(
        backend, data=data, principal=principal, timeout=timeout, name=f"cache {ccache}"
    )
    store_ccache(ccache, renewed, uid=uid, gid=gid)


def keytab_ticket(backend, *, principal, keytab, ccache, uid, gid, timeout):
    """Get a TGT for ``principal`` from ``keytab`` into ``ccache``, owned by ``uid``/``gid``.

    The keytab is checked (see :func:`kerbauth.keytab.open_keytab`) and read
    through the checked descriptor; the cache is written atomically (see
    :func:`kerbauth.ccache.write_ccache`). Raises :class:`TicketError`; on
    error the previous cache is unchanged.
    """
    fd = open_keytab(keytab, uid)
    try:
        write_ccache(
            ccache,
            lambda tmp: backend.keytab_ticket(principal, fd, tmp, timeout),
            uid,
            gid,
        )
    except TicketError as e:
        if e.cause != "password":
            raise
        # With a keytab, "wrong password" means the keytab's key is not the
        # principal's current one (a password change or a new key version).
        raise TicketError(
            "keytab", f"keytab {keytab} holds a key the KDC does not accept (stale?): {e.detail}"
        ) from None
    finally:
        os.close(fd)


def keytab_ticket_bytes(backend, *, principal, keytab, keytab_owner, timeout):
    """A TGT for ``principal`` from ``keytab``, as the bytes of a FILE cache.

    For the ``fetch`` delivery: nothing is written where a user could see it
    and nothing is chowned. The keytab is checked as in :func:`keytab_ticket`
    (owned by root or ``keytab_owner``, the uid the hub runs as); the ticket is
    written into a private temporary directory (mode 0700, the hub's own),
    read back and removed.
    """
    fd = open_keytab(keytab, keytab_owner)
    try:
        with tempfile.TemporaryDirectory(prefix="kerbauth-fetch-") as private:
            tmp = os.path.join(private, "ccache")
            try:
                backend.keytab_ticket(principal, fd, tmp, timeout)
            except TicketError as e:
                if e.cause != "password":
                    raise
                raise TicketError(
                    "keytab",
                    f"keytab {keytab} holds a key the KDC does not accept (stale?): {e.detail}",
                ) from None
            return read_ccache_bytes(tmp)
    finally:
        os.close(fd)


def renew_ticket_bytes(backend, *, data, principal, timeout, name="the ticket"):
    """Renew the TGT of ``principal`` in the cache bytes ``data``; the new cache's bytes.

    The bytes are checked to hold ``principal``'s TGT and renewed from a
    private copy (the user may own, and change, the cache they came from).
    """
    found = parse_ccache(data, name).principal
    if found != principal:
        raise TicketError("other", f"{name} holds {found}, not {principal}; not renewed")
    with tempfile.TemporaryDirectory(prefix="kerbauth-renew-") as private:
        source = os.path.join(private, "source")
        with open(source, "xb") as f:
            f.write(data)
        target = os.path.join(private, "renewed")
        backend.renew_ticket(source, target, timeout)
        return read_ccache_bytes(target)
