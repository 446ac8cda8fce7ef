"""LDAP bind login plus a Kerberos ticket at spawn (``kerberos-ldap``).

The class is a thin layer: its options are :class:`~kerbauth.auth.ldap.options.LDAPOptions`,
and the LDAP work is done by the plain helpers of
:mod:`kerbauth.auth.ldap.directory` on a thread pool of its own, so the hub's
event loop never waits for the directory. Group membership is decided by
:mod:`kerbauth.auth.ldap.groups`.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from jupyterhub import version_info as jupyterhub_version
from jupyterhub.auth import Authenticator
from tornado import web

from kerbauth.auth import spnego_accounts
from kerbauth.auth.ldap import directory as ldap_directory
from kerbauth.auth.ldap import groups as group_policy
from kerbauth.auth.ldap import legacy
from kerbauth.auth.ldap.ad_errors import AccountRefused
from kerbauth.auth.ldap.login_filter_options import LoginFilterOptions
from kerbauth.auth.ldap.options import LDAPOptions
from kerbauth.auth.ldap.queries import directory_name
from kerbauth.auth.ldap.refresh import DirectoryRefresh
from kerbauth.auth.ldap.tls_sasl_options import TlsAndSaslOptions
from kerbauth.auth.limits import LoginLimits
from kerbauth.auth.spnego import KerberosSPNEGO, NegotiatedLogin
from kerbauth.core.errors import TicketError
from kerbauth.core.names import InvalidUsername, check_username, log_safe
from kerbauth.hub.tickets import KerberosTickets

__all__ = ["KerberosLDAPAuthenticator", "UNAVAILABLE_MESSAGE", "user_info_from"]

# How long past login_timeout the event loop waits for the login's thread
# before answering 503 itself: the thread keeps to the deadline on its own;
# this only covers what it cannot bound (a hung DNS lookup).
BACKSTOP_GRACE = 2.0

UNAVAILABLE_MESSAGE = (
    "The directory server could not be reached, so your login could not be checked."
    " Please try again in a few minutes, or contact your administrator."
)


def user_info_from(attributes, mapping):
    """``user_info`` from an entry's ``attributes``: each key of ``mapping`` with the first
    value of its attribute (names compared without case); a key without a value is left out."""
    found = {name.lower(): values for name, values in attributes.items()}
    info = {}
    for key, attribute in mapping.items():
        values = [v.strip() for v in found.get(attribute.lower(), []) if v.strip()]
        if values:
            info[key] = values[0]
    return info


class KerberosLDAPAuthenticator(
    KerberosSPNEGO,
    LDAPOptions,
    TlsAndSaslOptions,
    LoginFilterOptions,
    LoginLimits,
    DirectoryRefresh,
    KerberosTickets,
    Authenticator,
):
    """Log in with an LDAP bind; each server gets the user's Kerberos ticket.

    The user's entry is found from ``bind_dn_template`` or by a search
    (``lookup_dn``); their password is checked by binding as that entry. The
    directory is reached over StartTLS (default) or LDAPS with its
    certificate verified, with connect and receive timeouts, failing over
    to the next of ``server_address`` when a server cannot be used.
    """

    # JupyterHub 6 keeps a login's "user_info" on the user (user_info_attributes); 5.x
    # has none: there the attributes are not read, and no user_info is sent.
    sends_user_info = jupyterhub_version >= (6,)

    # A SPNEGO login (no password): the entry read by the search account.
    spnego_login = spnego_accounts.ldap_login
    spnego_config_problem = spnego_accounts.ldap_config_problem

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # c.LDAPAuthenticator.* (a jupyterhub-ldapauthenticator site's section), read
        # onto the kerbauth options before they are checked.
        self._legacy = legacy.apply(self)
        self.check_ldap_options()
        # username -> (uid, gid) read at login, for owner_from_ldap.
        self._owners = {}
        # The settings (and the TLS context, which reads the CA file) now, not
        # at the first login on the event loop.
        self._ldap_settings()
        if self.tls_strategy == "insecure":
            self.log.warning(
                "kerbauth: KerberosLDAPAuthenticator.tls_strategy is insecure:"
                " passwords are sent to the LDAP server unencrypted"
            )

    _ldap_pool = None

    @property
    def _ldap_executor(self):
        """The LDAP logins' threads (``executor_threads``), made at the first login."""
        if self._ldap_pool is None:
            self._ldap_pool = ThreadPoolExecutor(
                self.executor_threads, thread_name_prefix="kerbauth-ldap"
            )
        return self._ldap_pool

    # --- usernames ---------------------------------------------------------------------

    def _directory_name(self, typed):
        """The name the directory is asked about (:func:`~.queries.directory_name`)."""
        return directory_name(typed, self.login_domains)

    def normalize_username(self, username):
        """The hub's name for ``username``: the directory's name (spaces and a listed
        domain removed, lowercased), then ``username_map``, applied once.

        The configuration check makes this a fixed point:
        ``normalize_username(normalize_username(x)) == normalize_username(x)``,
        so JupyterHub normalising the name a login returns changes nothing.
        """
        name = self._directory_name(username)
        return self.username_map.get(name, name)

    # --- login -------------------------------------------------------------------------

    async def authenticate(self, handler, data):
        """Check the username and password against the directory, off the event loop.

        The directory is asked about the name the user typed (spaces and a
        listed domain removed, lowercased); the hub's name is derived from
        it once (``username_map``) and must be a fixed point of
        :meth:`normalize_username`. Both are validated before anything is
        sent; an empty or blank password is refused without a bind. The
        whole check has ``login_timeout`` (the thread keeps to it; the event
        loop gives up a little after it in any case).
        """
        if isinstance(data, NegotiatedLogin):  # SPNEGO: the search account reads the entry
            return await self.spnego_authenticate(handler, data)
        data = data or {}
        typed = data.get("username") or ""
        password = data.get("password") or ""
        username = self._directory_name(typed)
        try:
            check_username(username)
        except InvalidUsername as e:
            self.log.warning("kerbauth: LDAP login refused: %s", e)
            return None
        hub_name = self.username_map.get(username, username)
        if self.normalize_username(hub_name) != hub_name:
            self.log.error(
                "kerbauth: LDAP login of %s refused: Authenticator.username_map maps it to %s,"
                " which it maps again to %s; map each name to its final name",
                log_safe(username),
                log_safe(hub_name),
                log_safe(self.normalize_username(hub_name)),
            )
            return None
        try:
            check_username(hub_name)
        except InvalidUsername as e:
            self.log.error("kerbauth: LDAP login refused: username_map gives %s", e)
            return None
        if not self.validate_username(hub_name):
            self.log.warning(
                "kerbauth: LDAP login refused: %s does not match username_pattern",
                log_safe(hub_name),
            )
            return None
        if not password.strip():
            self.log.warning(
                "kerbauth: LDAP login of %s refused: empty password", log_safe(username)
            )
            return None
        # One name's logins one at a time, and a client whose logins keep
        # failing (wrong passwords, or answers that never come) throttled:
        # see LoginLimits. A refused attempt costs no LDAP thread.
        async with self.login_attempt(handler, username) as attempt:
            result = await self._check_password(username, password)
            if result is not None:
                attempt.succeeded()
        if result is None:
            self.log.warning(
                "kerbauth: the LDAP directory refused the login of %s", log_safe(username)
            )
            return None
        if self.hub_username_attribute:
            hub_name = self._name_from_entry(username, result)
            if hub_name is None:
                return None
        self.log.info(
            "kerbauth: %s logged in as %s (LDAP server %s)%s",
            log_safe(username),
            result.dn,
            result.server,
            "" if hub_name == username else f", hub user {hub_name}",
        )
        auth_state = self.ldap_auth_state(result)
        if self.hub_username_attribute:
            # The entry's DN is in ldap_dn; refresh_user reads it with the name logged in with.
            auth_state["ldap_login_name"] = username
        return self.ldap_model(username, hub_name, result, auth_state)

    def ldap_model(self, username, hub_name, result, auth_state):
        """The model JupyterHub gets of a login to the entry ``result`` (a bind's, or
        a SPNEGO login's read by the search account) as ``hub_name``."""
        model = {"name": hub_name, "auth_state": auth_state}
        if self.sends_user_info and self.user_info_attributes:
            model["user_info"] = user_info_from(result.attributes, self.user_info_attributes)
        if result.groups is not None and self.manage_groups:
            model["groups"] = group_policy.group_names(auth_state)
        if self.owner_from_ldap:
            if hub_name == username:
                self._remember_owner(hub_name, result.attributes)
            else:
                # The cache belongs to the hub user: read the owner from their
                # entry (as after a restart), not from the one that logged in.
                self._owners.pop(hub_name, None)
        return model

    def ldap_auth_state(self, result):
        """auth_state's LDAP keys for ``result`` (a LoginResult), as a login and a
        refresh write them: the DN, the attributes, the groups (and, for a
        ldapauthenticator configuration, the keys it fills)."""
        attributes = {name: result.attributes.get(name, []) for name in self.auth_state_attributes}
        auth_state = {"ldap_dn": result.dn, "ldap_attributes": attributes}
        if result.groups is not None:
            auth_state.update(group_policy.groups_state(result.groups))
        if self._legacy is not None:
            legacy.legacy_auth_state(self._legacy, auth_state, attributes)
        return auth_state

    def _name_from_entry(self, username, result):
        """The hub name from ``hub_username_attribute`` of the entry; None (logged) if unusable.

        The single value, lowercased, must be a valid username and a fixed point of
        :meth:`normalize_username`: an unusable value refuses the login, it is never changed.
        """
        attribute = self.hub_username_attribute
        values = {k.lower(): v for k, v in result.attributes.items()}.get(attribute.lower(), [])
        if len(values) != 1:
            self.log.error(
                "kerbauth: LDAP login of %s refused: its entry %s has %d values of %s"
                " (KerberosLDAPAuthenticator.hub_username_attribute), not one",
                log_safe(username),
                result.dn,
                len(values),
                attribute,
            )
            return None
        name = values[0].lower()
        try:
            check_username(name)
            if self.normalize_username(name) != name or not self.validate_username(name):
                raise InvalidUsername(f"username {log_safe(name)!r} is not a normalised name")
        except InvalidUsername as e:
            self.log.error(
                "kerbauth: LDAP login of %s refused: the %s of its entry %s cannot be a hub"
                " username: %s; name users by another attribute"
                " (KerberosLDAPAuthenticator.hub_username_attribute,"
                " LDAPAuthenticator.lookup_dn_user_dn_attribute)",
                log_safe(username),
                attribute,
                result.dn,
                e,
            )
            return None
        return name

    async def _check_password(self, username, password):
        """:func:`ldap_directory.check_login` on the pool, within ``login_timeout``.

        LoginResult or None; raises the 503 HTTPError when the directory could
        not answer in time, and a 403 one with Active Directory's reason
        (:mod:`~kerbauth.auth.ldap.ad_errors`) when it gives one.
        """
        directory, query = self._ldap_settings()
        deadline = time.monotonic() + self.login_timeout
        future = self._ldap_executor.submit(
            ldap_directory.check_login, directory, query, username, password, self.log, deadline
        )
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(future), self.login_timeout + BACKSTOP_GRACE
            )
        except TimeoutError:
            future.cancel()
            self.log.error(
                "kerbauth: LDAP login of %s not checked: no result within login_timeout"
                " (%g s) and %g s more; its thread is stuck outside the LDAP conversation"
                " (a DNS lookup?)",
                log_safe(username),
                self.login_timeout,
                BACKSTOP_GRACE,
            )
            raise web.HTTPError(503, UNAVAILABLE_MESSAGE) from None
        except ldap_directory.DirectoryUnavailable as e:
            self.log.error("kerbauth: LDAP login of %s not checked: %s", log_safe(username), e)
            raise web.HTTPError(503, UNAVAILABLE_MESSAGE) from None
        except AccountRefused as e:
            # Active Directory says why (ad_errors): the user is told, in one sentence.
            self.log.warning(
                "kerbauth: LDAP login of %s refused by Active Directory with data %s (%s) for %s",
                log_safe(username),
                e.code,
                e.meaning,
                e.dn,
            )
            raise web.HTTPError(403, e.message) from None
        except ldap_directory.DirectoryError as e:
            self.log.error("kerbauth: LDAP login of %s failed: %s", log_safe(username), e)
            return None

    # --- groups ------------------------------------------------------------------------

    def _member_of(self, authentication, wanted):
        """Whether the login in ``authentication`` found the user in any of ``wanted``."""
        return group_policy.member_of((authentication or {}).get("auth_state"), wanted)

    def check_allowed(self, username, authentication=None):
        """Allowed: ``allow_all``, ``allowed_users``, ``allowed_groups`` or ``admin_groups``."""
        if super().check_allowed(username, authentication):
            return True
        return self._member_of(authentication, self.allowed_groups | self.admin_groups)

    def is_admin(self, handler, authentication):
        """Admin if in ``admin_users`` or an ``admin_groups`` group; with ``admin_groups``
        set, not admin otherwise (so leaving the group takes admin away)."""
        if super().is_admin(handler, authentication):
            return True
        if self.admin_groups:
            return self._member_of(authentication, self.admin_groups)
        return None

    # --- who owns the ticket cache -----------------------------------------------------

    def _owner_from_attributes(self, username, attributes):
        def number(attribute):
            values = attributes.get(attribute) or []
            if len(values) != 1 or not values[0].strip().isdigit():
                raise TicketError(
                    "config",
                    f"the LDAP entry of {log_safe(username)!r} has no single numeric {attribute}",
                )
            return int(values[0])

        uid = number(self.uid_number_attribute)
        gid = number(self.gid_number_attribute)
        if uid == 0:
            raise TicketError(
                "config", f"the LDAP entry of {log_safe(username)!r} has uid 0; refused"
            )
        return uid, gid

    def _remember_owner(self, username, attributes):
        try:
            self._owners[username] = self._owner_from_attributes(username, attributes)
        except TicketError as e:
            self._owners.pop(username, None)
            self.log.warning("kerbauth: %s; its server cannot get a ticket", e.detail)

    def ticket_owner(self, user):
        """With ``owner_from_ldap``: the uidNumber/gidNumber of the user's LDAP entry.

        Taken from the last login; after a hub restart, read from the directory
        (this runs on a ticket thread, never on the event loop).
        """
        if not self.owner_from_ldap:
            return super().ticket_owner(user)
        owner = self._owners.get(user.name)
        if owner is not None:
            return owner
        directory, query = self._ldap_settings()
        try:
            found = ldap_directory.lookup_user(directory, query, user.name, self.log)
        except ldap_directory.DirectoryError as e:
            raise TicketError("other", f"LDAP lookup of the owner of the cache: {e}") from None
        if found is None:
            raise TicketError(
                "config", f"no LDAP entry for {log_safe(user.name)!r} to own the cache"
            )
        owner = self._owner_from_attributes(user.name, found[1])
        self._owners[user.name] = owner
        return owner
