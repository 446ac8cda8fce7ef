"""PAM login plus a Kerberos ticket at spawn (``kerberos-pam``).

Built on JupyterHub's PAMAuthenticator, so its options (``service``,
``check_account``, ``admin_groups``, ``allowed_groups``, ``open_sessions``,
``pam_normalize_username``, ``executor_threads``) keep their meaning. What
changes is the login itself:

- the typed name is checked against kerbauth's username rules and an empty
  or blank password is refused before PAM sees either;
- PAM runs on the authenticator's thread pool with a deadline, so a slow
  module (pam_sss or pam_krb5 waiting on a KDC) costs the user a clear error,
  never the hub its event loop;
- a name that JupyterHub's normalisation (lowercasing, ``username_map``,
  ``pam_normalize_username``) would turn into a *different* account is
  refused before PAM sees it: the hub user must be the account whose password
  was checked (``Bob`` must never become ``bob``, with ``bob``'s uid, server
  and ticket). Two names of one account (sssd's ``Alice`` and ``alice``: the
  same uid) still log in;
- PAM's fail delay (the 2 s pause pam_unix and pam_faildelay put after a
  wrong password) is waited out in asyncio, not in the PAM thread: the
  client that failed still waits, the thread goes on to the next login;
- attempts go through the login limiter (:mod:`kerbauth.auth.limiter`), so a
  flood of wrong passwords from one address or for one name holds at most a
  thread or two, and is refused (429) once it has failed a few times;
- authentication and the account check run in one PAM transaction, and
  ``pam_setcred`` is never called. pamela calls it by default, and with
  pam_krb5 in the stack that writes the user's ticket into the *hub's*
  default cache (``/tmp/krb5cc_0``) and hands that file to the user. The
  server's ticket comes from :class:`~kerbauth.KerberosTickets` instead.
"""

import asyncio
import ctypes
import grp
import pwd

import pamela
from jupyterhub.auth import PAMAuthenticator
from tornado import web

from kerbauth.auth import spnego_accounts
from kerbauth.auth.limits import LoginLimits, login_source
from kerbauth.auth.spnego import KerberosSPNEGO, NegotiatedLogin
from kerbauth.core.names import InvalidUsername, check_username, log_safe
from kerbauth.hub.tickets import KerberosTickets
from kerbauth.traits import Seconds

__all__ = ["KerberosPAMAuthenticator"]

TIMEOUT_MESSAGE = (
    "The login service did not answer in time, so your password could not be checked."
    " Please try again in a few minutes, or contact your administrator."
)

# The PAM item that replaces the framework's fail delay (a sleep in the calling
# thread) with a function of the application's: void fn(int retval, unsigned
# usec, void *appdata). Linux-PAM _pam_types.h.
PAM_FAIL_DELAY = 10
_DELAY_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
# A function pointer of our own (pamela's PAM_SET_ITEM is typed for strings).
_SET_DELAY_FN = pamela.LIBPAM["pam_set_item"]
_SET_DELAY_FN.restype = ctypes.c_int
_SET_DELAY_FN.argtypes = [pamela.PamHandle, ctypes.c_int, _DELAY_FN]

OTHER_ACCOUNT_MESSAGE = (
    "You cannot log in as {typed!r} here: the hub would use that name as {final!r},"
    " which is a different account. Log in with your account's name as it is written,"
    " or contact your administrator."
)


class OtherAccount(Exception):
    """Normalisation would turn the name that logs in into another account's."""

    def __init__(self, typed, final, reason):
        self.typed, self.final, self.reason = typed, final, reason
        super().__init__(f"{log_safe(typed)} would become {log_safe(final)}: {reason}")


def other_account_reason(name, final):
    """None if ``name`` and ``final`` are one account (the same uid in NSS), else why not.

    The uid is what the spawner runs the server as, what owns the cache and
    the keytab, so two names with one uid are one account; sssd answers for
    ``Alice`` with ``alice``'s entry when names are case-insensitive.
    """
    if name == final:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return f"there is no account {log_safe(name)!r} to compare with"
    try:
        other = pwd.getpwnam(final)
    except KeyError:
        return f"there is no account {log_safe(final)!r}"
    if entry.pw_uid != other.pw_uid:
        return f"uid {entry.pw_uid} is not uid {other.pw_uid}"
    return None


