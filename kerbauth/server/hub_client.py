"""The server's one request to the hub: ``GET /hub/api/kerbauth/ticket`` with its token.

The hub's URL comes from ``KERBAUTH_TICKET_URL`` and the token from
``JUPYTERHUB_API_TOKEN``; the token is sent in a header only, never put in
argv or written anywhere, and a redirect is refused rather than followed
(urllib would send the header on to the new place). With JupyterHub's
``internal_ssl`` the hub is verified against the internal CA only and the
server presents its own certificate (:func:`ssl_context_from_environ`).

The answer must be a credential cache (:func:`kerbauth.core.ccache.parse_ccache`)
of at most :data:`~kerbauth.core.ccache.MAX_CCACHE_BYTES`; its body is never logged.
"""

import json
import ssl
import urllib.error
import urllib.request

from kerbauth.core.ccache import MAX_CCACHE_BYTES, parse_ccache
from kerbauth.core.errors import CcacheError
from kerbauth.server.errors import FetchError

__all__ = ["ENV_URL", "fetch_ticket", "ssl_context_from_environ"]

ENV_URL = "KERBAUTH_TICKET_URL"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would send the token's header on to the new place."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def ssl_context_from_environ(environ):
    """The TLS context for JupyterHub's ``internal_ssl``, or None when it is off.

    JupyterHub gives each server its certificate, key and the internal CA as
    ``JUPYTERHUB_SSL_CERTFILE``, ``JUPYTERHUB_SSL_KEYFILE`` and
    ``JUPYTERHUB_SSL_CLIENT_CA``; the hub is verified against that CA alone
    (not the system's CAs) and the server presents its certificate.

    Not ``jupyterhub.utils.make_ssl_context``: importing ``jupyterhub.utils``
    loads tornado, sqlalchemy and aiohttp into every notebook server, and that
    helper also trusts the system's CAs for the hub's internal certificate.
    """
    ca = environ.get("JUPYTERHUB_SSL_CLIENT_CA")
    if not ca:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        if environ.get("JUPYTERHUB_SSL_CERTFILE"):
            context.load_cert_chain(
                environ["JUPYTERHUB_SSL_CERTFILE"], environ.get("JUPYTERHUB_SSL_KEYFILE") or None
            )
    except (OSError, ssl.SSLError) as e:
        raise FetchError(f"cannot load JupyterHub's internal TLS files: {e}") from None
    return context


def _error_message(error):
    """The ``message`` of a JupyterHub JSON error answer, if there is one."""
    try:
        body = error.read(4096)
        return json.loads(body).get("message") or ""
    except Exception:  # noqa: BLE001 - only for a nicer message
        return ""


def fetch_ticket(url, token, timeout=30.0, ssl_context=None):
    """``(bytes, TicketTimes)`` of the ticket the hub at ``url`` gives ``token``'s owner.

    Blocking (the keeper calls it on its own thread). Raises
    :class:`~kerbauth.server.errors.FetchError` naming the cause (refused,
    unreachable, not a ticket).
    """
    if not token:
        raise FetchError("JUPYTERHUB_API_TOKEN is not set")
    if not url.startswith(("http://", "https://")):
        raise FetchError(f"{ENV_URL}={url!r} is not an http(s) URL")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        headers={"Authorization": f"token {token}", "Accept": "application/octet-stream"},
    )
    try:
        opener = _OPENER
        if ssl_context is not None:
            opener = urllib.request.build_opener(
                _NoRedirects, urllib.request.HTTPSHandler(context=ssl_context)
            )
        with opener.open(request, timeout=timeout) as response:
            data = response.read(MAX_CCACHE_BYTES + 1)
    except urllib.error.HTTPError as e:
        message = _error_message(e)
        hint = (
            " (the server's token lacks the scope custom:kerbauth:ticket?)" if e.code == 403 else ""
        )
        raise FetchError(
            f"the hub refused the ticket request: {e.code} {e.reason}"
            + (f": {message}" if message else "")
            + hint
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"cannot reach the hub at {url}: {reason}") from None
    if len(data) > MAX_CCACHE_BYTES:
        raise FetchError(f"the hub's answer from {url} is too large for a ticket cache")
    try:
        times = parse_ccache(data, "the hub's answer")
    except CcacheError as e:
        raise FetchError(str(e)) from None
    return data, times
