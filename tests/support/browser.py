"""Headless Chromium for the tests: Debian's chromium and chromium-driver, driven by selenium.

``chromium(*flags, env=None, negotiate=False)`` starts one with a fresh
profile (removed afterwards) and the system's driver (selenium never downloads
one); ``env`` is added to the browser's process environment (``KRB5CCNAME``,
``KRB5_CONFIG``: the ticket cache and realm a desktop user's browser would
use). ``log_in(driver, base, user, password)`` uses JupyterHub's real login
form and waits for JupyterLab (``wait_for_lab``, also after a login without
typing); ``klist_in_terminal(driver, user, principal)`` opens a terminal from
JupyterLab's launcher, runs ``klist`` in it and returns the terminal's text
once it shows ``principal``.

``negotiate_policy(host)`` is the managed policy an administrator deploys for
single sign-on: Chromium may answer ``WWW-Authenticate: Negotiate`` from
``host`` with the user's ticket, and delegate it. The file goes into
Chromium's machine-wide policy directory for as long as the ``with`` lasts and
names only ``host``, so other tests' browsers are unaffected.
"""

import contextlib
import fcntl
import json
import os
import shutil
import tempfile

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",  # root, in a VM or container without user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,720",
)
WAIT = 90  # seconds: a spawn on a busy host
# Debian's Chromium reads machine-wide managed policies from every *.json here.
POLICY_DIR = "/etc/chromium/policies/managed"
# Held while a test's policy file is in place: two runs on one host (the suite and
# tox's) would otherwise set the same policies in two files, and Chromium takes one.
POLICY_LOCK = "/run/lock/kerbauth-tests-chromium-policy"


@contextlib.contextmanager
def chromium(*flags, env=None, negotiate=False):
    """Headless Chromium with ``flags`` besides :data:`FLAGS` and a fresh profile.

    ``env`` is added to the environment of chromedriver and so of the browser.
    ``negotiate``: the browser starts as one that has met a Negotiate challenge
    before. Chromium on Linux refuses the first challenge its user data directory
    ever gets (its network service runs in a sandbox that cannot load GSSAPI): it
    records the challenge in the directory's Local State, restarts that service
    outside the sandbox and negotiates from the next request on. A desktop user's
    browser is past that first time; a fresh test profile is not.
    """
    # Selenium must use the system's driver and browser, never download any.
    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="kerbauth-chromium-")
    try:
        if negotiate:
            with open(os.path.join(profile, "Local State"), "w") as f:
                json.dump({"net": {"received_http_auth_negotiate_headers": True}}, f)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, *flags, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        service = Service(CHROMEDRIVER, env={**os.environ, **env} if env else None)
        driver = webdriver.Chrome(service=service, options=options)
        try:
            driver.set_script_timeout(30)
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        if offline is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = offline


@contextlib.contextmanager
def negotiate_policy(host):
    """Chromium's managed policy for single sign-on with ``host`` (and nothing else), in
    place while the ``with`` lasts: Negotiate with the user's ticket
    (``AuthServerAllowlist``), delegating it (``AuthNegotiateDelegateAllowlist``), for
    the service principal ``HTTP/<host>`` as the URL names it
    (``DisableAuthNegotiateCnameLookup``: no DNS canonical name, the test maps the name
    with ``--host-resolver-rules``; the port is not part of it, Chromium's default).

    The file, and the policy directories when this made them, are removed afterwards.
    Yields the file's path.
    """
    policy = {
        "AuthServerAllowlist": host,
        "AuthNegotiateDelegateAllowlist": host,
        "DisableAuthNegotiateCnameLookup": True,
    }
    os.makedirs(os.path.dirname(POLICY_LOCK), exist_ok=True)
    lock = os.open(POLICY_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    made, path = [], None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for directory in (os.path.dirname(POLICY_DIR), POLICY_DIR):
            try:
                os.mkdir(directory, 0o755)
                made.append(directory)
            except FileExistsError:
                # Root writes into it: a real directory, not a link planted there.
                assert not os.path.islink(directory), f"{directory} is a symbolic link"
        path = os.path.join(POLICY_DIR, f"kerbauth-tests-{host}.json")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(path, flags, 0o644), "w") as f:
            json.dump(policy, f)
        yield path
    finally:
        try:
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            for directory in reversed(made):
                with contextlib.suppress(OSError):  # not empty: someone else's file
                    os.rmdir(directory)
        finally:
            os.close(lock)


def log_in(driver, base, user, password, before_submit=None):
    """Log in on the hub's form at ``base`` and wait for the user's JupyterLab (spawned)."""
    driver.get(f"{base}/hub/login")
    assert "JupyterHub" in driver.title
    driver.find_element(By.ID, "username_input").send_keys(user)
    driver.find_element(By.ID, "password_input").send_keys(password)
    if before_submit is not None:
        before_submit()
    driver.find_element(By.ID, "login_submit").click()
    wait_for_lab(driver, base, user)


def wait_for_lab(driver, base, user):
    """Wait until the browser is in the user's JupyterLab at ``base`` (its launcher shown)."""
    wait = WebDriverWait(driver, WAIT)
    # Login, spawn, spawn-pending, then JupyterLab of the user's own server.
    try:
        wait.until(lambda d: d.current_url.startswith(f"{base}/user/{user}/lab"))
    except TimeoutException:
        raise AssertionError(f"not in JupyterLab: {driver.current_url}") from None
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".jp-Launcher")))


def put_lab_settings(driver, user, plugin, values):
    """Save JupyterLab user settings through the server's settings API, as Lab itself does."""
    script = """
        const [url, raw, done] = arguments;
        const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || "";
        fetch(url, {
            method: "PUT",
            headers: {"Content-Type": "application/json", "X-XSRFToken": xsrf},
            body: JSON.stringify({raw: raw}),
        }).then(r => done(r.status), e => done(String(e)));
    """
    url = f"/user/{user}/lab/api/settings/{plugin}"
    return driver.execute_async_script(script, url, json.dumps(values))


def klist_in_terminal(driver, user, principal, command="klist"):
    """In the user's JupyterLab: a terminal from the launcher, ``command`` (``klist``, or
    ``klist -f`` for the flags) in it, its text."""
    wait = WebDriverWait(driver, WAIT)
    # The terminal's text in the page too (xterm's accessibility tree), not only drawn.
    plugin = "@jupyterlab/terminal-extension:plugin"
    assert put_lab_settings(driver, user, plugin, {"screenReaderMode": True}) == 204
    driver.refresh()
    card = '.jp-LauncherCard[data-category="Other"][title*="terminal" i]'
    wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, card))).click()
    screen = (By.CSS_SELECTOR, ".jp-Terminal .xterm-accessibility-tree")

    def text():
        return driver.find_element(*screen).get_attribute("textContent")

    # The shell's prompt ("$ "): the terminal's websocket is open.
    wait.until(lambda d: "$" in text())
    typed = driver.find_element(By.CSS_SELECTOR, ".jp-Terminal .xterm-helper-textarea")
    typed.send_keys(command + "\n")
    wait.until(lambda d: f"Default principal: {principal}" in text())
    return text()
