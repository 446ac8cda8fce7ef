"""Group membership that stays true: ``refresh_user`` asks the directory again.

A mixin of :class:`kerbauth.KerberosLDAPAuthenticator`. JupyterHub calls
``refresh_user`` on a request of a user whose last login or refresh is older
than ``Authenticator.auth_refresh_age`` (and before a spawn with
``refresh_pre_spawn``). Here that reads the user's entry and groups again with
the search account (``search_bind_dn``), as a login would but without the
user's password, on the LDAP threads, within ``login_timeout`` and with the same
failover between servers (:func:`kerbauth.auth.ldap.directory.look_up_membership`).
Then:

- the entry is gone, no longer matches ``login_search_filter`` (searched as
  the search account here), the user is blocked or no longer allowed
  (``allowed_users``, ``allowed_groups``, ``admin_groups``): False, so
  JupyterHub asks them to log in again, and that login is refused;
- otherwise admin follows ``admin_groups``, the JupyterHub groups follow the
  directory with ``manage_groups``, and auth_state's LDAP keys are rewritten
  (a dict is returned only when something changed);
- the directory cannot answer: nothing changes (the last known state is kept,
  nobody is locked out), logged once until it answers again.

Without a search account there is no way to ask (the password is not kept):
refresh leaves everything as the login found it, said once at start-up. With
``hub_username_attribute`` the hub name is not the login name, so the entry is
not found from it: the refresh reads the entry at the DN the login kept in
auth_state (``ldap_dn``, with the login name in ``ldap_login_name``, for the group
filter), which needs ``enable_auth_state`` (said once at start-up otherwise), and
asks for a new login when that entry no longer names the user. One refresh per
user runs at a time; concurrent requests wait for the same one.
"""

import asyncio
import time

from jupyterhub.utils import maybe_future

from kerbauth.auth.ldap import directory as ldap_directory
from kerbauth.auth.ldap import groups as group_policy
from kerbauth.core.names import log_safe

__all__ = ["DirectoryRefresh", "directory_names_of"]

# As the login: how long past login_timeout the event loop waits for the thread.
BACKSTOP_GRACE = 2.0

# What look_up_membership's caller gets when the directory could not say.
_UNKNOWN = object()


def directory_names_of(hub_name, username_map):
    """The directory names a login may have used to become ``hub_name``."""
    names = [key for key, value in username_map.items() if value == hub_name]
    if hub_name not in username_map:
        names.append(hub_name)
    return sorted(set(names))


class _Quiet:
    """A logger whose warnings are debug lines: a refresh during an outage would
    otherwise log each server's failure on every request of every user."""

    def __init__(self, log):
        self._log = log

    def warning(self, msg, *args, **kwargs):
        self._log.debug(msg, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._log, name)


