"""HTTP clients of a test hub that come from a chosen local address.

127.0.0.2 is as local as 127.0.0.1: a flood sent from one and a user's login
from the other look, to the hub (through the proxy's X-Forwarded-For), like
two clients.
"""

import concurrent.futures
import statistics
import threading
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


def unloaded_login_time(hub, source, username, password, times=5):
    """The median time of ``times`` logins of ``username`` from ``source`` (all must work)."""
    seconds = []
    for _ in range(times):
        status, took, _ = login_from(hub, source, username, password)
        assert status == 302, status
        seconds.append(took)
    return statistics.median(seconds)


def logins_during_flood(hub, *, flood, rate, seconds, user, after=2):
    """Send ``rate`` logins a second for ``seconds`` from 127.0.0.2 (``flood(i)`` gives
    the i-th one's name and password), each on a thread of its own, and log ``user``
    (name, password) in from 127.0.0.1 again and again meanwhile and ``after`` seconds
    more. Returns ``(flood results, user's (status, seconds))``; the flood is bounded in
    count and time and has ended when this returns."""
    results = []

    def send():
        count = rate * seconds
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            futures = []
            for i in range(count):
                pause = started + i / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the flood's pace, not a readiness wait
                futures.append(pool.submit(login_from, hub, "127.0.0.2", *flood(i)))
            results.extend(f.result() for f in futures)

    flooder = threading.Thread(target=send)
    flooder.start()
    during = []
    try:
        end = time.monotonic() + seconds + after
        while time.monotonic() < end:
            status, took, _ = login_from(hub, "127.0.0.1", *user)
            during.append((status, took))
    finally:
        flooder.join(180)
    assert len(results) == rate * seconds, "the flood ended"
    return results, during