class KerberosPAMAuthenticator(KerberosSPNEGO, LoginLimits, KerberosTickets, PAMAuthenticator):
    """Log in with the system password through PAM; each server gets the user's Kerberos ticket."""

    spnego_login = spnego_accounts.pam_login  # a SPNEGO login's account checks

    pam_timeout = Seconds(
        30.0,
        config=True,
        help="""Seconds one PAM login (authentication and account check) may take.

        Past this, the user gets a "try again" error (503) and the log says
        which PAM service was slow. PAM cannot be interrupted: the call goes
        on in its thread, and ``PAMAuthenticator.executor_threads`` bounds
        how many such calls run at once. Example: ``10``.

        .. versionadded:: 0.1
        """,
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # JupyterHub answers every login with a 500 while admin_groups names
        # a group this host cannot resolve; say so once, at startup.
        for option in ("admin_groups", "allowed_groups"):
            for group in sorted(getattr(self, option)):
                try:
                    grp.getgrnam(group)
                except KeyError:
                    self.log.warning(
                        "kerbauth: PAMAuthenticator.%s names %r, which is not a group on this"
                        " host (check the name, or nsswitch/sssd)",
                        option,
                        group,
                    )

    def _pam_transaction(self, username, password):
        """One PAM transaction: authenticate, then (if ``check_account``) the account check.

        Returns ``PAM_USER`` at the end (a module may have changed it);
        raises :class:`pamela.PAMError`, with ``fail_delay``: the seconds of
        fail delay the PAM stack asked for (pam_unix, pam_faildelay), which
        the caller waits out in asyncio. PAM itself does not sleep: its
        ``PAM_FAIL_DELAY`` function is replaced, so the delay holds no thread.
        ``pam_setcred`` is never called (see the module's docstring).
        pamela's own ``authenticate`` cannot return ``PAM_USER`` without
        leaking the handle of a failed transaction, so this is its sequence,
        with ``pam_end`` always called.
        """
        passwords = password if isinstance(password, tuple) else (password,)
        conv = pamela.new_simple_password_conv(passwords, self.encoding)
        delays = []

        @_DELAY_FN
        def record_delay(retval, usec, appdata):
            if retval != pamela.PAM_SUCCESS:
                delays.append(usec / 1e6)

        handle = pamela.pam_start(self.service, username, conv_func=conv, encoding=self.encoding)
        retval = pamela.PAM_SUCCESS
        account = None
        try:
            # A PAM without the item keeps its own delay (in this thread).
            _SET_DELAY_FN(handle, PAM_FAIL_DELAY, record_delay)
            retval = pamela.PAM_AUTHENTICATE(handle, 0)
            if retval == pamela.PAM_SUCCESS and self.check_account:
                retval = pamela.PAM_ACCT_MGMT(handle, 0)
            if retval == pamela.PAM_SUCCESS:
                account = handle.get_item(pamela.PAM_USER, self.encoding)
        finally:
            try:
                pamela.pam_end(handle, retval)  # raises PAMError for a failed transaction
            except pamela.PAMError as e:
                e.fail_delay = max(delays, default=0.0)
                raise
        return account or username

    def _pam_login_sync(self, username, password):
        """The name check and the PAM login of ``username``, on a PAM thread.

        Before PAM: the name JupyterHub will make of ``username`` must be the
        same account. After PAM: so must the account PAM authenticated.
        Raises :class:`OtherAccount` or :class:`pamela.PAMError`.
        """
        final = self.normalize_username(username)
        reason = other_account_reason(username, final)
        if reason:
            raise OtherAccount(username, final, reason)
        account = self._pam_transaction(username, password)
        reason = other_account_reason(account, final)
        if reason:
            raise OtherAccount(account, final, f"PAM authenticated {log_safe(account)!r}: {reason}")

    async def authenticate(self, handler, data):
        """Check the name and password with PAM, off the event loop; the name, or None."""
        if isinstance(data, NegotiatedLogin):  # SPNEGO: the account checks, no password
            return await self.spnego_authenticate(handler, data)
        data = data or {}
        username = data.get("username") or ""
        password = data.get("password") or ""
        try:
            check_username(username)
        except InvalidUsername as e:
            self.log.warning("kerbauth: PAM login refused: %s", e)
            return None
        if not password.strip():
            self.log.warning("kerbauth: PAM login of %s refused: empty password", username)
            return None
        if "otp" in data:
            password = (password, data["otp"])
        remote = login_source(handler.request) if handler is not None else "-"
        attempt = await self.acquire_login(handler, username)
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(self.executor, self._pam_login_sync, username, password)

        def release_when_done(done):
            if not done.cancelled():
                done.exception()  # retrieved: the login has been answered already
            attempt.release()

        try:
            # shield: on timeout the thread goes on, and so does its hold on
            # the login limits (released when the thread is done).
            await asyncio.wait_for(asyncio.shield(call), self.pam_timeout)
        except asyncio.TimeoutError:
            call.add_done_callback(release_when_done)
            self.log.error(
                "kerbauth: PAM service %r did not answer the login of %s within %s s"
                " (KerberosPAMAuthenticator.pam_timeout)",
                self.service,
                username,
                self.pam_timeout,
            )
            raise web.HTTPError(503, TIMEOUT_MESSAGE) from None
        except pamela.PAMError as e:
            self.log.warning("kerbauth: PAM refused the login of %s@%s: %s", username, remote, e)
            try:
                # The fail delay, waited out here: it slows this client (whose
                # turn it keeps meanwhile), not the PAM threads.
                await asyncio.sleep(min(getattr(e, "fail_delay", 0.0), self.pam_timeout))
            finally:
                attempt.release()
            return None
        except OtherAccount as e:
            attempt.release()
            self.log.warning(
                "kerbauth: PAM login of %r refused: JupyterHub would log it in as %r, another"
                " account (%s); see normalize_username, username_map, pam_normalize_username",
                log_safe(e.typed),
                log_safe(e.final),
                e.reason,
            )
            raise web.HTTPError(
                403, OTHER_ACCOUNT_MESSAGE.format(typed=e.typed, final=e.final)
            ) from None
        except BaseException:
            # Cancelled (the hub stopping) or an error: the turn is given back
            # when the thread is done with PAM, not before.
            call.add_done_callback(release_when_done)
            raise
        attempt.succeeded()
        attempt.release()
        self.log.info("kerbauth: %s logged in through PAM service %r", username, self.service)
        return username

    def normalize_username(self, username):
        # pam_normalize_username looks the name up in NSS and raises KeyError
        # for one with no account (yet), which stops the hub at startup when
        # allowed_users or admin_users names it. Keep such a name as written:
        # PAM refuses its logins until the account exists.
        try:
            return super().normalize_username(username)
        except KeyError:
            self.log.warning("kerbauth: no local account %s", log_safe(username))
            return username