class DirectoryRefresh:
    """``refresh_user`` from the directory; see the module's docstring."""

    _refreshing = None  # username -> the running refresh (a Future)
    _directory_down = False  # whether the last refresh found no server answering
    _unrefreshable = None  # hub names refresh cannot map to one directory name (logged once)

    def check_allow_config(self):
        """JupyterHub's start-up check (5.0 and later): say once what refresh can do."""
        super().check_allow_config()
        groups = self.allowed_groups or self.admin_groups or self.manage_groups
        if not groups:
            return
        if self._refresh_blocker():
            self.log.warning(
                "kerbauth: %s: group membership (allowed_groups, admin_groups,"
                " manage_groups) is checked at login only; a user removed from a group"
                " keeps access and admin until they log in again",
                self._refresh_blocker(),
            )

    def _refresh_blocker(self):
        """Why refresh cannot ask the directory, or "" when it can."""
        _, query = self._ldap_settings()
        # A simple bind (search_bind_dn) or a Kerberos one (search_bind_mechanism).
        if not (query.search_bind_dn or getattr(query, "search_bind_kerberos", None)):
            return (
                "KerberosLDAPAuthenticator has no search account (search_bind_dn):"
                " refresh_user cannot ask the directory without the user's password"
            )
        if getattr(self, "hub_username_attribute", "") and not self.enable_auth_state:
            return (
                "KerberosLDAPAuthenticator.hub_username_attribute is set and"
                " Authenticator.enable_auth_state is False: refresh_user finds the entry"
                " by the DN the login keeps in auth_state, which is not kept"
            )
        return ""

    async def refresh_user(self, user, handler=None):
        """The user's access, admin and groups as the directory says now.

        False when they may no longer log in; a dict when admin, groups or
        auth_state changed; otherwise what the other refreshes (password
        tickets) said. See the module's docstring.
        """
        result = await maybe_future(super().refresh_user(user, handler))
        if result is False or self._refresh_blocker():
            return self._keeping(result)
        if getattr(self, "hub_username_attribute", ""):
            return await self._refresh_by_dn(user, handler, result)
        names = directory_names_of(user.name, self.username_map)
        if len(names) != 1:
            if self._unrefreshable is None:
                self._unrefreshable = set()
            if user.name not in self._unrefreshable:
                self._unrefreshable.add(user.name)
                self.log.warning(
                    "kerbauth: refresh of %s skipped: Authenticator.username_map makes it"
                    " from %d directory names (%s); its groups are checked at login only",
                    log_safe(user.name),
                    len(names),
                    ", ".join(log_safe(n) for n in names),
                )
            return self._keeping(result)
        found = await self._single_refresh(names[0])
        if found is _UNKNOWN:
            return self._keeping(result)
        if found is None:
            self.log.info(
                "kerbauth: %s has no LDAP entry any more; asking for a new login",
                log_safe(user.name),
            )
            return False
        return await self._refreshed(user, handler, result, found)

    async def _refresh_by_dn(self, user, handler, result):
        """refresh_user with ``hub_username_attribute``: the entry at the login's DN."""
        state = await user.get_auth_state() or {}
        dn, login_name = state.get("ldap_dn"), state.get("ldap_login_name")
        if not dn or not login_name:
            # A login of an older kerbauth (or without LDAP): nothing says which entry.
            if self._unrefreshable is None:
                self._unrefreshable = set()
            if user.name not in self._unrefreshable:
                self._unrefreshable.add(user.name)
                self.log.warning(
                    "kerbauth: refresh of %s skipped: its auth_state has no ldap_dn and"
                    " ldap_login_name (KerberosLDAPAuthenticator.hub_username_attribute);"
                    " its groups are read again at its next login",
                    log_safe(user.name),
                )
            return self._keeping(result)
        found = await self._single_refresh(
            user.name, ldap_directory.look_up_membership_by_dn, dn, login_name
        )
        if found is _UNKNOWN:
            return self._keeping(result)
        values = {k.lower(): v for k, v in (found.attributes if found else {}).items()}
        names = values.get(self.hub_username_attribute.lower(), [])
        if found is None or [n.lower() for n in names] != [user.name]:
            self.log.info(
                "kerbauth: the LDAP entry %s %s; asking %s for a new login",
                dn,
                "is gone"
                if found is None
                else f"no longer names {log_safe(user.name)} ({self.hub_username_attribute})",
                log_safe(user.name),
            )
            return False
        return await self._refreshed(user, handler, result, found)

    def _keeping(self, result):
        """``result`` unchanged; a dict of it names no groups with ``manage_groups``
        (JupyterHub refuses a model without them; None leaves them as they are)."""
        if isinstance(result, dict) and self.manage_groups:
            result.setdefault("groups", None)
        return result

    async def _refreshed(self, user, handler, result, found):
        """The model of ``found`` (a LoginResult): False, True or what changed."""
        if found.filtered_out:
            self.log.info(
                "kerbauth: %s no longer matches KerberosLDAPAuthenticator.login_search_filter;"
                " asking for a new login",
                log_safe(user.name),
            )
            return False
        state = self.ldap_auth_state(found)
        authentication = {"name": user.name, "auth_state": state}
        if not self.check_blocked_users(user.name, authentication) or not self.check_allowed(
            user.name, authentication
        ):
            self.log.info(
                "kerbauth: %s is no longer allowed by the directory (allowed_groups);"
                " asking for a new login",
                log_safe(user.name),
            )
            return False
        model = dict(result) if isinstance(result, dict) else {}
        changed = bool(model)
        admin = self.is_admin(handler, authentication)
        if admin is not None:
            model["admin"] = admin
            changed |= bool(admin) != bool(user.admin)
        if self.manage_groups:
            model["groups"] = group_policy.group_names(state)
            changed |= set(model["groups"]) != {g.name for g in user.groups}
        if self.sends_user_info and self.user_info_attributes:
            from kerbauth.auth.ldap.authenticator import user_info_from

            model["user_info"] = user_info_from(found.attributes, self.user_info_attributes)
            changed |= model["user_info"] != (getattr(user, "user_info", None) or {})
        if self.enable_auth_state:
            before = model.get("auth_state")
            if before is None:
                before = await user.get_auth_state() or {}
            after = {**before, **state}
            if found.groups is None:
                for key in ("ldap_groups", "ldap_group_dns", "ldap_group_names"):
                    after.pop(key, None)
            model["auth_state"] = after
            changed |= after != before
        if not changed:
            return result
        if admin is not None and bool(admin) != bool(user.admin):
            self.log.info(
                "kerbauth: %s %s admin (admin_groups)",
                log_safe(user.name),
                "is now" if admin else "is no longer",
            )
        model["name"] = user.name
        return model

    async def _single_refresh(self, username, look_up=None, *args):
        """One directory lookup for ``username`` at a time; its LoginResult, None
        (no entry) or _UNKNOWN (the directory could not say). ``look_up(directory,
        query, *args, log, deadline)``: look_up_membership of ``username`` by default."""
        if self._refreshing is None:
            self._refreshing = {}
        running = self._refreshing.get(username)
        if running is None:
            if look_up is None:
                look_up, args = ldap_directory.look_up_membership, (username,)
            running = asyncio.ensure_future(self._look_up(look_up, *args))
            self._refreshing[username] = running
            running.add_done_callback(lambda _: self._refreshing.pop(username, None))
        return await asyncio.shield(running)

    async def _look_up(self, look_up, *args):
        directory, query = self._ldap_settings()
        deadline = time.monotonic() + self.login_timeout
        future = self._ldap_executor.submit(
            look_up, directory, query, *args, _Quiet(self.log), deadline
        )
        try:
            found = await asyncio.wait_for(
                asyncio.wrap_future(future), self.login_timeout + BACKSTOP_GRACE
            )
        except TimeoutError:
            future.cancel()
            return self._directory_unavailable(
                f"no answer within login_timeout ({self.login_timeout:g} s)"
            )
        except ldap_directory.DirectoryError as e:
            return self._directory_unavailable(str(e))
        if self._directory_down:
            self._directory_down = False
            self.log.info("kerbauth: the LDAP directory answers again; group refresh resumed")
        return found

    def _directory_unavailable(self, reason):
        if not self._directory_down:
            self._directory_down = True
            self.log.warning(
                "kerbauth: group refresh cannot ask the LDAP directory (%s); users keep"
                " the access, admin and groups last found until it answers again"
                " (logged once)",
                reason,
            )
        return _UNKNOWN
