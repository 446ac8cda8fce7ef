"""The checks of the cache directory, the user's account and keytab, and a real ticket."""

import os
import pwd
import stat
import time
import types

from kerbauth.core import cache_directory, ccache, tickets
from kerbauth.core.errors import KeytabError, TicketError
from kerbauth.core.keytab import open_keytab
from kerbauth.core.names import InvalidUsername
from kerbauth.doctor.outcome import OK, PROBLEM, Skip

__all__ = [
    "check_ccache_dir",
    "check_account",
    "check_keytab",
    "check_ticket",
    "keytab_entries",
]


def _fetching(site):
    return getattr(site.authenticator, "delivery", "file") == "fetch"


def check_ccache_dir(site):
    if _fetching(site):
        raise Skip('KerberosTickets.delivery = "fetch": servers write their own caches')
    path = site.authenticator.ccache_dir
    hint = f"mkdir -p {path} && chown root: {path} && chmod 711 {path}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip("/")) or "/"
        if os.path.isdir(parent):
            try:
                cache_directory.check_ccache_parent(path)
            except TicketError as e:
                return (PROBLEM, e.detail, hint)
            return (OK, f"{path} does not exist yet; the hub creates it (mode 0711)", "")
        return (PROBLEM, f"{path} cannot be created: {parent} does not exist", hint)
    if stat.S_ISDIR(st.st_mode):
        try:
            cache_directory.prepare_ccache_dir(path)  # an existing directory is only checked
        except TicketError as e:
            return (PROBLEM, e.detail, hint)
    else:
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        return (PROBLEM, f"KerberosTickets.ccache_dir {path} is {kind}", hint)
    mode = stat.S_IMODE(st.st_mode)
    if not mode & stat.S_IXOTH:
        return (
            PROBLEM,
            f"{path} has mode {mode:04o}: the users' servers cannot reach their caches in it",
            f"chmod 711 {path}",
        )
    return (OK, f"{path}: owner uid {st.st_uid}, mode {mode:04o}", "")


def _user_paths(site):
    """``(principal, keytab, uid, gid)`` of the user asked about; Skip without one."""
    a = site.authenticator
    if site.username is None:
        raise Skip("give --user NAME to check a user's keytab and ticket")
    if a.password_tickets:
        raise Skip("KerberosTickets.password_tickets: tickets come from the login password")
    if not a.keytab_template:
        raise Skip("KerberosTickets.keytab_template is not set")
    try:
        principal = tickets.build_principal(a.principal_template, site.username, a.realm)
        keytab = tickets.keytab_path(a.keytab_template, site.username)
    except InvalidUsername as e:
        raise Skip(str(e)) from None
    if _fetching(site):
        # The hub reads the keytab as itself and hands the ticket over the API.
        return principal, keytab, os.geteuid(), os.getegid()
    try:
        uid, gid = a.ticket_owner(types.SimpleNamespace(name=site.username))
    except TicketError as e:
        raise Skip(e.detail) from None
    return principal, keytab, uid, gid


def check_account(site):
    if site.username is None:
        raise Skip("give --user NAME to check a user's account, keytab and ticket")
    if _fetching(site):
        raise Skip('KerberosTickets.delivery = "fetch": servers need no account on the hub')
    try:
        entry = pwd.getpwnam(site.username)
    except KeyError:
        return (
            PROBLEM,
            f"there is no local account {site.username!r}: the spawner cannot run the server",
            "create the account, or make it visible through NSS (sssd, nslcd)",
        )
    return (OK, f"local account {entry.pw_name}: uid {entry.pw_uid}, home {entry.pw_dir}", "")


