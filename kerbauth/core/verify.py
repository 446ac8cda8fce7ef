"""Verifying a KDC's answer against the hub's own service keytab (the kerberos-kdc mode).

A password checked by an AS exchange alone proves nothing: whoever answers
for the KDC's address (a spoofed KDC, a poisoned DNS answer, a rogue host on
the network) can answer for any principal with a password of its own choice,
and the client can decrypt that answer. What the attacker cannot do is make a
service ticket for a key it does not know. So, as pam_krb5 and sshd do, the
new TGT is used to get a ticket for the hub's own service principal
(``host/<fqdn>@REALM``, say), and that ticket is read with the key from the
hub's keytab. MIT's ``krb5_verify_init_creds`` does exactly this; with
``ap_req_nofail`` set (here always) a keytab that does not hold the service
key is an error, never a silent pass (without it, MIT skips the check when the
key is missing).

Why ctypes on ``libkrb5.so.3``: pykrb5 0.10 has no binding of
``krb5_verify_init_creds``, and python-gssapi offers no way to check
initial credentials. The call runs inside a krb5 worker process
(:mod:`kerbauth.core.backends.libkrb5_worker`), which already made the AS
exchange with pykrb5: the new TGT crosses from pykrb5 to this module as the
bytes of ``krb5_marshal_credentials`` and comes back in with
``krb5_unmarshal_credentials`` (both MIT 1.20 and later; Debian 12 has
1.20.1), in a context of this module's own. The keytab's bytes are in an
unnamed memory file (``FILE:/proc/self/fd/N``), never on a disk. A library
crash here would take the worker with it, not the hub. Every object made here
is freed on every path.

On the hub's side, :func:`open_service_keytab` opens the configured keytab
and :class:`KDCNotVerified` is the error a failed verification is told by.
"""

import ctypes
import errno
import os
import stat

from kerbauth.core.errors import KeytabError, TicketError
from kerbauth.core.keytab import read_keytab_bytes

__all__ = [
    "KDCNotVerified",
    "VerifyError",
    "open_service_keytab",
    "verify_credentials",
    "check_service_key",
]


class KDCNotVerified(TicketError):
    """The KDC answered the AS exchange, but its answer could not be verified with the
    service keytab: a spoofed KDC, or a keytab whose key the KDC no longer has."""

    def __init__(self, detail):
        super().__init__("other", f"the KDC could not be verified: {detail}")


class VerifyError(Exception):
    """A library call of the verification failed (in the worker): its code and message."""

    def __init__(self, code, message, stage="verify"):
        self.code, self.stage = code, stage  # "verify", or "keytab" for the start-up check
        super().__init__(message)


