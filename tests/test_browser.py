"""The demo in a real browser: headless Chromium logs in on the real login page.

Debian's chromium and chromium-driver, driven by selenium. The user types
their name and password into JupyterHub's login form, lands in JupyterLab,
opens a terminal from the launcher and runs ``klist``, which must show their
ticket. The screenshot of that terminal is what docs/quickstart.md shows; set
``KERBAUTH_SCREENSHOT_DIR=docs/images`` to write it there.
"""

import json
import os
import shutil
import tempfile

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from support.demo import running_demo

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


@pytest.fixture
def browser(monkeypatch):
    """Headless Chromium with a fresh profile, removed afterwards."""
    # Selenium must use the system's driver and browser, never download any.
    monkeypatch.setenv("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="kerbauth-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def screenshot_dir(tmp_path):
    return os.environ.get("KERBAUTH_SCREENSHOT_DIR") or str(tmp_path)


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


def test_log_in_with_chromium_and_see_the_ticket_in_a_terminal(browser, screenshot_dir):
    with running_demo() as demo:
        user = "kbdemo-alice"
        wait = WebDriverWait(browser, 90)
        browser.set_script_timeout(30)

        browser.get(f"{demo.url}/hub/login")
        assert "JupyterHub" in browser.title
        browser.find_element(By.ID, "username_input").send_keys(user)
        browser.find_element(By.ID, "password_input").send_keys(demo.users[user])
        browser.save_screenshot(os.path.join(screenshot_dir, "demo-login.png"))
        browser.find_element(By.ID, "login_submit").click()

        # Login, spawn, spawn-pending, then JupyterLab of the user's own server.
        wait.until(lambda d: d.current_url.startswith(f"{demo.url}/user/{user}/lab"))
        wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".jp-Launcher")))
        # The terminal's text in the page too (xterm's accessibility tree), not only drawn.
        status = put_lab_settings(
            browser, user, "@jupyterlab/terminal-extension:plugin", {"screenReaderMode": True}
        )
        assert status == 204
        browser.refresh()

        card = wait.until(
            seen.element_to_be_clickable(
                (By.CSS_SELECTOR, '.jp-LauncherCard[data-category="Other"][title*="terminal" i]')
            )
        )
        card.click()
        screen = (By.CSS_SELECTOR, ".jp-Terminal .xterm-accessibility-tree")
        wait.until(lambda d: f"{user}@" in d.find_element(*screen).get_attribute("textContent"))
        browser.find_element(By.CSS_SELECTOR, ".jp-Terminal .xterm-helper-textarea").send_keys(
            "klist\n"
        )
        wait.until(
            lambda d: (
                f"Default principal: {user}@{demo.realm}"
                in d.find_element(*screen).get_attribute("textContent")
            )
        )
        text = browser.find_element(*screen).get_attribute("textContent")
        assert f"Ticket cache: FILE:{demo.workdir}/ccache/krb5cc_{user}" in text
        assert f"krbtgt/{demo.realm}@{demo.realm}" in text

        path = os.path.join(screenshot_dir, "demo-terminal-klist.png")
        assert browser.save_screenshot(path)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 10_000
