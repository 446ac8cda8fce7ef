"""The login limits as options of an authenticator, and the address a login comes from.

:class:`LoginLimits` is the traitlets mixin that gives kerbauth's
authenticators the ``login_*`` options, builds their
:class:`~kerbauth.auth.limiter.LoginLimiter` (where the policy is described)
and offers :meth:`LoginLimits.login_attempt`, which an ``authenticate`` wraps
around the expensive check::

    async with self.login_attempt(handler, username) as attempt:
        ...  # PAM or the LDAP bind
        attempt.succeeded()
"""

import contextlib
import logging

from tornado import netutil, web
from traitlets.config import LoggingConfigurable

from kerbauth.auth.limiter import LoginLimiter, LoginRefused
from kerbauth.core.names import log_safe
from kerbauth.traits import Count, Seconds

__all__ = ["LoginLimits", "login_source"]


def login_source(request):
    """The client address of a tornado ``request``, from the proxy's X-Forwarded-For.

    Like tornado's ``xheaders`` (which JupyterHub turns on) this takes the last
    X-Forwarded-For entry not in the hub's ``trusted_downstream_ips``, as the
    proxy in front of the hub appended it, but it ignores ``X-Real-Ip``: tornado
    prefers that header, and configurable-http-proxy passes on whatever the
    client put there, so a client could claim a new address with every request.
    """
    context = getattr(request.connection, "context", None)
    peer = getattr(context, "_orig_remote_ip", None) or request.remote_ip
    trusted = getattr(context, "trusted_downstream", None) or set()
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        for candidate in reversed(forwarded.split(",")):
            candidate = candidate.strip()
            if candidate not in trusted:
                if netutil.is_valid_ip(candidate):
                    return candidate
                break
    return peer


class LoginLimits(LoggingConfigurable):
    """Options of the login limiter; mixed into kerbauth's authenticators."""

    options_named_by_subclass = True  # c.KerberosPAMAuthenticator.login_wait, in messages too

    login_max_failures = Count(
        5,
        config=True,
        help="""Failed logins after which a username or a client address is throttled.

        Each failed login counts against the name and against the address it
        came from; the count decays to zero over ``login_failure_window``
        seconds. A name or address at this count gets one login checked at a
        time, and any other attempt from it is refused at once with 429 *"Too
        many failed logins; wait a minute and try again."*, costing no PAM or
        LDAP call. A successful login clears the name's count (not the
        address's). 0 turns this off. Example: ``20`` for a site whose users
        all come through one proxy address.

        .. versionadded:: 0.2
        """,
    )

    login_failure_window = Seconds(
        60.0,
        config=True,
        help="""Seconds over which a full count of failed logins decays to zero.

        A count goes down by ``login_max_failures`` every
        ``login_failure_window`` seconds: with the defaults one failure is
        forgiven every 12 s, and an address is throttled while its count is 5
        or more (so an address that failed 10 times in a row is throttled for
        about a minute after the last). Example: ``300``.

        .. versionadded:: 0.2
        """,
    )

    login_name_concurrency = Count(
        1,
        config=True,
        help="""Logins for one username checked at the same time.

        A further attempt for the same name waits for its turn without holding
        a thread, for up to ``login_wait`` seconds. Names are compared
        case-insensitively. 0: no limit. Example: ``2``.

        .. versionadded:: 0.2
        """,
    )

    login_source_concurrency = Count(
        2,
        config=True,
        help="""Logins from one client address checked at the same time.

        Keep it below ``PAMAuthenticator.executor_threads`` (4 unless set), so
        that one address never holds every PAM thread. Further attempts wait
        for their turn without holding a thread, for up to ``login_wait``
        seconds. A site whose users all arrive through one proxy address
        shares this between all of them (a successful PAM login takes
        milliseconds, so the wait is short). 0: no limit. Example: ``3``.

        .. versionadded:: 0.2
        """,
    )

    login_wait = Seconds(
        10.0,
        config=True,
        help="""Seconds an attempt may wait for its turn before it is refused (429).

        A refusal after the wait costs no PAM or LDAP call. Example: ``20``.

        .. versionadded:: 0.2
        """,
    )

    login_limit_entries = Count(
        10000,
        config=True,
        help="""How many usernames, and how many client addresses, the limiter remembers.

        Past this, the least recently seen idle entry is forgotten, so a client
        cycling through random names or addresses cannot grow the hub's memory
        (about 200 bytes an entry). Example: ``100000``.

        .. versionadded:: 0.2
        """,
    )

    _login_limiter = None

    @property
    def login_limiter(self):
        """The :class:`~kerbauth.auth.limiter.LoginLimiter` of the options (built at first use)."""
        if self._login_limiter is None:
            self._login_limiter = LoginLimiter(
                max_failures=self.login_max_failures,
                window=self.login_failure_window,
                name_concurrency=self.login_name_concurrency,
                source_concurrency=self.login_source_concurrency,
                wait=self.login_wait,
                max_entries=max(1, self.login_limit_entries),
            )
        return self._login_limiter

    async def acquire_login(self, handler, username):
        """A turn (:class:`~kerbauth.auth.limiter.Attempt`) for ``username`` from ``handler``.

        Raises ``HTTPError(429)`` with a short message when refused, and logs
        why. The caller must ``release()`` the attempt (after ``succeeded()``
        if the password checked out); :meth:`login_attempt` does that for a block.
        """
        source = login_source(handler.request) if handler is not None else None
        try:
            return await self.login_limiter.acquire(username, source)
        except LoginRefused as e:
            # One warning per streak of refusals of a key, not one per request.
            self.log.log(
                logging.WARNING if e.streak == 1 else logging.DEBUG,
                "kerbauth: login of %s from %s refused (429): %s %s (%d since its last"
                " admitted attempt); see %s.login_max_failures and .login_source_concurrency",
                log_safe(username),
                source,
                e.kind,
                "throttled after failed logins" if e.reason == "failures" else "busy",
                e.streak,
                type(self).__name__,
            )
            raise web.HTTPError(429, e.message) from None

    @contextlib.asynccontextmanager
    async def login_attempt(self, handler, username):
        """``async with self.login_attempt(handler, name) as attempt:`` around the check.

        Call ``attempt.succeeded()`` once the password checked out; leaving the
        block otherwise (a wrong password, an error, a timeout) counts as a
        failure. Refused: ``HTTPError(429)`` before the block runs.
        """
        attempt = await self.acquire_login(handler, username)
        try:
            yield attempt
        finally:
            attempt.release()