def open_service_keytab(path):
    """Open the hub's service keytab ``path``; its descriptor (the caller closes it).

    It must be a regular file of at most the keytab caps of
    :mod:`kerbauth.core.keytab`, owned by root or by the hub's user, not
    writable by group or others and not readable by others. Group read is
    allowed for a group of the hub's own (a Kubernetes secret mounted with an
    ``fsGroup``). As root a symlink is refused (the hub would hand a key it
    was pointed at to the check); without root the hub can read only what its
    own user can anyway, so a link (Kubernetes mounts secrets as links) is
    followed. Raises :class:`KeytabError` naming the file and the reason.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if os.geteuid() == 0:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeytabError(path, "does not exist") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise KeytabError(
                path, "is a symbolic link; refusing to follow it as root (name the file itself)"
            ) from None
        raise KeytabError(path, f"cannot be opened by uid {os.geteuid()}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        reason = _unsafe_reason(st)
        if reason:
            raise KeytabError(path, reason)
        read_keytab_bytes(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unsafe_reason(st):
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    hub = os.geteuid()
    if st.st_uid not in (0, hub):
        return f"is owned by uid {st.st_uid}; it must be owned by root or by the hub's user"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o027 or (mode & 0o040 and st.st_gid not in {os.getegid(), *os.getgroups()}):
        return (
            f"is mode {mode:04o}, group {st.st_gid}: a host key must be mode 0600 or 0400"
            " (0640/0440 only for a group of the hub's own)"
        )
    return None


# --- the library calls (in the krb5 worker) ------------------------------------------

_LIB = None


class _Data(ctypes.Structure):  # krb5_data
    _fields_ = [
        ("magic", ctypes.c_int32),
        ("length", ctypes.c_uint),
        ("data", ctypes.c_void_p),
    ]


class _VerifyOpt(ctypes.Structure):  # krb5_verify_init_creds_opt
    _fields_ = [("flags", ctypes.c_int32), ("ap_req_nofail", ctypes.c_int)]


def _lib():
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL("libkrb5.so.3")
        p, pp, i32 = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int32
        for name, args in (
            ("krb5_init_context", [pp]),
            ("krb5_parse_name", [p, ctypes.c_char_p, pp]),
            ("krb5_kt_resolve", [p, ctypes.c_char_p, pp]),
            ("krb5_kt_close", [p, p]),
            ("krb5_kt_get_entry", [p, p, p, ctypes.c_uint, i32, p]),
            ("krb5_free_keytab_entry_contents", [p, p]),
            ("krb5_unmarshal_credentials", [p, ctypes.POINTER(_Data), pp]),
            ("krb5_verify_init_creds", [p, p, p, p, p, ctypes.POINTER(_VerifyOpt)]),
        ):
            function = getattr(lib, name)
            function.argtypes, function.restype = args, i32
        for name, args in (
            ("krb5_free_context", [p]),
            ("krb5_free_principal", [p, p]),
            ("krb5_free_creds", [p, p]),
            ("krb5_free_error_message", [p, p]),
            ("krb5_verify_init_creds_opt_init", [ctypes.POINTER(_VerifyOpt)]),
            ("krb5_verify_init_creds_opt_set_ap_req_nofail", [ctypes.POINTER(_VerifyOpt), i32]),
        ):
            function = getattr(lib, name)
            function.argtypes, function.restype = args, None
        lib.krb5_get_error_message.argtypes = [p, i32]
        lib.krb5_get_error_message.restype = p  # freed with krb5_free_error_message
        _LIB = lib
    return _LIB


class _Session:
    """A krb5 context of this module's own and what was made in it, freed at the end."""

    def __init__(self):
        self.lib = _lib()
        self.ctx = ctypes.c_void_p()
        code = self.lib.krb5_init_context(ctypes.byref(self.ctx))
        if code:
            raise VerifyError(code, f"the Kerberos library cannot start (error {code})")
        self._undo = []

    def check(self, code, what):
        if code:
            raw = self.lib.krb5_get_error_message(self.ctx, code)
            try:
                text = ctypes.string_at(raw).decode(errors="replace") if raw else str(code)
            finally:
                if raw:
                    self.lib.krb5_free_error_message(self.ctx, raw)
            raise VerifyError(code, f"{what}: {text}")

    def principal(self, name):
        handle = ctypes.c_void_p()
        self.check(self.lib.krb5_parse_name(self.ctx, name.encode(), ctypes.byref(handle)), name)
        self._undo.append(lambda: self.lib.krb5_free_principal(self.ctx, handle))
        return handle

    def keytab(self, fd):
        handle = ctypes.c_void_p()
        name = f"FILE:/proc/self/fd/{fd}".encode()
        self.check(self.lib.krb5_kt_resolve(self.ctx, name, ctypes.byref(handle)), "the keytab")
        self._undo.append(lambda: self.lib.krb5_kt_close(self.ctx, handle))
        return handle

    def creds(self, marshalled):
        buffer = ctypes.create_string_buffer(marshalled, len(marshalled))
        data = _Data(0, len(marshalled), ctypes.cast(buffer, ctypes.c_void_p))
        handle = ctypes.c_void_p()
        code = self.lib.krb5_unmarshal_credentials(
            self.ctx, ctypes.byref(data), ctypes.byref(handle)
        )
        self.check(code, "reading the new ticket back")
        self._undo.append(lambda: self.lib.krb5_free_creds(self.ctx, handle))
        return handle

    def close(self):
        while self._undo:
            self._undo.pop()()
        self.lib.krb5_free_context(self.ctx)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _keytab_memfd(keytab):
    fd = os.memfd_create("kerbauth-service-keytab", os.MFD_CLOEXEC)
    try:
        view = memoryview(keytab)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_service_key(keytab, server):
    """Raise :class:`VerifyError` unless the keytab bytes ``keytab`` hold a key of
    ``server`` (the start-up check: a keytab without it would refuse every login)."""
    fd = _keytab_memfd(keytab)
    try:
        with _Session() as s:
            entry = ctypes.create_string_buffer(256)  # a krb5_keytab_entry is 48 bytes
            code = s.lib.krb5_kt_get_entry(s.ctx, s.keytab(fd), s.principal(server), 0, 0, entry)
            s.check(code, f"looking for {server} in the keytab")
            s.lib.krb5_free_keytab_entry_contents(s.ctx, entry)
    except VerifyError as e:
        raise VerifyError(e.code, str(e), stage="keytab") from None
    finally:
        os.close(fd)


def verify_credentials(marshalled, keytab, server):
    """Verify the TGT ``marshalled`` (``krb5_marshal_credentials``) with ``server``'s key.

    ``keytab``: the service keytab's bytes. Gets a ticket for ``server``
    with the TGT (from the KDC the TGT came from) and reads it with the key in
    the keytab, ``ap_req_nofail`` set. Raises :class:`VerifyError` when that
    fails: the KDC does not know the service key the hub holds.
    """
    fd = _keytab_memfd(keytab)
    try:
        with _Session() as s:
            creds = s.creds(marshalled)
            principal, kt = s.principal(server), s.keytab(fd)
            opt = _VerifyOpt()
            s.lib.krb5_verify_init_creds_opt_init(ctypes.byref(opt))
            s.lib.krb5_verify_init_creds_opt_set_ap_req_nofail(ctypes.byref(opt), 1)
            code = s.lib.krb5_verify_init_creds(
                s.ctx, creds, principal, kt, None, ctypes.byref(opt)
            )
            s.check(code, f"verifying the new ticket with the key of {server}")
    finally:
        os.close(fd)
