"""Headless Chromium for the tests: Debian's chromium and chromium-driver, driven by selenium.

``chromium(*flags)`` starts one with a fresh profile (removed afterwards) and
the system's driver (selenium never downloads one). ``log_in(driver, base,
user, password)`` uses JupyterHub's real login form and waits for JupyterLab;
``klist_in_terminal(driver, user, principal)`` opens a terminal from
JupyterLab's launcher, runs ``klist`` in it and returns the terminal's text
once it shows ``principal``.
"""

import contextlib
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


@contextlib.contextmanager
def chromium(*flags):
    """Headless Chromium with ``flags`` besides :data:`FLAGS` and a fresh profile."""
    # Selenium must use the system's driver and browser, never download any.
    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    profile = tempfile.mkdtemp(prefix="kerbauth-chromium-")
    try:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, *flags, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
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


def log_in(driver, base, user, password, before_submit=None):
    """Log in on the hub's form at ``base`` and wait for the user's JupyterLab (spawned)."""
    driver.get(f"{base}/hub/login")
    assert "JupyterHub" in driver.title
    driver.find_element(By.ID, "username_input").send_keys(user)
    driver.find_element(By.ID, "password_input").send_keys(password)
    if before_submit is not None:
        before_submit()
    driver.find_element(By.ID, "login_submit").click()
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


def klist_in_terminal(driver, user, principal):
    """In the user's JupyterLab: a terminal from the launcher, ``klist`` in it, its text."""
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
    driver.find_element(By.CSS_SELECTOR, ".jp-Terminal .xterm-helper-textarea").send_keys("klist\n")
    wait.until(lambda d: f"Default principal: {principal}" in text())
    return text()
