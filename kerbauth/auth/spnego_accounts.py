"""What each login mode checks of an account that logged in with SPNEGO (no password).

The SPNEGO accept (:mod:`kerbauth.auth.spnego`) proves who the client is; the
login mode then decides, as it does after a password, whether that account
may use the hub and what JupyterHub learns of it. Each function here is the
``spnego_login`` of one authenticator (a class attribute there), called with
the authenticator as ``self``; each returns a name or a model dict, or raises
:class:`~kerbauth.auth.spnego.SpnegoRefused` (the user's message, the log's
cause). JupyterHub then applies ``allowed_users``, ``blocked_users``,
``admin`` and the authenticator's ``check_allowed`` as for any login.

- **PAM** (``kerberos-pam``): the principal's name must be a local account,
  normalisation must not turn it into another account (the rule of the form
  login), and with ``PAMAuthenticator.check_account`` (the default) PAM's
  account stack (``pam_acct_mgmt``: expiry, ``pam_access``, ...) runs for it,
  on the PAM thread pool within ``pam_timeout``. PAM's ``auth`` stack is not
  run: there is no password to give it.
- **LDAP** (``kerberos-ldap``): without a password there is no user bind. The
  entry, its attributes and groups are read by the search account, as the
  group refresh does (:func:`kerbauth.auth.ldap.directory.look_up_membership`),
  within ``login_timeout``; ``allowed_groups``, ``admin_groups``,
  ``manage_groups``, ``user_info_attributes`` and auth_state follow as for a
  password login. A hub without a search account (``search_bind_dn`` or the
  Kerberos search bind) cannot look users up and is refused at start-up when
  SPNEGO is on (:func:`ldap_config_problem`).
"""

import asyncio
import pwd
import time

from kerbauth.auth.spnego import SpnegoRefused
from kerbauth.core.names import InvalidUsername, check_username, log_safe

__all__ = ["ldap_config_problem", "ldap_login", "pam_login"]

NO_ACCOUNT = "There is no account {name} on this hub."
UNAVAILABLE = "Your account could not be checked in time; please try again in a few minutes."


async def pam_login(self, handler, negotiated):
    """``KerberosPAMAuthenticator.spnego_login``: the local account's checks, without PAM auth."""
    import pamela

    from kerbauth.auth.pam import other_account_reason

    name = negotiated.username
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise SpnegoRefused(
            403, NO_ACCOUNT.format(name=name), f"{log_safe(name)} has no local account"
        ) from None
    final = self.normalize_username(name)
    reason = other_account_reason(name, final)
    if reason:
        raise SpnegoRefused(
            403,
            f"You cannot log in as {name} here: the hub would use that name as {final},"
            " which is a different account.",
            f"{log_safe(name)} would become {log_safe(final)}: {reason}",
        )
    if not self.check_account:
        return name
    loop = asyncio.get_running_loop()
    call = loop.run_in_executor(
        self.executor, lambda: pamela.check_account(name, self.service, self.encoding)
    )
    try:
        await asyncio.wait_for(asyncio.shield(call), self.pam_timeout)
    except TimeoutError:
        raise SpnegoRefused(
            503,
            UNAVAILABLE,
            f"PAM service {self.service!r} did not check the account of {log_safe(name)}"
            f" within {self.pam_timeout:g} s (KerberosPAMAuthenticator.pam_timeout)",
        ) from None
    except pamela.PAMError as e:
        raise SpnegoRefused(
            403,
            f"Your account {name} may not log in here (its account check failed).",
            f"PAM service {self.service!r} refused the account of {log_safe(name)}: {e}",
        ) from None
    return name


def ldap_config_problem(self):
    """``KerberosLDAPAuthenticator.spnego_config_problem``: why SPNEGO cannot work, or ""."""
    _, query = self._ldap_settings()
    if not (query.search_bind_dn or getattr(query, "search_bind_kerberos", None)):
        return (
            "KerberosSPNEGO.keytab is set, but KerberosLDAPAuthenticator has no search"
            " account (KerberosLDAPAuthenticator.search_bind_dn, or search_bind_mechanism"
            ' = "gssapi"): a SPNEGO login has no password to bind with, so the user\'s'
            " entry and groups can only be read by a search account"
        )
    return ""


def _look_up(directory, query, username, log, deadline):
    """The entry and groups of ``username`` (a LoginResult) read by the search account, or
    None: no entry, or one that ``login_search_filter`` does not let in. On a thread."""
    from kerbauth.auth.ldap import directory as ldap_directory

    # The lookup applies login_search_filter itself (filtered_out).
    result = ldap_directory.look_up_membership(directory, query, username, log, deadline)
    if result is None or result.filtered_out:
        return None
    return result


def _hub_name(self, username):
    """The directory name and hub name of ``username``, checked as a form login checks them."""
    name = self._directory_name(username)
    hub_name = self.username_map.get(name, name)
    try:
        check_username(name)
        check_username(hub_name)
        if self.normalize_username(hub_name) != hub_name or not self.validate_username(hub_name):
            raise InvalidUsername(f"{log_safe(hub_name)!r} is not a usable hub name")
    except InvalidUsername as e:
        raise SpnegoRefused(
            403, NO_ACCOUNT.format(name=username), f"{log_safe(username)}: {e}"
        ) from None
    return name, hub_name


async def ldap_login(self, handler, negotiated):
    """``KerberosLDAPAuthenticator.spnego_login``: the entry and groups, read by the search
    account; the model a password login would give."""
    from kerbauth.auth.ldap import directory as ldap_directory

    username, hub_name = _hub_name(self, negotiated.username)
    directory, query = self._ldap_settings()
    deadline = time.monotonic() + self.login_timeout
    future = self._ldap_executor.submit(_look_up, directory, query, username, self.log, deadline)
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), self.login_timeout + 2)
    except (TimeoutError, ldap_directory.DirectoryError) as e:
        future.cancel()
        raise SpnegoRefused(
            503,
            "The directory server could not be reached; please try again in a few minutes.",
            f"LDAP lookup of {log_safe(username)}: {e or 'no answer within login_timeout'}",
        ) from None
    if result is None:
        raise SpnegoRefused(
            403,
            NO_ACCOUNT.format(name=negotiated.username),
            f"the directory has no entry for {log_safe(username)} that login_search_filter lets in",
        )
    if self.hub_username_attribute:
        hub_name = self._name_from_entry(username, result)
        if hub_name is None:
            raise SpnegoRefused(
                403,
                NO_ACCOUNT.format(name=negotiated.username),
                "hub_username_attribute of its entry is unusable",
            )
    self.log.info(
        "kerbauth: %s found as %s (LDAP server %s) for its SPNEGO login",
        log_safe(username),
        result.dn,
        result.server,
    )
    return self.ldap_model(username, hub_name, result, self.ldap_auth_state(result))
