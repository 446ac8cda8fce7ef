"""The demo in a real browser: headless Chromium logs in on the real login page.

Debian's chromium and chromium-driver, driven by selenium. The user types
their name and password into JupyterHub's login form, lands in JupyterLab,
opens a terminal from the launcher and runs ``klist``, which must show their
ticket. The screenshot of that terminal is what docs/quickstart.md shows; set
``KERBAUTH_SCREENSHOT_DIR=docs/images`` to write it there.
"""

import os

import pytest

from support.browser import chromium, klist_in_terminal, log_in
from support.demo import running_demo


@pytest.fixture
def browser():
    with chromium() as driver:
        yield driver


@pytest.fixture
def screenshot_dir(tmp_path):
    return os.environ.get("KERBAUTH_SCREENSHOT_DIR") or str(tmp_path)


def test_log_in_with_chromium_and_see_the_ticket_in_a_terminal(browser, screenshot_dir):
    with running_demo() as demo:
        user = "kbdemo-alice"
        log_in(
            browser,
            demo.url,
            user,
            demo.users[user],
            before_submit=lambda: browser.save_screenshot(
                os.path.join(screenshot_dir, "demo-login.png")
            ),
        )
        text = klist_in_terminal(browser, user, f"{user}@{demo.realm}")
        assert f"Ticket cache: FILE:{demo.workdir}/ccache/krb5cc_{user}" in text
        assert f"krbtgt/{demo.realm}@{demo.realm}" in text

        path = os.path.join(screenshot_dir, "demo-terminal-klist.png")
        assert browser.save_screenshot(path)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 10_000