def check_keytab(site):
    principal, keytab, uid, _ = _user_paths(site)
    try:
        fd = open_keytab(keytab, uid)
    except KeytabError as e:
        site.facts["keytab"] = False
        return (PROBLEM, e.detail, _keytab_hint(e.reason, keytab, uid))
    try:
        st = os.fstat(fd)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(1 << 20)
    finally:
        os.close(fd)
    try:
        entries = keytab_entries(data)
    except ValueError as e:
        site.facts["keytab"] = False
        return (PROBLEM, f"keytab {keytab} cannot be read: {e}", "export the keytab again")
    kvnos = sorted({kvno for name, kvno, _ in entries if name == principal})
    site.facts["keytab"] = bool(kvnos)
    if not kvnos:
        found = sorted({name for name, _, _ in entries})
        return (
            PROBLEM,
            f"keytab {keytab} holds no key of {principal} (it has: {', '.join(found) or 'none'})",
            f"kadmin: ktadd -k {keytab} {principal}",
        )
    mode = stat.S_IMODE(st.st_mode)
    return (
        OK,
        f"keytab {keytab}: owner uid {st.st_uid}, mode {mode:04o}, {principal} kvno"
        f" {', '.join(map(str, kvnos))}",
        "",
    )


def _keytab_hint(reason, keytab, uid):
    if "mode" in reason:
        return f"chmod 600 {keytab}"
    if "owned by" in reason:
        return f"chown {pwd.getpwuid(uid).pw_name} {keytab}  (or root)"
    if "does not exist" in reason:
        return f"export it: kadmin -q 'ktadd -k {keytab} <principal>', then chmod 600 it"
    return f"make {keytab} a regular file, mode 0600, owned by the user or root"


def check_ticket(site):
    principal, keytab, uid, gid = _user_paths(site)
    if site.facts.get("keytab") is False:
        raise Skip("needs a usable keytab (see the keytab line)")
    a = site.authenticator
    backend = None
    try:
        backend = tickets.make_backend(a.backend, a.kinit_path, max_workers=1)
        data = tickets.keytab_ticket_bytes(
            backend,
            principal=principal,
            keytab=keytab,
            keytab_owner=uid,
            timeout=a.timeout,
            run_as=(uid, gid) if os.geteuid() == 0 and uid != 0 else None,
        )
        got = ccache.parse_ccache(data)
        site.facts["ticket"] = (data, principal, uid, gid)  # for the jvm check
    except TicketError as e:
        return (PROBLEM, f"no ticket for {principal}: {e}", _TICKET_HINTS.get(e.cause, ""))
    finally:
        if hasattr(backend, "close"):
            backend.close()
    ends = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(got.end))
    return (OK, f"got a ticket for {got.principal} through {backend.name}, valid until {ends}", "")


_TICKET_HINTS = {
    "keytab": "export the user's current key again (kadmin: ktadd -k <keytab> <principal>)",
    "principal": "create the principal, or fix KerberosTickets.principal_template",
    "kdc_unreachable": "start the KDC or fix kdc = in krb5.conf",
    "timeout": "the KDC is slow or filtered; check the network path to it",
    "clock_skew": "synchronise this host's clock with the KDC (NTP)",
    "config": "fix krb5.conf or the option the message names",
}


# --- keytab contents ---------------------------------------------------------------


def keytab_entries(data):
    """``[(principal, kvno, enctype), ...]`` of the bytes of a FILE keytab (format 0x0502)."""
    if len(data) < 2 or data[0] != 5 or data[1] != 2:
        raise ValueError("not a version 2 keytab")
    entries, pos = [], 2
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big", signed=True)
        pos += 4
        if size < 0:  # a hole left by a removed entry
            pos -= size
            continue
        if size == 0:
            break
        entry = data[pos : pos + size]
        if len(entry) < size:
            raise ValueError("truncated entry")
        pos += size
        entries.append(_keytab_entry(entry))
    return entries


def _keytab_entry(entry):
    count = int.from_bytes(entry[0:2], "big")
    at = 2

    def counted():
        nonlocal at
        n = int.from_bytes(entry[at : at + 2], "big")
        value = entry[at + 2 : at + 2 + n]
        at += 2 + n
        return value.decode("utf-8", "replace")

    realm = counted()
    components = [counted() for _ in range(count)]
    at += 4 + 4  # name type, timestamp
    kvno = entry[at]
    enctype = int.from_bytes(entry[at + 1 : at + 3], "big")
    key_length = int.from_bytes(entry[at + 3 : at + 5], "big")
    at += 5 + key_length
    if at + 4 <= len(entry):  # the 32-bit kvno, when present and set
        kvno = int.from_bytes(entry[at : at + 4], "big") or kvno
    return "/".join(components) + "@" + realm, kvno, enctype
