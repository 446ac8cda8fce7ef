"""HTTP clients of a test hub that come from a chosen local address.

127.0.0.2 is as local as 127.0.0.1: a flood sent from one and a user's login
from the other look, to the hub (through the proxy's X-Forwarded-For), like
two clients.
"""

import time

import requests
from requests.adapters import HTTPAdapter


class SourceAdapter(HTTPAdapter):
    """Connections from one local address."""

    def __init__(self, source):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def login_from(hub, source, username, password, timeout=120):
    """Log in through the form from ``source``; ``(status, seconds, body)``."""
    with requests.Session() as session:
        session.mount("http://", SourceAdapter(source))
        started = time.monotonic()
        session.get(f"{hub.url}/hub/login", timeout=timeout).raise_for_status()
        response = session.post(
            f"{hub.url}/hub/login",
            data={"username": username, "password": password, "_xsrf": session.cookies["_xsrf"]},
            allow_redirects=False,
            timeout=timeout,
        )
        return response.status_code, time.monotonic() - started, response.text
